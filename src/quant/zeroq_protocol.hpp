#pragma once
// Protocol "zeroq": the released ZeroQ/DSG quantization pipeline (docs/method.md section 11). Every conv and
// linear weight is fake-quantized per output channel with its own [min, max] (asymmetric, official quantizer) at
// w_bits, including the first and last layers; BatchNorm is not folded (it runs in FP32 after the quantized conv);
// a per-tensor activation quantizer sits after every ReLU/ReLU6 at a_bits. Calibration is one forward pass of the
// quantized network over the calibration images in which each activation site first observes its input (so later
// sites see already-quantized activations), then fixes its range.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "config/run_config.hpp"
#include "models/network.hpp"
#include "quant/observer.hpp"

namespace dsgq::quant {

class ZeroqQuantizer {
 public:
  // Uses w_bits (first and last layer included), a_bits (32 = activations left in floating point), act_observer.
  ZeroqQuantizer(const models::Network& net, const config::QuantConfig& cfg);

  // Local: one forward pass over `images` (normalized, [n,C,H,W] on the network's device).
  void calibrate(const at::Tensor& images);

  // Hooks for the quantized forward: quantized weights; activations quantized with the calibrated ranges.
  const models::ForwardHooks& hooks() const { return hooks_; }

  const std::vector<at::Tensor>& weights() const { return qweights_; }  // per layer, fake-quantized
  const std::vector<at::Tensor>& weight_min() const { return wmin_; }   // per layer, [out] channel minima
  const std::vector<at::Tensor>& weight_max() const { return wmax_; }
  const ActQuantizers& acts() const { return acts_; }
  const config::QuantConfig& config() const { return cfg_; }

 private:
  const models::Network& net_;
  config::QuantConfig cfg_;
  std::vector<at::Tensor> qweights_, wmin_, wmax_;
  ActQuantizers acts_;
  models::ForwardHooks hooks_;
};

}  // namespace dsgq::quant
