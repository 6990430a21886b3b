#include "quant/adaround_protocol.hpp"

#include <torch/torch.h>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "quant/quantizer.hpp"

namespace dsgq::quant {

AdaRoundQuantizer::AdaRoundQuantizer(const models::Network& fp, AdaRoundSpec spec)
    : folded_(fp.folded()), spec_(std::move(spec)) {
  const size_t L = folded_->layers().size();
  for (size_t l = 0; l < L; ++l) {
    const bool edge = l == 0 || l + 1 == L;
    const int bits = edge && spec_.first_last_bits > 0 ? spec_.first_last_bits : spec_.w_bits;
    const at::Tensor w = folded_->param(folded_->layers()[l].name + ".weight");
    grids_.push_back(mse_weight_grid(w, bits));
    weights_.push_back(w);
  }
  const size_t A = folded_->acts().size();
  ranges_.assign(A, Range{});
  observed_.assign(A, false);
  act_bits_.assign(A, spec_.a_bits);
  // The last activation site feeds the classifier (global pooling, then the last layer): keep it at the edge width.
  if (A > 0 && spec_.first_last_bits > 0 && spec_.a_bits < 32) act_bits_[A - 1] = spec_.first_last_bits;
  hooks_.weight = [this](int layer, const at::Tensor&) { return weights_[static_cast<size_t>(layer)]; };
  hooks_.activation = [this](int site, const at::Tensor& x) -> at::Tensor {
    const size_t k = static_cast<size_t>(site);
    if (act_bits_[k] >= 32) return x;
    if (!observed_[k]) {
      DSGQ_CHECK(calibrating_, "activation site " + folded_->acts()[k].name + " was never calibrated");
      ranges_[k] = observe(spec_.act_observer, x, act_bits_[k]);
      observed_[k] = true;
    }
    const auto o = x.options();
    return fake_quant_official(x, torch::tensor(ranges_[k].a, o), torch::tensor(ranges_[k].b, o), act_bits_[k], 0);
  };
}

at::Tensor AdaRoundQuantizer::capture_input(int layer, const at::Tensor& calib, bool quantized_before,
                                            int64_t chunk) const {
  torch::NoGradGuard no_grad;
  std::vector<at::Tensor> parts;
  models::ForwardHooks h;
  if (quantized_before) h.weight = [this](int l, const at::Tensor&) { return weights_[static_cast<size_t>(l)]; };
  h.layer_io = [&](int l, const at::Tensor& in, const at::Tensor&) {
    if (l == layer) parts.push_back(in.clone());
  };
  for (int64_t b = 0; b < calib.size(0); b += chunk)
    folded_->forward(calib.slice(0, b, std::min(calib.size(0), b + chunk)), &h);
  return at::cat(parts);
}

void AdaRoundQuantizer::run(const at::Tensor& calib, int64_t chunk) {
  const size_t L = folded_->layers().size();
  reports_.clear();
  for (size_t l = 0; l < L; ++l) {
    Timer t;
    const int li = static_cast<int>(l);
    const at::Tensor w = folded_->param(folded_->layers()[l].name + ".weight");
    const at::Tensor& bias = folded_->layer_bias(li);
    // Inputs from the network whose earlier layers are already rounded; targets from the FP network.
    const at::Tensor x_q = capture_input(li, calib, true, chunk);
    at::Tensor y_fp;
    {
      torch::NoGradGuard ng;
      y_fp = folded_->layer_forward(li, capture_input(li, calib, false, chunk), w, bias);
    }
    LayerReport rep;
    rep.name = folded_->layers()[l].name;
    rep.bits = grids_[l].bits;
    if (spec_.adaround) {
      AdaRoundConfig cfg = spec_.cfg;
      const AdaRoundResult r = adaround_layer(*folded_, li, w, bias, grids_[l], x_q, y_fp, cfg);
      weights_[l] = r.weight;
      rep.mse_nearest = r.mse_nearest;
      rep.mse_adaround = r.mse_adaround;
      rep.flipped = r.flipped;
      rep.undecided = r.undecided;
    } else {
      torch::NoGradGuard ng;
      weights_[l] = quantize_nearest(w, grids_[l]);
      rep.mse_nearest = rep.mse_adaround =
          (folded_->layer_forward(li, x_q, weights_[l], bias) - y_fp).square().mean().item<double>();
    }
    rep.seconds = t.seconds();
    reports_.push_back(rep);
    log_info0("adaround %-22s W%d  output mse nearest %.3e -> %.3e  flipped %.1f%%  (%.1f s)", rep.name.c_str(),
              rep.bits, rep.mse_nearest, rep.mse_adaround, 100.0 * rep.flipped, rep.seconds);
  }
  // Activation ranges on the rounded network, one pass (each site observes, then quantizes for the next ones).
  torch::NoGradGuard no_grad;
  std::fill(observed_.begin(), observed_.end(), false);
  calibrating_ = true;
  folded_->forward(calib, &hooks_);
  calibrating_ = false;
}

}  // namespace dsgq::quant
