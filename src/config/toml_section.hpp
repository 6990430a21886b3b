#pragma once
// Internal to src/config: a TOML table that records which keys were read, so any key left over is an error that
// lists the known ones. Included only by config .cpp files (it pulls in toml++).
#include <toml++/toml.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace dsgq::config {

// Where each overridden key came from ("section.key" -> "--set section.key=value").
using OverrideOrigins = std::map<std::string, std::string>;

class TomlSection {
 public:
  // `table` may be null (section absent: every key takes its default).
  TomlSection(const toml::table* table, std::string source, std::string section, const OverrideOrigins* origins);

  std::string get_string(const std::string& key, const std::string& def);
  std::string get_path(const std::string& key, const std::string& def);  // ${VAR}-expanded
  int64_t get_int(const std::string& key, int64_t def, int64_t min, int64_t max);
  double get_double(const std::string& key, double def, double min, double max);
  bool get_bool(const std::string& key, bool def);
  std::string get_enum(const std::string& key, const std::string& def, const std::vector<std::string>& allowed);
  // A nested table (`key = { ... }` or [section.key]); absent = every key takes its default.
  TomlSection sub(const std::string& key);
  // Whether the file or a --set gave this key (a default is resolved from what the user left out).
  bool has(const std::string& key) const { return table_ && table_->contains(key); }
  // Throws InputError for the first key never asked for, listing the keys this section knows.
  void reject_unread() const;

  // "configs/x.toml [eval]: batch" or "--set eval.batch=abc"
  std::string where(const std::string& key) const;
  const std::string& name() const { return section_; }

 private:
  const toml::node* find(const std::string& key);
  [[noreturn]] void type_error(const std::string& key, const toml::node& n, const std::string& expected) const;

  const toml::table* table_;
  std::string source_, section_;
  const OverrideOrigins* origins_;
  std::set<std::string> known_;
};

std::string node_to_string(const toml::node& n);

struct RunConfig;
// Applies "section.key=value" (a --set) to the table; records where the key came from.
void apply_override(toml::table& root, const std::string& text, OverrideOrigins& origins);
// Parses TOML text (a syntax error is an InputError naming source:line:column) and applies the --set overrides.
toml::table parse_with_overrides(const std::string& toml_text, const std::string& source,
                                 const std::vector<std::string>& overrides, OverrideOrigins& origins);
// Validates a parsed config table into a RunConfig (unknown sections/keys, types, ranges).
RunConfig read_run_table(const toml::table& root, const std::string& source, const OverrideOrigins& origins);
// The sections a config file may hold, in file order ("quant.adaround" is nested in [quant]).
const std::vector<std::string>& section_names();
std::string join(const std::vector<std::string>& items, const std::string& sep);

}  // namespace dsgq::config
