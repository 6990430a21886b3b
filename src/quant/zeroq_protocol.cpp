#include "quant/zeroq_protocol.hpp"

#include <torch/torch.h>

#include "core/error.hpp"
#include "quant/quantizer.hpp"

namespace dsgq::quant {

ZeroqQuantizer::ZeroqQuantizer(const models::Network& net, ZeroqSpec spec) : net_(net), spec_(std::move(spec)) {
  for (const auto& layer : net.layers()) {
    const at::Tensor w = net.param(layer.name + ".weight");
    auto [mn, mx] = channel_minmax(w);
    wmin_.push_back(mn);
    wmax_.push_back(mx);
    qweights_.push_back(fake_quant_official(w, mn, mx, spec_.w_bits, 0));
  }
  ranges_.assign(net.acts().size(), Range{});
  observed_.assign(net.acts().size(), false);
  hooks_.weight = [this](int layer, const at::Tensor&) { return qweights_[static_cast<size_t>(layer)]; };
  hooks_.activation = [this](int site, const at::Tensor& x) -> at::Tensor {
    if (spec_.a_bits >= 32) return x;
    const size_t k = static_cast<size_t>(site);
    if (!observed_[k]) {
      DSGQ_CHECK(!calibrated_, "activation site " + net_.acts()[k].name + " was never calibrated");
      ranges_[k] = observe(spec_.act_observer, x, spec_.a_bits);
      observed_[k] = true;
    }
    const auto opts = x.options();
    return fake_quant_official(x, torch::tensor(ranges_[k].a, opts), torch::tensor(ranges_[k].b, opts), spec_.a_bits, 0);
  };
}

void ZeroqQuantizer::calibrate(const at::Tensor& images) {
  torch::NoGradGuard no_grad;
  std::fill(observed_.begin(), observed_.end(), false);
  calibrated_ = false;
  net_.forward(images, &hooks_);
  calibrated_ = true;
}

}  // namespace dsgq::quant
