#include "core/paths.hpp"

#include <cstdlib>
#include <filesystem>

#include "core/error.hpp"
#include "dsgq/version.hpp"

namespace dsgq {

std::string data_dir() {
  if (const char* v = std::getenv("DSGQ_DATA"); v && *v) return v;
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const fs::path& cand :
       {fs::path(kSourceDir) / ".." / "shared" / "data", fs::current_path(ec) / ".." / "shared" / "data"}) {
    if (fs::is_directory(cand, ec)) return fs::weakly_canonical(cand, ec).string();
  }
  return "";
}

std::string expand_env(const std::string& text, const std::string& where) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = text.find("${", i);
    if (start == std::string::npos) {
      out += text.substr(i);
      break;
    }
    const size_t end = text.find('}', start);
    if (end == std::string::npos)
      throw InputError(where + " = " + quote_value(text) + " has an unterminated '${'; expected ${NAME}");
    out += text.substr(i, start - i);
    const std::string name = text.substr(start + 2, end - start - 2);
    std::string value;
    if (name == "DSGQ_DATA") {
      value = data_dir();
      if (value.empty())
        throw InputError(
            where + " = " + quote_value(text) +
            ": DSGQ_DATA is not set and no ../shared/data folder exists; set DSGQ_DATA or run jobs/fetch-data");
    } else {
      const char* v = std::getenv(name.c_str());
      if (!v) throw InputError(where + " = " + quote_value(text) + ": environment variable " + name + " is not set");
      value = v;
    }
    out += value;
    i = end + 1;
  }
  return out;
}

}  // namespace dsgq
