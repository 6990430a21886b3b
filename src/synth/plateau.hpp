#pragma once
// ReduceLROnPlateau with PyTorch's semantics (mode "min", threshold_mode "rel", cooldown 0): LibTorch 1.13 has no
// such scheduler. Local and deterministic: every rank steps it with the same global loss.
#include <cstdint>

namespace dsgq::synth {

struct PlateauConfig {
  double factor = 0.1;      // lr *= factor on a plateau
  int64_t patience = 100;   // iterations without relative improvement > threshold before reducing
  double threshold = 1e-4;  // relative: improvement means loss < best * (1 - threshold)
  double min_lr = 1e-4;
  double eps = 1e-8;  // reductions smaller than this are skipped
};

class Plateau {
 public:
  Plateau(double lr, PlateauConfig cfg) : lr_(lr), cfg_(cfg) {}
  // Feeds one loss value; returns the learning rate to use from now on.
  double step(double loss);
  double lr() const { return lr_; }
  int64_t bad_steps() const { return bad_; }

 private:
  double lr_;
  PlateauConfig cfg_;
  double best_ = 0;
  bool has_best_ = false;
  int64_t bad_ = 0;
};

}  // namespace dsgq::synth
