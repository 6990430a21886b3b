#pragma once
// Learned step size quantization of activations (LSQ, Esser et al. 2020) and QDrop's random mixing (Wei et al.
// 2022), as the qdrop protocol uses them (docs/method.md section 13). Local; any device.
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace dsgq::quant {

// Per-tensor affine fake quantization with a learnable step: x^ = step * (clamp(round(x/step) + zero_point, 0,
// 2^bits - 1) - zero_point), `step` a [1] float tensor (it may require grad), zero_point an integer. Gradients
// (straight-through, LSQ): dx^/dx = 1 inside the grid, 0 outside; dx^/dstep = round(x/step) - x/step inside,
// -zero_point below, 2^bits - 1 - zero_point above, times grad_factor (LSQ's 1/sqrt(N * (2^bits - 1)) with N the
// elements of the whole mini-batch). x/step is computed as x * (1/step) in float32, as torch's kernels do.
at::Tensor lsq_quantize(const at::Tensor& x, const at::Tensor& step, int64_t zero_point, int bits, double grad_factor);

// LSQ's gradient scale for `elements` activations at `bits`: 1/sqrt(elements * (2^bits - 1)).
double lsq_grad_factor(int64_t elements, int bits);

// splitmix64's finaliser (a bijective 64-bit mix): the drop masks' counter hash and their stream keys.
uint64_t mix64(uint64_t z);

// The drop masks' uniforms: n values on [0, 1) with 24 random bits each, counter-based (element i of stream `key`
// depends on (key, i) only; two per 64-bit hash). Vectorised for AVX-512/AVX2 where the CPU has them (integer
// arithmetic: the same bits everywhere).
void fill_uniform(float* out, int64_t n, uint64_t key);

// QDrop: where(u < drop, x, q) elementwise; u uniform on [0, 1) of x's shape. drop = 0 gives q (BRECQ), drop = 1
// gives x (u may then be undefined). The gradient reaches q only where it was kept.
at::Tensor drop_mix(const at::Tensor& q, const at::Tensor& x, const at::Tensor& u, double drop);

// drop_mix(lsq_quantize(x, ...), x, u, drop) in one pass forward and one backward for contiguous float32 CPU tensors
// (the composite above elsewhere): the activation sites of a unit under reconstruction. The step's gradient is
// summed in fixed chunks of elements, so it does not depend on the thread count.
at::Tensor lsq_drop(const at::Tensor& x, const at::Tensor& step, int64_t zero_point, int bits, double grad_factor,
                    const at::Tensor& u, double drop);

// lsq_drop(act(x), ...) with the activation in front of the quantizer fused into the same passes (the qdrop unit's
// sites): act = ReLU for act_hi = +inf, ReLU6 (clamp to [0, 6]) for act_hi = 6. Values and gradients are those of
// the composite (torch's ReLU/ReLU6 backward: the gradient stops where x is at or beyond a bound); x is the
// activation's input, and it is what autograd keeps. bits >= 32: the activation alone (step may be undefined).
at::Tensor act_lsq_drop(const at::Tensor& x, double act_hi, const at::Tensor& step, int64_t zero_point, int bits,
                        double grad_factor, const at::Tensor& u, double drop);

// drop_mix(q[rows], x[rows], u, drop) in one pass over the rows, without the two gathered copies (the qdrop unit's
// input from its caches); u has the gathered shape. drop 0 / 1: q[rows] / x[rows].
at::Tensor gather_mix(const at::Tensor& q, const at::Tensor& x, const at::Tensor& rows, const at::Tensor& u,
                      double drop);

// sum((out - y[rows])^2) (rows undefined: all of y, in order) as a float32 scalar, differentiable w.r.t. out: one
// pass each way on the CPU, with the gradient rounded as at::mse_loss's (sum reduction) and the sum accumulated in
// float64; elsewhere at::mse_loss.
at::Tensor sq_error_sum(const at::Tensor& out, const at::Tensor& y, const at::Tensor& rows);

}  // namespace dsgq::quant
