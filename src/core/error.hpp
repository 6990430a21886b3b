#pragma once
// Error classes: InputError is the user's fault (exit code 2), InternalError is ours (exit code 1).
#include <stdexcept>
#include <string>

namespace dsgq {

// A bad config, a missing or malformed input file, a wrong shape in a user file. The message says where (file, key,
// tensor), the value, and what was expected: "configs/x.toml [quant]: w_bits = '12' is out of range; expected 2..8".
class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& msg) : std::runtime_error(msg) {}
};

// A broken invariant inside dsgq (a bug). Raised by DSGQ_CHECK.
class InternalError : public std::logic_error {
 public:
  explicit InternalError(const std::string& msg) : std::logic_error(msg) {}
};

[[noreturn]] void throw_internal(const char* file, int line, const char* cond, const std::string& msg);

// Quotes a value for messages: 'value'.
std::string quote_value(const std::string& value);

}  // namespace dsgq

#define DSGQ_CHECK(cond, msg)                                              \
  do {                                                                     \
    if (!(cond)) ::dsgq::throw_internal(__FILE__, __LINE__, #cond, (msg)); \
  } while (0)
