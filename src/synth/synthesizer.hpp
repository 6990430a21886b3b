#pragma once
// Makes a calibration set batch by batch: each batch of B images is split over the ranks (uneven shares allowed);
// the images are optimised with Adam on the pixels and ReduceLROnPlateau on the global loss (method.md sections
// 1-5), or drawn (gaussian) or read (real) without optimisation.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dist/comm.hpp"
#include "synth/margins.hpp"
#include "synth/objective.hpp"
#include "synth/sampling.hpp"

namespace dsgq::models {
class Network;
}

namespace dsgq::synth {

struct SynthSettings {
  std::string method;     // dsg | zeroq | gaussian | real
  std::string preset;     // paper | official
  int64_t n_images = 0, batch = 0, iters = 0, patience = 0;
  double lr = 0;
  bool batch_stats = false, lse = false;
  uint64_t seed = 0;
  Init init = Init::gaussian;
  std::string real_data;  // method = real: CIFAR-10 binary file
  std::string label;      // for progress lines
};

struct BatchResult {
  int64_t first = 0;      // global index of this rank's first image
  at::Tensor images;      // float [n,C,H,W] (network's device)
  at::Tensor labels;      // int64 [n]: target label (official random label, real label), -1 if none
  at::Tensor lse_layer;   // int64 [n]: -1 if none
  double loss = 0;        // global final loss (0 for gaussian and real)
  std::vector<float> loss_curve;  // global loss at every iteration (empty for gaussian and real)
};

class Synthesizer {
 public:
  Synthesizer(const models::Network& net, SynthSettings settings, Margins margins, const dist::Comm& comm);
  int64_t n_batches() const { return (s_.n_images + s_.batch - 1) / s_.batch; }
  // Collective: this rank's share of batch b. Throws InputError naming batch, iteration and term if the loss
  // becomes NaN or Inf.
  BatchResult make_batch(int64_t b);

 private:
  const models::Network& net_;
  SynthSettings s_;
  Margins margins_;
  const dist::Comm& comm_;
  Objective objective_;
};

// Throws InputError "<label>: the loss diverged at batch b, iteration i: term 'x' is nan; ..." for the first
// non-finite term (every rank holds the same global values, so every rank stops the same way).
void check_finite(const LossValue& value, const std::string& label, int64_t batch, int64_t iteration);

// ObjectiveConfig for a method/preset (margins attached when the method uses them).
ObjectiveConfig objective_config(const SynthSettings& s, const Margins& margins);

}  // namespace dsgq::synth
