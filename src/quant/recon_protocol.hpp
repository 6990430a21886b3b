#pragma once
// Protocol "qdrop" (docs/method.md section 13): BatchNorm folded; per-channel asymmetric weight grids with
// MSE-searched ranges (first/last layer weights and the classifier input at first_last_bits); the network's
// reconstruction units (models::Network::units) reconstructed one after the other in forward order. Per unit:
// AdaRound variables for every weight of the unit, the unit's activation quantizers ON with learned step sizes (LSQ,
// initialised from the MSE observer on the FP-weight network), optionally learned weight scales (Genie-M); each
// step's unit input mixes the quantized network's and the FP network's input elementwise (QDrop, probability
// `drop` of the FP value; the activations inside the unit are dropped the same way), and the loss is the unit
// output's squared error against the FP network's (summed over channels, averaged over batch and positions, as
// BRECQ/QDrop's lp_loss) plus AdaRound's regulariser.
//
// Cooperative over ranks: each step's mini-batch is split over the ranks and the gradients are summed (one
// all-reduce per step). Slot j of a mini-batch of B draws from the images i with i mod B == j, so a rank owns the
// images of its slots and caches only those; the draws, the drop masks (per slot, from (seed, unit, step, slot))
// and hence the result do not depend on the rank count beyond floating-point summation order.
#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "config/run_config.hpp"
#include "models/network.hpp"
#include "quant/adaround.hpp"
#include "quant/adaround_protocol.hpp"

namespace dsgq::mpi {
class Comm;
}

namespace dsgq::quant {

// One activation site's grid: x^ = scale * (clamp(round(x/scale) + zero_point, 0, 2^bits - 1) - zero_point);
// bits 32 = not quantized.
struct ActGrid {
  double scale = 1;
  int64_t zero_point = 0;
  int bits = 32;
};

// One unit's reconstruction problem: the rounding variables V of its weights, the step sizes of its activation
// sites and (optionally) its weight scales, as leaves requiring grad, and the loss of a mini-batch. Local.
class UnitObjective {
 public:
  // `sample`: one image's input to the unit (tells which layers and sites the unit uses, and their shapes).
  // global_batch: images in the whole mini-batch (all ranks), the loss's and LSQ's normaliser.
  UnitObjective(const models::Network& folded, int unit, const at::Tensor& sample, const std::vector<WeightGrid>& grids,
                const std::vector<ActGrid>& acts, const config::ReconConfig& rc, int64_t global_batch);
  ~UnitObjective();

  // This mini-batch's share of the reconstruction loss: sum(weight * (out - y)^2) / (global_batch * positions), out
  // the unit output for the input where(u_in < drop, x_fp, x_q) with every site where(u_site < drop, x, Q(x)). The
  // masks (u_in, one per site() in order) are ignored when drop is 0 or 1; `weight` (y's shape: the Fisher weights)
  // undefined = 1. With `rows` (int64 indices) x_q, x_fp, y and weight are caches and the mini-batch is their rows
  // `rows` (gathered inside the fused passes, without copies); undefined: the tensors are the mini-batch.
  at::Tensor loss(const at::Tensor& x_q, const at::Tensor& x_fp, const at::Tensor& y, const at::Tensor& u_in,
                  const std::vector<at::Tensor>& u_sites, const at::Tensor& weight = at::Tensor(),
                  const at::Tensor& rows = at::Tensor());
  // AdaRound's regulariser over the unit's weights: sum of 1 - |2 h(V) - 1|^beta; with parts > 1 only over share
  // `part` of each V's elements (mpi::share_of), so that cooperating ranks split it.
  at::Tensor regularizer(double beta, int part = 0, int parts = 1) const;
  // The weight of layers()[i] with hard rounding (V >= 0), on the scale learned so far.
  at::Tensor hard_weight(size_t i) const;

  const std::vector<int>& layers() const { return layers_; }
  const std::vector<int>& sites() const { return sites_; }
  const std::vector<std::vector<int64_t>>& site_shapes() const { return site_shapes_; }
  const std::vector<int64_t>& input_shape() const { return input_shape_; }
  std::vector<at::Tensor>& v() { return v_; }            // per layer
  std::vector<at::Tensor>& steps() { return steps_; }    // per site; undefined at 32 bits
  std::vector<at::Tensor>& scales() { return scales_; }  // per layer, [out]

 private:
  const models::Network& net_;
  int unit_;
  const std::vector<ActGrid>& acts_;
  config::ReconConfig rc_;
  int64_t global_batch_;
  std::vector<int> layers_, sites_;
  std::vector<int> site_pos_;  // per activation site of the network: its index in sites_, or -1
  std::vector<std::vector<int64_t>> site_shapes_;
  std::vector<int64_t> input_shape_;
  std::vector<at::Tensor> floor_, zp_, v_, scales_, steps_;
  std::vector<double> qmax_, grad_factor_;
};

// BRECQ's diagonal-Fisher weights of unit `unit`'s output: (1 + |g|)^2 per element, g = dKL/dz with
// KL = sum over rows of KL(softmax(f(y_fp)) || softmax(f(z))) / batch, z = the unit's output for x_q (its inputs in
// the quantized network) under `hooks`, y_fp its FP output, f the FP network after the unit. Local; `chunk` rows at a
// time (each row's weights depend on that row only).
at::Tensor fisher_weights(const models::Network& folded, int unit, const at::Tensor& x_q, const at::Tensor& y_fp,
                          const models::ForwardHooks& hooks, int64_t batch, int64_t chunk = 256);

class ReconQuantizer {
 public:
  // cfg: [quant] with [quant.adaround] (the rounding: iters per unit, batch, reg, beta, warmup, lr) and
  // [quant.recon] (drop, act_lr, weight_scale_lr, observer_images). InputError when the architecture declares no
  // reconstruction units.
  ReconQuantizer(const models::Network& fp, const config::QuantConfig& cfg, uint64_t seed);
  ~ReconQuantizer();

  // Collective over `comm`: `calib` (normalized images on the device, the same on every rank) reconstructs every
  // unit; afterwards every rank holds the same weights and steps. `chunk` images per forward pass outside the
  // optimisation.
  void run(const at::Tensor& calib, const mpi::Comm& comm, int64_t chunk = 256);

  const models::Network& folded() const { return *folded_; }
  const models::ForwardHooks& hooks() const { return hooks_; }
  const std::vector<at::Tensor>& weights() const { return weights_; }
  const std::vector<WeightGrid>& grids() const { return grids_; }
  const std::vector<ActGrid>& act_grids() const { return act_grids_; }
  const std::vector<LayerReport>& reports() const { return reports_; }  // one per unit (name = the unit's)
  const config::QuantConfig& config() const { return cfg_; }

 private:
  struct Shard;
  Shard make_shard(const at::Tensor& calib, const mpi::Comm& comm) const;
  at::Tensor apply_unit(int unit, const at::Tensor& x, const models::ForwardHooks* hooks, int64_t chunk) const;
  void init_steps(const at::Tensor& calib, const mpi::Comm& comm);
  void reconstruct(int unit, Shard& shard, const mpi::Comm& comm, LayerReport& rep);
  void finish_unit(UnitObjective& obj, LayerReport& rep);
  double unit_error(int unit, const Shard& shard, const mpi::Comm& comm, int64_t chunk) const;

  std::unique_ptr<models::Network> folded_;
  config::QuantConfig cfg_;
  uint64_t seed_;
  int64_t batch_ = 1;
  std::vector<WeightGrid> grids_;
  std::vector<at::Tensor> weights_;  // per layer: FP until its unit is done, then the rounded weight
  std::vector<ActGrid> act_grids_;
  std::vector<LayerReport> reports_;
  models::ForwardHooks hooks_;
};

}  // namespace dsgq::quant
