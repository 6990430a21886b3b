#include "quant/zeroq_protocol.hpp"

#include <torch/torch.h>

#include "core/error.hpp"
#include "quant/quantizer.hpp"

namespace dsgq::quant {

ZeroqQuantizer::ZeroqQuantizer(const models::Network& net, const config::QuantConfig& cfg)
    : net_(net),
      cfg_(cfg),
      acts_(net, std::vector<int>(net.acts().size(), static_cast<int>(cfg.a_bits)), cfg.act_observer) {
  for (const auto& layer : net.layers()) {
    const at::Tensor w = net.param(layer.name + ".weight");
    auto [mn, mx] = channel_minmax(w);
    wmin_.push_back(mn);
    wmax_.push_back(mx);
    qweights_.push_back(fake_quant_official(w, mn, mx, static_cast<int>(cfg_.w_bits), 0));
  }
  hooks_.weight = [this](int layer, const at::Tensor&) { return qweights_[static_cast<size_t>(layer)]; };
  hooks_.activation = [this](int site, const at::Tensor& x) { return acts_(site, x); };
}

void ZeroqQuantizer::calibrate(const at::Tensor& images) {
  acts_.calibrate([&] { net_.forward(images, &hooks_); });
}

}  // namespace dsgq::quant
