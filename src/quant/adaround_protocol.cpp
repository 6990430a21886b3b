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

std::pair<RowCache, RowCache> AdaRoundQuantizer::capture(int layer, const at::Tensor& calib, int64_t chunk,
                                                         LayerReport& rep) const {
  torch::NoGradGuard no_grad;
  const int64_t n = calib.size(0);
  at::Tensor in_q, out_fp;
  models::ForwardHooks quantized, fp;
  quantized.weight = [this](int l, const at::Tensor&) { return weights_[static_cast<size_t>(l)]; };
  quantized.layer_io = [&](int l, const at::Tensor& in, const at::Tensor&) {
    if (l == layer) in_q = in.clone();
  };
  fp.layer_io = [&](int l, const at::Tensor&, const at::Tensor& out) {
    if (l == layer) out_fp = out.clone();
  };
  std::unique_ptr<RowCache> x, y;
  for (int64_t b = 0; b < n; b += chunk) {
    const at::Tensor part = calib.slice(0, b, std::min(n, b + chunk));
    folded_->forward(part, &quantized);
    folded_->forward(part, &fp);
    if (!x) {  // the first chunk tells the row shapes, and so whether the layer's caches fit the budget
      const std::vector<int64_t> xs(in_q.sizes().begin() + 1, in_q.sizes().end()),
          ys(out_fp.sizes().begin() + 1, out_fp.sizes().end());
      rep.cache_bytes = n * (row_bytes(xs) + row_bytes(ys));
      rep.spilled = rep.cache_bytes > spec_.cache_bytes;
      x = std::make_unique<RowCache>(n, xs, calib.device(), rep.spilled ? spec_.spill_prefix + ".in.h5" : "");
      y = std::make_unique<RowCache>(n, ys, calib.device(), rep.spilled ? spec_.spill_prefix + ".out.h5" : "");
    }
    x->write(b, in_q);
    y->write(b, out_fp);
    in_q = out_fp = at::Tensor();
  }
  return {std::move(*x), std::move(*y)};
}

void AdaRoundQuantizer::run(const at::Tensor& calib, int64_t chunk) {
  const size_t L = folded_->layers().size();
  reports_.clear();
  for (size_t l = 0; l < L; ++l) {
    Timer t;
    const int li = static_cast<int>(l);
    const at::Tensor w = folded_->param(folded_->layers()[l].name + ".weight");
    const at::Tensor& bias = folded_->layer_bias(li);
    LayerReport rep;
    rep.name = folded_->layers()[l].name;
    rep.bits = grids_[l].bits;
    // Inputs from the network whose earlier layers are already rounded; targets from the FP network.
    const auto [x_q, y_fp] = capture(li, calib, chunk, rep);
    if (spec_.adaround) {
      AdaRoundConfig cfg = spec_.cfg;
      const AdaRoundResult r = adaround_layer(*folded_, li, w, bias, grids_[l], x_q, y_fp, cfg, chunk);
      weights_[l] = r.weight;
      rep.mse_nearest = r.mse_nearest;
      rep.mse_adaround = r.mse_adaround;
      rep.flipped = r.flipped;
      rep.undecided = r.undecided;
    } else {
      torch::NoGradGuard ng;
      weights_[l] = quantize_nearest(w, grids_[l]);
      rep.mse_nearest = rep.mse_adaround = layer_output_mse(*folded_, li, x_q, weights_[l], bias, y_fp, chunk);
    }
    rep.seconds = t.seconds();
    reports_.push_back(rep);
    log_info0("adaround %-22s W%d  output mse nearest %.3e -> %.3e  flipped %.1f%%  cache %.0f MiB%s  (%.1f s)",
              rep.name.c_str(), rep.bits, rep.mse_nearest, rep.mse_adaround, 100.0 * rep.flipped,
              static_cast<double>(rep.cache_bytes) / (1 << 20), rep.spilled ? " (spilled)" : "", rep.seconds);
  }
  // Activation ranges on the rounded network, one pass (each site observes, then quantizes for the next ones).
  torch::NoGradGuard no_grad;
  std::fill(observed_.begin(), observed_.end(), false);
  calibrating_ = true;
  folded_->forward(calib, &hooks_);
  calibrating_ = false;
}

}  // namespace dsgq::quant
