#pragma once
// AdaRound (Nagel et al. 2020) with the BRECQ reference defaults (docs/method.md section 12): per weight, a learned
// choice between rounding down and up, h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1) with zeta = 1.1,
// gamma = -0.1, minimising the layer's output MSE plus lambda * sum(1 - |2h - 1|^beta), beta annealed from 20 to 2
// after a warm-up (no regulariser) of 20 % of the iterations; Adam on V. Per-channel asymmetric weight grids whose
// ranges come from an MSE search. Local.
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "config/run_config.hpp"
#include "quant/activation_cache.hpp"
#include "quant/soft_rounding.hpp"

namespace dsgq::models {
class Network;
}
namespace dsgq::mpi {
class Comm;
}

namespace dsgq::quant {

// Per-output-channel asymmetric grid: w^ = (clamp(round(w/scale) + zp, 0, 2^bits - 1) - zp) * scale.
struct WeightGrid {
  at::Tensor scale;       // [out]
  at::Tensor zero_point;  // [out], integer-valued
  int bits = 8;
};

// A per-output-channel vector [C] shaped to broadcast against w [C, ...].
at::Tensor per_channel(const at::Tensor& p, const at::Tensor& w);

// The rounding variables that start at the FP weight: floor(w/scale) and V0 (a leaf requiring grad) with
// h(V0) = w/scale - floor(w/scale), clamped to [1e-4, 1 - 1e-4]. scale: [out].
struct RoundingStart {
  at::Tensor floor, v;
};
RoundingStart rounding_start(const at::Tensor& w, const at::Tensor& scale);

// Range [alpha * min, alpha * max] per channel with alpha in {1.00, 0.99, ..., 0.20} minimising ||w - w^||^2.
WeightGrid mse_weight_grid(const at::Tensor& w, int bits);
at::Tensor quantize_nearest(const at::Tensor& w, const WeightGrid& g);

struct AdaRoundResult {
  at::Tensor weight;        // the rounded (fake-quantized) weight
  double mse_nearest = 0;   // output MSE of round-to-nearest on the reconstruction data
  double mse_adaround = 0;  // output MSE after AdaRound (hard rounding)
  double flipped = 0;       // fraction of weights rounded differently from nearest
  double undecided = 0;     // fraction of h(V) strictly between 0 and 1 before hardening (should end ~0)
};

// Which rows of the calibration set a rank's caches hold, and the ranks that share the layer: local row r is global
// row first + r of `total` (total < 0: the cache is the whole set). comm null or of size 1: the rank is alone.
struct RowShare {
  int64_t first = 0;
  int64_t total = -1;
  const mpi::Comm* comm = nullptr;
};

// The layer's summed squared output error over every row as a quadratic form in the weight change D = W~ - W, group
// by group (cfg.gram; docs/method.md section 12.7): sum_i ||W~ x_i + b - y_i||^2 = sum_g tr(D_g G_g D_g^T) +
// 2 tr(D_g E_g) + r0, with X the patches the weight multiplies (Network::layer_columns), G_g = sum X_g X_g^T their
// second moments, E_g = sum X_g R_g^T their correlation with the FP weight's residual R = W x + b - y, and
// r0 = sum ||R||^2. D is small, so nothing large cancels: the form is as exact in float32 as the sampled loss.
struct LayerGram {
  at::Tensor weight;    // W, the FP weight the change is measured from
  at::Tensor g;         // [groups, K, K], K = in/groups * kh * kw (float32)
  at::Tensor e;         // [groups, out/groups, K]: E_g transposed, D's shape (float32)
  at::Tensor g64, e64;  // the same in float64, for error()
  double r0 = 0;        // sum of ||R||^2
  double images = 0;    // rows, over every rank
  double outputs = 0;   // output elements, over every rank (error() / outputs is the mean squared error)

  // sum_g tr(D_g G_g D_g^T) + 2 tr(D_g E_g) for w = W + D: the summed squared error less r0, differentiable in w.
  at::Tensor change_error(const at::Tensor& w) const;
  // Its gradient in w, 2 (D G + E) in w's shape (not differentiable; oneDNN's sgemm on CPUs, quant/gemm.hpp). w may
  // hold only output channels first .. first + w.size(0) - 1 (the terms of a row of D involve that row alone).
  at::Tensor change_error_grad(const at::Tensor& w, int64_t first = 0) const;
  // The summed squared error of w, r0 included, in float64.
  double error(const at::Tensor& w) const;
};
// Sums G, E and r0 over the rows, `chunk` rows (fewer where their patches pass 64 MiB) at a time; collective over
// share.comm (one all-reduce of G and E), so every rank holds the whole set's form.
LayerGram layer_gram(const models::Network& net, int layer, const RowCache& x_in, const at::Tensor& weight,
                     const at::Tensor& bias, const RowCache& y_target, const RowShare& share = {}, int64_t chunk = 256);

// x_in: the layer's inputs from the (partially) quantized network; y_target: the FP layer's outputs for the FP
// inputs; both N rows, in memory or spilled (RowCache). cfg: [quant.adaround] (iters, batch, reg, beta_start,
// beta_end, warmup, lr; `enabled` is the caller's business). Mini-batches are drawn with replacement from a
// generator seeded by (seed, layer); full-set errors are taken `chunk` rows at a time.
// Cooperative (collective over share.comm): every rank draws the same global mini-batch, computes the loss on the
// rows it holds, and the gradients are summed over the ranks (one all-reduce per step; the regulariser is split
// over them), so the result is one rank's up to floating-point summation order.
// cfg.gram: every step takes the whole set's mean error instead, from layer_gram (the sampled loss's expectation:
// no mini-batches, no seed), and the output errors reported come from the same form; after the one all-reduce of
// the form each rank takes the steps of its share of the output channels alone (the loss separates over them) and
// the rounded rows are gathered, so the result is one rank's up to the summation order of the form's products.
AdaRoundResult adaround_layer(const models::Network& net, int layer, const at::Tensor& weight, const at::Tensor& bias,
                              const WeightGrid& grid, const RowCache& x_in, const RowCache& y_target,
                              const config::AdaRoundConfig& cfg, uint64_t seed, const RowShare& share = {},
                              int64_t chunk = 256);

// Mean squared error of the layer's output with `weight` against y_target over all rows (of every rank of
// share.comm: collective).
double layer_output_mse(const models::Network& net, int layer, const RowCache& x_in, const at::Tensor& weight,
                        const at::Tensor& bias, const RowCache& y_target, const RowShare& share = {},
                        int64_t chunk = 256);

}  // namespace dsgq::quant
