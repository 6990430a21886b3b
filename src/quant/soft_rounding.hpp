#pragma once
// AdaRound's soft rounding (docs/method.md section 12) as two autograd nodes with one pass each way, for the
// rounding variables of `adaround` and `qdrop`: they are evaluated, and differentiated, at every step of every unit,
// and as torch operations they were ten element-wise passes forward and six backward, with an autograd node each,
// over every weight of the unit, on every rank (the weights are not split over ranks). Each pass computes, element
// by element, the same float32 operations in the same order as the composite it replaces, so values and gradients
// are the composite's bit for bit (tests/unit: SoftRounding.*). Contiguous float32 CPU tensors; the composite
// elsewhere. Local; any device.
#include <ATen/core/Tensor.h>

namespace dsgq::quant {

// AdaRound's stretch of the sigmoid (Louizos et al.'s hard concrete bounds).
inline constexpr double kZeta = 1.1, kGamma = -0.1;

// h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1), zeta = 1.1, gamma = -0.1 (the sigmoid is torch's, so its
// bits are torch's; the rest fused). Differentiable w.r.t. v.
at::Tensor rectified_sigmoid(const at::Tensor& v);

// The soft weight (clamp(floor + h + z, 0, qmax) - z) * s with z and s per output channel ([C], w [C, ...]),
// differentiable w.r.t. h (s learned, i.e. requiring grad: the composite).
at::Tensor soft_weight(const at::Tensor& h, const at::Tensor& floor, const at::Tensor& zero_point,
                       const at::Tensor& scale, double qmax);

// AdaRound's rounding regulariser sum(1 - |2h - 1|^beta) as a float32 scalar, differentiable w.r.t. h; the powers
// are torch's (at::pow), the rest fused into one pass each way.
at::Tensor rounding_regularizer(const at::Tensor& h, double beta);

// The same three as plain torch operations (the reference the fused passes are tested against).
at::Tensor rectified_sigmoid_ref(const at::Tensor& v);
at::Tensor rounding_regularizer_ref(const at::Tensor& h, double beta);
at::Tensor soft_weight_ref(const at::Tensor& h, const at::Tensor& floor, const at::Tensor& zero_point,
                           const at::Tensor& scale, double qmax);

}  // namespace dsgq::quant
