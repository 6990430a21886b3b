#include "quant/observer.hpp"

#include <torch/torch.h>

#include <cmath>

#include "core/error.hpp"
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

// mse: the maximum among 80 candidates minimising ||x - Q(x)||_2, the minimum fixed.
Range mse_range(const at::Tensor& flat, int bits) {
  const double mn = std::min(0.0, flat.min().item<double>()), mx = std::max(0.0, flat.max().item<double>());
  double best = INFINITY, best_b = mx;
  const at::Tensor a = torch::tensor(mn, flat.options());
  for (int i = 0; i < 80; ++i) {
    const double b = mx - i * 0.01 * (mx - mn);
    const double err =
        (flat - fake_quant_official(flat, a, torch::tensor(b, flat.options()), bits, 0)).norm().item<double>();
    if (err <= best) {  // ties go to the later candidate
      best = err;
      best_b = b;
    }
  }
  return {mn, best_b};
}

}  // namespace

Range observe(config::Observer observer, const at::Tensor& x, int bits) {
  Range r;
  const at::Tensor flat = x.detach().reshape({x.size(0), -1});
  switch (observer) {
    case config::Observer::minmax:
      r = {flat.min().item<double>(), flat.max().item<double>()};
      break;
    case config::Observer::ema:
      r = {std::get<0>(flat.min(1)).mean().item<double>(), std::get<0>(flat.max(1)).mean().item<double>()};
      break;
    case config::Observer::percentile:
      r = {quantile_linear(flat, 0.00001), quantile_linear(flat, 0.99999)};
      break;
    case config::Observer::mse:
      r = mse_range(flat, bits);
      break;
    case config::Observer::automatic:
      throw InternalError("observe(): the observer 'auto' was not resolved by the config reader");
  }
  r.a = std::min(0.0, r.a);
  r.b = std::max(0.0, r.b);
  return r;
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
    ranges_[k] = observe(observer_, x, bits_[k]);
    observed_[k] = true;
  }
  const auto o = x.options();
  return fake_quant_official(x, torch::tensor(ranges_[k].a, o), torch::tensor(ranges_[k].b, o), bits_[k], 0);
}

void ActQuantizers::calibrate(const std::function<void()>& forward) {
  torch::NoGradGuard no_grad;
  std::fill(observed_.begin(), observed_.end(), false);
  calibrating_ = true;
  forward();
  calibrating_ = false;
}

}  // namespace dsgq::quant
