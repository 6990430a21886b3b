#include "synth/objective.hpp"

#include <torch/torch.h>

#include <cmath>
#include <numeric>

#include "core/error.hpp"
#include "models/bn_kernels.hpp"
#include "models/network.hpp"
#include "synth/bn_stats.hpp"

namespace dsgq::synth {

Objective::Objective(const models::Network& net, ObjectiveConfig cfg, const mpi::Comm& comm)
    : net_(net), cfg_(std::move(cfg)), comm_(comm), n_layers_(static_cast<int64_t>(net.bns().size())) {
  if (cfg_.sda)
    DSGQ_CHECK(
        static_cast<int64_t>(cfg_.delta.size()) == n_layers_ && static_cast<int64_t>(cfg_.gamma.size()) == n_layers_,
        "one margin per BN layer");
  DSGQ_CHECK(!(cfg_.batch_stats && (cfg_.lse || cfg_.official)), "batch statistics exclude LSE and the official form");
  DSGQ_CHECK(!(cfg_.deepinversion && (cfg_.sda || cfg_.lse || cfg_.official || cfg_.batch_stats)),
             "deepinversion has its own terms only");
  if (!cfg_.deepinversion) return;
  std::vector<int64_t> sum_idx, sq_idx, layer_of, pad_pos;
  std::vector<at::Tensor> rm, rv;
  for (const auto& bn : net_.bns()) {
    rm.push_back(net_.param(bn.name + ".running_mean").to(at::kDouble));
    rv.push_back(net_.param(bn.name + ".running_var").to(at::kDouble));
    di_bn_.max_channels = std::max(di_bn_.max_channels, rm.back().numel());
  }
  int64_t off = 0;
  for (int64_t l = 0; l < n_layers_; ++l) {
    const int64_t C = rm[static_cast<size_t>(l)].numel();
    for (int64_t c = 0; c < C; ++c) {
      sum_idx.push_back(off + c);
      sq_idx.push_back(off + C + c);
      layer_of.push_back(l);
      pad_pos.push_back(l * di_bn_.max_channels + c);
    }
    off += 2 * C;
  }
  const auto on_device = [&](const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kLong).to(net_.device());
  };
  di_bn_.sum_idx = on_device(sum_idx);
  di_bn_.sq_idx = on_device(sq_idx);
  di_bn_.layer_of = on_device(layer_of);
  di_bn_.pad_pos = on_device(pad_pos);
  const auto joined = [&](const std::vector<at::Tensor>& v) {  // a network without BN: no terms, an empty vector
    return (v.empty() ? torch::zeros({0}, torch::kDouble) : torch::cat(v)).to(net_.device());
  };
  di_bn_.running_mean = joined(rm);
  di_bn_.running_var = joined(rv);
  std::vector<double> w(static_cast<size_t>(n_layers_), 1.0);
  if (!w.empty()) w[0] = cfg_.first_bn_weight;
  di_bn_.weight = torch::tensor(w, torch::kDouble).to(net_.device());
  if (cfg_.stem_l1 != 0) {  // the stem prior's standardisation, [1, C, 1, 1]
    DSGQ_CHECK(n_layers_ > 0, "the stem prior needs a BN layer");
    const Target t0 = bn_targets(net_).front();
    di_bn_.stem_mean = t0.mean.view({1, -1, 1, 1});
    di_bn_.stem_std = t0.std.view({1, -1, 1, 1});
  }
}

int64_t Objective::lse_layer(int64_t dataset_index, int64_t batch_position) const {
  if (!cfg_.lse) return -1;
  if (cfg_.official) return batch_position < std::min(kOfficialLseLayers, n_layers_) ? batch_position : -1;
  return dataset_index % n_layers_;
}

namespace {

// SCI of docs/method.md section 4.1 over the global batch: every rank gathers the batch's normalised rows, keeps the
// gradient of its own (rows batch_offset..), and computes the same value. Collective.
at::Tensor sci_term(const at::Tensor& x, const BatchSlice& slice, const mpi::Comm& comm, double* value) {
  const int64_t n = x.size(0), B = slice.global_batch;
  const at::Tensor flat = x.reshape({n, -1});
  const at::Tensor local = flat / flat.norm(2, 1, true);
  at::Tensor rows = local;
  if (comm.size() > 1) {  // the others' rows as constants, this rank's own with their gradient
    const at::Tensor every = comm.allgatherv(local);
    rows = torch::cat({every.slice(0, 0, slice.batch_offset), local, every.slice(0, slice.batch_offset + n, B)});
  }
  const at::Tensor phi = rows.to(at::kDouble);
  const auto [lam_s, vec_s] = at::linalg_eigh(phi.matmul(phi.t()));
  at::Tensor lam_g, vec_g;
  {
    const at::Tensor g = slice.sci_gauss.reshape({B, -1}).to(at::kDouble);
    const at::Tensor pg = g / g.norm(2, 1, true);
    std::tie(lam_g, vec_g) = at::linalg_eigh(pg.matmul(pg.t()));
  }
  const at::Tensor lam_hat = (lam_g - lam_g.min()) / (lam_g.max() - lam_g.min());
  const at::Tensor sci = 1e-4 * (lam_s - lam_g).square().mean() + (lam_hat * (vec_s * vec_g).sum(0).abs()).sum();
  *value = sci.item<double>();
  return sci;
}

}  // namespace

at::Tensor Objective::evaluate(const at::Tensor& x, const BatchSlice& slice, LossValue* value) const {
  if (cfg_.deepinversion) return deepinversion_loss(x, slice, value);
  at::Tensor loss = cfg_.batch_stats ? batch_loss(x, slice, value) : per_sample_loss(x, slice, value);
  if (cfg_.sci_weight > 0) {
    double sci = 0;
    const at::Tensor term = sci_term(x, slice, comm_, &sci);
    const double scale = cfg_.sci_weight / static_cast<double>(n_layers_);
    value->terms.push_back({"sci", sci});
    value->total += scale * sci;
    loss = loss + (scale * term).to(loss.scalar_type());
  }
  return loss;
}

namespace {

// TV-L2 of the rolled images xj over the whole batch: the sum of the Frobenius norms of 4 difference images, their
// squared sums all-reduced (collective). `global` gets the value; the returned surrogate has its gradient w.r.t.
// this rank's share (d sqrt(S) = dS / (2 sqrt(S))). With `ordered` (a slice of the batch), the squared sums are
// taken per image in double and added in global order, so their value does not depend on the ranks' split (the
// rank-local float sums do, in their last bits; deepinversion's crop and zoom need this: the pixels a crop leaves out
// get the priors' gradient alone, which Adam scales up, so those bits grow into visible differences within 20 steps).
at::Tensor tv_l2(const at::Tensor& xj, const mpi::Comm& comm, double& global, const BatchSlice* ordered = nullptr) {
  const int64_t H = xj.size(2), W = xj.size(3);
  const at::Tensor diffs[4] = {xj.slice(3, 0, W - 1) - xj.slice(3, 1, W), xj.slice(2, 0, H - 1) - xj.slice(2, 1, H),
                               xj.slice(2, 1, H).slice(3, 0, W - 1) - xj.slice(2, 0, H - 1).slice(3, 1, W),
                               xj.slice(2, 0, H - 1).slice(3, 0, W - 1) - xj.slice(2, 1, H).slice(3, 1, W)};
  std::vector<double> sq(4);
  at::Tensor sq_local[4];
  if (ordered) {
    const int64_t B = ordered->global_batch, n = xj.size(0), pos = ordered->batch_offset;
    std::vector<double> per_image(static_cast<size_t>(4 * B), 0.0);  // [4, B]: this rank's images at their positions
    for (int k = 0; k < 4; ++k) {
      sq_local[k] = diffs[k].square().sum();
      const at::Tensor s = diffs[k].detach().to(at::kDouble).square().sum({1, 2, 3}).cpu().contiguous();
      std::copy(s.data_ptr<double>(), s.data_ptr<double>() + n, per_image.begin() + k * B + pos);
    }
    comm.allreduce_sum(per_image);  // one rank holds each position: the sums are exact
    for (int k = 0; k < 4; ++k)
      sq[k] = std::accumulate(per_image.begin() + k * B, per_image.begin() + (k + 1) * B, 0.0);
  } else {
    for (int k = 0; k < 4; ++k) {
      sq_local[k] = diffs[k].square().sum();
      sq[k] = sq_local[k].item<double>();
    }
    comm.allreduce_sum(sq);
  }
  at::Tensor surrogate = torch::zeros({}, xj.options().requires_grad(false));
  global = 0;
  for (int k = 0; k < 4; ++k) {
    const double norm = std::sqrt(sq[k]);
    global += norm;
    if (norm > 0) surrogate = surrogate + sq_local[k] / (2.0 * norm);
  }
  return surrogate;
}

// Per-channel sums of F and F^2 (in double) over the global batch, for the input x itself (with_input) and every BN
// input of x's forward pass, in that order, all-reduced in one call with an identity backward (collective). Entry k
// spans global[off_k, off_k + 2 C_k): C_k sums of F, then C_k of F^2, over counts[k] = B*H_k*W_k elements.
struct BatchSums {
  at::Tensor global, logits;
  at::Tensor first_bn_input;  // with keep_first_bn_input: the first BN layer's input [n, C, H, W]
  std::vector<int64_t> counts, channels;
};
BatchSums batch_sums(const models::Network& net, const at::Tensor& x, int64_t global_batch, bool with_input,
                     const mpi::Comm& comm, bool keep_first_bn_input = false) {
  BatchSums out;
  std::vector<at::Tensor> sums;
  auto shape = [&](const at::Tensor& f) {
    out.counts.push_back(global_batch * f.size(2) * f.size(3));
    out.channels.push_back(f.size(1));
  };
  models::ForwardHooks hooks;
  hooks.bn_input = [&](int bn, const at::Tensor& f) {  // the sums come with the BN's own pass
    shape(f);
    if (keep_first_bn_input && bn == 0) out.first_bn_input = f;
  };
  hooks.bn_sums = [&](int, const at::Tensor& s) { sums.push_back(s); };
  if (with_input) {
    shape(x);
    sums.push_back(models::channel_sums(x));
  }
  out.logits = net.forward(x, &hooks);
  out.global = mpi::allreduce_sum_autograd(torch::cat(sums), comm);
  return out;
}

}  // namespace

at::Tensor Objective::per_sample_loss(const at::Tensor& x, const BatchSlice& slice, LossValue* value) const {
  const int64_t n = x.size(0), B = slice.global_batch;
  const auto opts = x.options().requires_grad(false);
  const std::vector<Target> targets = bn_targets(net_);
  // Per-sample LSE weights for every layer: [L, n]. Paper: weight 2 on the own layer (after squaring);
  // official: factor 2 on the own layer (before squaring).
  at::Tensor own = torch::full({n}, -1, torch::kLong);
  for (int64_t i = 0; i < n; ++i) own[i] = lse_layer(slice.first_global + i, slice.batch_offset + i);
  own = own.to(x.device());

  at::Tensor bn_sum = torch::zeros({}, opts);
  models::ForwardHooks hooks;
  hooks.bn_moments = [&](int l, const at::Tensor& mean, const at::Tensor& var) {  // per_sample_stats, fused
    const Stats st{mean, (var + kStatEps).sqrt()};
    at::Tensor weight, factor;
    if (cfg_.lse) {
      const at::Tensor is_own = own.eq(l).to(x.scalar_type());
      (cfg_.official ? factor : weight) = 1.0 + is_own;
    }
    const double delta = cfg_.sda ? cfg_.delta[l] : 0.0, gamma = cfg_.sda ? cfg_.gamma[l] : 0.0;
    bn_sum = bn_sum + alignment_term(st, targets[l], delta, gamma, weight, factor, B);
  };
  const at::Tensor logits = net_.forward(x, &hooks);
  const at::Tensor input_term = alignment_term(per_sample_stats(x), input_target(x.size(1), opts), 0.0, 0.0, {}, {}, B);

  std::vector<double> local = {bn_sum.item<double>(), input_term.item<double>()};
  at::Tensor surrogate = bn_sum + input_term;
  double tv_global = 0;
  if (cfg_.official) {
    // 2 x cross-entropy with the random labels (mean over the global batch), on the un-jittered images.
    const at::Tensor ce =
        torch::nn::functional::cross_entropy(logits, slice.labels,
                                             torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)) /
        double(B);
    // Priors on a cyclic roll of the images: TV-L2 (sum of Frobenius norms of 4 difference images, a norm over the
    // whole batch: its squared sums are all-reduced) and L2 (mean over samples of ||x_n||).
    const at::Tensor xj = torch::roll(x, {slice.roll, slice.roll}, {2, 3});
    const at::Tensor tv_surrogate = tv_l2(xj, comm_, tv_global);
    const at::Tensor l2 = xj.reshape({n, -1}).norm(2, 1).sum() / double(B);
    local.push_back(ce.item<double>());
    local.push_back(l2.item<double>());
    surrogate = surrogate + 2.0 * ce + 0.01 * tv_surrogate + 0.01 * l2;
  }
  comm_.allreduce_sum(local);
  value->terms = {{"bn", local[0]}, {"input", local[1]}};
  value->total = local[0] + local[1];
  if (cfg_.official) {
    value->terms.push_back({"ce", local[2]});
    value->terms.push_back({"tv", tv_global});
    value->terms.push_back({"l2", local[3]});
    value->total += 2.0 * local[2] + 0.01 * tv_global + 0.01 * local[3];
  }
  return surrogate;
}

at::Tensor Objective::batch_loss(const at::Tensor& x, const BatchSlice& slice, LossValue* value) const {
  // Per-channel sums and sums of squares of the input and every BN input, over the global batch; mean and unbiased
  // variance are formed from the global sums.
  const BatchSums bs = batch_sums(net_, x, slice.global_batch, /*with_input=*/true, comm_);
  const at::Tensor& global = bs.global;
  const std::vector<int64_t>&counts = bs.counts, &channels = bs.channels;

  const std::vector<Target> targets = bn_targets(net_);
  at::Tensor bn_sum = torch::zeros({}, global.options()), input_term;
  int64_t off = 0;
  for (size_t k = 0; k < counts.size(); ++k) {
    const int64_t C = channels[k];
    const double N = static_cast<double>(counts[k]);
    const at::Tensor s1 = global.slice(0, off, off + C), s2 = global.slice(0, off + C, off + 2 * C);
    off += 2 * C;
    const at::Tensor mean = s1 / N;
    const at::Tensor stdv = ((s2 - N * mean.square()) / (N - 1.0) + kStatEps).clamp_min(0).sqrt();
    if (k == 0) {
      input_term = mean.square().sum() + (stdv - 1.0).square().sum();
      continue;
    }
    const int64_t l = static_cast<int64_t>(k) - 1;
    const double delta = cfg_.sda ? cfg_.delta[l] : 0.0, gamma = cfg_.sda ? cfg_.gamma[l] : 0.0;
    const at::Tensor dm = ((mean - targets[l].mean.to(at::kDouble)).abs() - delta).relu();
    const at::Tensor ds = ((stdv - targets[l].std.to(at::kDouble)).abs() - gamma).relu();
    bn_sum = bn_sum + dm.square().sum() + ds.square().sum();
  }
  value->terms = {{"bn", bn_sum.item<double>()}, {"input", input_term.item<double>()}};
  value->total = value->terms[0].second + value->terms[1].second;
  return (bn_sum + input_term).to(x.scalar_type());
}

at::Tensor Objective::deepinversion_loss(const at::Tensor& x, const BatchSlice& slice, LossValue* value) const {
  const int64_t B = slice.global_batch, n = x.size(0);
  at::Tensor xj;
  if (slice.crop_index.defined()) {
    // The training augmentation: pad with black (pixel value 0 in the network's units), crop per image.
    const models::InputSpec& in = net_.input();
    const int64_t C = x.size(1), H = x.size(2), W = x.size(3), p = slice.crop_pad;
    std::vector<double> black(static_cast<size_t>(C));
    for (int64_t ch = 0; ch < C; ++ch)
      black[static_cast<size_t>(ch)] = -in.mean[static_cast<size_t>(ch)] / in.std[static_cast<size_t>(ch)];
    const at::Tensor fill =
        torch::tensor(black, torch::kDouble).to(x.options().requires_grad(false)).view({1, C, 1, 1});
    const at::Tensor padded = at::constant_pad_nd(x - fill, {p, p, p, p}) + fill;
    xj = padded.reshape({n, C, -1}).gather(2, slice.crop_index.unsqueeze(1).expand({n, C, H * W})).view({n, C, H, W});
  } else if (slice.zoom_theta.defined()) {
    // IntraQ's local object reinforcement: each image its own resized crop (or itself), bilinear, pixel centres
    // aligned as torchvision's resize.
    namespace F = torch::nn::functional;
    const at::Tensor grid =
        F::affine_grid(slice.zoom_theta.to(x.scalar_type()), {n, x.size(1), x.size(2), x.size(3)}, false);
    xj = F::grid_sample(
        x, grid, F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false));
  } else {
    xj = torch::roll(x, {slice.jitter_h, slice.jitter_w}, {2, 3});
    if (slice.flip) xj = xj.flip({3});
  }
  const BatchSums bs = batch_sums(net_, xj, B, /*with_input=*/false, comm_, /*keep_first_bn_input=*/cfg_.stem_l1 != 0);

  // Batch statistics against the running ones: ||var - running_var||_2 + ||mean - running_mean||_2 per layer, the
  // variance biased, the first layer weighted by first_bn_weight. Global (the same on every rank). All layers at once:
  // the per-layer norms are the row norms of a [L, C_max] matrix padded with zeros.
  DSGQ_CHECK(static_cast<int64_t>(bs.counts.size()) == n_layers_, "one set of batch sums per BN layer");
  const BnTerm& t = di_bn_;
  std::vector<double> counts(bs.counts.begin(), bs.counts.end());
  const at::Tensor N = torch::tensor(counts, torch::kDouble).to(bs.global.device()).index_select(0, t.layer_of);
  const at::Tensor mean = bs.global.index_select(0, t.sum_idx) / N;
  const at::Tensor var = bs.global.index_select(0, t.sq_idx) / N - mean.square();
  const auto row_norms = [&](const at::Tensor& d) {
    return torch::zeros({n_layers_ * t.max_channels}, d.options())
        .index_copy(0, t.pad_pos, d)
        .view({n_layers_, t.max_channels})
        .norm(2, 1);
  };
  const at::Tensor bn = ((row_norms(var - t.running_var) + row_norms(mean - t.running_mean)) * t.weight).sum();

  // This rank's shares of the other terms (sums over its images; the global means divide by B or the global count).
  at::Tensor ce;
  if (slice.soft_target.defined()) {  // IntraQ's soft inception loss: the squared miss of the class's probability
    const at::Tensor p = torch::softmax(bs.logits, 1).gather(1, slice.labels.unsqueeze(1)).squeeze(1);
    ce = (p - slice.soft_target.to(p.scalar_type())).square().sum();
  } else if (slice.mix_other.defined()) {  // a target mixing two classes: the cross-entropy is linear in the target
    const at::Tensor logp = torch::log_softmax(bs.logits, 1);
    const at::Tensor w = slice.mix_weight.to(logp.scalar_type());
    ce = -(w * logp.gather(1, slice.labels.unsqueeze(1)).squeeze(1) +
           (1 - w) * logp.gather(1, slice.mix_other.unsqueeze(1)).squeeze(1))
              .sum();
  } else {
    ce = torch::nn::functional::cross_entropy(bs.logits, slice.labels,
                                              torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum));
  }
  // The priors on the images themselves when cropping or zooming (a black border or a scaled-up crop is not the
  // image's), else on the shifted ones.
  const bool per_image_view = slice.crop_index.defined() || slice.zoom_theta.defined();
  const at::Tensor& px = per_image_view ? x : xj;
  const int64_t H = px.size(2), W = px.size(3), C = px.size(1);
  // A term whose weight is 0 is neither computed nor listed (the defaults leave TV-L1 and L2 off).
  at::Tensor tv_l1 = torch::zeros({}, x.options());
  if (cfg_.tv_l1 != 0) {
    const at::Tensor diffs[4] = {px.slice(3, 0, W - 1) - px.slice(3, 1, W), px.slice(2, 0, H - 1) - px.slice(2, 1, H),
                                 px.slice(2, 1, H).slice(3, 0, W - 1) - px.slice(2, 0, H - 1).slice(3, 1, W),
                                 px.slice(2, 0, H - 1).slice(3, 0, W - 1) - px.slice(2, 1, H).slice(3, 1, W)};
    const double per_image[4] = {double(C * H * (W - 1)), double(C * (H - 1) * W), double(C * (H - 1) * (W - 1)),
                                 double(C * (H - 1) * (W - 1))};
    for (int k = 0; k < 4; ++k) tv_l1 = tv_l1 + diffs[k].abs().sum() / (per_image[k] * double(B) * 255.0);
  }
  double tv_l2_global = 0;
  at::Tensor tv_l2_surrogate = torch::zeros({}, x.options());
  if (cfg_.tv_l2 != 0) tv_l2_surrogate = tv_l2(px, comm_, tv_l2_global, per_image_view ? &slice : nullptr);
  const at::Tensor l2 = cfg_.l2 != 0 ? px.reshape({n, -1}).norm(2, 1).sum() / double(B) : torch::zeros({}, x.options());

  // The stem's sparsity prior: mean over the global batch's elements of |F - running mean| / running std, F the first
  // BN layer's input (its batch variance is held to the running one by the BN term, so this favours heavy tails).
  at::Tensor stem_l1 = torch::zeros({}, x.options());
  if (cfg_.stem_l1 != 0) {
    const at::Tensor& f = bs.first_bn_input;
    const at::Tensor mu = di_bn_.stem_mean.to(f.scalar_type()), sd = di_bn_.stem_std.to(f.scalar_type());
    stem_l1 = ((f - mu) / sd).abs().sum() / double(B * f.size(1) * f.size(2) * f.size(3));
  }
  std::vector<double> local = {ce.item<double>() / double(B), tv_l1.item<double>(), l2.item<double>(),
                               stem_l1.item<double>()};
  comm_.allreduce_sum(local);
  const double bn_value = bn.item<double>();
  value->terms = {{slice.soft_target.defined() ? "soft" : "ce", local[0]}, {"bn", bn_value}};
  if (cfg_.tv_l2 != 0) value->terms.push_back({"tv_l2", tv_l2_global});
  if (cfg_.tv_l1 != 0) value->terms.push_back({"tv_l1", local[1]});
  if (cfg_.l2 != 0) value->terms.push_back({"l2", local[2]});
  if (cfg_.stem_l1 != 0) value->terms.push_back({"stem_l1", local[3]});
  value->total = cfg_.ce_weight * local[0] + cfg_.bn_weight * bn_value + cfg_.tv_l2 * tv_l2_global +
                 cfg_.tv_l1 * local[1] + cfg_.l2 * local[2] + cfg_.stem_l1 * local[3];
  return cfg_.ce_weight * ce / double(B) + cfg_.bn_weight * bn.to(x.scalar_type()) + cfg_.tv_l2 * tv_l2_surrogate +
         cfg_.tv_l1 * tv_l1 + cfg_.l2 * l2 + cfg_.stem_l1 * stem_l1;
}

}  // namespace dsgq::synth
