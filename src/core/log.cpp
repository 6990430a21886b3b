#include "core/log.hpp"

#include <cstdio>
#include <mutex>
#include <string>

namespace dsgq {
namespace {
int g_rank = -1;
int g_world = -1;
std::mutex g_mutex;

enum class LogLevel { info = 0, warn = 1, error = 2 };

void vlog(LogLevel level, bool rank0_only, const char* fmt, va_list ap) {
  if (rank0_only && g_rank > 0) return;
  static const char* const kNames[] = {"info", "warn", "error"};
  char body[4096];
  std::vsnprintf(body, sizeof body, fmt, ap);
  std::string prefix =
      g_rank < 0 ? std::string("[rank ?/?]") : "[rank " + std::to_string(g_rank) + "/" + std::to_string(g_world) + "]";
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s %s: %s\n", prefix.c_str(), kNames[static_cast<int>(level)], body);
  std::fflush(stderr);
}
}  // namespace

void set_log_rank(int rank, int world) {
  g_rank = rank;
  g_world = world;
}
int log_rank() { return g_rank; }

#define DSGQ_DEFINE_LOG(fn, level, rank0) \
  void fn(const char* fmt, ...) {         \
    va_list ap;                           \
    va_start(ap, fmt);                    \
    vlog(level, rank0, fmt, ap);          \
    va_end(ap);                           \
  }
DSGQ_DEFINE_LOG(log_info, LogLevel::info, false)
DSGQ_DEFINE_LOG(log_warn, LogLevel::warn, false)
DSGQ_DEFINE_LOG(log_error, LogLevel::error, false)
DSGQ_DEFINE_LOG(log_info0, LogLevel::info, true)
DSGQ_DEFINE_LOG(log_warn0, LogLevel::warn, true)
#undef DSGQ_DEFINE_LOG

}  // namespace dsgq
