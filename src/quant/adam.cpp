#include "quant/adam.hpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>

#include "quant/adam_kernel.hpp"

namespace dsgq::quant {
namespace {

constexpr int64_t kGrain = 1 << 15;

bool fusable(const at::Tensor& p, const at::Tensor& g) {
  return p.device().is_cpu() && p.scalar_type() == at::kFloat && p.is_contiguous() && g.device().is_cpu() &&
         g.scalar_type() == at::kFloat && g.is_contiguous() && g.sizes() == p.sizes() && !g.is_sparse();
}

}  // namespace

FusedAdam::FusedAdam(std::vector<at::Tensor> params, double lr, double beta1, double beta2, double eps)
    : params_(std::move(params)), state_(params_.size()), lr_(lr), beta1_(beta1), beta2_(beta2), eps_(eps) {}

void FusedAdam::zero_grad() {
  for (auto& p : params_)
    if (p.grad().defined()) {
      p.mutable_grad().detach_();
      p.mutable_grad().zero_();
    }
}

void FusedAdam::step() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    at::Tensor p = params_[i];
    const at::Tensor g = p.grad();
    if (!g.defined()) continue;
    State& s = state_[i];
    if (!s.m.defined()) {
      s.m = at::zeros_like(p, at::MemoryFormat::Preserve);
      s.v = at::zeros_like(p, at::MemoryFormat::Preserve);
    }
    ++s.steps;
    const double bc1 = 1 - std::pow(beta1_, static_cast<double>(s.steps));
    const double bc2 = 1 - std::pow(beta2_, static_cast<double>(s.steps));
    const double step_size = lr_ / bc1;
    if (!fusable(p, g)) {  // torch::optim::Adam's operations
      s.m.mul_(beta1_).add_(g, 1 - beta1_);
      s.v.mul_(beta2_).addcmul_(g, g, 1 - beta2_);
      const at::Tensor denom = (s.v.sqrt() / std::sqrt(bc2)).add_(eps_);
      p.data().addcdiv_(s.m, denom, -step_size);
      continue;
    }
    const AdamCoefficients c{static_cast<float>(beta1_),         static_cast<float>(1 - beta1_),
                             static_cast<float>(beta2_),         static_cast<float>(1 - beta2_),
                             static_cast<float>(std::sqrt(bc2)), static_cast<float>(eps_),
                             static_cast<float>(-step_size)};
    float* pp = p.data_ptr<float>();
    float* pm = s.m.data_ptr<float>();
    float* pv = s.v.data_ptr<float>();
    const float* pg = g.data_ptr<float>();
    at::parallel_for(0, p.numel(), kGrain,
                     [&](int64_t b, int64_t e) { adam_update(pp + b, pm + b, pv + b, pg + b, e - b, c); });
  }
}

}  // namespace dsgq::quant
