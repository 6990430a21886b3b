#include "quant/observer.hpp"

#include <torch/torch.h>

#include <cmath>

#include "core/error.hpp"
#include "quant/quantizer.hpp"

namespace dsgq::quant {

const std::vector<std::string>& observer_names() {
  static const std::vector<std::string> kNames = {"minmax", "ema", "percentile", "mse"};
  return kNames;
}

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

Range observe(const std::string& observer, const at::Tensor& x, int bits) {
  Range r;
  const at::Tensor flat = x.detach().reshape({x.size(0), -1});
  if (observer == "minmax") {
    r.a = flat.min().item<double>();
    r.b = flat.max().item<double>();
  } else if (observer == "ema") {
    r.a = std::get<0>(flat.min(1)).mean().item<double>();
    r.b = std::get<0>(flat.max(1)).mean().item<double>();
  } else if (observer == "percentile") {
    r.a = quantile_linear(flat, 0.00001);
    r.b = quantile_linear(flat, 0.99999);
  } else if (observer == "mse") {
    const double mn = std::min(0.0, flat.min().item<double>()), mx = std::max(0.0, flat.max().item<double>());
    double best = INFINITY, best_b = mx;
    const at::Tensor a = torch::tensor(mn, flat.options());
    for (int i = 0; i < 80; ++i) {
      const double b = mx - i * 0.01 * (mx - mn);
      const double err = (flat - fake_quant_official(flat, a, torch::tensor(b, flat.options()), bits, 0))
                             .norm().item<double>();
      if (err <= best) {  // ties go to the later candidate
        best = err;
        best_b = b;
      }
    }
    r.a = mn;
    r.b = best_b;
  } else {
    throw InternalError("unknown observer " + observer);
  }
  r.a = std::min(0.0, r.a);
  r.b = std::max(0.0, r.b);
  return r;
}

}  // namespace dsgq::quant
