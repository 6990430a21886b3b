#include "config/sweep_config.hpp"

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "config/toml_section.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"

namespace dsgq::config {
namespace {

const std::vector<std::string> kSweepable = {"model", "synth", "quant", "eval"};

bool sweepable(const std::string& path) {
  const std::string section = path.substr(0, path.find('.'));
  for (const auto& s : kSweepable)
    if (s == section) return true;
  return false;
}

// Leaves of `t` as dotted paths ("quant.adaround.iters"), nested tables walked.
void flatten(const toml::table& t, const std::string& prefix, std::map<std::string, const toml::node*>& out) {
  for (const auto& [k, v] : t) {
    const std::string path = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = v.as_table())
      flatten(*sub, path, out);
    else
      out[path] = &v;
  }
}

std::string value_text(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  return node_to_string(n);
}

// Sets root[path] = value, creating tables on the way.
void set_path(toml::table& root, const std::string& path, const toml::node& value) {
  toml::table* t = &root;
  std::string rest = path;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    const std::string part = rest.substr(0, dot);
    if (!t->get(part)) t->insert(part, toml::table{});
    t = t->get(part)->as_table();
  }
  t->insert_or_assign(rest, value);
}

void erase_path(toml::table& root, const std::string& path) {
  toml::table* t = &root;
  std::string rest = path;
  for (size_t dot; (dot = rest.find('.')) != std::string::npos; rest = rest.substr(dot + 1)) {
    toml::node* n = t->get(rest.substr(0, dot));
    if (!n || !n->is_table()) return;
    t = n->as_table();
  }
  t->erase(rest);
}

using Axes = std::map<std::string, std::vector<const toml::node*>>;

// The values one axis takes; `where` names it for messages.
std::vector<const toml::node*> axis_values(const toml::node& n, const std::string& where) {
  std::vector<const toml::node*> values;
  if (const toml::array* a = n.as_array()) {
    if (a->empty()) throw InputError(where + " = [] is an empty list; expected at least one value (an empty grid has no points)");
    for (const auto& v : *a) {
      if (v.is_array() || v.is_table())
        throw InputError(where + " holds a nested list or table (" + node_to_string(v) + "); expected plain values");
      values.push_back(&v);
    }
  } else {
    values.push_back(&n);
  }
  return values;
}

}  // namespace

SweepSpec parse_sweep(const std::string& toml_text, const std::string& source,
                      const std::vector<std::string>& overrides) {
  OverrideOrigins cli_origins;
  toml::table root = parse_with_overrides(toml_text, source, overrides, cli_origins);

  SweepSpec spec;
  spec.source = source;
  std::vector<const toml::table*> grids;
  toml::table sweep_section;
  if (toml::node* sw = root.get("sweep")) {
    if (!sw->is_table()) throw InputError(source + ": 'sweep' must be a section [sweep]");
    sweep_section = *sw->as_table();
    root.erase("sweep");
  }
  for (const auto& [k, v] : sweep_section) {
    const std::string key(k.str());
    if (key == "name") {
      if (!v.is_string()) throw InputError(source + " [sweep]: name = " + node_to_string(v) + " is not a string; expected a name");
      spec.name = v.as_string()->get();
    } else if (key == "grid") {
      const toml::array* a = v.as_array();
      if (!a || !a->is_array_of_tables())
        throw InputError(source + " [sweep]: grid must be an array of tables ([[sweep.grid]]); got " + node_to_string(v));
      for (const auto& g : *a) grids.push_back(g.as_table());
    } else {
      throw InputError(source + " [sweep]: " + key + " is an unknown key; known keys in [sweep]: name, grid");
    }
  }

  // Base lists: every list-valued leaf of the config sections.
  std::map<std::string, const toml::node*> leaves;
  flatten(root, "", leaves);
  Axes base;
  for (const auto& [path, node] : leaves) {
    if (!node->is_array() && path != "quant.bits") continue;  // bits is sweep shorthand, even as one value
    if (!sweepable(path))
      throw InputError(source + ": " + path + " = " + node_to_string(*node) + " is a list, but [" +
                       path.substr(0, path.find('.')) + "] cannot vary in a sweep; expected one value (lists are "
                       "allowed in [model], [synth], [quant], [eval])");
    base[path] = axis_values(*node, source + ": " + path);
  }
  toml::table fixed = root;  // the config without its lists
  for (const auto& [path, _] : base) erase_path(fixed, path);

  std::vector<Axes> grid_axes;
  if (grids.empty()) grid_axes.push_back(base);
  for (size_t g = 0; g < grids.size(); ++g) {
    Axes axes = base;
    std::map<std::string, const toml::node*> gl;
    flatten(*grids[g], "", gl);
    if (gl.empty())
      throw InputError(source + " [[sweep.grid]] #" + std::to_string(g + 1) + " is empty; expected keys with lists "
                       "(\"quant.bits\" = [\"w8a8\", \"w4a4\"])");
    for (const auto& [path, node] : gl) {
      const std::string where = source + " [[sweep.grid]] #" + std::to_string(g + 1) + ": " + path;
      if (!sweepable(path) || path.find('.') == std::string::npos)
        throw InputError(where + " cannot vary in a sweep; expected a key of [model], [synth], [quant] or [eval] "
                         "written as \"section.key\"");
      axes[path] = axis_values(*node, where);
      erase_path(fixed, path);
    }
    grid_axes.push_back(axes);
  }

  std::map<std::string, std::set<std::string>> seen;  // axis -> the values it takes over all points
  static const std::regex kBits("w([0-9]+)a([0-9]+)");
  for (size_t g = 0; g < grid_axes.size(); ++g) {
    const Axes& axes = grid_axes[g];
    std::vector<std::pair<std::string, std::vector<const toml::node*>>> list(axes.begin(), axes.end());
    std::vector<size_t> idx(list.size(), 0);
    while (true) {
      toml::table t = fixed;
      OverrideOrigins origins = cli_origins;
      std::string label;
      for (size_t i = 0; i < list.size(); ++i) {
        const std::string& path = list[i].first;
        const toml::node& v = *list[i].second[idx[i]];
        const std::string text = value_text(v);
        label += (label.empty() ? "" : " ") + path + "=" + text;
        seen[path].insert(text);
        const std::string origin = source + " (sweep point " + path + "=" + text + ")";
        if (path == "quant.bits") {
          std::smatch m;
          if (!v.is_string() || !std::regex_match(text, m, kBits))
            throw InputError(source + ": quant.bits = " + quote_value(text) + " is not a bit-width; expected \"wXaY\" "
                             "(e.g. \"w4a4\", \"w4a8\", \"w4a32\" for activations in floating point)");
          set_path(t, "quant.w_bits", toml::value<int64_t>(std::stoll(m[1].str())));
          set_path(t, "quant.a_bits", toml::value<int64_t>(std::stoll(m[2].str())));
          origins["quant.w_bits"] = origins["quant.a_bits"] = origin;
        } else {
          set_path(t, path, v);
          origins[path] = origin;
        }
      }
      SweepPoint p{read_run_table(t, source, origins), label};
      spec.points.push_back(std::move(p));
      size_t i = list.size();
      while (i > 0 && ++idx[i - 1] == list[i - 1].second.size()) idx[--i] = 0;
      if (i == 0) break;
    }
  }
  for (const auto& [path, values] : seen)
    if (values.size() > 1) spec.axes.push_back(path);
  return spec;
}

SweepSpec load_sweep(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) throw InputError("dsgq sweep needs --config FILE (a sweep file: a run file with lists)");
  if (!file_exists(path)) throw InputError(path + ": no such sweep file");
  return parse_sweep(read_file(path), path, overrides);
}

}  // namespace dsgq::config
