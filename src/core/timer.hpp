#pragma once
// Wall-clock timers and rank-0 progress lines ("eval resnet20 [ 4096/10000 images]  41%  812.3 img/s  eta 00:07").
#include <chrono>
#include <cstdint>
#include <string>

namespace dsgq {

class Timer {
 public:
  Timer() : start_(std::chrono::steady_clock::now()) {}
  void reset() { start_ = std::chrono::steady_clock::now(); }
  double seconds() const { return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count(); }

 private:
  std::chrono::steady_clock::time_point start_;
};

// Peak resident memory of this process so far, in MiB (getrusage).
double peak_rss_mib();

// "hh:mm:ss" (or "mm:ss" under an hour).
std::string format_duration(double seconds);

// Prints whole progress lines on rank 0 at most every `interval_s` seconds (and always for the last step).
// `done` and `total` are global counts (the caller reduces them or extrapolates from its own share).
class Progress {
 public:
  Progress(std::string label, std::string unit, int64_t total, double interval_s = 10.0);
  void update(int64_t done, const std::string& extra = "");
  double elapsed() const { return timer_.seconds(); }

 private:
  std::string label_, unit_;
  int64_t total_;
  double interval_s_;
  double last_print_ = -1.0;
  Timer timer_;
};

}  // namespace dsgq
