#pragma once
// Adam for the reconstruction variables (AdaRound's V, LSQ's steps, learned weight scales), one fused pass per
// parameter instead of torch::optim::Adam's eight element-wise passes, with torch's arithmetic element by element
// (LibTorch 1.13's Adam: moments, bias corrections in double, denominator sqrt(v) / sqrt(bc2) + eps, update
// p + (-lr / bc1) * m / denom), so the parameters are torch::optim::Adam's bit for bit (tests/unit: FusedAdam.*).
// Parameters without a gradient are skipped, as torch's are. Contiguous float32 CPU parameters; torch's
// operations elsewhere. Local; any device.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace dsgq::quant {

class FusedAdam {
 public:
  FusedAdam(std::vector<at::Tensor> params, double lr, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
  void set_lr(double lr) { lr_ = lr; }
  void step();       // one update of every parameter that has a gradient
  void zero_grad();  // torch::optim::Optimizer::zero_grad (1.13): every defined gradient detached and zeroed in place

 private:
  struct State {
    at::Tensor m, v;
    int64_t steps = 0;
  };
  std::vector<at::Tensor> params_;
  std::vector<State> state_;
  double lr_, beta1_, beta2_, eps_;
};

}  // namespace dsgq::quant
