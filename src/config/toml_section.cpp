#include "config/toml_section.hpp"

#include <cmath>
#include <sstream>

#include "core/error.hpp"
#include "core/paths.hpp"

namespace dsgq::config {

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? sep : "") + items[i];
  return out;
}

std::string node_to_string(const toml::node& n) {
  if (auto s = n.as_string()) return s->get();
  std::ostringstream os;
  if (n.is_table())
    os << "{...}";
  else if (auto a = n.as_array())
    os << *a;
  else if (auto i = n.as_integer())
    os << i->get();
  else if (auto f = n.as_floating_point())
    os << f->get();
  else if (auto b = n.as_boolean())
    os << (b->get() ? "true" : "false");
  else
    os << "(date/time)";
  return os.str();
}

namespace {
const char* type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    default:
      return "a date/time";
  }
}
}  // namespace

TomlSection::TomlSection(const toml::table* table, std::string source, std::string section,
                         const OverrideOrigins* origins)
    : table_(table), source_(std::move(source)), section_(std::move(section)), origins_(origins) {}

std::string TomlSection::where(const std::string& key) const {
  if (origins_) {
    auto it = origins_->find(section_ + "." + key);
    if (it != origins_->end()) return it->second + ": " + key;
  }
  return source_ + " [" + section_ + "]: " + key;
}

const toml::node* TomlSection::find(const std::string& key) {
  known_.insert(key);
  return table_ ? table_->get(key) : nullptr;
}

void TomlSection::type_error(const std::string& key, const toml::node& n, const std::string& expected) const {
  throw InputError(where(key) + " = " + quote_value(node_to_string(n)) + " is " + type_name(n) + "; expected " +
                   expected);
}

TomlSection TomlSection::sub(const std::string& key) {
  const toml::node* n = find(key);
  if (n && !n->is_table()) type_error(key, *n, "a table { ... }");
  return TomlSection(n ? n->as_table() : nullptr, source_, section_ + "." + key, origins_);
}

std::string TomlSection::get_string(const std::string& key, const std::string& def) {
  const toml::node* n = find(key);
  if (!n) return def;
  if (auto s = n->as_string()) return s->get();
  type_error(key, *n, "a string");
}

std::string TomlSection::get_path(const std::string& key, const std::string& def) {
  const std::string raw = get_string(key, def);
  return expand_env(raw, where(key));
}

int64_t TomlSection::get_int(const std::string& key, int64_t def, int64_t min, int64_t max) {
  const toml::node* n = find(key);
  if (!n) return def;
  const std::string range = std::to_string(min) + ".." + std::to_string(max);
  auto i = n->as_integer();
  if (!i) type_error(key, *n, "an integer " + range);
  const int64_t v = i->get();
  if (v < min || v > max)
    throw InputError(where(key) + " = " + quote_value(std::to_string(v)) + " is out of range; expected " + range);
  return v;
}

double TomlSection::get_double(const std::string& key, double def, double min, double max) {
  const toml::node* n = find(key);
  if (!n) return def;
  std::ostringstream range;
  range << min << ".." << max;
  double v;
  if (auto f = n->as_floating_point())
    v = f->get();
  else if (auto i = n->as_integer())
    v = static_cast<double>(i->get());
  else
    type_error(key, *n, "a number " + range.str());
  if (!(v >= min && v <= max))
    throw InputError(where(key) + " = " + quote_value(node_to_string(*n)) + " is out of range; expected " +
                     range.str());
  return v;
}

bool TomlSection::get_bool(const std::string& key, bool def) {
  const toml::node* n = find(key);
  if (!n) return def;
  if (auto b = n->as_boolean()) return b->get();
  type_error(key, *n, "true or false");
}

std::string TomlSection::get_enum(const std::string& key, const std::string& def,
                                  const std::vector<std::string>& allowed) {
  const std::string v = get_string(key, def);
  for (const auto& a : allowed)
    if (a == v) return v;
  throw InputError(where(key) + " = " + quote_value(v) + " is not allowed; expected one of " + join(allowed, ", "));
}

void TomlSection::reject_unread() const {
  if (!table_) return;
  for (const auto& [k, v] : *table_) {
    const std::string key(k.str());
    if (!known_.count(key)) {
      std::vector<std::string> known(known_.begin(), known_.end());
      throw InputError(where(key) + " is an unknown key; known keys in [" + section_ + "]: " + join(known, ", "));
    }
  }
}

}  // namespace dsgq::config
