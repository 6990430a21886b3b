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

Homogeneity homogeneity(const models::Network& net, const at::Tensor& images, int64_t chunk, at::Tensor* logits) {
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
  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < n; b += chunk) {
    const at::Tensor z = net.forward(images.slice(0, b, std::min(n, b + chunk)).to(net.device()), &hooks);
    if (logits) out.push_back(z.to(at::kCPU));
  }
  if (logits) *logits = at::cat(out);
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

ClassFit class_fit(const at::Tensor& logits, const at::Tensor& labels) {
  DSGQ_CHECK(labels.dim() == 1 && logits.dim() == 2 && labels.size(0) == logits.size(0),
             "class_fit: one label per row of logits");
  const at::Tensor keep = labels.ge(0).nonzero().view(-1);
  ClassFit c;
  c.n = keep.numel();
  if (c.n == 0) return c;
  const at::Tensor z = logits.to(at::kCPU, at::kDouble).index_select(0, keep);
  const at::Tensor t = labels.to(at::kLong).index_select(0, keep);
  const at::Tensor top2 = std::get<0>(z.topk(2, 1));
  c.agree = z.argmax(1).eq(t).to(at::kDouble).mean().item<double>();
  c.ce = at::cross_entropy_loss(z, t).item<double>();
  c.margin = (top2.select(1, 0) - top2.select(1, 1)).mean().item<double>();
  return c;
}

}  // namespace dsgq::synth
