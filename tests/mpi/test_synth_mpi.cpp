// Synthesis split over ranks (any world size, uneven shares) against a one-rank reference computed inside the
// same job on MPI_COMM_SELF by rank 0; the collective HDF5 writer and its resume state.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/synth_file.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "mpi/mpi_world.hpp"
#include "synth/margins.hpp"
#include "synth/synthesizer.hpp"
#include "test_util.hpp"

using namespace dsgq;

namespace {

std::unique_ptr<models::Network> resnet20() {
  auto net = models::build_network("resnet20", "arch");
  net->load(models::read_checkpoint(test::data_path("models/cifar10_resnet20.pt")));
  return net;
}

// All ranks' images of batch 0, gathered in global order.
at::Tensor gather_batch(const synth::BatchResult& r, const mpi::Comm& comm) {
  const at::Tensor flat = r.images.contiguous().reshape({-1});
  const std::vector<float> mine(flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel());
  std::vector<float> all = comm.allgatherv(mine);  // rank order = global order (contiguous shares)
  return torch::from_blob(all.data(), {static_cast<int64_t>(all.size())}, torch::kFloat).clone().view({-1, 3, 32, 32});
}

synth::SynthSettings settings(config::SynthMethod method, bool batch_stats, int64_t batch) {
  config::SynthConfig c;
  c.method = method;
  c.preset = config::Preset::paper;
  c.n_images = batch;
  c.batch = batch;
  c.iters = 20;
  c.stats = batch_stats ? config::BnStats::batch : config::BnStats::per_sample;
  c.lse = !batch_stats;
  c.seed = 11;
  return synth::resolve_settings(c, "test");  // the paper preset: lr 0.5, patience 100
}

// Synthesizes batch 0 on `world` and, on rank 0, on MPI_COMM_SELF; returns the max abs difference (on rank 0).
double distributed_vs_single(const synth::SynthSettings& s, const synth::Margins& margins) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  synth::Synthesizer dist_synth(*net, s, margins, w);
  const at::Tensor distributed = gather_batch(dist_synth.make_batch(0), w);
  double err = 0;
  if (w.rank() == 0) {
    const mpi::Comm self = mpi::Comm::self();
    synth::Synthesizer single(*net, s, margins, self);
    err = (single.make_batch(0).images - distributed).abs().max().item<double>();
  }
  return w.allreduce_max(err);
}

}  // namespace

TEST(SynthMpi, MarginQuantilesIdenticalForAnyRankCount) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  const synth::Margins m = synth::gaussian_margins(*net, 200, 0.9, 3, false, 64, w);  // 4 chunks, last one short
  double diff = 0;
  if (w.rank() == 0) {
    const synth::Margins ref = synth::gaussian_margins(*net, 200, 0.9, 3, false, 64, mpi::Comm::self());
    for (size_t l = 0; l < ref.delta.size(); ++l)
      diff = std::max({diff, std::abs(ref.delta[l] - m.delta[l]), std::abs(ref.gamma[l] - m.gamma[l])});
  }
  EXPECT_EQ(w.allreduce_max(diff), 0.0) << "world " << w.size();
}

TEST(SynthMpi, PerSampleImagesIndependentOfRankCount) {
  const auto& w = test::world();
  auto net = resnet20();
  const synth::Margins m = synth::gaussian_margins(*net, 128, 0.9, 11, false, 64, w);
  for (const auto method : {config::SynthMethod::dsg, config::SynthMethod::zeroq}) {
    const double err = distributed_vs_single(settings(method, false, 7), m);
    const std::string name = config::name(method);
    if (w.rank() == 0)
      std::printf("[ info     ] per_sample %s, world %d: max abs image diff vs 1 rank %.3g\n", name.c_str(), w.size(),
                  err);
    EXPECT_LE(err, 1e-5) << name << " world " << w.size() << " (7 images, 20 iterations)";
  }
}

TEST(SynthMpi, BatchStatisticsMatchOneRankWithTheWholeBatch) {
  const auto& w = test::world();
  auto net = resnet20();
  const synth::Margins m = synth::gaussian_margins(*net, 128, 0.9, 11, true, 8, w);
  const double err = distributed_vs_single(settings(config::SynthMethod::dsg, true, 8), m);
  if (w.rank() == 0)
    std::printf("[ info     ] batch stats, world %d: max abs image diff vs 1 rank x 8 images %.3g\n", w.size(), err);
  EXPECT_LE(err, 1e-4) << "world " << w.size() << " (8 images, 20 iterations)";
}

TEST(SynthMpi, CollectiveFileWriteResumeAndRead) {
  const auto& w = test::world();
  const std::string dir = w.broadcast(w.rank() == 0 ? std::string(::mkdtemp(strdup("/tmp/dsgq_mpi_XXXXXX"))) : "");
  const std::string path = dir + "/set.h5";
  io::SynthMeta meta;
  meta.model = "resnet20";
  meta.method = "dsg";
  meta.preset = "paper";
  meta.config_toml = "a = 1\n";
  meta.n_images = 10;
  meta.batch = 7;  // batches of 7 and 3 images, split unevenly over the ranks
  meta.world_size = w.size();
  const std::vector<double> delta = {0.5, 1.5}, gamma = {0.25, 2.0};
  auto write = [&](io::SynthWriter& wr, int64_t b) {
    const int64_t B = std::min<int64_t>(7, 10 - 7 * b);
    const auto share = mpi::share_of(B, w.rank(), w.size());
    const int64_t first = 7 * b + share.begin, n = share.size();
    const at::Tensor idx = torch::arange(first, first + n, torch::kFloat);
    wr.write_batch(b, first, idx.view({n, 1, 1, 1}).expand({n, 3, 32, 32}).contiguous(), idx.to(torch::kLong) * 2,
                   idx.to(torch::kLong) % 3, 0.5 * static_cast<double>(b + 1));
  };
  {
    io::SynthWriter wr(path, meta, delta, gamma, w, false);
    write(wr, 0);  // then "crash": no finish()
  }
  if (w.rank() == 0) {
    try {
      io::read_synth(path + ".part");
      ADD_FAILURE() << "a .part must be refused";
    } catch (const InputError& e) {
      EXPECT_NE(std::string(e.what()).find("incomplete dataset (.part"), std::string::npos) << e.what();
    }
  }
  w.barrier();
  {
    io::SynthMeta other = meta;
    other.config_toml = "a = 2\n";
    bool refused = false;
    try {
      io::SynthWriter wr(path, other, delta, gamma, w, false);
    } catch (const InputError& e) {
      refused = std::string(e.what()).find("partial dataset from a different config") != std::string::npos;
    }
    EXPECT_TRUE(refused) << "a .part from another config must be refused on every rank";
  }
  {
    io::SynthWriter wr(path, meta, delta, gamma, w, false);
    ASSERT_EQ(wr.done().size(), 2u);
    EXPECT_EQ(wr.done()[0], 1);
    EXPECT_EQ(wr.done()[1], 0);
    write(wr, 1);
    wr.finish();
  }
  if (w.rank() == 0) {
    const io::SynthSet set = io::read_synth(path);
    EXPECT_EQ(set.meta.n_images, 10);
    for (int64_t i = 0; i < 10; ++i) {
      EXPECT_EQ(set.images[i][2][31][31].item<float>(), static_cast<float>(i)) << "image " << i;
      EXPECT_EQ(set.labels[i].item<int64_t>(), 2 * i);
      EXPECT_EQ(set.lse_layer[i].item<int>(), i % 3);
    }
    EXPECT_FLOAT_EQ(set.loss[1].item<float>(), 1.0f);
    EXPECT_EQ(set.delta, delta);
    EXPECT_EQ(set.gamma, gamma);
    std::filesystem::remove_all(dir);
  }
  w.barrier();
}

namespace {

// deepinversion with `set` applied to the settings of 8 images, 20 iterations: the images of `world` ranks against one
// rank holding the whole batch, printed as `what`, within 1e-4.
void expect_deepinversion_matches_one_rank(const char* what, void (*set)(config::SynthConfig&)) {
  const auto& w = test::world();
  synth::SynthSettings s = settings(config::SynthMethod::deepinversion, false, 8);
  set(s.cfg);
  s = synth::resolve_settings(s.cfg, "test");
  const double err = distributed_vs_single(s, synth::Margins());
  if (w.rank() == 0)
    std::printf("[ info     ] %s, world %d: max abs image diff vs 1 rank x 8 images %.3g\n", what, w.size(), err);
  EXPECT_LE(err, 1e-4) << what << ", world " << w.size() << " (8 images, 20 iterations)";
}

}  // namespace

// deepinversion (docs/method.md section 7.1): batch statistics, CE to i mod K, jitter and flip, every prior on; the
// kept iterate is the lowest-loss one, so the loss values must agree too for the same images to be kept.
TEST(SynthMpi, DeepInversionMatchesOneRankWithTheWholeBatch) {
  expect_deepinversion_matches_one_rank("deepinversion", [](config::SynthConfig& c) {
    c.flip = true;
    c.tv_l1 = 0.2;
    c.l2 = 0.05;
  });
}

// deepinversion with the training augmentation (crop 4, a flip per image): the crops are drawn per global image, so
// the ranks' shares of the batch give the images of one rank holding it all.
TEST(SynthMpi, DeepInversionCropMatchesOneRankWithTheWholeBatch) {
  expect_deepinversion_matches_one_rank("deepinversion crop 4", [](config::SynthConfig& c) {
    c.crop = 4;
    c.flip = true;
  });
}

// deepinversion with IntraQ's local object reinforcement (zoom 0.5, a flip per image) and its soft targets: the boxes
// and targets are drawn per global image, so the ranks' shares of the batch give the images of one rank holding it all.
TEST(SynthMpi, DeepInversionZoomMatchesOneRankWithTheWholeBatch) {
  expect_deepinversion_matches_one_rank("deepinversion zoom 0.5", [](config::SynthConfig& c) {
    c.zoom = 0.5;
    c.flip = true;
  });
  expect_deepinversion_matches_one_rank("deepinversion zoom 0.5, soft_target 0.9", [](config::SynthConfig& c) {
    c.zoom = 0.5;
    c.flip = true;
    c.soft_target = 0.9;
  });
}

// deepinversion's options against the gap to real data (docs/method.md sections 7.1, 7.2): mixed two-class targets,
// the stem prior and the dead-leaves start, all drawn or summed per global image, so the ranks' split does not matter.
TEST(SynthMpi, DeepInversionMixStemPriorAndDeadLeavesMatchOneRankWithTheWholeBatch) {
  expect_deepinversion_matches_one_rank("deepinversion mix, stem_l1, dead leaves", [](config::SynthConfig& c) {
    c.mix = 0.5;
    c.stem_l1 = 100;
    c.init = config::SynthInit::dead_leaves;
  });
}

// deepinversion's settings and bookkeeping: lr 0.1 and N(0,1) starts whatever the preset, targets i mod K stored as
// labels, and the kept images are the lowest-loss iterate (the file's loss is the curve's minimum).
TEST(SynthMpi, DeepInversionKeepsTheLowestLossIterate) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  config::SynthConfig c = settings(config::SynthMethod::deepinversion, false, 12).cfg;
  c.preset = config::Preset::official;
  c.iters = 30;
  c.lr = 0;
  c.seed = 3;
  const synth::SynthSettings s = synth::resolve_settings(c, "test");
  EXPECT_EQ(s.lr, 0.1);
  EXPECT_EQ(s.init, synth::Init::gaussian);
  synth::Synthesizer synth(*net, s, synth::Margins(), w);
  const synth::BatchResult r = synth.make_batch(0);
  const at::Tensor expected = torch::arange(r.first, r.first + r.images.size(0), torch::kLong).remainder(10);
  EXPECT_TRUE(torch::equal(r.labels, expected)) << r.labels;
  ASSERT_EQ(r.loss_curve.size(), 30u);
  EXPECT_EQ(static_cast<float>(r.loss), *std::min_element(r.loss_curve.begin(), r.loss_curve.end()));
}

// lowres_iters (docs/method.md section 7.5): the first steps see the images average-pooled 2x2 with the jitter
// halved, then a fresh Adam takes the full-size steps, the draws numbered on; the kept images are the best full-size
// iterate. Checked against the phases written out by hand (one step each), and over ranks against one rank.
TEST(SynthMpi, DeepInversionHalfSizeStepsThenFullSize) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  synth::SynthSettings s = settings(config::SynthMethod::deepinversion, false, 8);
  s.cfg.preset = config::Preset::dsgq;  // the diverse start, bn_weight 10
  s.cfg.jitter = 3;                     // 1 at half size
  s.cfg.flip = true;
  s.cfg.lowres_iters = 1;
  s.cfg.iters = 1;
  s = synth::resolve_settings(s.cfg, "test");
  if (w.rank() == 0) {
    const mpi::Comm self = mpi::Comm::self();
    synth::Synthesizer synth(*net, s, synth::Margins(), self);
    const synth::BatchResult r = synth.make_batch(0);
    ASSERT_EQ(r.loss_curve.size(), 2u);

    const uint64_t seed = static_cast<uint64_t>(s.cfg.seed);
    const synth::Objective objective(*net, synth::objective_config(s, synth::Margins()), self);
    synth::BatchSlice slice;
    slice.global_batch = 8;
    slice.labels = torch::arange(8, torch::kLong).remainder(10);
    const auto loss_at = [&](const at::Tensor& x, int64_t it, int64_t limit, synth::LossValue* v) {
      const synth::Jitter j = synth::draw_jitter(seed, 0, it, limit, true);
      slice.jitter_h = j.h;
      slice.jitter_w = j.w;
      slice.flip = j.flip;
      return objective.evaluate(x, slice, v);
    };
    at::Tensor x = synth::draw_images(synth::Init::diverse, seed, synth::Stream::init, 0, 8, 3, 32, 32);
    x.requires_grad_(true);
    synth::LossValue half, full, wrong;
    loss_at(at::avg_pool2d(x, {2, 2}), 0, 1, &half).backward();
    EXPECT_NEAR(r.loss_curve[0], half.total, 1e-5 * half.total) << "step 0: the loss of the pooled images";
    loss_at(at::avg_pool2d(x.detach(), {2, 2}), 0, 3, &wrong);  // the full jitter at half size: another loss
    EXPECT_GT(std::abs(wrong.total - half.total), 1e-3 * half.total) << "the test's draw must tell the limits apart";
    // Adam's first step: lr * g / (|g| + eps) after its bias corrections.
    const at::Tensor g = x.grad();
    const at::Tensor x1 = (x.detach() - s.lr * g / (g.abs() + 1e-8)).requires_grad_(true);
    const at::Tensor kept = x1.detach().clone();
    loss_at(x1, 1, 3, &full);
    EXPECT_NEAR(r.loss_curve[1], full.total, 1e-4 * full.total) << "step 1: the full-size loss, draw number 1";
    EXPECT_LE((r.images - kept).abs().max().item<double>(), 1e-5) << "the images are the full-size iterate";
    EXPECT_NEAR(r.loss, full.total, 1e-4 * full.total);
  }
  s.cfg.lowres_iters = 10;
  s.cfg.iters = 10;
  s = synth::resolve_settings(s.cfg, "test");
  const double err = distributed_vs_single(s, synth::Margins());
  if (w.rank() == 0)
    std::printf(
        "[ info     ] deepinversion 10 half-size + 10 full-size steps, world %d: max abs image diff vs 1 rank "
        "%.3g\n",
        w.size(), err);
  EXPECT_LE(err, 1e-4) << "world " << w.size();
}

// clip (docs/method.md section 7.1): every kept pixel lies in its channel's image range [0, 1] in normalized
// units, the clamp binds (some pixels sit on a bound; without it some lie outside), and ranks agree with one rank.
TEST(SynthMpi, DeepInversionClipKeepsPixelsInTheImageRange) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  const auto& in = net->input();
  synth::SynthSettings s = settings(config::SynthMethod::deepinversion, false, 8);
  s.cfg.lr = 0.5;  // large steps, so that the unclipped images leave the range within 20 iterations
  for (const bool clip : {false, true}) {
    s.cfg.clip = clip;
    synth::Synthesizer synth(*net, s, synth::Margins(), w);
    const at::Tensor x = gather_batch(synth.make_batch(0), w);
    int64_t outside = 0, on_bound = 0;
    for (int64_t ch = 0; ch < 3; ++ch) {
      const size_t k = static_cast<size_t>(ch);
      const float lo = static_cast<float>(-in.mean[k] / in.std[k]);
      const float hi = static_cast<float>((1.0 - in.mean[k]) / in.std[k]);
      const at::Tensor c = x.select(1, ch);
      outside += (c < lo).sum().item<int64_t>() + (c > hi).sum().item<int64_t>();
      on_bound += (c == lo).sum().item<int64_t>() + (c == hi).sum().item<int64_t>();
    }
    if (clip) {
      EXPECT_EQ(outside, 0) << "world " << w.size();
      EXPECT_GT(on_bound, 0) << "the clamp never bound";
      const double err = distributed_vs_single(s, synth::Margins());
      EXPECT_LE(err, 1e-4) << "world " << w.size();
    } else {
      EXPECT_GT(outside, 0) << "without clip the test's images should leave the range";
    }
  }
}

// Stop when converged (docs/method.md section 6): every rank ends the batch at the same iteration, its images are
// those of a fixed run of that many iterations, and the loss curve holds NaN after it.
TEST(SynthMpi, ConvergedBatchesStopTogetherAndEqualAFixedRun) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  const synth::Margins m = synth::gaussian_margins(*net, 128, 0.9, 11, false, 64, w);
  synth::SynthSettings s = settings(config::SynthMethod::dsg, false, 7);
  s.cfg.iters = 200;
  s.cfg.stop_rtol = 0.01;
  s.cfg.stop_window = 10;
  synth::Synthesizer early(*net, s, m, w);
  const synth::BatchResult r = early.make_batch(0);
  ASSERT_EQ(r.loss_curve.size(), 200u);
  const auto first_nan = std::find_if(r.loss_curve.begin(), r.loss_curve.end(), [](float v) { return std::isnan(v); });
  const int64_t ran = first_nan - r.loss_curve.begin();
  EXPECT_GT(ran, 10);
  EXPECT_LT(ran, 200) << "the loss should have levelled off within 200 iterations";
  EXPECT_TRUE(std::all_of(first_nan, r.loss_curve.end(), [](float v) { return std::isnan(v); }));
  EXPECT_EQ(w.allreduce_max(static_cast<double>(ran)), static_cast<double>(ran)) << "world " << w.size();
  EXPECT_EQ(-w.allreduce_max(-static_cast<double>(ran)), static_cast<double>(ran)) << "world " << w.size();
  synth::SynthSettings fixed = s;
  fixed.cfg.iters = ran;
  fixed.cfg.stop_rtol = 0;
  synth::Synthesizer plain(*net, fixed, m, w);
  const double err = (plain.make_batch(0).images - r.images).abs().max().item<double>();
  if (w.rank() == 0)
    std::printf("[ info     ] stop_rtol 0.01 over 10, world %d: stopped after %lld of 200 iterations\n", w.size(),
                static_cast<long long>(ran));
  EXPECT_EQ(w.allreduce_max(err), 0.0);
}

// dsg with the sample-correlation term (docs/method.md section 4.1): the ranks gather the batch's rows for SCI, so
// the images must still be those of one rank with the whole batch.
TEST(SynthMpi, SampleCorrelationTermMatchesOneRankWithTheWholeBatch) {
  const auto& w = test::world();
  auto net = resnet20();
  const synth::Margins m = synth::gaussian_margins(*net, 128, 0.9, 11, false, 64, w);
  synth::SynthSettings s = settings(config::SynthMethod::dsg, false, 7);
  s.cfg.sci_weight = 200;
  s = synth::resolve_settings(s.cfg, "test");
  const double err = distributed_vs_single(s, m);
  if (w.rank() == 0)
    std::printf("[ info     ] dsg + SCI, world %d: max abs image diff vs 1 rank %.3g\n", w.size(), err);
  EXPECT_LE(err, 1e-5) << "world " << w.size() << " (7 images, 20 iterations)";
}

// genie (docs/method.md section 7.3): the generator's BatchNorms over the global batch (summed backward), the
// network's batch statistics, the generator's gradient all-reduced, swing convolutions on. The first forward pass
// is the same as one rank's with the whole batch, and so is the first update (8 images split over the ranks). Genie's
// optimisation then amplifies float32 summation-order differences (Adam's first steps are nearly sign steps, and the
// biases in front of a BatchNorm have a zero true gradient): the later iterates drift apart; the drift is printed.
TEST(SynthMpi, GenieMatchesOneRankWithTheWholeBatch) {
  const auto& w = test::world();
  synth::SynthSettings s = settings(config::SynthMethod::genie, false, 8);
  EXPECT_EQ(s.lr, 0.1);
  for (int64_t iters : {1, 2, 5}) {
    s.cfg.iters = iters;
    const double err = distributed_vs_single(s, synth::Margins());
    if (w.rank() == 0)
      std::printf("[ info     ] genie, world %d, %lld iterations: max abs image diff vs 1 rank x 8 images %.3g\n",
                  w.size(), (long long)iters, err);
    if (iters == 1) EXPECT_LE(err, 1e-6) << "world " << w.size() << ": the first forward pass";
    if (iters == 2) EXPECT_LE(err, 1e-3) << "world " << w.size() << ": after the first update";
  }
}

// genie's bookkeeping: no labels and no LSE layers, the stored loss is the last iteration's, and a different seed
// gives different images (the generator and the latents are both keyed by it).
TEST(SynthMpi, GenieStoresTheLastIterateWithoutLabels) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  const synth::SynthSettings s = settings(config::SynthMethod::genie, false, 6);
  synth::Synthesizer synth(*net, s, synth::Margins(), w);
  const synth::BatchResult r = synth.make_batch(0);
  EXPECT_TRUE(torch::all(r.labels.eq(-1)).item<bool>());
  EXPECT_TRUE(torch::all(r.lse_layer.eq(-1)).item<bool>());
  ASSERT_EQ(r.loss_curve.size(), 20u);
  EXPECT_EQ(static_cast<float>(r.loss), r.loss_curve.back());
  EXPECT_LT(r.loss_curve.back(), r.loss_curve.front());
  config::SynthConfig other = s.cfg;
  other.seed = 12;
  synth::Synthesizer synth2(*net, synth::resolve_settings(other, "test"), synth::Margins(), w);
  EXPECT_FALSE(torch::allclose(synth2.make_batch(0).images, r.images));
}
