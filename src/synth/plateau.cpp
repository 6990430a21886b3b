#include "synth/plateau.hpp"

#include <algorithm>

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

}  // namespace dsgq::synth
