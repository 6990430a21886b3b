#include "quant/adaround.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "models/network.hpp"
#include "mpi/comm.hpp"
#include "quant/adam.hpp"
#include "quant/gemm.hpp"
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

LayerGram layer_gram(const models::Network& net, int layer, const RowCache& x_in, const at::Tensor& weight,
                     const at::Tensor& bias, const RowCache& y_target, const RowShare& share, int64_t chunk) {
  torch::NoGradGuard ng;
  const int64_t groups = net.layers()[static_cast<size_t>(layer)].groups;  // 1 for linear layers
  const int64_t out_g = weight.size(0) / groups, k = weight.numel() / weight.size(0);
  const auto f64 = weight.options().dtype(at::kDouble);
  LayerGram f;
  f.weight = weight;
  f.g64 = at::zeros({groups, k, k}, f64);
  f.e64 = at::zeros({groups, out_g, k}, f64);
  double sums[3] = {0, 0, 0};  // r0, rows, output elements
  // One image's patches take in/groups*kh*kw times its input's bytes: bound one slab of them to ~64 MiB.
  const int64_t row_floats = x_in.rows() > 0 ? net.layer_columns(layer, x_in.slice(0, 1)).numel() : 1;
  const int64_t rows_per_slab =
      std::clamp<int64_t>((int64_t(64) << 20) / (row_floats * int64_t(sizeof(float))), 1, std::max<int64_t>(1, chunk));
  for (int64_t b = 0; b < x_in.rows(); b += rows_per_slab) {
    const at::Tensor x = x_in.slice(b, std::min(rows_per_slab, x_in.rows() - b));
    const at::Tensor cols = net.layer_columns(layer, x);  // [n, groups*k, L]
    const int64_t n = x.size(0), positions = cols.size(2);
    // [groups, k, n*L]: one column per output position of every image
    const at::Tensor xg = cols.view({n, groups, k, positions}).permute({1, 2, 0, 3}).reshape({groups, k, -1});
    const at::Tensor r = (net.layer_forward(layer, x, weight, bias) - y_target.slice(b, n))
                             .reshape({n, groups, out_g, positions})
                             .permute({1, 2, 0, 3})
                             .reshape({groups, out_g, -1});
    for (int64_t gi = 0; gi < groups; ++gi) {  // oneDNN's sgemm on CPUs (quant/gemm.hpp)
      f.g64[gi] += mm_nt(xg[gi], xg[gi]).to(at::kDouble);
      f.e64[gi] += mm_nt(r[gi], xg[gi]).to(at::kDouble);
    }
    sums[0] += r.to(at::kDouble).square().sum().item<double>();
    sums[1] += static_cast<double>(n);
    sums[2] += static_cast<double>(r.numel());
  }
  if (const mpi::Comm* comm = cooperating(share)) {
    comm->allreduce_sum(f.g64);
    comm->allreduce_sum(f.e64);
    std::vector<double> v(sums, sums + 3);
    comm->allreduce_sum(v);
    std::copy(v.begin(), v.end(), sums);
  }
  f.r0 = sums[0];
  f.images = sums[1];
  f.outputs = sums[2];
  f.g = f.g64.to(at::kFloat);
  f.e = f.e64.to(at::kFloat);
  return f;
}

at::Tensor LayerGram::change_error(const at::Tensor& w) const {
  const at::Tensor d = w.reshape(e.sizes()) - weight.reshape(e.sizes());
  return (at::bmm(d, g) * d).sum() + 2.0 * (d * e).sum();
}

at::Tensor LayerGram::change_error_grad(const at::Tensor& w, int64_t first) const {
  torch::NoGradGuard ng;
  const int64_t out_g = e.size(1), k = e.size(2), n = w.size(0);
  const at::Tensor d = w.detach().reshape({n, k}) - weight.reshape({-1, k}).slice(0, first, first + n);
  const at::Tensor e_rows = e.reshape({-1, k});
  at::Tensor grad = at::empty_like(d);
  for (int64_t gi = first / out_g; gi < e.size(0) && gi * out_g < first + n; ++gi) {  // the groups the rows meet
    const int64_t lo = std::max(first, gi * out_g), hi = std::min(first + n, (gi + 1) * out_g);
    // G symmetric: D G = D G^T (oneDNN's sgemm on CPUs)
    grad.slice(0, lo - first, hi - first).copy_(mm_nt(d.slice(0, lo - first, hi - first), g[gi]));
  }
  return grad.add_(e_rows.slice(0, first, first + n)).mul_(2.0).view(w.sizes());
}

double LayerGram::error(const at::Tensor& w) const {
  torch::NoGradGuard ng;
  const at::Tensor d = (w - weight).to(at::kDouble).reshape(e64.sizes());
  return (at::bmm(d, g64) * d).sum().item<double>() + 2.0 * (d * e64).sum().item<double>() + r0;
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
  const int64_t warm = static_cast<int64_t>(cfg.warmup * static_cast<double>(cfg.iters));
  auto beta_at = [&](int64_t it) {  // linear decay after the warm-up (BRECQ)
    const double t = static_cast<double>(it - warm) / std::max<double>(1.0, double(cfg.iters - warm));
    return cfg.beta_start + (cfg.beta_end - cfg.beta_start) * t;
  };
  if (cfg.gram) {
    // The whole set's loss every step, from its second moments (one all-reduce of them). The loss separates over
    // output channels (each row of D has its own terms, and the regulariser is elementwise), so with cooperating
    // ranks each takes the steps of its share of the channels alone and the rounded rows are gathered at the end.
    const LayerGram f = layer_gram(net, layer, x_in, weight, bias, y_target, share, chunk);
    r.mse_nearest = f.error(nearest) / std::max(1.0, f.outputs);
    const mpi::Share rows = comm ? mpi::share_of(weight.size(0), comm->rank(), comm->size()) : mpi::Share{0, v.size(0)};
    const at::Tensor floor_mine = w_floor.slice(0, rows.begin, rows.end),
                     zp_mine = grid.zero_point.slice(0, rows.begin, rows.end),
                     scale_mine = grid.scale.slice(0, rows.begin, rows.end);
    auto soft_mine = [&](const at::Tensor& h) { return soft_weight(h, floor_mine, zp_mine, scale_mine, qmax); };
    const at::Tensor v_mine = comm ? v.slice(0, rows.begin, rows.end).detach().clone().requires_grad_(true) : v;
    if (rows.size() > 0) {
      FusedAdam opt({v_mine}, cfg.lr);
      for (int64_t it = 0; it < cfg.iters; ++it) {
        opt.zero_grad();
        const at::Tensor h = rectified_sigmoid(v_mine);
        // The mean over images of the summed squared output error, the sampled loss's expectation: its gradient in
        // the soft weight is 2 (D G + E) / images, fed to the soft weight's backward as sum(w~ * grad).
        const at::Tensor w_soft = soft_mine(h);
        at::Tensor loss = (w_soft * f.change_error_grad(w_soft, rows.begin).div_(std::max(1.0, f.images))).sum();
        if (it >= warm) loss = loss + cfg.reg * rounding_regularizer(h, beta_at(it));
        loss.backward();
        opt.step();
      }
    }
    torch::NoGradGuard ng;
    const at::Tensor h = rectified_sigmoid(v_mine);
    const at::Tensor hard_mine = soft_mine(v_mine.ge(0).to(weight.dtype()));
    double undecided = (h.gt(1e-3) & h.lt(1 - 1e-3)).sum().item<double>();
    if (comm) {
      undecided = comm->allreduce_sum(undecided);
      r.weight = comm->allgatherv(hard_mine.contiguous()).view(weight.sizes());
    } else {
      r.weight = hard_mine;
    }
    r.undecided = undecided / static_cast<double>(weight.numel());
    r.flipped = r.weight.ne(nearest).to(at::kFloat).mean().item<double>();
    r.mse_adaround = f.error(r.weight) / std::max(1.0, f.outputs);
    return r;
  }
  r.mse_nearest = layer_output_mse(net, layer, x_in, nearest, bias, y_target, share, chunk);
  FusedAdam opt({v}, cfg.lr);  // torch::optim::Adam's arithmetic, one pass (quant/adam.hpp)
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed * 7919 + static_cast<uint64_t>(layer));
  const int64_t local = x_in.rows(), n = share.total >= 0 ? share.total : local;
  const int64_t batch = std::min(cfg.batch, n);
  // With cooperating ranks: this rank's share of V's elements for the regulariser.
  const mpi::Share reg_part = comm ? mpi::share_of(v.numel(), comm->rank(), comm->size()) : mpi::Share{0, v.numel()};
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
      const at::Tensor hr = comm ? h.view(-1).slice(0, reg_part.begin, reg_part.end) : h;
      const at::Tensor reg = cfg.reg * rounding_regularizer(hr, beta_at(it));
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
