#pragma once
// Activation range observers (method.md section 6, the DSG code's QuantAct): given the activations of one site,
// a per-tensor range [a, b] with a <= 0 <= b (both start at 0 in the reference). Local.
#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

namespace dsgq::quant {

// minmax: global min/max. ema: mean over samples of each sample's min and max (the DSG default; not an EMA).
// percentile: the 0.001 and 99.999 percentiles of all elements (numpy's linear interpolation).
// mse: 80 candidate maxima b_i = max - i * 0.01 * (max - min), min fixed, minimising ||x - Q(x)||_2 at `bits`
// (ties to the later candidate).
const std::vector<std::string>& observer_names();

struct Range {
  double a = 0, b = 0;
};

// x: [n, ...] activations of one site. Throws InternalError for an unknown name (configs validate names first).
Range observe(const std::string& observer, const at::Tensor& x, int bits);

// Exact q-quantile (0..1) of all elements with linear interpolation (numpy's default), any size.
double quantile_linear(const at::Tensor& x, double q);

}  // namespace dsgq::quant
