#include "quant/adaround_protocol.hpp"

#include <torch/torch.h>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "mpi/comm.hpp"
#include "quant/quantizer.hpp"

namespace dsgq::quant {

std::vector<int> activation_bits(const models::Network& net, const config::QuantConfig& cfg) {
  std::vector<int> bits(net.acts().size(), static_cast<int>(cfg.a_bits));
  if (!bits.empty() && cfg.first_last_bits > 0 && cfg.a_bits < 32) bits.back() = static_cast<int>(cfg.first_last_bits);
  return bits;
}

std::vector<WeightGrid> weight_grids(const models::Network& folded, const config::QuantConfig& cfg) {
  std::vector<WeightGrid> grids;
  const size_t L = folded.layers().size();
  for (size_t l = 0; l < L; ++l) {
    const bool edge = l == 0 || l + 1 == L;
    const int64_t bits = edge && cfg.first_last_bits > 0 ? cfg.first_last_bits : cfg.w_bits;
    grids.push_back(mse_weight_grid(folded.param(folded.layers()[l].name + ".weight"), static_cast<int>(bits)));
  }
  return grids;
}

AdaRoundQuantizer::AdaRoundQuantizer(const models::Network& fp, const config::QuantConfig& cfg, AdaRoundRun run)
    : folded_(fp.folded()),
      cfg_(cfg),
      run_(std::move(run)),
      grids_(weight_grids(*folded_, cfg)),
      acts_(*folded_, activation_bits(*folded_, cfg), cfg.act_observer) {
  for (const auto& layer : folded_->layers()) weights_.push_back(folded_->param(layer.name + ".weight"));
  hooks_.weight = [this](int layer, const at::Tensor&) { return weights_[static_cast<size_t>(layer)]; };
  hooks_.activation = [this](int site, const at::Tensor& x) { return acts_(site, x); };
}

namespace {
// Thrown by a capture hook once the layer it waits for has run: the rest of the forward pass is not needed.
struct StopForward {};

void forward_until_stopped(const models::Network& net, const at::Tensor& x, const models::ForwardHooks& hooks) {
  try {
    net.forward(x, &hooks);
  } catch (const StopForward&) {
  }
}
}  // namespace

std::pair<RowCache, RowCache> AdaRoundQuantizer::capture(int layer, const at::Tensor& calib, int64_t chunk,
                                                         LayerReport& rep) const {
  torch::NoGradGuard no_grad;
  const int64_t n = calib.size(0);
  at::Tensor in_q, out_fp;
  models::ForwardHooks quantized, fp;
  quantized.weight = [this](int l, const at::Tensor&) { return weights_[static_cast<size_t>(l)]; };
  quantized.layer_io = [&](int l, const at::Tensor& in, const at::Tensor&) {
    if (l != layer) return;
    in_q = in.clone();
    throw StopForward{};
  };
  fp.layer_io = [&](int l, const at::Tensor&, const at::Tensor& out) {
    if (l != layer) return;
    out_fp = out.clone();
    throw StopForward{};
  };
  std::unique_ptr<RowCache> x, y;
  for (int64_t b = 0; b < n; b += chunk) {
    const at::Tensor part = calib.slice(0, b, std::min(n, b + chunk));
    forward_until_stopped(*folded_, part, quantized);  // up to the layer only
    forward_until_stopped(*folded_, part, fp);
    if (!x) {  // the first chunk tells the row shapes, and so whether the layer's caches fit the budget
      const std::vector<int64_t> xs(in_q.sizes().begin() + 1, in_q.sizes().end()),
          ys(out_fp.sizes().begin() + 1, out_fp.sizes().end());
      rep.cache_bytes = n * (row_bytes(xs) + row_bytes(ys));
      rep.spilled = rep.cache_bytes > (cfg_.cache_mib << 20);
      x = std::make_unique<RowCache>(n, xs, calib.device(), rep.spilled ? run_.spill_prefix + ".in.h5" : "");
      y = std::make_unique<RowCache>(n, ys, calib.device(), rep.spilled ? run_.spill_prefix + ".out.h5" : "");
    }
    x->write(b, in_q);
    y->write(b, out_fp);
    in_q = out_fp = at::Tensor();
  }
  return {std::move(*x), std::move(*y)};
}

void AdaRoundQuantizer::run(const at::Tensor& calib_all, const mpi::Comm& comm, int64_t chunk) {
  if (calib_all.size(0) < comm.size())
    throw InputError("[quant] protocol = \"adaround\" on " + std::to_string(comm.size()) + " ranks, but " +
                     std::to_string(calib_all.size(0)) + " calibration images; expected at least one image per rank");
  const mpi::Share mine = mpi::share_of(calib_all.size(0), comm.rank(), comm.size());
  const at::Tensor calib = calib_all.slice(0, mine.begin, mine.end);
  const RowShare share{mine.begin, calib_all.size(0), &comm};
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
    if (cfg_.adaround.enabled) {
      const AdaRoundResult r =
          adaround_layer(*folded_, li, w, bias, grids_[l], x_q, y_fp, cfg_.adaround, run_.seed, share, chunk);
      weights_[l] = r.weight;
      rep.mse_nearest = r.mse_nearest;
      rep.mse_adaround = r.mse_adaround;
      rep.flipped = r.flipped;
      rep.undecided = r.undecided;
    } else {
      torch::NoGradGuard ng;
      weights_[l] = quantize_nearest(w, grids_[l]);
      rep.mse_nearest = rep.mse_adaround = layer_output_mse(*folded_, li, x_q, weights_[l], bias, y_fp, share, chunk);
    }
    rep.seconds = t.seconds();
    reports_.push_back(rep);
    log_info0("adaround %-22s W%d  output mse nearest %.3e -> %.3e  flipped %.1f%%  cache %.0f MiB%s  (%.1f s)",
              rep.name.c_str(), rep.bits, rep.mse_nearest, rep.mse_adaround, 100.0 * rep.flipped,
              static_cast<double>(rep.cache_bytes) / (1 << 20), rep.spilled ? " (spilled)" : "", rep.seconds);
  }
  // Activation ranges on the rounded network, one pass (each site observes, then quantizes for the next ones).
  acts_.calibrate([&] { folded_->forward(calib, &hooks_); }, &comm);
}

}  // namespace dsgq::quant
