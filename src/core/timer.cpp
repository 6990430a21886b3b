#include "core/timer.hpp"

#include <sys/resource.h>

#include <cstdio>

#include "core/log.hpp"

namespace dsgq {

double peak_rss_mib() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;  // kilobytes on Linux
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0)) seconds = 0;
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[64];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  return buf;
}

Progress::Progress(std::string label, std::string unit, int64_t total, double interval_s)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), interval_s_(interval_s) {}

void Progress::update(int64_t done, const std::string& extra) {
  const double t = timer_.seconds();
  const bool last = done >= total_;
  if (!last && last_print_ >= 0 && t - last_print_ < interval_s_) return;
  last_print_ = t;
  const double rate = t > 0 ? static_cast<double>(done) / t : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
  const int width = static_cast<int>(std::to_string(total_).size());
  log_info0("%s [%*lld/%lld %s] %3d%%  %.1f %s/s  eta %s%s%s", label_.c_str(), width, static_cast<long long>(done),
            static_cast<long long>(total_), unit_.c_str(), total_ > 0 ? static_cast<int>(100 * done / total_) : 100,
            rate, unit_.c_str(), format_duration(eta).c_str(), extra.empty() ? "" : "  ", extra.c_str());
}

}  // namespace dsgq
