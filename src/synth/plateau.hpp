#pragma once
// ReduceLROnPlateau with PyTorch's semantics (mode "min", threshold_mode "rel", cooldown 0): LibTorch 1.13 has no
// such scheduler. Local and deterministic: every rank steps it with the same global loss.
#include <cstdint>
#include <string>
#include <vector>

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

// Stop when converged (docs/method.md section 6): the optimisation of a batch ends once the best loss so far has
// improved over the last `window` iterations by less than `rtol` times its whole improvement since the first
// iteration, or has reached 0 (a hinge loss whose active set is empty). Relative to the progress made, so a loss
// decaying geometrically towards 0 (DSG's: 3e-4 at iteration 67 of 200, 5e-5 at 200) stops as surely as one that
// levels off at a floor. Fed the global loss, so every rank stops at the same iteration. rtol 0: never stops.
class ConvergenceStop {
 public:
  ConvergenceStop(double rtol, int64_t window) : rtol_(rtol), window_(window) {}
  // Feeds one iteration's loss; true when the optimisation should end after this iteration.
  bool update(double loss);
  // After the loop: logs (rank 0) "<what>: converged after n of `iters` iterations" when it ended early, and pads
  // the loss curve with NaN to `iters` entries (pad_loss_curve).
  void finish(std::vector<float>& curve, int64_t iters, const std::string& what) const;

 private:
  double rtol_;
  int64_t window_;
  std::vector<double> best_;  // best loss up to each iteration
};

// After an early stop: the loss curve padded with NaN to `iters` entries (the file's [batches, iterations] layout;
// the iterations run are the entries before the first NaN).
void pad_loss_curve(std::vector<float>& curve, int64_t iters);

}  // namespace dsgq::synth
