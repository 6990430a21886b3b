#include "quant/recon_protocol.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "mpi/comm.hpp"
#include "quant/lsq.hpp"
#include "quant/observer.hpp"

namespace dsgq::quant {
namespace {
constexpr double kZeta = 1.1, kGamma = -0.1;
constexpr double kMinStep = 1.1920928955078125e-07;  // float32 epsilon: LSQ keeps |step| above it

at::Tensor per_out(const at::Tensor& p, const at::Tensor& w) {
  std::vector<int64_t> shape(static_cast<size_t>(w.dim()), 1);
  shape[0] = -1;
  return p.view(shape);
}

at::Tensor rectified_sigmoid(const at::Tensor& v) { return (v.sigmoid() * (kZeta - kGamma) + kGamma).clamp(0, 1); }

at::Generator generator(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0) {
  // A 64-bit mix of the key (splitmix64 steps), so that neighbouring keys give unrelated streams.
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t k : {a, b, c, d}) {
    h ^= k + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ull;
    h = (h ^ (h >> 27)) * 0x94D049BB133111EBull;
    h ^= h >> 31;
  }
  return at::make_generator<at::CPUGeneratorImpl>(h);
}

// Elements per image of a tensor [n, ...] divided by its channels: the positions lp_loss averages over.
int64_t positions(const at::Tensor& y) {
  return y.dim() > 2 ? y.numel() / std::max<int64_t>(1, y.size(0) * y.size(1)) : 1;
}

// One layer's rounding state during its unit's reconstruction.
struct Rounding {
  at::Tensor floor, zp, v, scale;  // scale: a leaf requiring grad when weight scales are learned
  double qmax = 0;
  at::Tensor weight(const at::Tensor& h) const {
    const at::Tensor s = per_out(scale, floor), z = per_out(zp, floor);
    return (floor + h + z).clamp(0, qmax).sub(z).mul(s);
  }
};

}  // namespace

struct ReconQuantizer::Shard {
  std::vector<std::vector<int64_t>> strata;  // slot j of a mini-batch draws from strata[j] (images i, i % B == j)
  int64_t slot_begin = 0, slot_end = 0;      // this rank's slots
  std::vector<int64_t> row_of;               // image index -> row in the caches (-1: another rank's)
  at::Tensor x_q, x_fp, y_fp;                // the unit's inputs (quantized / FP network) and FP outputs, owned rows
};

struct ReconQuantizer::UnitParts {
  std::vector<int> layers, sites;                 // in the order the unit uses them
  std::vector<std::vector<int64_t>> site_shapes;  // one image's activation shape per site
  std::vector<int64_t> input_shape;               // one image's unit input
};

ReconQuantizer::ReconQuantizer(const models::Network& fp, const config::QuantConfig& cfg, uint64_t seed)
    : folded_(fp.folded()), cfg_(cfg), seed_(seed), grids_(weight_grids(*folded_, cfg)) {
  if (folded_->units().empty())
    throw InputError("[quant] protocol = \"qdrop\": architecture " + fp.arch() +
                     " declares no reconstruction units; expected one whose definition lists its blocks "
                     "(dsgq --help lists the architectures)");
  for (const auto& layer : folded_->layers()) weights_.push_back(folded_->param(layer.name + ".weight"));
  const std::vector<int> bits = activation_bits(*folded_, cfg_);
  for (int b : bits) act_grids_.push_back({1.0, 0, b});
  hooks_.weight = [this](int layer, const at::Tensor&) { return weights_[static_cast<size_t>(layer)]; };
  hooks_.activation = [this](int site, const at::Tensor& x) {
    const ActGrid& g = act_grids_[static_cast<size_t>(site)];
    if (g.bits >= 32) return x;
    return at::fake_quantize_per_tensor_affine(x, g.scale, g.zero_point, 0, (int64_t(1) << g.bits) - 1);
  };
}

ReconQuantizer::~ReconQuantizer() = default;

ReconQuantizer::UnitParts ReconQuantizer::parts_of(int unit, const at::Tensor& sample) const {
  UnitParts p;
  p.input_shape.assign(sample.sizes().begin() + 1, sample.sizes().end());
  models::ForwardHooks rec;
  rec.layer_io = [&](int l, const at::Tensor&, const at::Tensor&) { p.layers.push_back(l); };
  rec.activation = [&](int s, const at::Tensor& x) {
    p.sites.push_back(s);
    p.site_shapes.emplace_back(x.sizes().begin() + 1, x.sizes().end());
    return x;
  };
  torch::NoGradGuard ng;
  folded_->unit_forward(unit, sample, &rec);
  return p;
}

// Step sizes from the activation observer on the network with FP weights, each site seeing the quantized
// activations of the sites before it (the first observer_images images).
void ReconQuantizer::init_steps(const at::Tensor& calib) {
  ActQuantizers acts(*folded_, activation_bits(*folded_, cfg_), cfg_.act_observer);
  models::ForwardHooks h;
  h.activation = [&](int site, const at::Tensor& x) { return acts(site, x); };
  const at::Tensor images = calib.slice(0, 0, std::min(calib.size(0), cfg_.recon.observer_images));
  acts.calibrate([&] { folded_->forward(images, &h); });
  for (size_t k = 0; k < act_grids_.size(); ++k) {
    ActGrid& g = act_grids_[k];
    if (g.bits >= 32) continue;
    const Range r = acts.ranges()[k];
    g.scale = std::max((r.b - r.a) / (std::pow(2.0, g.bits) - 1.0), 1e-8);
    g.zero_point = static_cast<int64_t>(std::nearbyint(-r.a / g.scale));
  }
}

double ReconQuantizer::unit_error(int unit, const Shard& shard, const mpi::Comm& comm, int64_t chunk) const {
  torch::NoGradGuard ng;
  double sum = 0;
  int64_t rows = shard.x_q.size(0), per_row = 1;
  for (int64_t b = 0; b < rows; b += chunk) {
    const int64_t n = std::min(chunk, rows - b);
    const at::Tensor d =
        folded_->unit_forward(unit, shard.x_q.slice(0, b, b + n), &hooks_) - shard.y_fp.slice(0, b, b + n);
    sum += d.to(at::kDouble).square().sum().item<double>();
    per_row = positions(d);
  }
  std::vector<double> v = {sum, static_cast<double>(rows * per_row)};
  comm.allreduce_sum(v);
  return v[1] > 0 ? v[0] / v[1] : 0.0;
}

void ReconQuantizer::reconstruct(int unit, Shard& shard, const mpi::Comm& comm, LayerReport& rep) {
  const UnitParts parts = parts_of(unit, shard.x_fp.slice(0, 0, 1));
  const config::AdaRoundConfig& ar = cfg_.adaround;
  const config::ReconConfig& rc = cfg_.recon;
  const bool learn_scale = rc.weight_scale_lr > 0;

  // The unit's rounding variables (h(V0) reproduces the FP weight), step sizes and, optionally, weight scales.
  std::vector<Rounding> rounding;
  std::vector<at::Tensor> vs, scales, steps(act_grids_.size());
  for (int l : parts.layers) {
    const WeightGrid& g = grids_[static_cast<size_t>(l)];
    const at::Tensor w = folded_->param(folded_->layers()[static_cast<size_t>(l)].name + ".weight");
    Rounding r;
    r.floor = (w / per_out(g.scale, w)).floor();
    const at::Tensor rest = (w / per_out(g.scale, w) - r.floor).clamp(1e-4, 1 - 1e-4);
    r.v = (-((kZeta - kGamma) / (rest - kGamma) - 1.0).log()).detach().requires_grad_(true);
    r.zp = g.zero_point;
    r.scale = learn_scale ? g.scale.clone().requires_grad_(true) : g.scale;
    r.qmax = std::pow(2.0, g.bits) - 1.0;
    vs.push_back(r.v);
    if (learn_scale) scales.push_back(r.scale);
    rounding.push_back(r);
  }
  std::vector<at::Tensor> step_list;
  std::vector<double> grad_factor(act_grids_.size(), 1.0);
  for (size_t i = 0; i < parts.sites.size(); ++i) {
    const size_t k = static_cast<size_t>(parts.sites[i]);
    if (act_grids_[k].bits >= 32) continue;
    steps[k] = torch::full({1}, act_grids_[k].scale, shard.x_fp.options()).requires_grad_(rc.act_lr > 0);
    if (rc.act_lr > 0) step_list.push_back(steps[k]);
    int64_t per_image = 1;
    for (int64_t d : parts.site_shapes[i]) per_image *= d;
    grad_factor[k] = lsq_grad_factor(batch_ * per_image, act_grids_[k].bits);
  }
  torch::optim::Adam opt_v(vs, torch::optim::AdamOptions(ar.lr));
  std::unique_ptr<torch::optim::Adam> opt_s, opt_w;
  if (!step_list.empty()) opt_s = std::make_unique<torch::optim::Adam>(step_list, torch::optim::AdamOptions(rc.act_lr));
  if (!scales.empty())
    opt_w = std::make_unique<torch::optim::Adam>(scales, torch::optim::AdamOptions(rc.weight_scale_lr));
  std::vector<at::Tensor> params = vs;
  params.insert(params.end(), step_list.begin(), step_list.end());
  params.insert(params.end(), scales.begin(), scales.end());

  // This iteration's drop masks (rows of the local slots) and the hooks that use them.
  at::Tensor u_in;
  std::vector<at::Tensor> u_site(act_grids_.size());
  std::vector<int> layer_pos(weights_.size(), -1);
  for (size_t i = 0; i < parts.layers.size(); ++i)
    layer_pos[static_cast<size_t>(parts.layers[i])] = static_cast<int>(i);
  std::vector<at::Tensor> soft(weights_.size());
  models::ForwardHooks train;
  train.weight = [&](int layer, const at::Tensor& w) {
    return soft[static_cast<size_t>(layer)].defined() ? soft[static_cast<size_t>(layer)] : w;
  };
  train.activation = [&](int site, const at::Tensor& x) {
    const size_t k = static_cast<size_t>(site);
    if (act_grids_[k].bits >= 32) return x;
    const at::Tensor q = lsq_quantize(x, steps[k], act_grids_[k].zero_point, act_grids_[k].bits, grad_factor[k]);
    return u_site[k].defined() ? drop_mix(q, x, u_site[k], rc.drop) : q;
  };

  const bool mixing = rc.drop > 0 && rc.drop < 1;
  at::Generator draw = generator(seed_, 0x5eed0001ull, static_cast<uint64_t>(unit));
  const int64_t warm = static_cast<int64_t>(ar.warmup * static_cast<double>(ar.iters));
  const double denom = static_cast<double>(batch_ * positions(shard.y_fp.slice(0, 0, 1)));
  for (int64_t it = 0; it < ar.iters; ++it) {
    // Slot j takes image strata[j][floor(u_j * |strata[j]|)]; every rank draws all B numbers.
    const at::Tensor pick = at::rand({batch_}, draw, at::kDouble);
    const double* pu = pick.data_ptr<double>();
    std::vector<int64_t> rows;
    for (int64_t j = shard.slot_begin; j < shard.slot_end; ++j) {
      const auto& st = shard.strata[static_cast<size_t>(j)];
      const auto k = std::min<int64_t>(static_cast<int64_t>(pu[j] * double(st.size())), int64_t(st.size()) - 1);
      rows.push_back(shard.row_of[static_cast<size_t>(st[static_cast<size_t>(k)])]);
    }
    const at::Tensor idx = torch::tensor(rows, torch::kLong).to(shard.x_q.device());
    const at::Tensor xq = shard.x_q.index_select(0, idx), xf = shard.x_fp.index_select(0, idx);
    const at::Tensor y = shard.y_fp.index_select(0, idx);
    if (mixing) {  // per slot, from (seed, unit, step, slot): the input's mask, then each site's in order
      std::vector<at::Tensor> in_rows;
      std::vector<std::vector<at::Tensor>> site_rows(parts.sites.size());
      for (int64_t j = shard.slot_begin; j < shard.slot_end; ++j) {
        at::Generator g =
            generator(seed_, static_cast<uint64_t>(unit), static_cast<uint64_t>(it), static_cast<uint64_t>(j));
        in_rows.push_back(at::rand(parts.input_shape, g));
        for (size_t i = 0; i < parts.sites.size(); ++i) site_rows[i].push_back(at::rand(parts.site_shapes[i], g));
      }
      u_in = at::stack(in_rows).to(xq.device());
      for (size_t i = 0; i < parts.sites.size(); ++i)
        u_site[static_cast<size_t>(parts.sites[i])] = at::stack(site_rows[i]).to(xq.device());
    }
    for (const auto& p : params) p.mutable_grad() = at::Tensor();
    for (const auto& s : step_list) s.data().abs_().clamp_(kMinStep);
    for (size_t i = 0; i < rounding.size(); ++i)
      soft[static_cast<size_t>(parts.layers[i])] = rounding[i].weight(rectified_sigmoid(rounding[i].v));
    const at::Tensor x_in = mixing ? drop_mix(xq, xf, u_in, rc.drop) : (rc.drop >= 1 ? xf : xq);
    const at::Tensor out = folded_->unit_forward(unit, x_in, &train);
    (out - y).square().sum().div(denom).backward();
    if (comm.size() > 1) {  // one all-reduce of every gradient, then the regulariser (the same on every rank)
      std::vector<at::Tensor> flat;
      for (const auto& p : params)
        flat.push_back(p.grad().defined() ? p.grad().flatten() : at::zeros({p.numel()}, p.options()));
      at::Tensor all = at::cat(flat);
      comm.allreduce_sum(all);
      int64_t at_ = 0;
      for (const auto& p : params) {
        p.mutable_grad() = all.slice(0, at_, at_ + p.numel()).view(p.sizes()).clone();
        at_ += p.numel();
      }
    }
    if (it >= warm && ar.reg > 0) {
      const double t = static_cast<double>(it - warm) / std::max<double>(1.0, double(ar.iters - warm));
      const double beta = ar.beta_end + (ar.beta_start - ar.beta_end) * std::max(0.0, 1.0 - t);
      at::Tensor reg = torch::zeros({}, shard.x_fp.options());
      for (const auto& r : rounding) reg = reg + (1.0 - (2.0 * rectified_sigmoid(r.v) - 1.0).abs().pow(beta)).sum();
      (reg * ar.reg).backward();
    }
    opt_v.step();
    if (opt_s) {  // cosine annealing to 0 over the unit's iterations (QDrop's CosineAnnealingLR)
      for (auto& group : opt_s->param_groups())
        static_cast<torch::optim::AdamOptions&>(group.options())
            .lr(rc.act_lr * 0.5 * (1.0 + std::cos(M_PI * double(it) / double(ar.iters))));
      opt_s->step();
    }
    if (opt_w) opt_w->step();
  }

  // Hard rounding, the learned scales and steps become the quantized network's.
  torch::NoGradGuard ng;
  int64_t total = 0;
  double flipped = 0, undecided = 0;
  for (size_t i = 0; i < rounding.size(); ++i) {
    const size_t l = static_cast<size_t>(parts.layers[i]);
    const at::Tensor h = rectified_sigmoid(rounding[i].v);
    undecided += (h.gt(1e-3) & h.lt(1 - 1e-3)).sum().item<double>();
    if (learn_scale) grids_[l].scale = rounding[i].scale.detach().abs().clamp_min(1e-8);
    Rounding hard = rounding[i];
    hard.scale = grids_[l].scale;
    weights_[l] = hard.weight(rounding[i].v.ge(0).to(h.dtype()));
    flipped += weights_[l]
                   .ne(quantize_nearest(folded_->param(folded_->layers()[l].name + ".weight"), grids_[l]))
                   .sum()
                   .item<double>();
    total += h.numel();
  }
  for (size_t k = 0; k < steps.size(); ++k)
    if (steps[k].defined()) act_grids_[k].scale = std::max(std::abs(steps[k].item<double>()), kMinStep);
  rep.flipped = total > 0 ? flipped / double(total) : 0;
  rep.undecided = total > 0 ? undecided / double(total) : 0;
}

void ReconQuantizer::run(const at::Tensor& calib, const mpi::Comm& comm, int64_t chunk) {
  const int64_t n = calib.size(0);
  batch_ = std::min(cfg_.adaround.batch, n);
  if (comm.size() > batch_)
    throw InputError("[quant] protocol = \"qdrop\" on " + std::to_string(comm.size()) + " ranks, but a mini-batch of " +
                     std::to_string(batch_) +
                     " images ([quant.adaround] batch, at most the calibration images); "
                     "expected at most " +
                     std::to_string(batch_) + " ranks per point");
  init_steps(calib);

  // The shard: this rank's slots and the images they draw from.
  Shard shard;
  const mpi::Share slots = mpi::share_of(batch_, comm.rank(), comm.size());
  shard.slot_begin = slots.begin;
  shard.slot_end = slots.end;
  shard.strata.resize(static_cast<size_t>(batch_));
  shard.row_of.assign(static_cast<size_t>(n), -1);
  std::vector<int64_t> owned;
  for (int64_t i = 0; i < n; ++i) {
    shard.strata[static_cast<size_t>(i % batch_)].push_back(i);
    if (i % batch_ >= slots.begin && i % batch_ < slots.end) {
      shard.row_of[static_cast<size_t>(i)] = static_cast<int64_t>(owned.size());
      owned.push_back(i);
    }
  }
  shard.x_q = calib.index_select(0, torch::tensor(owned, torch::kLong).to(calib.device()));
  shard.x_fp = shard.x_q;

  auto apply = [&](int unit, const at::Tensor& x, const models::ForwardHooks* hooks) {
    torch::NoGradGuard ng;
    std::vector<at::Tensor> parts;
    for (int64_t b = 0; b < x.size(0); b += chunk)
      parts.push_back(folded_->unit_forward(unit, x.slice(0, b, std::min(x.size(0), b + chunk)), hooks));
    return at::cat(parts);
  };
  reports_.clear();
  const auto& units = folded_->units();
  for (size_t u = 0; u < units.size(); ++u) {
    Timer t;
    const int ui = static_cast<int>(u);
    LayerReport rep;
    rep.name = units[u].name;
    shard.y_fp = apply(ui, shard.x_fp, nullptr);
    rep.cache_bytes = (shard.x_q.numel() + shard.x_fp.numel() + shard.y_fp.numel()) * 4;
    const UnitParts parts = parts_of(ui, shard.x_fp.slice(0, 0, 1));
    for (int l : parts.layers) {
      rep.bits = std::max(rep.bits, grids_[static_cast<size_t>(l)].bits);
      weights_[static_cast<size_t>(l)] = quantize_nearest(
          folded_->param(folded_->layers()[static_cast<size_t>(l)].name + ".weight"), grids_[static_cast<size_t>(l)]);
    }
    rep.mse_nearest = unit_error(ui, shard, comm, chunk);
    if (cfg_.adaround.enabled) reconstruct(ui, shard, comm, rep);
    rep.mse_adaround = unit_error(ui, shard, comm, chunk);
    shard.x_q = apply(ui, shard.x_q, &hooks_);
    shard.x_fp = shard.y_fp;
    rep.seconds = t.seconds();
    reports_.push_back(rep);
    log_info0(
        "qdrop %-14s %zu layers W%d  output mse nearest %.3e -> %.3e  flipped %.1f%%  cache %.0f MiB/rank  (%.1f s)",
        rep.name.c_str(), parts.layers.size(), rep.bits, rep.mse_nearest, rep.mse_adaround, 100.0 * rep.flipped,
        static_cast<double>(rep.cache_bytes) / (1 << 20), rep.seconds);
  }
}

}  // namespace dsgq::quant
