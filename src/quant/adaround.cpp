#include "quant/adaround.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "models/network.hpp"
#include "mpi/comm.hpp"
#include "quant/adam.hpp"
#include "quant/lsq.hpp"

namespace dsgq::quant {
namespace {
const mpi::Comm* cooperating(const RowShare& share) {
  return share.comm && share.comm->size() > 1 ? share.comm : nullptr;
}

}  // namespace

at::Tensor per_channel(const at::Tensor& p, const at::Tensor& w) {
  std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
  shape[0] = -1;
  return p.view(shape);
}

RoundingStart rounding_start(const at::Tensor& w, const at::Tensor& scale) {
  const at::Tensor ws = w / per_channel(scale, w);
  RoundingStart st;
  st.floor = ws.floor();
  const at::Tensor rest = (ws - st.floor).clamp(1e-4, 1 - 1e-4);
  st.v = (-((kZeta - kGamma) / (rest - kGamma) - 1.0).log()).detach().requires_grad_(true);  // h(V0) = rest
  return st;
}

at::Tensor quantize_nearest(const at::Tensor& w, const WeightGrid& g) {
  const at::Tensor s = per_channel(g.scale, w), z = per_channel(g.zero_point, w);
  return ((w / s).round() + z).clamp(0, std::pow(2.0, g.bits) - 1).sub(z).mul(s);
}

WeightGrid mse_weight_grid(const at::Tensor& w, int bits) {
  torch::NoGradGuard no_grad;
  const at::Tensor flat = w.reshape({w.size(0), -1});
  const at::Tensor mn = std::get<0>(flat.min(1)).clamp_max(0), mx = std::get<0>(flat.max(1)).clamp_min(0);
  const double levels = std::pow(2.0, bits) - 1.0;
  WeightGrid best;
  best.bits = bits;
  at::Tensor best_err;
  for (int i = 0; i <= 80; ++i) {
    const double alpha = 1.0 - 0.01 * i;
    WeightGrid g;
    g.bits = bits;
    g.scale = ((mx - mn) * alpha / levels).clamp_min(1e-8);
    g.zero_point = (-(mn * alpha) / g.scale).round();
    const at::Tensor err = (quantize_nearest(w, g) - w).reshape({w.size(0), -1}).square().sum(1);
    if (!best_err.defined()) {
      best = g;
      best_err = err;
      continue;
    }
    const at::Tensor better = err < best_err;
    best.scale = at::where(better, g.scale, best.scale);
    best.zero_point = at::where(better, g.zero_point, best.zero_point);
    best_err = at::where(better, err, best_err);
  }
  return best;
}

double layer_output_mse(const models::Network& net, int layer, const RowCache& x_in, const at::Tensor& weight,
                        const at::Tensor& bias, const RowCache& y_target, const RowShare& share, int64_t chunk) {
  torch::NoGradGuard ng;
  double sum = 0;
  int64_t count = 0;
  for (int64_t b = 0; b < x_in.rows(); b += chunk) {
    const int64_t n = std::min(chunk, x_in.rows() - b);
    const at::Tensor d = net.layer_forward(layer, x_in.slice(b, n), weight, bias) - y_target.slice(b, n);
    sum += d.to(at::kDouble).square().sum().item<double>();
    count += d.numel();
  }
  if (const mpi::Comm* comm = cooperating(share)) {
    std::vector<double> v = {sum, static_cast<double>(count)};
    comm->allreduce_sum(v);
    return v[1] > 0 ? v[0] / v[1] : 0.0;
  }
  return count > 0 ? sum / static_cast<double>(count) : 0.0;
}

AdaRoundResult adaround_layer(const models::Network& net, int layer, const at::Tensor& weight, const at::Tensor& bias,
                              const WeightGrid& grid, const RowCache& x_in, const RowCache& y_target,
                              const config::AdaRoundConfig& cfg, uint64_t seed, const RowShare& share, int64_t chunk) {
  const mpi::Comm* comm = cooperating(share);
  const double qmax = std::pow(2.0, grid.bits) - 1.0;
  const RoundingStart start = rounding_start(weight, grid.scale);  // the soft weight starts at the FP weight
  const at::Tensor& w_floor = start.floor;
  at::Tensor v = start.v;
  // (clamp(floor + h + z, 0, qmax) - z) * s, one pass each way (quant/soft_rounding.hpp)
  auto soft = [&](const at::Tensor& h) { return soft_weight(h, w_floor, grid.zero_point, grid.scale, qmax); };

  AdaRoundResult r;
  const at::Tensor nearest = quantize_nearest(weight, grid);
  r.mse_nearest = layer_output_mse(net, layer, x_in, nearest, bias, y_target, share, chunk);
  FusedAdam opt({v}, cfg.lr);  // torch::optim::Adam's arithmetic, one pass (quant/adam.hpp)
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 7919 + static_cast<uint64_t>(layer));
  const int64_t local = x_in.rows(), n = share.total >= 0 ? share.total : local;
  const int64_t batch = std::min(cfg.batch, n);
  // With cooperating ranks: this rank's share of V's elements for the regulariser.
  const mpi::Share reg_part = comm ? mpi::share_of(v.numel(), comm->rank(), comm->size()) : mpi::Share{0, v.numel()};
  const int64_t warm = static_cast<int64_t>(cfg.warmup * static_cast<double>(cfg.iters));
  for (int64_t it = 0; it < cfg.iters; ++it) {
    at::Tensor idx = at::randint(0, n, {batch}, gen);  // the global draw, the same on every rank
    if (comm) idx = idx.masked_select(idx.ge(share.first) & idx.lt(share.first + local)) - share.first;
    opt.zero_grad();
    const at::Tensor h = rectified_sigmoid(v);
    // Reconstruction: the summed squared output error over the mini-batch divided by its size (docs/method.md 12.6).
    at::Tensor loss;
    if (idx.numel() > 0) {
      const at::Tensor xb = x_in.gather(idx), yb = y_target.gather(idx);
      // sum((out - y)^2) as one pass each way (the gradient rounded as (out - y).square().sum()'s: 2 (out - y) g)
      loss = sq_error_sum(net.layer_forward(layer, xb, soft(h), bias), yb, at::Tensor()) / double(batch);
    }
    if (it >= warm) {
      const double t = static_cast<double>(it - warm) / std::max<double>(1.0, double(cfg.iters - warm));
      const double beta = cfg.beta_start + (cfg.beta_end - cfg.beta_start) * t;  // linear decay (BRECQ)
      const at::Tensor hr = comm ? h.view(-1).slice(0, reg_part.begin, reg_part.end) : h;
      const at::Tensor reg = cfg.reg * rounding_regularizer(hr, beta);
      loss = loss.defined() ? loss + reg : reg;
    }
    if (loss.defined()) loss.backward();
    if (comm) {
      at::Tensor g = v.grad().defined() ? v.grad().contiguous() : at::zeros_like(v);
      comm->allreduce_sum(g);
      v.mutable_grad() = g;
    }
    opt.step();
  }
  torch::NoGradGuard ng;
  const at::Tensor h = rectified_sigmoid(v);
  r.undecided = (h.gt(1e-3) & h.lt(1 - 1e-3)).to(at::kFloat).mean().item<double>();
  r.weight = soft(v.ge(0).to(weight.dtype()));
  r.flipped = r.weight.ne(nearest).to(at::kFloat).mean().item<double>();
  r.mse_adaround = layer_output_mse(net, layer, x_in, r.weight, bias, y_target, share, chunk);
  return r;
}

}  // namespace dsgq::quant
