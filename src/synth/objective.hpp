#pragma once
// The synthesis loss of one batch (docs/method.md sections 1-5 and 7), split over ranks. Each rank holds a contiguous
// share of the batch; evaluate() returns a local tensor whose gradient w.r.t. the rank's images is exactly its
// share of d(global loss)/d(images), and the global loss value (identical on every rank).
#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "mpi/comm.hpp"

namespace dsgq::models {
class Network;
}

namespace dsgq::synth {

struct ObjectiveConfig {
  bool sda = false;          // hinge with margins (dsg); false = ZeroQ's plain alignment
  bool lse = false;          // layerwise sample enhancement (dsg)
  bool official = false;     // released-code form: LSE factor 2 before squaring on the first 20 layers, CE x2, priors
  bool batch_stats = false;  // stats = "batch": batch statistics all-reduced over ranks (no LSE, not official)
  std::vector<double> delta, gamma;  // per BN layer margins (sda)
  double sci_weight = 0;             // dsg: weight of SCI / L (docs/method.md section 4.1); 0 = off
  // method deepinversion (docs/method.md section 7.1; excludes everything above): its weights
  bool deepinversion = false;
  double ce_weight = 1, bn_weight = 100, first_bn_weight = 1, tv_l2 = 2.5e-5, tv_l1 = 0, l2 = 0, stem_l1 = 0;
};

struct BatchSlice {
  int64_t global_batch = 0;  // B: images in the whole batch (all ranks)
  int64_t batch_offset = 0;  // position of this rank's first image within the batch
  int64_t first_global = 0;  // dataset index of this rank's first image (paper LSE: layer = index mod L)
  at::Tensor labels;         // int64 [n] (official and deepinversion CE), on the device
  // deepinversion with mix > 0: image i's target is mix_weight[i] * labels[i] + (1 - mix_weight[i]) * mix_other[i]
  // (int64 [n] and float64 [n], on the device); undefined: the one class labels[i]
  at::Tensor mix_other, mix_weight;
  // deepinversion with soft_target > 0: image i's target probability of labels[i] (float64 [n], on the device); the
  // class term is (softmax(z_i)[labels[i]] - soft_target[i])^2 in place of the cross-entropy. Undefined: cross-entropy
  at::Tensor soft_target;
  int64_t roll = 0;                    // official priors: cyclic shift in H and W
  int64_t jitter_h = 0, jitter_w = 0;  // deepinversion: this step's shift of the batch in H and W
  bool flip = false;                   // deepinversion: this step's flip of the width axis (after the shift)
  // deepinversion with crop > 0 (replaces the shift and the batch flip): int64 [n, H * W], for each image and output
  // pixel its position in the image padded by crop_pad pixels on every side; on the device
  at::Tensor crop_index;
  int64_t crop_pad = 0;
  // deepinversion with zoom > 0 (replaces the shift and the batch flip): float64 [n, 2, 3], each image's affine map
  // for affine_grid / grid_sample (synth::draw_zoom_theta); on the device
  at::Tensor zoom_theta;
  at::Tensor sci_gauss;  // SCI: this step's N(0,1) batch [B, C, H, W] (the whole batch, every rank)
};

struct LossValue {
  double total = 0;
  // "bn", "input", official "ce", "tv", "l2", and "sci" when on; deepinversion "ce", "bn" and those of
  // "tv_l2", "tv_l1", "l2" whose weight is not 0
  std::vector<std::pair<std::string, double>> terms;
};

class Objective {
 public:
  // comm: the ranks sharing each batch (collective calls in evaluate()).
  Objective(const models::Network& net, ObjectiveConfig cfg, const mpi::Comm& comm);

  // Collective. x: [n, C, H, W], requires grad.
  at::Tensor evaluate(const at::Tensor& x, const BatchSlice& slice, LossValue* value) const;

  // The BN layer a sample enhances (-1 for none): paper: dataset index mod L; official: its batch position when
  // below min(20, L).
  int64_t lse_layer(int64_t dataset_index, int64_t batch_position) const;
  const ObjectiveConfig& config() const { return cfg_; }

 private:
  at::Tensor per_sample_loss(const at::Tensor& x, const BatchSlice& slice, LossValue* value) const;
  at::Tensor batch_loss(const at::Tensor& x, const BatchSlice& slice, LossValue* value) const;
  at::Tensor deepinversion_loss(const at::Tensor& x, const BatchSlice& slice, LossValue* value) const;

  const models::Network& net_;
  ObjectiveConfig cfg_;
  const mpi::Comm& comm_;
  int64_t n_layers_;
  // deepinversion: the BN term over all layers at once (a few ops per step instead of a dozen per layer), built in the
  // constructor on the network's device: where each layer's sums and sums of squares lie in the all-reduced vector
  // (sum_idx, sq_idx), each channel's layer (layer_of) and its place in a [L, C_max] zero-padded matrix (pad_pos),
  // the running statistics concatenated in double, and the layers' weights (first_bn_weight, then 1); with the stem
  // prior on, the first layer's running mean and std (bn_targets) as [1, C, 1, 1].
  struct BnTerm {
    at::Tensor sum_idx, sq_idx, layer_of, pad_pos, running_mean, running_var, weight, stem_mean, stem_std;
    int64_t max_channels = 0;
  } di_bn_;
};

inline constexpr int64_t kOfficialLseLayers = 20;  // hard-coded in the released code (ResNet-18's BN count)

}  // namespace dsgq::synth
