#include "synth/synthesizer.hpp"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "io/image_set.hpp"
#include "models/network.hpp"
#include "synth/plateau.hpp"

namespace dsgq::synth {

ObjectiveConfig objective_config(const SynthSettings& s, const Margins& margins) {
  ObjectiveConfig c;
  c.sda = s.method == "dsg";
  c.lse = s.method == "dsg" && s.lse;
  c.official = s.preset == "official" && (s.method == "dsg");
  c.batch_stats = s.batch_stats;
  if (c.sda) {
    c.delta = margins.delta;
    c.gamma = margins.gamma;
  }
  return c;
}

void check_finite(const LossValue& value, const std::string& label, int64_t batch, int64_t iteration) {
  for (const auto& [name, v] : value.terms)
    if (!std::isfinite(v))
      throw InputError(label + ": the loss diverged at batch " + std::to_string(batch) + ", iteration " +
                       std::to_string(iteration) + ": term '" + name + "' is " + std::to_string(v) +
                       "; expected a finite value (lower [synth] lr?)");
}

Synthesizer::Synthesizer(const models::Network& net, SynthSettings settings, Margins margins, const dist::Comm& comm)
    : net_(net),
      s_(std::move(settings)),
      margins_(std::move(margins)),
      comm_(comm),
      objective_(net, objective_config(s_, margins_), comm) {}

BatchResult Synthesizer::make_batch(int64_t b) {
  const auto& in = net_.input();
  const int64_t batch_first = b * s_.batch;
  const int64_t B = std::min(s_.batch, s_.n_images - batch_first);
  const dist::Share share = dist::share_of(B, comm_.rank(), comm_.size());
  const int64_t n = share.size();
  BatchResult r;
  r.first = batch_first + share.begin;
  r.labels = torch::full({n}, -1, torch::kLong);
  r.lse_layer = torch::full({n}, -1, torch::kLong);

  if (s_.method == "real") {
    const io::ImageSet set = io::read_image_set(s_.real_data, r.first, n);
    r.images = net_.normalize(set.images, net_.device());
    r.labels = set.labels;
    return r;
  }
  at::Tensor x = draw_images(s_.method == "gaussian" ? Init::gaussian : s_.init, s_.seed, Stream::init, r.first, n,
                             in.channels, in.height, in.width)
                     .to(net_.device());
  if (s_.method == "gaussian") {
    r.images = x;
    return r;
  }

  const ObjectiveConfig oc = objective_config(s_, margins_);
  BatchSlice slice;
  slice.global_batch = B;
  slice.batch_offset = share.begin;
  slice.first_global = r.first;
  if (oc.official) r.labels = draw_labels(s_.seed, r.first, n, in.num_classes);
  slice.labels = r.labels.to(net_.device());
  for (int64_t i = 0; i < n; ++i) r.lse_layer[i] = objective_.lse_layer(r.first + i, share.begin + i);

  x.requires_grad_(true);
  torch::optim::Adam opt(std::vector<at::Tensor>{x}, torch::optim::AdamOptions(s_.lr));
  PlateauConfig pc;
  pc.patience = s_.patience;
  Plateau plateau(s_.lr, pc);
  Timer timer;
  double last_print = -1;
  LossValue value;
  const int64_t n_batches = (s_.n_images + s_.batch - 1) / s_.batch;
  for (int64_t it = 0; it < s_.iters; ++it) {
    opt.zero_grad();
    if (oc.official) slice.roll = draw_roll(s_.seed, b, it);
    const at::Tensor loss = objective_.evaluate(x, slice, &value);
    check_finite(value, s_.label, b, it);
    r.loss_curve.push_back(static_cast<float>(value.total));
    loss.backward();
    opt.step();
    const double lr = plateau.step(value.total);
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    const double t = timer.seconds();
    if (it + 1 == s_.iters || last_print < 0 || t - last_print >= 10.0) {
      last_print = t;
      const double done = static_cast<double>(it + 1) / static_cast<double>(s_.iters);
      std::string terms;
      for (const auto& [name, v] : value.terms) {
        char buf[64];
        std::snprintf(buf, sizeof buf, " %s %.4g", name.c_str(), v);
        terms += buf;
      }
      log_info0("%s batch %lld/%lld iter %lld/%lld loss %.6g (%s ) lr %.3g  %.2f img/s  eta %s (all batches)", s_.label.c_str(),
                static_cast<long long>(b + 1), static_cast<long long>(n_batches), static_cast<long long>(it + 1),
                static_cast<long long>(s_.iters), value.total, terms.c_str() + 1, lr,
                t > 0 ? done * static_cast<double>(B) / t : 0.0,
                format_duration(t / static_cast<double>(it + 1) *
                                static_cast<double>(s_.iters - it - 1 + (n_batches - b - 1) * s_.iters))
                    .c_str());
    }
  }
  r.images = x.detach();
  r.loss = value.total;
  return r;
}

}  // namespace dsgq::synth
