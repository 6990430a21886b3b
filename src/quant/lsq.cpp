#include "quant/lsq.hpp"

#include <torch/torch.h>

#include <cmath>

namespace dsgq::quant {

at::Tensor lsq_quantize(const at::Tensor& x, const at::Tensor& step, int64_t zero_point, int bits, double grad_factor) {
  const int64_t qmax = (int64_t(1) << bits) - 1;
  const at::Tensor zp = torch::full({1}, static_cast<double>(zero_point), step.options().requires_grad(false));
  return at::_fake_quantize_learnable_per_tensor_affine(x, step, zp, 0, qmax, grad_factor);
}

double lsq_grad_factor(int64_t elements, int bits) {
  return 1.0 / std::sqrt(static_cast<double>(elements) * (std::pow(2.0, bits) - 1.0));
}

at::Tensor drop_mix(const at::Tensor& q, const at::Tensor& x, const at::Tensor& u, double drop) {
  if (drop <= 0) return q;
  if (drop >= 1) return x;
  return at::where(u < drop, x, q);
}

}  // namespace dsgq::quant
