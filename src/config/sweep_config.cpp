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
    if (a->empty())
      throw InputError(where + " = [] is an empty list; expected at least one value (an empty grid has no points)");
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

namespace {

// [sweep]: its name, and its [[sweep.grid]] tables (removed from `root`).
std::vector<toml::table> read_sweep_section(toml::table& root, const std::string& source, SweepSpec& spec) {
  std::vector<toml::table> grids;
  toml::node* sw = root.get("sweep");
  if (!sw) return grids;
  if (!sw->is_table()) throw InputError(source + ": 'sweep' must be a section [sweep]");
  const toml::table section = *sw->as_table();
  root.erase("sweep");
  for (const auto& [k, v] : section) {
    const std::string key(k.str());
    if (key == "name") {
      if (!v.is_string())
        throw InputError(source + " [sweep]: name = " + node_to_string(v) + " is not a string; expected a name");
      spec.name = v.as_string()->get();
    } else if (key == "grid") {
      const toml::array* a = v.as_array();
      if (!a || !a->is_array_of_tables())
        throw InputError(source + " [sweep]: grid must be an array of tables ([[sweep.grid]]); got " +
                         node_to_string(v));
      for (const auto& g : *a) grids.push_back(*g.as_table());
    } else {
      throw InputError(source + " [sweep]: " + key + " is an unknown key; known keys in [sweep]: name, grid");
    }
  }
  return grids;
}

// The base lists: every list-valued leaf of the config sections (quant.bits even as one value: sweep shorthand).
Axes base_axes(const toml::table& root, const std::string& source) {
  std::map<std::string, const toml::node*> leaves;
  flatten(root, "", leaves);
  Axes base;
  for (const auto& [path, node] : leaves) {
    if (!node->is_array() && path != "quant.bits") continue;
    if (!sweepable(path))
      throw InputError(source + ": " + path + " = " + node_to_string(*node) + " is a list, but [" +
                       path.substr(0, path.find('.')) +
                       "] cannot vary in a sweep; expected one value (lists are "
                       "allowed in [model], [synth], [quant], [eval])");
    base[path] = axis_values(*node, source + ": " + path);
  }
  return base;
}

// Grid g's axes: the base lists with the grid's own lists replacing them; the grid's keys leave `fixed`.
Axes grid_axes(const Axes& base, const toml::table& grid, size_t g, const std::string& source, toml::table& fixed) {
  Axes axes = base;
  std::map<std::string, const toml::node*> leaves;
  flatten(grid, "", leaves);
  if (leaves.empty())
    throw InputError(source + " [[sweep.grid]] #" + std::to_string(g + 1) +
                     " is empty; expected keys with lists "
                     "(\"quant.bits\" = [\"w8a8\", \"w4a4\"])");
  for (const auto& [path, node] : leaves) {
    const std::string where = source + " [[sweep.grid]] #" + std::to_string(g + 1) + ": " + path;
    if (!sweepable(path) || path.find('.') == std::string::npos)
      throw InputError(where +
                       " cannot vary in a sweep; expected a key of [model], [synth], [quant] or [eval] "
                       "written as \"section.key\"");
    axes[path] = axis_values(*node, where);
    erase_path(fixed, path);
  }
  return axes;
}

// Sets one axis value of a point; "quant.bits" = "wXaY" sets w_bits and a_bits.
void set_axis(toml::table& t, OverrideOrigins& origins, const std::string& path, const toml::node& v,
              const std::string& source) {
  static const std::regex kBits("w([0-9]+)a([0-9]+)");
  const std::string text = value_text(v);
  const std::string origin = source + " (sweep point " + path + "=" + text + ")";
  if (path != "quant.bits") {
    set_path(t, path, v);
    origins[path] = origin;
    return;
  }
  std::smatch m;
  if (!v.is_string() || !std::regex_match(text, m, kBits))
    throw InputError(source + ": quant.bits = " + quote_value(text) +
                     " is not a bit-width; expected \"wXaY\" "
                     "(e.g. \"w4a4\", \"w4a8\", \"w4a32\" for activations in floating point)");
  set_path(t, "quant.w_bits", toml::value<int64_t>(std::stoll(m[1].str())));
  set_path(t, "quant.a_bits", toml::value<int64_t>(std::stoll(m[2].str())));
  origins["quant.w_bits"] = origins["quant.a_bits"] = origin;
}

// The cartesian product of one grid's axes (the last axis varies fastest), each point validated as a run file.
void expand(const Axes& axes, const toml::table& fixed, const OverrideOrigins& cli_origins, const std::string& source,
            SweepSpec& spec, std::map<std::string, std::set<std::string>>& seen) {
  const std::vector<std::pair<std::string, std::vector<const toml::node*>>> list(axes.begin(), axes.end());
  std::vector<size_t> idx(list.size(), 0);
  while (true) {
    toml::table t = fixed;
    OverrideOrigins origins = cli_origins;
    std::string label;
    for (size_t i = 0; i < list.size(); ++i) {
      const toml::node& v = *list[i].second[idx[i]];
      label += (label.empty() ? "" : " ") + list[i].first + "=" + value_text(v);
      seen[list[i].first].insert(value_text(v));
      set_axis(t, origins, list[i].first, v, source);
    }
    spec.points.push_back(SweepPoint{read_run_table(t, source, origins), label});
    size_t i = list.size();
    while (i > 0 && ++idx[i - 1] == list[i - 1].second.size()) idx[--i] = 0;
    if (i == 0) return;
  }
}

}  // namespace

SweepSpec parse_sweep(const std::string& toml_text, const std::string& source,
                      const std::vector<std::string>& overrides) {
  OverrideOrigins cli_origins;
  toml::table root = parse_with_overrides(toml_text, source, overrides, cli_origins);
  SweepSpec spec;
  spec.source = source;
  const std::vector<toml::table> grids = read_sweep_section(root, source, spec);
  const Axes base = base_axes(root, source);
  toml::table fixed = root;  // the config without its lists
  for (const auto& [path, _] : base) erase_path(fixed, path);
  std::vector<Axes> all;
  if (grids.empty()) all.push_back(base);
  for (size_t g = 0; g < grids.size(); ++g) all.push_back(grid_axes(base, grids[g], g, source, fixed));
  std::map<std::string, std::set<std::string>> seen;  // axis -> the values it takes over all points
  for (const Axes& axes : all) expand(axes, fixed, cli_origins, source, spec, seen);
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
