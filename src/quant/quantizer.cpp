#include "quant/quantizer.hpp"

#include <torch/torch.h>

#include <cmath>

#include "core/error.hpp"

namespace dsgq::quant {
namespace {
// Shape [1, ..., C, ..., 1] so a [C] tensor broadcasts along `axis` of an x of dim `dim`.
at::Tensor along(const at::Tensor& p, int64_t axis, int64_t dim) {
  if (p.dim() == 0 || p.numel() == 1) return p.reshape({});
  std::vector<int64_t> shape(static_cast<size_t>(dim), 1);
  shape[static_cast<size_t>(axis)] = p.numel();
  return p.reshape(shape);
}
}  // namespace

at::Tensor fake_quant_official(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, int bits, int64_t axis) {
  DSGQ_CHECK(bits >= 1 && bits <= 16, "bits out of range");
  const double levels = std::pow(2.0, bits) - 1.0, half = std::pow(2.0, bits - 1);
  const at::Tensor aa = along(a.to(x.dtype()), axis, x.dim()), bb = along(b.to(x.dtype()), axis, x.dim());
  const at::Tensor s = levels / (bb - aa).clamp_min(1e-8);
  const at::Tensor z = (s * aa).round() + half;
  const at::Tensor q = (s * x - z).round().clamp(-half, half - 1.0);
  return (q + z) / s;
}

at::Tensor fake_quant_affine(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point, int64_t qmin,
                             int64_t qmax, int64_t axis) {
  const at::Tensor s = along(scale.to(x.dtype()), axis, x.dim()), z = along(zero_point.to(x.dtype()), axis, x.dim());
  // x * (1/scale) in the tensor's dtype, as torch's fake_quantize kernels do (they differ from x / scale at ties).
  return ((x * s.reciprocal()).round() + z).clamp(static_cast<double>(qmin), static_cast<double>(qmax)).sub(z).mul(s);
}

at::Tensor fake_quant_affine_ref(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& zero_point,
                                 int64_t qmin, int64_t qmax, int64_t axis) {
  const at::Tensor xd = x.to(at::kDouble).contiguous().cpu();
  at::Tensor out = torch::empty_like(xd);
  const at::Tensor sd = scale.to(at::kDouble).cpu().contiguous(), zd = zero_point.to(at::kDouble).cpu().contiguous();
  const int64_t n = xd.numel();
  const auto sizes = xd.sizes();
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < xd.dim(); ++d) inner *= sizes[d];
  const double* px = xd.data_ptr<double>();
  double* po = out.data_ptr<double>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = sd.numel() == 1 ? 0 : (i / inner) % sizes[axis];
    const double s = sd.data_ptr<double>()[c], z = zd.data_ptr<double>()[c];
    const float inv = 1.0f / static_cast<float>(s);  // torch: x * inv_scale in float
    double q = std::nearbyint(static_cast<double>(static_cast<float>(px[i]) * inv)) + z;
    q = std::min(std::max(q, static_cast<double>(qmin)), static_cast<double>(qmax));
    po[i] = (q - z) * s;
  }
  return out;
}

std::pair<at::Tensor, at::Tensor> channel_minmax(const at::Tensor& w) {
  const at::Tensor flat = w.reshape({w.size(0), -1});
  return {std::get<0>(flat.min(1)), std::get<0>(flat.max(1))};
}

}  // namespace dsgq::quant
