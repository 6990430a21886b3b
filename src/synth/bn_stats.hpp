#pragma once
// The BatchNorm-statistics alignment terms of ZeroQ and DSG (docs/method.md sections 0-3), as plain functions on
// tensors. All of them are local (no collectives): the caller sums per-rank values where the maths is a sum.
#include <ATen/core/Tensor.h>

#include <vector>

namespace dsgq::models {
class Network;
}

namespace dsgq::synth {

inline constexpr double kStatEps = 1e-6;  // in every std here (the code's 1e-6, not BN's own eps)

struct Stats {
  at::Tensor mean;  // [n, C]: mean over the H*W positions of each sample's channel
  at::Tensor std;   // [n, C]: sqrt(unbiased variance over H*W + 1e-6)
};

struct Target {
  at::Tensor mean;  // [C] running_mean
  at::Tensor std;   // [C] sqrt(running_var + 1e-6)
};

// f: [n, C, H, W] with H*W >= 2.
Stats per_sample_stats(const at::Tensor& f);

// One target per BN layer of the network, in layer order, on the network's device.
std::vector<Target> bn_targets(const models::Network& net);

// The input ("layer 0") target: mean 0, std 1 for each of C channels.
Target input_target(int64_t channels, const at::TensorOptions& options);

// Alignment of one layer, already divided by the global batch size B:
//   (1/B) sum_n w_n sum_c [ relu(f_n * (|m - mu| - delta))^2 + relu(f_n * (|s - sigma| - gamma))^2 ]
// delta = gamma = 0 gives ZeroQ's squared Frobenius norm. row_weight w (applied after squaring: the paper's LSE
// weight 2 on a sample's own layer) and row_factor f (applied before squaring: the released code's factor 2) are
// [n] tensors or undefined (all ones).
at::Tensor alignment_term(const Stats& st, const Target& t, double delta, double gamma, const at::Tensor& row_weight,
                          const at::Tensor& row_factor, int64_t global_batch);

// Plain-loop version of alignment_term, for tests.
double alignment_term_ref(const Stats& st, const Target& t, double delta, double gamma,
                          const std::vector<double>& row_weight, const std::vector<double>& row_factor,
                          int64_t global_batch);

}  // namespace dsgq::synth

namespace dsgq::synth {

// docs/method.md section 14: at every BN layer take each sample's per-channel spatial mean of the BN input; spread =
// mean over channels of (std over samples of those means) / sqrt(running_var); dev = mean over channels of
// |mean over samples - running_mean| / sqrt(running_var); both averaged over layers. Real CIFAR-10 on ResNet-20:
// spread ~0.3, dev ~0.09; ZeroQ images: spread ~0.02. Local; images in chunks of `chunk`.
struct Homogeneity {
  double spread = 0, dev = 0;                   // averaged over the BN layers
  std::vector<double> layer_spread, layer_dev;  // per BN layer, in the network's order
};
// When `logits` is given, the network's outputs for the images ([n, classes], CPU) are left there (for class_fit).
Homogeneity homogeneity(const models::Network& net, const at::Tensor& images, int64_t chunk = 256,
                        at::Tensor* logits = nullptr);

// How the network classifies a labelled set (docs/method.md section 14): over the images whose label is >= 0, the
// share whose arg-max logit is the label, the mean cross-entropy to the labels and the mean margin of the top logit
// over the runner-up. Real training images on the CIFAR-10 ResNets: 99.9-100 %, below 0.01, about 14 (fitted ones).
// From the network's outputs `logits` [n, classes]; n = 0 when no image carries a label.
struct ClassFit {
  int64_t n = 0;
  double agree = 0, ce = 0, margin = 0;
};
ClassFit class_fit(const at::Tensor& logits, const at::Tensor& labels);

}  // namespace dsgq::synth
