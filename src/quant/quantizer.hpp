#pragma once
// Uniform affine quantization (docs/method.md section 9). Two conventions meet here:
//  - the released ZeroQ/DSG quantizer ("official"): for bits k and range [a, b], s = (2^k - 1)/max(b - a, 1e-8),
//    z = round(s*a) + 2^(k-1), q = clamp(round(s*x - z), -2^(k-1), 2^(k-1) - 1), x^ = (q + z)/s;
//  - the scale/zero-point form of torch.fake_quantize_per_{tensor,channel}_affine and AIMET's encodings:
//    x^ = (clamp(round(x/scale) + zero_point, qmin, qmax) - zero_point) * scale.
// Rounding is round-half-to-even everywhere (torch.round / std::nearbyint). Every function is local and works on
// any device; per-channel parameters are tensors of shape [C] along `axis`.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace dsgq::quant {

// Official quantizer with range [a, b] (scalars or [C] tensors broadcast along `axis` of x).
at::Tensor fake_quant_official(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, int bits, int64_t axis);

// Scale/zero-point form (torch's fake_quantize_*_affine semantics); scale, zero_point: [C] along axis, or [1].
at::Tensor fake_quant_affine(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point, int64_t qmin,
                             int64_t qmax, int64_t axis);

// Plain-loop reference of fake_quant_affine (float64), for tests.
at::Tensor fake_quant_affine_ref(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                                 int64_t qmin, int64_t qmax, int64_t axis);

// Per-output-channel min and max of a weight [C, ...] (axis 0).
std::pair<at::Tensor, at::Tensor> channel_minmax(const at::Tensor& w);

}  // namespace dsgq::quant
