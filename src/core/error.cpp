#include "core/error.hpp"

namespace dsgq {

void throw_internal(const char* file, int line, const char* cond, const std::string& msg) {
  throw InternalError(std::string(file) + ":" + std::to_string(line) + ": check '" + cond + "' failed: " + msg);
}

std::string quote_value(const std::string& value) { return "'" + value + "'"; }

}  // namespace dsgq
