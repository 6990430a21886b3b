#pragma once
// Makes a calibration set batch by batch: each batch of B images is split over the ranks (uneven shares allowed);
// the images are optimised with Adam on the pixels and ReduceLROnPlateau on the global loss (docs/method.md sections
// 1-5), or drawn (gaussian) or read (real) without optimisation.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "mpi/comm.hpp"
#include "synth/margins.hpp"
#include "synth/objective.hpp"
#include "synth/sampling.hpp"

namespace dsgq::models {
class Network;
}

namespace dsgq::synth {

// [synth] as configured, with what its preset decides filled in (docs/method.md section 5).
struct SynthSettings {
  config::SynthConfig cfg;
  double lr = 0;               // cfg.lr, or the preset's: paper 0.5; official dsg 0.9, zeroq 0.5
  int64_t patience = 0;        // cfg.patience, or the preset's: paper 100; official dsg 260, zeroq 100
  Init init = Init::gaussian;  // paper: N(0,1); official dsg: U(0,1); official zeroq: the released code's draw;
                               // deepinversion with preset dsgq: diverse (or as `init` says)
  double bn_weight = 0;        // deepinversion: cfg.bn_weight, or the preset's (paper, official 100; dsgq 10)
  std::string label;           // for progress lines
  int64_t n_batches() const { return (cfg.n_images + cfg.batch - 1) / cfg.batch; }
  bool batch_stats() const { return cfg.stats == config::BnStats::batch; }
};
SynthSettings resolve_settings(const config::SynthConfig& cfg, std::string label);

struct BatchResult {
  int64_t first = 0;              // global index of this rank's first image
  at::Tensor images;              // float [n,C,H,W] (network's device)
  at::Tensor labels;              // int64 [n]: target label (official random label, real label), -1 if none
  at::Tensor lse_layer;           // int64 [n]: -1 if none
  double loss = 0;                // global final loss (0 for gaussian and real)
  std::vector<float> loss_curve;  // global loss at every iteration (empty for gaussian and real)
};

class Synthesizer {
 public:
  Synthesizer(const models::Network& net, SynthSettings settings, Margins margins, const mpi::Comm& comm);
  int64_t n_batches() const { return s_.n_batches(); }
  // Collective: this rank's share of batch b. Throws InputError naming batch, iteration and term if the loss
  // becomes NaN or Inf.
  BatchResult make_batch(int64_t b);

 private:
  // Adam on the pixels x (this rank's share) with ReduceLROnPlateau on the global loss.
  void optimise(int64_t b, at::Tensor x, BatchSlice& slice, BatchResult& r);

  const models::Network& net_;
  SynthSettings s_;
  Margins margins_;
  const mpi::Comm& comm_;
  Objective objective_;
  std::vector<int64_t> real_pick_;  // real_pick = seeded: the set's file indices (drawn on first use)
};

// Throws InputError "<label>: the loss diverged at batch b, iteration i: term 'x' is nan; ..." for the first
// non-finite term (every rank holds the same global values, so every rank stops the same way).
void check_finite(const LossValue& value, const std::string& label, int64_t batch, int64_t iteration);

// ObjectiveConfig for a method/preset (margins attached when the method uses them).
ObjectiveConfig objective_config(const SynthSettings& s, const Margins& margins);

}  // namespace dsgq::synth
