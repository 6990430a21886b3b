#include "synth/plateau.hpp"

#include <algorithm>
#include <limits>

#include "core/log.hpp"

namespace dsgq::synth {

double Plateau::step(double loss) {
  if (!has_best_ || loss < best_ * (1.0 - cfg_.threshold)) {
    best_ = loss;
    has_best_ = true;
    bad_ = 0;
  } else {
    ++bad_;
  }
  if (bad_ > cfg_.patience) {
    const double next = std::max(lr_ * cfg_.factor, cfg_.min_lr);
    if (lr_ - next > cfg_.eps) lr_ = next;
    bad_ = 0;
  }
  return lr_;
}

void pad_loss_curve(std::vector<float>& curve, int64_t iters) {
  if (static_cast<int64_t>(curve.size()) < iters)
    curve.resize(static_cast<size_t>(iters), std::numeric_limits<float>::quiet_NaN());
}

bool ConvergenceStop::update(double loss) {
  best_.push_back(best_.empty() ? loss : std::min(best_.back(), loss));
  if (rtol_ <= 0) return false;
  const double now = best_.back();
  if (now == 0) return true;
  const size_t n = best_.size();
  if (n <= static_cast<size_t>(window_)) return false;
  const double then = best_[n - 1 - static_cast<size_t>(window_)];
  return then - now < rtol_ * (best_.front() - now);  // the last window's gain against the gain so far
}

void ConvergenceStop::finish(std::vector<float>& curve, int64_t iters, const std::string& what) const {
  const auto ran = static_cast<long long>(best_.size());
  if (ran < iters)
    log_info0("%s: converged after %lld of %lld iterations (stop_rtol %g over %lld)", what.c_str(), ran,
              static_cast<long long>(iters), rtol_, static_cast<long long>(window_));
  pad_loss_curve(curve, iters);
}

}  // namespace dsgq::synth
