#include "synth/bn_stats.hpp"

#include <torch/torch.h>

#include <cmath>

#include "core/error.hpp"
#include "models/network.hpp"

namespace dsgq::synth {

Stats per_sample_stats(const at::Tensor& f) {
  DSGQ_CHECK(f.dim() == 4 && f.size(2) * f.size(3) >= 2, "per_sample_stats: need [n,C,H,W] with H*W >= 2");
  Stats s;
  auto [var, mean] = at::var_mean(f, {2, 3}, /*unbiased=*/true);  // one pass over the feature map
  s.mean = mean;
  s.std = (var + kStatEps).sqrt();
  return s;
}

std::vector<Target> bn_targets(const models::Network& net) {
  std::vector<Target> out;
  for (const auto& bn : net.bns()) {
    Target t;
    t.mean = net.param(bn.name + ".running_mean");
    t.std = (net.param(bn.name + ".running_var") + kStatEps).sqrt();
    out.push_back(t);
  }
  return out;
}

Target input_target(int64_t channels, const at::TensorOptions& options) {
  return {torch::zeros({channels}, options), torch::ones({channels}, options)};
}

at::Tensor alignment_term(const Stats& st, const Target& t, double delta, double gamma, const at::Tensor& row_weight,
                          const at::Tensor& row_factor, int64_t global_batch) {
  at::Tensor dm = (st.mean - t.mean.unsqueeze(0)).abs() - delta;
  at::Tensor ds = (st.std - t.std.unsqueeze(0)).abs() - gamma;
  if (row_factor.defined()) {
    dm = dm * row_factor.unsqueeze(1);
    ds = ds * row_factor.unsqueeze(1);
  }
  at::Tensor per_sample = (dm.relu().square() + ds.relu().square()).sum(1);  // [n]
  if (row_weight.defined()) per_sample = per_sample * row_weight;
  return per_sample.sum() / static_cast<double>(global_batch);
}

double alignment_term_ref(const Stats& st, const Target& t, double delta, double gamma,
                          const std::vector<double>& row_weight, const std::vector<double>& row_factor,
                          int64_t global_batch) {
  const at::Tensor m = st.mean.to(at::kDouble).cpu(), s = st.std.to(at::kDouble).cpu();
  const at::Tensor mu = t.mean.to(at::kDouble).cpu(), sg = t.std.to(at::kDouble).cpu();
  double total = 0;
  for (int64_t n = 0; n < m.size(0); ++n) {
    const double w = row_weight.empty() ? 1.0 : row_weight[n];
    const double f = row_factor.empty() ? 1.0 : row_factor[n];
    for (int64_t c = 0; c < m.size(1); ++c) {
      const double a = std::max(0.0, f * (std::abs(m[n][c].item<double>() - mu[c].item<double>()) - delta));
      const double b = std::max(0.0, f * (std::abs(s[n][c].item<double>() - sg[c].item<double>()) - gamma));
      total += w * (a * a + b * b);
    }
  }
  return total / static_cast<double>(global_batch);
}

}  // namespace dsgq::synth

namespace dsgq::synth {

Homogeneity homogeneity(const models::Network& net, const at::Tensor& images, int64_t chunk) {
  torch::NoGradGuard no_grad;
  const size_t L = net.bns().size();
  std::vector<at::Tensor> sum(L), sumsq(L);
  models::ForwardHooks hooks;
  hooks.bn_input = [&](int l, const at::Tensor& f) {
    const at::Tensor m = f.mean({2, 3}).to(at::kDouble);  // [n, C]
    sum[l] = sum[l].defined() ? sum[l] + m.sum(0) : m.sum(0);
    sumsq[l] = sumsq[l].defined() ? sumsq[l] + m.square().sum(0) : m.square().sum(0);
  };
  const int64_t n = images.size(0);
  DSGQ_CHECK(n >= 2, "homogeneity needs at least 2 images");
  for (int64_t b = 0; b < n; b += chunk)
    net.forward(images.slice(0, b, std::min(n, b + chunk)).to(net.device()), &hooks);
  Homogeneity h;
  for (size_t l = 0; l < L; ++l) {
    const auto& bn = net.bns()[l];
    const at::Tensor sd = net.param(bn.name + ".running_var").to(at::kDouble).sqrt();
    const at::Tensor mu = net.param(bn.name + ".running_mean").to(at::kDouble);
    const at::Tensor mean = sum[l] / double(n);
    const at::Tensor var = ((sumsq[l] - double(n) * mean.square()) / double(n - 1)).clamp_min(0);
    h.layer_spread.push_back((var.sqrt() / sd).mean().item<double>());
    h.layer_dev.push_back(((mean - mu).abs() / sd).mean().item<double>());
    h.spread += h.layer_spread.back();
    h.dev += h.layer_dev.back();
  }
  h.spread /= static_cast<double>(L);
  h.dev /= static_cast<double>(L);
  return h;
}

ClassFit class_fit(const models::Network& net, const at::Tensor& images, const at::Tensor& labels, int64_t chunk) {
  torch::NoGradGuard no_grad;
  DSGQ_CHECK(labels.dim() == 1 && labels.size(0) == images.size(0), "class_fit: one label per image");
  ClassFit c;
  double agree = 0, ce = 0, margin = 0;
  for (int64_t b = 0; b < images.size(0); b += chunk) {
    const int64_t e = std::min(images.size(0), b + chunk);
    const at::Tensor y = labels.slice(0, b, e).to(at::kLong);
    const at::Tensor keep = y.ge(0).nonzero().view(-1);
    if (keep.numel() == 0) continue;
    const at::Tensor z =
        net.forward(images.slice(0, b, e).index_select(0, keep).to(net.device())).to(at::kCPU, at::kDouble);
    const at::Tensor t = y.index_select(0, keep);
    const at::Tensor top2 = std::get<0>(z.topk(2, 1));
    agree += z.argmax(1).eq(t).sum().item<double>();
    ce += at::cross_entropy_loss(z, t, {}, at::Reduction::Sum).item<double>();
    margin += (top2.select(1, 0) - top2.select(1, 1)).sum().item<double>();
    c.n += keep.numel();
  }
  if (c.n > 0) {
    c.agree = agree / double(c.n);
    c.ce = ce / double(c.n);
    c.margin = margin / double(c.n);
  }
  return c;
}

}  // namespace dsgq::synth
