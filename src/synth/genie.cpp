#include "synth/genie.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "core/error.hpp"
#include "core/timer.hpp"
#include "models/network.hpp"
#include "synth/plateau.hpp"
#include "synth/sampling.hpp"

namespace dsgq::synth {

std::vector<at::Tensor> genie_init(uint64_t seed, int64_t batch, int64_t C, int64_t H, int64_t W) {
  if (H % 4 != 0 || W % 4 != 0)
    throw InputError("method genie: the input size " + std::to_string(H) + "x" + std::to_string(W) +
                     " is not divisible by 4; expected the generator's two 2x upsamplings to reach it");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, Stream::generator, static_cast<uint64_t>(batch)));
  const auto uniform = [&](std::vector<int64_t> shape, int64_t fan_in) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    return at::rand(shape, gen) * (2.0 * bound) - bound;
  };
  const int64_t s = (H / 4) * (W / 4);
  std::vector<at::Tensor> p;
  p.push_back(uniform({kGenieC1 * s, kGenieLatent}, kGenieLatent));  // linear
  p.push_back(uniform({kGenieC1 * s}, kGenieLatent));
  p.push_back(torch::ones({kGenieC1}));  // bn1
  p.push_back(torch::zeros({kGenieC1}));
  p.push_back(uniform({kGenieC2, kGenieC1, 3, 3}, kGenieC1 * 9));  // conv1
  p.push_back(uniform({kGenieC2}, kGenieC1 * 9));
  p.push_back(torch::ones({kGenieC2}));  // bn2
  p.push_back(torch::zeros({kGenieC2}));
  p.push_back(uniform({C, kGenieC2, 3, 3}, kGenieC2 * 9));  // conv2
  p.push_back(uniform({C}, kGenieC2 * 9));
  return p;
}

namespace {

// BatchNorm in training mode over the global batch: mean and biased variance from the per-channel sums of every
// rank's rows (in double), all-reduced with a summed backward pass.
at::Tensor global_batch_norm(const at::Tensor& h, const at::Tensor& weight, const at::Tensor& bias, int64_t B,
                             const mpi::Comm& comm) {
  const at::Tensor hd = h.to(at::kDouble);
  const int64_t C = h.size(1);
  const at::Tensor sums =
      mpi::allreduce_sum_autograd_summed(torch::cat({hd.sum({0, 2, 3}), hd.square().sum({0, 2, 3})}), comm);
  const double N = static_cast<double>(B * h.size(2) * h.size(3));
  const at::Tensor mean = sums.slice(0, 0, C) / N;
  const at::Tensor var = sums.slice(0, C, 2 * C) / N - mean.square();
  const at::Tensor inv = (var + 1e-5).rsqrt().to(h.scalar_type()).view({1, C, 1, 1});
  at::Tensor y = (h - mean.to(h.scalar_type()).view({1, C, 1, 1})) * inv;
  if (weight.defined()) y = y * weight.view({1, C, 1, 1}) + bias.view({1, C, 1, 1});
  return y;
}

}  // namespace

at::Tensor genie_generate(const std::vector<at::Tensor>& p, const at::Tensor& z, int64_t B, int64_t H, int64_t W,
                          const mpi::Comm& comm) {
  DSGQ_CHECK(p.size() == 10, "genie: ten generator parameters");
  at::Tensor h = at::linear(z, p[0], p[1]).view({z.size(0), kGenieC1, H / 4, W / 4});
  h = global_batch_norm(h, p[2], p[3], B, comm);
  h = at::upsample_nearest2d(h, {H / 2, W / 2});
  h = at::conv2d(h, p[4], p[5], 1, 1);
  h = global_batch_norm(h, p[6], p[7], B, comm);
  h = at::leaky_relu(h, 0.2);
  h = at::upsample_nearest2d(h, {H, W});
  h = at::conv2d(h, p[8], p[9], 1, 1);
  return global_batch_norm(at::tanh(h), at::Tensor(), at::Tensor(), B, comm);
}

std::vector<std::pair<int64_t, int64_t>> draw_swing(uint64_t seed, int64_t batch, int64_t iteration,
                                                    const models::Network& net, int64_t jitter) {
  std::vector<std::pair<int64_t, int64_t>> out(net.layers().size(), {-1, -1});
  if (jitter <= 0) return out;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(
      mix_seed(seed, Stream::swing, static_cast<uint64_t>(batch) * 1000003ull + static_cast<uint64_t>(iteration)));
  for (size_t l = 0; l < out.size(); ++l) {
    const models::LayerSpec& spec = net.layers()[l];
    if (spec.kind != models::LayerSpec::Kind::conv || spec.stride == 1) continue;
    const at::Tensor d = at::randint(0, 2 * jitter + 1, {2}, gen);
    out[l] = {d[0].item<int64_t>(), d[1].item<int64_t>()};
  }
  return out;
}

GenieLoss genie_loss(const models::Network& net, const at::Tensor& x, int64_t B,
                     const std::vector<std::pair<int64_t, int64_t>>& swing, int64_t jitter, const mpi::Comm& comm) {
  GenieLoss out;
  // Per-image input statistics (this rank's rows), divided by the global B.
  const auto [in_std, in_mean] = at::std_mean(x.to(at::kDouble), {2, 3}, /*unbiased=*/true);
  const at::Tensor in_mean_term = in_mean.square().sum() / double(B);
  const at::Tensor in_std_term = (in_std - 1.0).square().sum() / double(B);

  std::vector<at::Tensor> sums;
  std::vector<int64_t> counts, channels;
  models::ForwardHooks hooks;
  hooks.bn_sums = [&](int, const at::Tensor& s) { sums.push_back(s); };
  hooks.bn_input = [&](int, const at::Tensor& f) {  // the shapes; the sums come with the BN's own pass
    counts.push_back(B * f.size(2) * f.size(3));
    channels.push_back(f.size(1));
  };
  hooks.conv_input = [&](int layer, const at::Tensor& f) {
    const auto [dy, dx] = swing[static_cast<size_t>(layer)];
    if (dy < 0) return f;
    const at::Tensor padded = at::reflection_pad2d(f, {jitter, jitter, jitter, jitter});
    return padded.slice(2, dy, dy + f.size(2)).slice(3, dx, dx + f.size(3));
  };
  net.forward(x, &hooks);
  const at::Tensor global = mpi::allreduce_sum_autograd(torch::cat(sums), comm);

  at::Tensor bn_mean = torch::zeros({}, global.options()), bn_std = torch::zeros({}, global.options());
  int64_t off = 0;
  for (size_t l = 0; l < counts.size(); ++l) {
    const int64_t C = channels[l];
    const double N = static_cast<double>(counts[l]);
    const at::Tensor mean = global.slice(0, off, off + C) / N;
    const at::Tensor stdv =
        ((global.slice(0, off + C, off + 2 * C) - N * mean.square()) / (N - 1.0)).clamp_min(0).sqrt();
    off += 2 * C;
    const std::string& name = net.bns()[l].name;
    const at::Tensor rm = net.param(name + ".running_mean").to(at::kDouble);
    const at::Tensor rs = (net.param(name + ".running_var").to(at::kDouble) + 1e-6).sqrt();
    bn_mean = bn_mean + (mean - rm).square().sum() / double(C);
    bn_std = bn_std + (stdv - rs).square().sum() / double(C);
  }
  std::vector<double> local = {in_mean_term.item<double>(), in_std_term.item<double>()};
  comm.allreduce_sum(local);
  out.mean = local[0] + bn_mean.item<double>();
  out.std = local[1] + bn_std.item<double>();
  out.total = out.mean + out.std;
  out.surrogate = (in_mean_term + in_std_term + bn_mean + bn_std).to(x.scalar_type());
  return out;
}

GenieBatch genie_batch(const models::Network& net, const GenieSettings& s, int64_t b, int64_t first, int64_t B,
                       int64_t offset, int64_t n, const mpi::Comm& comm) {
  const auto& in = net.input();
  std::vector<at::Tensor> params = genie_init(s.seed, b, in.channels, in.height, in.width);
  for (auto& p : params) p = p.to(net.device()).requires_grad_(true);
  at::Tensor z = torch::empty({n, kGenieLatent});
  for (int64_t i = 0; i < n; ++i) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(
        mix_seed(s.seed, Stream::latent, static_cast<uint64_t>(first + offset + i)));
    z[i] = at::randn({kGenieLatent}, gen);
  }
  z = z.to(net.device()).requires_grad_(true);

  torch::optim::Adam opt_z(std::vector<at::Tensor>{z}, torch::optim::AdamOptions(s.latent_lr));
  torch::optim::Adam opt_g(params, torch::optim::AdamOptions(s.generator_lr));
  PlateauConfig pc;
  pc.patience = s.patience;
  Plateau plateau(s.latent_lr, pc);
  double lr_g = s.generator_lr;
  Progress progress(s.label + " batch " + std::to_string(b + 1) + "/" + std::to_string(s.n_batches), "iter", s.iters);
  GenieBatch out;
  ConvergenceStop stop(s.stop_rtol, s.stop_window);
  bool converged = false;
  for (int64_t it = 0; it < s.iters && !converged; ++it) {
    opt_z.zero_grad();
    opt_g.zero_grad();
    const at::Tensor x = genie_generate(params, z, B, in.height, in.width, comm);
    const GenieLoss loss = genie_loss(net, x, B, draw_swing(s.seed, b, it, net, s.swing), s.swing, comm);
    if (!std::isfinite(loss.total))
      throw InputError(s.label + ": the loss diverged at batch " + std::to_string(b) + ", iteration " +
                       std::to_string(it) + ": it is " + std::to_string(loss.total) +
                       "; expected a finite value (lower [synth] lr or generator_lr?)");
    out.loss_curve.push_back(static_cast<float>(loss.total));
    out.images = x.detach();
    out.loss = loss.total;
    converged = stop.update(loss.total);
    loss.surrogate.backward();
    if (comm.size() > 1) {  // the generator is replicated: sum the ranks' shares of its gradient
      std::vector<at::Tensor> grads;
      for (const auto& p : params) grads.push_back(p.grad().reshape({-1}));
      at::Tensor flat = torch::cat(grads);
      comm.allreduce_sum(flat);
      int64_t off = 0;
      for (auto& p : params) {
        p.mutable_grad().copy_(flat.slice(0, off, off + p.numel()).view_as(p));
        off += p.numel();
      }
    }
    opt_z.step();
    opt_g.step();
    const double lr_z = plateau.step(loss.total);
    for (auto& group : opt_z.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr_z);
    if ((it + 1) % 100 == 0) {
      lr_g *= 0.95;
      for (auto& group : opt_g.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr_g);
    }
    char buf[128];
    std::snprintf(buf, sizeof buf, "loss %.6g (mean %.4g std %.4g) lr %.3g/%.3g", loss.total, loss.mean, loss.std, lr_z,
                  lr_g);
    progress.update(it + 1, buf);
  }
  stop.finish(out.loss_curve, s.iters, s.label + " batch " + std::to_string(b + 1) + "/" + std::to_string(s.n_batches));
  return out;
}

}  // namespace dsgq::synth
