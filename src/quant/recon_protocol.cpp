#include "quant/recon_protocol.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "mpi/comm.hpp"
#include "quant/adam.hpp"
#include "quant/lsq.hpp"
#include "quant/observer.hpp"

namespace dsgq::quant {
namespace {
constexpr double kMinStep = 1.1920928955078125e-07;  // float32 epsilon: LSQ keeps |step| above it

// A 64-bit key from the parts, so that neighbouring keys give unrelated streams.
uint64_t key_of(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x9E3779B97F4A7C15ull;
  for (uint64_t k : parts) h = mix64(h ^ (k + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2)));
  return h;
}

at::Generator generator(std::initializer_list<uint64_t> parts) {
  return at::make_generator<at::CPUGeneratorImpl>(key_of(parts));
}

// Elements per image of a tensor [n, ...] divided by its channels: the positions lp_loss averages over.
int64_t positions(const at::Tensor& y) {
  return y.dim() > 2 ? y.numel() / std::max<int64_t>(1, y.size(0) * y.size(1)) : 1;
}

}  // namespace

struct ReconQuantizer::Shard {
  std::vector<std::vector<int64_t>> strata;  // slot j of a mini-batch draws from strata[j] (images i, i % B == j)
  int64_t slot_begin = 0, slot_end = 0;      // this rank's slots
  std::vector<int64_t> row_of;               // image index -> row in the caches (-1: another rank's)
  at::Tensor x_q, x_fp, y_fp;                // the unit's inputs (quantized / FP network) and FP outputs, owned rows
  at::Tensor fisher;                         // the unit's Fisher weights for the owned rows ([quant.recon] fisher)
};

UnitObjective::UnitObjective(const models::Network& folded, int unit, const at::Tensor& sample,
                             const std::vector<WeightGrid>& grids, const std::vector<ActGrid>& acts,
                             const config::ReconConfig& rc, int64_t global_batch)
    : net_(folded), unit_(unit), acts_(acts), rc_(rc), global_batch_(global_batch) {
  input_shape_.assign(sample.sizes().begin() + 1, sample.sizes().end());
  models::ForwardHooks probe;
  probe.layer_io = [&](int l, const at::Tensor&, const at::Tensor&) { layers_.push_back(l); };
  probe.activation = [&](int s, const at::Tensor& x) {
    sites_.push_back(s);
    site_shapes_.emplace_back(x.sizes().begin() + 1, x.sizes().end());
    return x;
  };
  {
    torch::NoGradGuard ng;
    net_.unit_forward(unit_, sample.slice(0, 0, 1), &probe);
  }
  // h(V0) reproduces the FP weight.
  for (int l : layers_) {
    const WeightGrid& g = grids[static_cast<size_t>(l)];
    const at::Tensor w = net_.param(net_.layers()[static_cast<size_t>(l)].name + ".weight");
    RoundingStart start = rounding_start(w, g.scale);
    floor_.push_back(start.floor);
    v_.push_back(start.v);
    zp_.push_back(g.zero_point);
    scales_.push_back(g.scale.clone().requires_grad_(rc_.weight_scale_lr > 0));
    qmax_.push_back(std::pow(2.0, g.bits) - 1.0);
  }
  site_pos_.assign(acts_.size(), -1);
  for (size_t i = 0; i < sites_.size(); ++i) site_pos_[static_cast<size_t>(sites_[i])] = static_cast<int>(i);
  for (size_t i = 0; i < sites_.size(); ++i) {
    const ActGrid& g = acts_[static_cast<size_t>(sites_[i])];
    int64_t per_image = 1;
    for (int64_t d : site_shapes_[i]) per_image *= d;
    grad_factor_.push_back(lsq_grad_factor(global_batch_ * per_image, std::min(g.bits, 30)));
    steps_.push_back(g.bits >= 32 ? at::Tensor()
                                  : torch::full({1}, g.scale, sample.options()).requires_grad_(rc_.act_lr > 0));
  }
}

UnitObjective::~UnitObjective() = default;

at::Tensor UnitObjective::loss(const at::Tensor& x_q, const at::Tensor& x_fp, const at::Tensor& y,
                               const at::Tensor& u_in, const std::vector<at::Tensor>& u_sites, const at::Tensor& weight,
                               const at::Tensor& rows) {
  const bool mixing = rc_.drop > 0 && rc_.drop < 1;
  std::vector<at::Tensor> soft(net_.layers().size());
  for (size_t i = 0; i < layers_.size(); ++i) {
    // one pass each way (quant/soft_rounding.hpp); learned weight scales ([quant.recon] weight_scale_lr): torch's ops
    soft[static_cast<size_t>(layers_[i])] =
        soft_weight(rectified_sigmoid(v_[i]), floor_[i], zp_[i], scales_[i], qmax_[i]);
  }
  models::ForwardHooks h;
  h.weight = [&](int layer, const at::Tensor& w) {
    const at::Tensor& sw = soft[static_cast<size_t>(layer)];
    return sw.defined() ? sw : w;
  };
  // Each site's ReLU/ReLU6, quantizer and drop mixing in one pass each way (quant/lsq.hpp act_lsq_drop).
  h.act_input = [&](int site, const at::Tensor& x, double hi) {
    const size_t i = static_cast<size_t>(site_pos_[static_cast<size_t>(site)]);
    const ActGrid& g = acts_[static_cast<size_t>(site)];
    return act_lsq_drop(x, hi, steps_[i], g.zero_point, g.bits, grad_factor_[i], mixing ? u_sites[i] : at::Tensor(),
                        rc_.drop);
  };
  at::Tensor x_in;
  if (rows.defined())
    x_in = gather_mix(x_q, x_fp, rows, u_in, rc_.drop);  // drop 0 / 1: the rows of x_q / x_fp
  else
    x_in = mixing ? drop_mix(x_q, x_fp, u_in, rc_.drop) : (rc_.drop >= 1 ? x_fp : x_q);
  const at::Tensor out = net_.unit_forward(unit_, x_in, &h);
  const double count = static_cast<double>(global_batch_ * positions(out));
  if (!weight.defined()) return sq_error_sum(out, y, rows).div(count);  // one pass each way
  const at::Tensor t = rows.defined() ? y.index_select(0, rows) : y,
                   w = rows.defined() ? weight.index_select(0, rows) : weight;
  return ((out - t).square() * w).sum().div(count);
}

at::Tensor fisher_weights(const models::Network& folded, int unit, const at::Tensor& x_q, const at::Tensor& y_fp,
                          const models::ForwardHooks& hooks, int64_t batch, int64_t chunk) {
  const int units = static_cast<int>(folded.units().size());
  auto rest = [&](at::Tensor z) {  // the FP network after the unit
    for (int k = unit + 1; k < units; ++k) z = folded.unit_forward(k, z, nullptr);
    return z;
  };
  at::AutoGradMode grad_mode(true);
  std::vector<at::Tensor> parts;
  for (int64_t b = 0; b < x_q.size(0); b += chunk) {
    const int64_t e = std::min(x_q.size(0), b + chunk);
    at::Tensor z, log_p_fp;
    {
      torch::NoGradGuard ng;
      z = folded.unit_forward(unit, x_q.slice(0, b, e), &hooks);
      log_p_fp = at::log_softmax(rest(y_fp.slice(0, b, e)), 1);
    }
    z.requires_grad_(true);
    const at::Tensor kl = (log_p_fp.exp() * (log_p_fp - at::log_softmax(rest(z), 1))).sum() / double(batch);
    kl.backward();
    parts.push_back((z.grad().abs() + 1.0).square());
  }
  return at::cat(parts);
}

at::Tensor UnitObjective::regularizer(double beta, int part, int parts) const {
  at::Tensor reg;
  for (const auto& v : v_) {
    const mpi::Share share = mpi::share_of(v.numel(), part, parts);
    const at::Tensor h = rectified_sigmoid(v.view(-1).slice(0, share.begin, share.end));
    const at::Tensor term = rounding_regularizer(h, beta);  // one pass each way (quant/soft_rounding.hpp)
    reg = reg.defined() ? reg + term : term;
  }
  return reg;
}

at::Tensor UnitObjective::hard_weight(size_t i) const {
  torch::NoGradGuard ng;
  return soft_weight(v_[i].detach().ge(0).to(floor_[i].dtype()), floor_[i], zp_[i],
                     scales_[i].detach().abs().clamp_min(1e-8), qmax_[i]);
}

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
  // The quantized network's sites: ReLU/ReLU6 and fake quantization in one pass (act_lsq_drop with drop 0 computes
  // torch's fake_quantize_per_tensor_affine bit for bit: x * (1/scale) in float32, rounded half to even, clamped).
  hooks_.act_input = [this](int site, const at::Tensor& x, double hi) {
    const ActGrid& g = act_grids_[static_cast<size_t>(site)];
    const at::Tensor step = g.bits >= 32 ? at::Tensor() : torch::full({1}, g.scale, x.options());
    return act_lsq_drop(x, hi, step, g.zero_point, g.bits, 1.0, at::Tensor(), 0.0);
  };
}

ReconQuantizer::~ReconQuantizer() = default;

// Step sizes from the activation observer on the network with FP weights, each site seeing the quantized
// activations of the sites before it (the first observer_images images, split over the ranks).
void ReconQuantizer::init_steps(const at::Tensor& calib, const mpi::Comm& comm) {
  ActQuantizers acts(*folded_, activation_bits(*folded_, cfg_), cfg_.act_observer);
  models::ForwardHooks h;
  h.activation = [&](int site, const at::Tensor& x) { return acts(site, x); };
  const at::Tensor images = calib.slice(0, 0, std::min(calib.size(0), cfg_.recon.observer_images));
  if (images.size(0) < comm.size())
    throw InputError("[quant.recon] observer_images = " + std::to_string(cfg_.recon.observer_images) + " gives " +
                     std::to_string(images.size(0)) + " images to " + std::to_string(comm.size()) +
                     " ranks; expected at least one image per rank");
  const mpi::Share mine = mpi::share_of(images.size(0), comm.rank(), comm.size());
  acts.calibrate([&] { folded_->forward(images.slice(0, mine.begin, mine.end), &h); }, &comm);
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

namespace {

// This step's rows of the local caches: slot j takes image strata[j][floor(u_j * |strata[j]|)]; every rank draws all
// B numbers, so the streams stay aligned whatever the rank count.
std::vector<int64_t> draw_rows(const std::vector<std::vector<int64_t>>& strata, const std::vector<int64_t>& row_of,
                               int64_t slot_begin, int64_t slot_end, at::Generator& draw) {
  const at::Tensor pick = at::rand({static_cast<int64_t>(strata.size())}, draw, at::kDouble);
  const double* pu = pick.data_ptr<double>();
  std::vector<int64_t> rows;
  for (int64_t j = slot_begin; j < slot_end; ++j) {
    const auto& st = strata[static_cast<size_t>(j)];
    const auto k = std::min<int64_t>(static_cast<int64_t>(pu[j] * double(st.size())), int64_t(st.size()) - 1);
    rows.push_back(row_of[static_cast<size_t>(st[static_cast<size_t>(k)])]);
  }
  return rows;
}

// Drop masks [n, shape...] for slots first_slot.. of step `step`: row r from the stream (seed, unit, step, slot,
// stream).
at::Tensor drop_masks(const std::vector<int64_t>& shape, int64_t n, uint64_t seed, int unit, int64_t step,
                      int64_t first_slot, uint64_t stream, c10::Device device) {
  std::vector<int64_t> full = {n};
  full.insert(full.end(), shape.begin(), shape.end());
  at::Tensor u = at::empty(full, at::kFloat);
  const int64_t per = n > 0 ? u.numel() / n : 0;
  for (int64_t r = 0; r < n; ++r)
    fill_uniform(u.data_ptr<float>() + r * per, per,
                 key_of({seed, static_cast<uint64_t>(unit), static_cast<uint64_t>(step),
                         static_cast<uint64_t>(first_slot + r), stream}));
  return u.to(device);
}

// Sums every parameter's gradient over the ranks in one all-reduce.
void allreduce_grads(const std::vector<at::Tensor>& params, const mpi::Comm& comm) {
  std::vector<at::Tensor> flat;
  for (const auto& p : params)
    flat.push_back(p.grad().defined() ? p.grad().flatten() : at::zeros({p.numel()}, p.options()));
  at::Tensor all = at::cat(flat);
  comm.allreduce_sum(all);
  int64_t offset = 0;
  for (const auto& p : params) {
    p.mutable_grad() = all.slice(0, offset, offset + p.numel()).view(p.sizes());
    offset += p.numel();
  }
}

// The unit's optimisers: Adam on V; on the steps (cosine-annealed, QDrop's CosineAnnealingLR); on the weight scales
// (quant/adam.hpp: torch::optim::Adam's arithmetic, one pass per parameter).
struct UnitOptimizers {
  std::unique_ptr<FusedAdam> v, steps, scales;
  std::vector<at::Tensor> params, step_list;  // every leaf; the learned steps
  UnitOptimizers(UnitObjective& obj, const config::AdaRoundConfig& ar, const config::ReconConfig& rc) {
    for (const auto& s : obj.steps())
      if (s.defined() && s.requires_grad()) step_list.push_back(s);
    v = std::make_unique<FusedAdam>(obj.v(), ar.lr);
    params = obj.v();
    if (!step_list.empty()) {
      steps = std::make_unique<FusedAdam>(step_list, rc.act_lr);
      params.insert(params.end(), step_list.begin(), step_list.end());
    }
    if (rc.weight_scale_lr > 0) {
      scales = std::make_unique<FusedAdam>(obj.scales(), rc.weight_scale_lr);
      params.insert(params.end(), obj.scales().begin(), obj.scales().end());
    }
  }
  void step(double step_lr) {
    v->step();
    if (steps) {
      steps->set_lr(step_lr);
      steps->step();
    }
    if (scales) scales->step();
  }
};

}  // namespace

void ReconQuantizer::reconstruct(int unit, Shard& shard, const mpi::Comm& comm, LayerReport& rep) {
  const config::AdaRoundConfig& ar = cfg_.adaround;
  const config::ReconConfig& rc = cfg_.recon;
  // [quant.recon] bf16: the unit's layers in bfloat16 while its variables are learned; everything after (the error
  // figures, the next unit's caches, the quantized network) in float32 again.
  struct Bf16Scope {
    models::Network& net;
    ~Bf16Scope() { net.set_conv_bf16(false); }
  } bf16_scope{*folded_};
  folded_->set_conv_bf16(rc.bf16);
  UnitObjective obj(*folded_, unit, shard.x_fp.slice(0, 0, 1), grids_, act_grids_, rc, batch_);
  UnitOptimizers opt(obj, ar, rc);
  const bool mixing = rc.drop > 0 && rc.drop < 1;
  const c10::Device device = shard.x_q.device();
  at::Generator draw = generator({seed_, 0x5eed0001ull, static_cast<uint64_t>(unit)});
  const int64_t warm = static_cast<int64_t>(ar.warmup * static_cast<double>(ar.iters));
  for (int64_t it = 0; it < ar.iters; ++it) {
    const std::vector<int64_t> rows = draw_rows(shard.strata, shard.row_of, shard.slot_begin, shard.slot_end, draw);
    const at::Tensor idx = torch::tensor(rows, torch::kLong).to(device);
    const int64_t n = static_cast<int64_t>(rows.size());
    at::Tensor u_in;
    std::vector<at::Tensor> u_sites(obj.sites().size());
    if (mixing) {  // stream 0 for the unit input, 1 + i for site i
      u_in = drop_masks(obj.input_shape(), n, seed_, unit, it, shard.slot_begin, 0, device);
      for (size_t i = 0; i < obj.sites().size(); ++i)
        u_sites[i] = drop_masks(obj.site_shapes()[i], n, seed_, unit, it, shard.slot_begin, 1 + i, device);
    }
    for (const auto& p : opt.params) p.mutable_grad() = at::Tensor();
    for (const auto& s : opt.step_list) s.data().abs_().clamp_(kMinStep);  // LSQ keeps the step positive
    obj.loss(shard.x_q, shard.x_fp, shard.y_fp, u_in, u_sites, shard.fisher, idx).backward();
    if (it >= warm && ar.reg > 0) {  // beta annealed linearly from beta_start to beta_end after the warm-up
      // Each rank takes its share of every V's elements, so the all-reduce below adds each element's regulariser
      // gradient exactly once (as with one rank) and the ranks split its cost.
      const double t = static_cast<double>(it - warm) / std::max<double>(1.0, double(ar.iters - warm));
      const double beta = ar.beta_end + (ar.beta_start - ar.beta_end) * std::max(0.0, 1.0 - t);
      (obj.regularizer(beta, comm.rank(), comm.size()) * ar.reg).backward();
    }
    if (comm.size() > 1) allreduce_grads(opt.params, comm);
    opt.step(rc.act_lr * 0.5 * (1.0 + std::cos(M_PI * double(it) / double(ar.iters))));
  }
  finish_unit(obj, rep);
}

// Hard rounding; the learned scales and steps become the quantized network's.
void ReconQuantizer::finish_unit(UnitObjective& obj, LayerReport& rep) {
  torch::NoGradGuard ng;
  int64_t total = 0;
  double flipped = 0, undecided = 0;
  for (size_t i = 0; i < obj.layers().size(); ++i) {
    const size_t l = static_cast<size_t>(obj.layers()[i]);
    const at::Tensor h = rectified_sigmoid(obj.v()[i]);
    undecided += (h.gt(1e-3) & h.lt(1 - 1e-3)).sum().item<double>();
    if (cfg_.recon.weight_scale_lr > 0) grids_[l].scale = obj.scales()[i].detach().abs().clamp_min(1e-8);
    weights_[l] = obj.hard_weight(i);
    const at::Tensor w = folded_->param(folded_->layers()[l].name + ".weight");
    flipped += weights_[l].ne(quantize_nearest(w, grids_[l])).sum().item<double>();
    total += h.numel();
  }
  for (size_t i = 0; i < obj.sites().size(); ++i)
    if (obj.steps()[i].defined())
      act_grids_[static_cast<size_t>(obj.sites()[i])].scale =
          std::max(std::abs(obj.steps()[i].item<double>()), kMinStep);
  rep.flipped = total > 0 ? flipped / double(total) : 0;
  rep.undecided = total > 0 ? undecided / double(total) : 0;
}

// This rank's slots of the mini-batch and the calibration images they draw from (its cache rows).
ReconQuantizer::Shard ReconQuantizer::make_shard(const at::Tensor& calib, const mpi::Comm& comm) const {
  const int64_t n = calib.size(0);
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
  return shard;
}

// The unit's output for every cached row, `chunk` rows at a time.
at::Tensor ReconQuantizer::apply_unit(int unit, const at::Tensor& x, const models::ForwardHooks* hooks,
                                      int64_t chunk) const {
  torch::NoGradGuard ng;
  std::vector<at::Tensor> parts;
  for (int64_t b = 0; b < x.size(0); b += chunk)
    parts.push_back(folded_->unit_forward(unit, x.slice(0, b, std::min(x.size(0), b + chunk)), hooks));
  return at::cat(parts);
}

void ReconQuantizer::run(const at::Tensor& calib, const mpi::Comm& comm, int64_t chunk) {
  batch_ = std::min(cfg_.adaround.batch, calib.size(0));
  if (comm.size() > batch_)
    throw InputError("[quant] protocol = \"qdrop\" on " + std::to_string(comm.size()) + " ranks, but a mini-batch of " +
                     std::to_string(batch_) +
                     " images ([quant.adaround] batch, at most the calibration images); expected at most " +
                     std::to_string(batch_) + " ranks per point");
  init_steps(calib, comm);
  Shard shard = make_shard(calib, comm);
  reports_.clear();
  const auto& units = folded_->units();
  for (size_t u = 0; u < units.size(); ++u) {
    Timer t;
    const int ui = static_cast<int>(u);
    LayerReport rep;
    rep.name = units[u].name;
    shard.y_fp = apply_unit(ui, shard.x_fp, nullptr, chunk);
    rep.cache_bytes = (shard.x_q.numel() + shard.x_fp.numel() + shard.y_fp.numel()) * 4;
    std::vector<int> layers;
    models::ForwardHooks probe;
    probe.layer_io = [&](int l, const at::Tensor&, const at::Tensor&) { layers.push_back(l); };
    apply_unit(ui, shard.x_fp.slice(0, 0, 1), &probe, 1);
    for (int l : layers) {  // round to nearest first: the "before" error
      const size_t k = static_cast<size_t>(l);
      rep.bits = std::max(rep.bits, grids_[k].bits);
      weights_[k] = quantize_nearest(folded_->param(folded_->layers()[k].name + ".weight"), grids_[k]);
    }
    rep.mse_nearest = unit_error(ui, shard, comm, chunk);
    // BRECQ takes the Fisher weights with the unit at its starting point: nearest rounding, the initial steps.
    if (cfg_.recon.fisher && cfg_.adaround.enabled)
      shard.fisher = fisher_weights(*folded_, ui, shard.x_q, shard.y_fp, hooks_, batch_, chunk);
    if (shard.fisher.defined()) rep.cache_bytes += shard.fisher.numel() * 4;
    if (cfg_.adaround.enabled) reconstruct(ui, shard, comm, rep);
    rep.mse_adaround = unit_error(ui, shard, comm, chunk);
    shard.x_q = apply_unit(ui, shard.x_q, &hooks_, chunk);
    shard.x_fp = shard.y_fp;
    rep.seconds = t.seconds();
    reports_.push_back(rep);
    log_info0(
        "qdrop %-14s %zu layers W%d  output mse nearest %.3e -> %.3e  flipped %.1f%%  cache %.0f MiB/rank  (%.1f s)",
        rep.name.c_str(), layers.size(), rep.bits, rep.mse_nearest, rep.mse_adaround, 100.0 * rep.flipped,
        static_cast<double>(rep.cache_bytes) / (1 << 20), rep.seconds);
  }
}

}  // namespace dsgq::quant
