#pragma once
// Per-channel batch statistics for the batch-statistics synthesis methods (deepinversion, zeroq/dsg with
// stats = "batch", genie), computed without a float64 copy of the feature maps (docs/method.md section 7).
#include <ATen/core/Tensor.h>

#include <tuple>
#include <utility>

namespace dsgq::models {

// Per-channel sum and sum of squares of f [n, C, H, W] over (n, H, W) as one float64 tensor [2C] (C sums, then C
// sums of squares), differentiable. On a contiguous float32 CPU tensor one pass per (image, channel) plane: the
// float sum and the squared deviations from the plane's own mean (no cancellation), combined in float64 in a fixed
// order (the same bytes for any thread count); any other tensor is converted to float64 first.
at::Tensor channel_sums(const at::Tensor& f);

// Inference-mode BatchNorm y = x * alpha + beta (alpha = weight / sqrt(running_var + eps), beta = bias -
// running_mean * alpha per channel, as torch's CPU kernel forms it) together with channel_sums(x), in one pass over
// x forward and one backward (d x = d y * alpha + d sum + 2 x d sumsq), instead of the batch_norm, the statistics,
// their backward passes and the addition of the two gradients. Contiguous float32 CPU tensors; otherwise the plain
// ops. Returns {y, sums}.
std::pair<at::Tensor, at::Tensor> bn_eval_with_sums(const at::Tensor& x, const at::Tensor& weight,
                                                    const at::Tensor& bias, const at::Tensor& running_mean,
                                                    const at::Tensor& running_var, double eps);

// The same BatchNorm together with the per-sample statistics of x over H x W: mean [n, C] and unbiased variance
// [n, C] (what at::var_mean(x, {2, 3}) gives; DSG/ZeroQ's per-sample alignment), in one pass forward (per plane: the
// float sum, then the squared deviations from the plane mean, in cache) and one backward (d x = d y * alpha +
// d mean / HW + 2 d var (x - mean) / (HW - 1)). Needs H * W >= 2. Returns {y, mean, var}.
std::tuple<at::Tensor, at::Tensor, at::Tensor> bn_eval_with_moments(const at::Tensor& x, const at::Tensor& weight,
                                                                    const at::Tensor& bias,
                                                                    const at::Tensor& running_mean,
                                                                    const at::Tensor& running_var, double eps);

// The threads at::parallel_for gives dsgq's own kernels for a loop of `work` iterations with grain 1: up to
// at::get_num_threads() where they are built with OpenMP (CMakeLists.txt, DSGQ_OPENMP), else 1.
int kernel_threads(int64_t work);

}  // namespace dsgq::models
