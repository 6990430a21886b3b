#pragma once
// Internal to src/config: the field table of a config section, in the spirit of LibTorch's TORCH_ARG and XGBoost's
// DMLC_DECLARE_FIELD. One row per key: name, member, default, range or choices, one-line doc, roles. From the row
// come the default (set_default), the TOML reading with its errors (read), the value for resolved.toml, identity
// texts and records (get) and the reference line (type, default_text, range). Included by config .cpp files only.
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "config/choices.hpp"
#include "config/run_config.hpp"
#include "config/toml_section.hpp"

namespace dsgq::config {

template <class S>
struct Field {
  std::string key, type, default_text, range, doc;
  unsigned roles = 0;
  std::string point;  // name in a record's point; "" = the key
  std::function<void(S&)> set_default;
  std::function<void(S&, TomlSection&)> read;
  std::function<Value(const S&)> get;
};

template <class S>
using Table = std::vector<Field<S>>;

inline std::string number_text(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

template <class S>
Field<S> text_field(const char* key, std::string S::*m, const char* def, bool path, const char* doc, unsigned roles = 0,
                    const char* point = "") {
  Field<S> f{key,
             path ? "path" : "string",
             std::string("\"") + def + "\"",
             path ? "${VAR} expanded" : "",
             doc,
             roles,
             point,
             nullptr,
             nullptr,
             nullptr};
  const std::string d = def;
  f.set_default = [m, d](S& s) { s.*m = d; };
  f.read = [m, path, key](S& s, TomlSection& t) { s.*m = path ? t.get_path(key, s.*m) : t.get_string(key, s.*m); };
  f.get = [m](const S& s) { return Value(s.*m); };
  return f;
}

template <class S>
Field<S> int_field(const char* key, int64_t S::*m, int64_t def, int64_t lo, int64_t hi, const char* doc,
                   unsigned roles = 0, const char* point = "") {
  Field<S> f{key,
             "integer",
             std::to_string(def),
             std::to_string(lo) + ".." + std::to_string(hi),
             doc,
             roles,
             point,
             nullptr,
             nullptr,
             nullptr};
  f.set_default = [m, def](S& s) { s.*m = def; };
  f.read = [m, key, lo, hi](S& s, TomlSection& t) { s.*m = t.get_int(key, s.*m, lo, hi); };
  f.get = [m](const S& s) { return Value(s.*m); };
  return f;
}

template <class S>
Field<S> float_field(const char* key, double S::*m, double def, double lo, double hi, const char* doc,
                     unsigned roles = 0, const char* point = "") {
  Field<S> f{key,     "float", number_text(def), number_text(lo) + ".." + number_text(hi), doc, roles, point,
             nullptr, nullptr, nullptr};
  f.set_default = [m, def](S& s) { s.*m = def; };
  f.read = [m, key, lo, hi](S& s, TomlSection& t) { s.*m = t.get_double(key, s.*m, lo, hi); };
  f.get = [m](const S& s) { return Value(s.*m); };
  return f;
}

template <class S>
Field<S> bool_field(const char* key, bool S::*m, bool def, const char* doc, unsigned roles = 0,
                    const char* point = "") {
  Field<S> f{key, "boolean", def ? "true" : "false", "", doc, roles, point, nullptr, nullptr, nullptr};
  f.set_default = [m, def](S& s) { s.*m = def; };
  f.read = [m, key](S& s, TomlSection& t) { s.*m = t.get_bool(key, s.*m); };
  f.get = [m](const S& s) { return Value(s.*m); };
  return f;
}

template <class S, class E>
Field<S> choice_field(const char* key, E S::*m, E def, const char* doc, unsigned roles = 0, const char* point = "") {
  std::string range;
  for (const auto& n : choice_names<E>()) range += (range.empty() ? "" : ", ") + ("\"" + n + "\"");
  Field<S> f{key, "choice", "\"" + name(def) + "\"", range, doc, roles, point, nullptr, nullptr, nullptr};
  f.set_default = [m, def](S& s) { s.*m = def; };
  f.read = [m, key](S& s, TomlSection& t) { s.*m = *parse_choice<E>(t.get_enum(key, name(s.*m), choice_names<E>())); };
  f.get = [m](const S& s) { return Value(name(s.*m)); };
  return f;
}

}  // namespace dsgq::config
