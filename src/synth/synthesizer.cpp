#include "synth/synthesizer.hpp"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "io/image_set.hpp"
#include "models/network.hpp"
#include "synth/genie.hpp"
#include "synth/plateau.hpp"

namespace dsgq::synth {

SynthSettings resolve_settings(const config::SynthConfig& cfg, std::string label) {
  SynthSettings s;
  s.cfg = cfg;
  s.label = std::move(label);
  const bool official_dsg = cfg.preset == config::Preset::official && cfg.method == config::SynthMethod::dsg;
  const bool di = cfg.method == config::SynthMethod::deepinversion;
  const bool genie = cfg.method == config::SynthMethod::genie;
  s.lr = cfg.lr > 0 ? cfg.lr : (official_dsg ? 0.9 : di || genie ? 0.1 : 0.5);
  s.patience = cfg.patience > 0 ? cfg.patience : (official_dsg ? 260 : 100);
  switch (cfg.preset) {
    case config::Preset::paper:
    case config::Preset::dsgq:
      s.init = Init::gaussian;
      break;
    case config::Preset::official:
      s.init = cfg.method == config::SynthMethod::dsg ? Init::uniform01 : Init::zeroq_official;
      break;
  }
  if (di) s.init = cfg.preset == config::Preset::dsgq ? Init::diverse : Init::gaussian;  // section 7.4; paper: N(0,1)
  s.bn_weight = cfg.bn_weight > 0 ? cfg.bn_weight : (cfg.preset == config::Preset::dsgq ? 10.0 : 100.0);
  switch (cfg.init) {
    case config::SynthInit::automatic:
      break;
    case config::SynthInit::gaussian:
      s.init = Init::gaussian;
      break;
    case config::SynthInit::diverse:
      s.init = Init::diverse;
      break;
    case config::SynthInit::dead_leaves:
      s.init = Init::dead_leaves;
      break;
  }
  return s;
}

ObjectiveConfig objective_config(const SynthSettings& s, const Margins& margins) {
  ObjectiveConfig c;
  const bool dsg = s.cfg.method == config::SynthMethod::dsg;
  c.sda = dsg;
  c.sci_weight = dsg ? s.cfg.sci_weight : 0.0;
  c.lse = dsg && s.cfg.lse;
  c.official = dsg && s.cfg.preset == config::Preset::official;
  c.deepinversion = s.cfg.method == config::SynthMethod::deepinversion;
  c.batch_stats = s.batch_stats() && !c.deepinversion;  // deepinversion has its own batch-statistics term
  if (c.deepinversion) {
    const config::SynthConfig& y = s.cfg;
    c.ce_weight = y.ce_weight;
    c.bn_weight = s.bn_weight;
    c.first_bn_weight = y.first_bn_weight;
    c.tv_l2 = y.tv_l2;
    c.tv_l1 = y.tv_l1;
    c.l2 = y.l2;
    c.stem_l1 = y.stem_l1;
  }
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

Synthesizer::Synthesizer(const models::Network& net, SynthSettings settings, Margins margins, const mpi::Comm& comm)
    : net_(net),
      s_(std::move(settings)),
      margins_(std::move(margins)),
      comm_(comm),
      objective_(net, objective_config(s_, margins_), comm) {}

BatchResult Synthesizer::make_batch(int64_t b) {
  const config::SynthConfig& c = s_.cfg;
  const auto& in = net_.input();
  const int64_t batch_first = b * c.batch;
  const int64_t B = std::min(c.batch, c.n_images - batch_first);
  const mpi::Share share = mpi::share_of(B, comm_.rank(), comm_.size());
  const int64_t n = share.size();
  BatchResult r;
  r.first = batch_first + share.begin;
  r.labels = torch::full({n}, -1, torch::kLong);
  r.lse_layer = torch::full({n}, -1, torch::kLong);
  const auto draw = [&](Init init) {
    const uint64_t seed = static_cast<uint64_t>(c.seed);
    return draw_images(init, seed, Stream::init, r.first, n, in.channels, in.height, in.width).to(net_.device());
  };
  switch (c.method) {
    case config::SynthMethod::real: {
      io::ImageSet set;
      if (c.real_pick == config::RealPick::first || n == 0) {
        set = io::read_image_set(c.real_data, r.first, n);
      } else {  // the drawn images of this rank's share, read a run of consecutive file indices at a time
        if (real_pick_.empty())
          real_pick_ = draw_subset(static_cast<uint64_t>(c.seed), io::image_set_info(c.real_data).n_images, c.n_images);
        std::vector<at::Tensor> images, labels;
        for (int64_t j = r.first; j < r.first + n;) {
          int64_t run = 1;
          while (j + run < r.first + n &&
                 real_pick_[static_cast<size_t>(j + run)] == real_pick_[static_cast<size_t>(j)] + run)
            ++run;
          io::ImageSet part = io::read_image_set(c.real_data, real_pick_[static_cast<size_t>(j)], run);
          images.push_back(part.images);
          labels.push_back(part.labels);
          j += run;
        }
        set.images = torch::cat(images);
        set.labels = torch::cat(labels);
      }
      r.images = net_.normalize(set.images, net_.device());
      r.labels = set.labels;
      return r;
    }
    case config::SynthMethod::gaussian:
      r.images = draw(Init::gaussian);
      return r;
    case config::SynthMethod::genie: {
      GenieSettings g;
      g.seed = static_cast<uint64_t>(c.seed);
      g.iters = c.iters;
      g.latent_lr = s_.lr;
      g.patience = s_.patience;
      g.generator_lr = c.generator_lr;
      g.swing = c.swing;
      g.stop_rtol = c.stop_rtol;
      g.stop_window = c.stop_window;
      g.label = s_.label;
      g.n_batches = s_.n_batches();
      GenieBatch gb = genie_batch(net_, g, b, batch_first, B, share.begin, n, comm_);
      r.images = gb.images;
      r.loss = gb.loss;
      r.loss_curve = std::move(gb.loss_curve);
      return r;
    }
    case config::SynthMethod::dsg:
    case config::SynthMethod::zeroq:
    case config::SynthMethod::deepinversion:
      break;
  }
  BatchSlice slice;
  slice.global_batch = B;
  slice.batch_offset = share.begin;
  slice.first_global = r.first;
  if (objective_.config().official) r.labels = draw_labels(static_cast<uint64_t>(c.seed), r.first, n, in.num_classes);
  if (objective_.config().deepinversion)  // the classes spread evenly over the set: image i gets class i mod K
    r.labels = torch::arange(r.first, r.first + n, torch::kLong).remainder(in.num_classes);
  slice.labels = r.labels.to(net_.device());
  if (objective_.config().deepinversion && c.mix > 0) {
    const MixedTargets m = draw_mixed_targets(static_cast<uint64_t>(c.seed), r.first, r.labels, in.num_classes, c.mix);
    slice.mix_other = m.other.to(net_.device());
    slice.mix_weight = m.weight.to(net_.device());
  }
  if (objective_.config().deepinversion && c.soft_target > 0)
    slice.soft_target = draw_soft_targets(static_cast<uint64_t>(c.seed), r.first, n, c.soft_target).to(net_.device());
  for (int64_t i = 0; i < n; ++i) r.lse_layer[i] = objective_.lse_layer(r.first + i, share.begin + i);
  optimise(b, draw(s_.init), slice, r);
  return r;
}

namespace {

// The image range [0, 1] in normalized units, per channel: DeepInversion's `clip` (ImageNet code), in place.
void clip_to_image_range(const models::InputSpec& in, at::Tensor& x) {
  torch::NoGradGuard no_grad;
  for (int64_t ch = 0; ch < x.size(1); ++ch) {
    const size_t k = static_cast<size_t>(ch);
    x.select(1, ch).clamp_(-in.mean[k] / in.std[k], (1.0 - in.mean[k]) / in.std[k]);
  }
}

}  // namespace

void Synthesizer::optimise(int64_t b, at::Tensor x, BatchSlice& slice, BatchResult& r) {
  const config::SynthConfig& c = s_.cfg;
  if (c.clip) clip_to_image_range(net_.input(), x);
  x.requires_grad_(true);
  const bool di = objective_.config().deepinversion;
  const std::string what = s_.label + " batch " + std::to_string(b + 1) + "/" + std::to_string(s_.n_batches());
  // deepinversion with lowres_iters > 0 (docs/method.md section 7.5): first that many steps on the images pooled to
  // half their size, then `iters` at full size with a fresh Adam, as DeepInversion's multi-resolution setting.
  // Iteration numbers (the random draws', the loss curve's) run on across both phases.
  const int64_t lowres = di ? c.lowres_iters : 0, total = lowres + c.iters;
  LossValue value;
  at::Tensor best;  // deepinversion keeps the full-size iterate with the lowest loss (taken before its step)
  double best_loss = INFINITY;
  ConvergenceStop stop(c.stop_rtol, c.stop_window);  // fed the full-size steps only
  int64_t it = 0;
  for (const bool half : {true, false}) {
    const int64_t phase_end = half ? lowres : total;
    if (it >= phase_end) continue;
    const int64_t scale = half ? 2 : 1;
    torch::optim::Adam opt(std::vector<at::Tensor>{x}, torch::optim::AdamOptions(s_.lr));
    PlateauConfig pc;
    pc.patience = s_.patience;
    Plateau plateau(s_.lr, pc);
    Progress progress(what + (half ? " (half size)" : ""), "iter", phase_end - it);
    const int64_t phase_begin = it;
    bool converged = false;
    for (; it < phase_end && !converged; ++it) {
      opt.zero_grad();
      const at::Tensor xin = half ? at::avg_pool2d(x, {2, 2}) : x;
      if (objective_.config().official) slice.roll = draw_roll(static_cast<uint64_t>(c.seed), b, it);
      if (objective_.config().sci_weight > 0)
        slice.sci_gauss =
            draw_sci_gauss(static_cast<uint64_t>(c.seed), b, it, slice.global_batch, x.size(1), x.size(2), x.size(3))
                .to(x.device());
      if (di) {
        if (c.crop > 0) {
          slice.crop_pad = c.crop / scale;
          slice.crop_index = draw_crop_index(static_cast<uint64_t>(c.seed), slice.first_global, xin.size(0), it,
                                             xin.size(2), xin.size(3), slice.crop_pad, c.flip)
                                 .to(x.device());
        } else if (c.zoom > 0) {
          slice.zoom_theta = draw_zoom_theta(static_cast<uint64_t>(c.seed), slice.first_global, xin.size(0), it,
                                             xin.size(2), xin.size(3), c.zoom, c.flip)
                                 .to(x.device());
        } else {
          const Jitter j = draw_jitter(static_cast<uint64_t>(c.seed), b, it, c.jitter / scale, c.flip);
          slice.jitter_h = j.h;
          slice.jitter_w = j.w;
          slice.flip = j.flip;
        }
      }
      const at::Tensor loss = objective_.evaluate(xin, slice, &value);
      check_finite(value, s_.label, b, it);
      r.loss_curve.push_back(static_cast<float>(value.total));
      if (di && !half && value.total < best_loss) {
        best_loss = value.total;
        best = x.detach().clone();
      }
      if (!half) converged = stop.update(value.total);
      loss.backward();
      opt.step();
      if (c.clip) clip_to_image_range(net_.input(), x);
      const double lr = di ? s_.lr : plateau.step(value.total);  // deepinversion: constant lr
      for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
      char buf[64];
      std::snprintf(buf, sizeof buf, "loss %.6g (", value.total);
      std::string line = buf;
      for (const auto& [name, v] : value.terms) {
        std::snprintf(buf, sizeof buf, "%s %.4g ", name.c_str(), v);
        line += buf;
      }
      std::snprintf(buf, sizeof buf, ") lr %.3g", lr);
      progress.update(it + 1 - phase_begin, line + buf);
    }
  }
  r.images = di ? best : x.detach();
  r.loss = di ? best_loss : value.total;
  stop.finish(r.loss_curve, c.iters, what);  // logs an early stop
  pad_loss_curve(r.loss_curve, total);
}

}  // namespace dsgq::synth
