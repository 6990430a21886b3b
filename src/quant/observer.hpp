#pragma once
// Activation range observers (docs/method.md section 10, the DSG code's QuantAct): given the activations of one site,
// a per-tensor range [a, b] with a <= 0 <= b (both start at 0 in the reference). Local.
#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "config/choices.hpp"

namespace dsgq::models {
class Network;
}
namespace dsgq::mpi {
class Comm;
}

namespace dsgq::quant {

// minmax: global min/max. ema: mean over samples of each sample's min and max (the DSG default; not an EMA).
// percentile: the 0.001 and 99.999 percentiles of all elements (numpy's linear interpolation).
// mse: 80 candidate maxima b_i = max - i * 0.01 * (max - min), min fixed, minimising ||x - Q(x)||_2 at `bits`
// (ties to the later candidate).
struct Range {
  double a = 0, b = 0;
};

// x: [n, ...] activations of one site. `observer` must be resolved (not automatic: InternalError).
Range observe(config::Observer observer, const at::Tensor& x, int bits);
// The same over the rows of every rank of `comm` (collective; each rank passes its share, at least one row): the
// range of the concatenated rows up to floating-point summation order (minmax exact; ema from summed per-sample
// extrema; mse from summed squared errors per candidate; percentile gathers the values). One rank: observe().
Range observe(config::Observer observer, const at::Tensor& x, int bits, const mpi::Comm& comm);

// The per-tensor activation quantizers of a network, one per site, as both protocols use them: while
// calibrate() runs a forward pass, each site observes its input once (so later sites see already-quantized
// activations) and fixes its range; afterwards every call fake-quantizes with the fixed range. Sites at 32 bits
// pass through. Local.
class ActQuantizers {
 public:
  // bits: one per activation site of `net`.
  ActQuantizers(const models::Network& net, std::vector<int> bits, config::Observer observer);
  // The activation hook: x quantized at its site's range. InternalError for a site never calibrated.
  at::Tensor operator()(int site, const at::Tensor& x);
  // Forgets the ranges, then runs `forward` (a pass of the network with this hook installed) to observe them.
  // With `comm` (collective), each rank's pass covers its share of the images and the ranges are those of all of
  // them (observe(..., comm)); every rank must then run the same pass.
  void calibrate(const std::function<void()>& forward, const mpi::Comm* comm = nullptr);
  const std::vector<Range>& ranges() const { return ranges_; }
  const std::vector<int>& bits() const { return bits_; }

 private:
  std::vector<std::string> names_;
  std::vector<int> bits_;
  config::Observer observer_;
  std::vector<Range> ranges_;
  std::vector<bool> observed_;
  bool calibrating_ = false;
  const mpi::Comm* comm_ = nullptr;  // while calibrating across ranks
};

// Exact q-quantile (0..1) of all elements with linear interpolation (numpy's default), any size.
double quantile_linear(const at::Tensor& x, double q);

}  // namespace dsgq::quant
