#include "quant/observer.hpp"

#include <torch/torch.h>

#include <cmath>

#include "core/error.hpp"
#include "core/simd.hpp"
#include "mpi/comm.hpp"
#include "models/network.hpp"
#include "quant/quantizer.hpp"

namespace dsgq::quant {

double quantile_linear(const at::Tensor& x, double q) {
  const at::Tensor flat = x.reshape({-1}).to(at::kDouble);
  const int64_t n = flat.numel();
  DSGQ_CHECK(n > 0, "quantile of an empty tensor");
  const double pos = q * static_cast<double>(n - 1);
  const int64_t lo = static_cast<int64_t>(std::floor(pos));
  const int64_t hi = std::min(lo + 1, n - 1);
  const double vlo = std::get<0>(flat.kthvalue(lo + 1)).item<double>();
  const double vhi = hi == lo ? vlo : std::get<0>(flat.kthvalue(hi + 1)).item<double>();
  return vlo + (pos - static_cast<double>(lo)) * (vhi - vlo);
}

namespace {

constexpr int kMseCandidates = 80;

// x - (clamp(round_half_even(s x - z), lo, hi) + z) / s element by element (std::nearbyint in the default rounding
// mode: nearbyintf's result, inlined as a vector rounding where the ISA has one).
DSGQ_ALWAYS_INLINE void residuals_body(const float* __restrict in, float* __restrict out, int64_t n, float s, float z,
                                       float lo, float hi) {
  for (int64_t i = 0; i < n; ++i) {
    const float t = s * in[i];
    const float q = std::min(std::max(std::nearbyint(t - z), lo), hi);
    out[i] = in[i] - (q + z) / s;
  }
}
// For the best ISA of this CPU (core/simd.hpp): the same bits in every variant.
DSGQ_SIMD_FUNCTION(void, residuals, (const float* in, float* out, int64_t n, float s, float z, float lo, float hi),
                   (in, out, n, s, z, lo, hi), residuals_body)

// ||x - fake_quant_official(x, a, b, bits)|| for a per-tensor range, in one pass over x: the residual of every
// element is computed with the same float32 operations in the same order as fake_quant_official's tensor ops
// ((s*x - z) rounded half to even, clamped, (q + z) / s; this file is compiled without FMA contraction), so the
// residuals, and the norm torch takes of them, are bit-identical to the composite's; it only saves the 7
// intermediate passes over the activations. `s` and `z` are fake_quant_official's scalars, from the same ops.
double residual_norm(const at::Tensor& x, const at::Tensor& a, const at::Tensor& b, int bits, at::Tensor& buffer) {
  const double levels = std::pow(2.0, bits) - 1.0, half = std::pow(2.0, bits - 1);
  if (x.scalar_type() != at::kFloat || !x.is_cpu() || !x.is_contiguous())
    return (x - fake_quant_official(x, a, b, bits, 0)).norm().item<double>();
  const at::Tensor st = levels / (b.to(x.dtype()) - a.to(x.dtype())).clamp_min(1e-8);
  const at::Tensor zt = (st * a.to(x.dtype())).round() + half;
  const float s = st.item<float>(), z = zt.item<float>();
  const float lo = static_cast<float>(-half), hi = static_cast<float>(half - 1.0);
  if (!buffer.defined() || buffer.sizes() != x.sizes()) buffer = at::empty_like(x);
  const float* in = x.data_ptr<float>();
  float* out = buffer.data_ptr<float>();
  at::parallel_for(0, x.numel(), 1 << 16,
                   [&](int64_t begin, int64_t end) { residuals(in + begin, out + begin, end - begin, s, z, lo, hi); });
  return buffer.norm().item<double>();
}

// mse: the maximum among 80 candidates minimising ||x - Q(x)||_2, the minimum fixed. With `comm`, min/max and the
// squared norms are combined over the ranks (sqrt(n^2) in double returns the float norm n exactly, so one rank's
// choice is bit-identical to the local one).
Range mse_range(const at::Tensor& flat, int bits, const mpi::Comm* comm) {
  double mn = std::min(0.0, flat.min().item<double>()), mx = std::max(0.0, flat.max().item<double>());
  if (comm) {
    mn = comm->allreduce_min(mn);
    mx = comm->allreduce_max(mx);
  }
  const at::Tensor a = torch::tensor(mn, flat.options());
  std::vector<double> err(kMseCandidates);
  at::Tensor buffer;
  for (int i = 0; i < kMseCandidates; ++i) {
    const double b = mx - i * 0.01 * (mx - mn);
    const double norm = residual_norm(flat, a, torch::tensor(b, flat.options()), bits, buffer);
    err[static_cast<size_t>(i)] = norm * norm;
  }
  if (comm) comm->allreduce_sum(err);
  double best = INFINITY, best_b = mx;
  for (int i = 0; i < kMseCandidates; ++i) {
    const double e = std::sqrt(err[static_cast<size_t>(i)]);
    if (e <= best) {  // ties go to the later candidate
      best = e;
      best_b = mx - i * 0.01 * (mx - mn);
    }
  }
  return {mn, best_b};
}

Range observe_impl(config::Observer observer, const at::Tensor& x, int bits, const mpi::Comm* comm) {
  Range r;
  const at::Tensor flat = x.detach().reshape({x.size(0), -1});
  switch (observer) {
    case config::Observer::minmax:
      r = {flat.min().item<double>(), flat.max().item<double>()};
      if (comm) r = {comm->allreduce_min(r.a), comm->allreduce_max(r.b)};
      break;
    case config::Observer::ema:
      if (comm) {
        std::vector<double> sums = {std::get<0>(flat.min(1)).to(at::kDouble).sum().item<double>(),
                                    std::get<0>(flat.max(1)).to(at::kDouble).sum().item<double>(),
                                    static_cast<double>(flat.size(0))};
        comm->allreduce_sum(sums);
        r = {sums[0] / sums[2], sums[1] / sums[2]};
      } else {
        r = {std::get<0>(flat.min(1)).mean().item<double>(), std::get<0>(flat.max(1)).mean().item<double>()};
      }
      break;
    case config::Observer::percentile:
      if (comm) {
        const at::Tensor every = comm->allgatherv(flat.reshape({-1}).to(at::kFloat));
        r = {quantile_linear(every, 0.00001), quantile_linear(every, 0.99999)};
      } else {
        r = {quantile_linear(flat, 0.00001), quantile_linear(flat, 0.99999)};
      }
      break;
    case config::Observer::mse:
      r = mse_range(flat, bits, comm);
      break;
    case config::Observer::automatic:
      throw InternalError("observe(): the observer 'auto' was not resolved by the config reader");
  }
  r.a = std::min(0.0, r.a);
  r.b = std::max(0.0, r.b);
  return r;
}

}  // namespace

Range observe(config::Observer observer, const at::Tensor& x, int bits) {
  return observe_impl(observer, x, bits, nullptr);
}

Range observe(config::Observer observer, const at::Tensor& x, int bits, const mpi::Comm& comm) {
  return observe_impl(observer, x, bits, comm.size() > 1 ? &comm : nullptr);
}

ActQuantizers::ActQuantizers(const models::Network& net, std::vector<int> bits, config::Observer observer)
    : bits_(std::move(bits)), observer_(observer), ranges_(bits_.size()), observed_(bits_.size(), false) {
  for (const auto& a : net.acts()) names_.push_back(a.name);
  DSGQ_CHECK(names_.size() == bits_.size(), "one bit-width per activation site");
}

at::Tensor ActQuantizers::operator()(int site, const at::Tensor& x) {
  const size_t k = static_cast<size_t>(site);
  if (bits_[k] >= 32) return x;
  if (!observed_[k]) {
    DSGQ_CHECK(calibrating_, "activation site " + names_[k] + " was never calibrated");
    ranges_[k] = comm_ ? observe(observer_, x, bits_[k], *comm_) : observe(observer_, x, bits_[k]);
    observed_[k] = true;
  }
  const auto o = x.options();
  return fake_quant_official(x, torch::tensor(ranges_[k].a, o), torch::tensor(ranges_[k].b, o), bits_[k], 0);
}

void ActQuantizers::calibrate(const std::function<void()>& forward, const mpi::Comm* comm) {
  torch::NoGradGuard no_grad;
  std::fill(observed_.begin(), observed_.end(), false);
  calibrating_ = true;
  comm_ = comm;
  forward();
  calibrating_ = false;
  comm_ = nullptr;
}

}  // namespace dsgq::quant
