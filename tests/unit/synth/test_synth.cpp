#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "synth/bn_stats.hpp"
#include "synth/plateau.hpp"
#include "synth/sampling.hpp"
#include "synth/synthesizer.hpp"
#include "core/error.hpp"

using namespace dsgq;
using namespace dsgq::synth;

TEST(BnStats, PerSampleStatsByHand) {
  // sample 0: channel 0 = [1,2;3,4], channel 1 constant 5; sample 1: channel 0 = [0,0;0,4], channel 1 = [-1,1;-1,1]
  const at::Tensor f = torch::tensor({1.f, 2.f, 3.f, 4.f, 5.f, 5.f, 5.f, 5.f, 0.f, 0.f, 0.f, 4.f, -1.f, 1.f, -1.f, 1.f}).view({2, 2, 2, 2});
  const Stats st = per_sample_stats(f);
  EXPECT_NEAR(st.mean[0][0].item<float>(), 2.5f, 1e-6);
  EXPECT_NEAR(st.mean[1][0].item<float>(), 1.0f, 1e-6);
  EXPECT_NEAR(st.mean[1][1].item<float>(), 0.0f, 1e-6);
  EXPECT_NEAR(st.std[0][0].item<float>(), std::sqrt(5.0 / 3.0 + 1e-6), 1e-6);  // unbiased variance
  EXPECT_NEAR(st.std[0][1].item<float>(), 1e-3, 1e-7);                         // constant: sqrt(1e-6)
  EXPECT_NEAR(st.std[1][0].item<float>(), std::sqrt(4.0 + 1e-6), 1e-6);
  EXPECT_NEAR(st.std[1][1].item<float>(), std::sqrt(4.0 / 3.0 + 1e-6), 1e-6);
}

TEST(BnStats, AlignmentTermByHand) {
  // m = [1, -2], s = [1.5, 0.5]; targets mu = 0, sigma = 1; delta 0.5, gamma 0.25; B = 2.
  Stats st{torch::tensor({1.f, -2.f}).view({1, 2}), torch::tensor({1.5f, 0.5f}).view({1, 2})};
  Target t{torch::zeros({2}), torch::ones({2})};
  // hinge: 0.5, 1.5 (mean); 0.25, 0.25 (std) -> squares 0.25 + 2.25 + 0.0625 + 0.0625 = 2.625; / B
  EXPECT_NEAR(alignment_term(st, t, 0.5, 0.25, {}, {}, 2).item<double>(), 1.3125, 1e-6);
  EXPECT_NEAR(alignment_term(st, t, 0.5, 0.25, torch::tensor({2.f}), {}, 2).item<double>(), 2.625, 1e-6);  // paper LSE
  EXPECT_NEAR(alignment_term(st, t, 0.5, 0.25, {}, torch::tensor({2.f}), 2).item<double>(), 5.25, 1e-6);   // official
  // ZeroQ (no margins): 1 + 4 + 0.25 + 0.25 = 5.5
  EXPECT_NEAR(alignment_term(st, t, 0, 0, {}, {}, 2).item<double>(), 2.75, 1e-6);
  // Inside the margins nothing is left.
  EXPECT_EQ(alignment_term(st, t, 2.0, 0.5, {}, {}, 2).item<double>(), 0.0);
}

TEST(BnStats, AlignmentTermMatchesReference) {
  torch::manual_seed(7);
  Stats st{torch::randn({7, 13}), torch::rand({7, 13}) * 2};
  Target t{torch::randn({13}) * 0.3, torch::rand({13}) + 0.5};
  const at::Tensor w = torch::tensor({1.f, 2.f, 1.f, 1.f, 2.f, 1.f, 1.f}), f = torch::tensor({2.f, 1.f, 1.f, 2.f, 1.f, 1.f, 1.f});
  const std::vector<double> wv = {1, 2, 1, 1, 2, 1, 1}, fv = {2, 1, 1, 2, 1, 1, 1};
  for (double delta : {0.0, 0.3, 1.1}) {
    const double fast = alignment_term(st, t, delta, delta / 2, w, f, 11).item<double>();
    const double ref = alignment_term_ref(st, t, delta, delta / 2, wv, fv, 11);
    EXPECT_TRUE(!(std::abs(fast - ref) > 1e-5 * std::max(1.0, std::abs(ref)))) << "delta " << delta << ": " << fast << " vs " << ref;
  }
}

TEST(Plateau, FollowsPyTorchReduceLROnPlateau) {
  PlateauConfig pc;
  pc.patience = 2;
  Plateau p(0.5, pc);
  // best 5, then 4 (improves), then three equal values: the third non-improvement (> patience 2) reduces.
  EXPECT_EQ(p.step(5), 0.5);
  EXPECT_EQ(p.step(4), 0.5);
  EXPECT_EQ(p.step(4), 0.5);
  EXPECT_EQ(p.step(4), 0.5);
  EXPECT_DOUBLE_EQ(p.step(4), 0.05);
  // A relative improvement below the threshold (1e-4) does not count.
  EXPECT_DOUBLE_EQ(p.step(3.9999), 0.05);
  EXPECT_DOUBLE_EQ(p.step(3.9999), 0.05);
  EXPECT_DOUBLE_EQ(p.step(3.9999), 0.005);
  // A real improvement resets the counter.
  EXPECT_DOUBLE_EQ(p.step(1.0), 0.005);
  EXPECT_EQ(p.bad_steps(), 0);
  // Never below min_lr (1e-4); reductions smaller than eps are skipped.
  for (int i = 0; i < 20; ++i) p.step(1.0);
  EXPECT_DOUBLE_EQ(p.lr(), 1e-4);
}

TEST(Sampling, DrawsDependOnlyOnSeedAndGlobalIndex) {
  const at::Tensor all = draw_images(Init::gaussian, 3, Stream::init, 0, 10, 3, 4, 5);
  const at::Tensor part = draw_images(Init::gaussian, 3, Stream::init, 5, 5, 3, 4, 5);
  EXPECT_TRUE(torch::equal(all.slice(0, 5, 10), part));
  EXPECT_FALSE(torch::equal(all, draw_images(Init::gaussian, 4, Stream::init, 0, 10, 3, 4, 5)));
  EXPECT_FALSE(torch::equal(all, draw_images(Init::gaussian, 3, Stream::margin, 0, 10, 3, 4, 5)));
  const at::Tensor u = draw_images(Init::uniform01, 3, Stream::init, 0, 10, 3, 4, 5);
  EXPECT_GE(u.min().item<float>(), 0.0f);
  EXPECT_LT(u.max().item<float>(), 1.0f);
  const at::Tensor z = draw_images(Init::zeroq_official, 3, Stream::init, 0, 10, 3, 8, 8);
  EXPECT_GE(z.min().item<float>(), -127.5f / 5418.75f - 1e-7f);
  EXPECT_LE(z.max().item<float>(), 126.5f / 5418.75f + 1e-7f);
  EXPECT_TRUE(torch::equal(draw_labels(1, 2, 3, 10), draw_labels(1, 0, 5, 10).slice(0, 2, 5)));
  for (int it = 0; it < 200; ++it) {
    const int64_t r = draw_roll(1, 0, it);
    EXPECT_GE(r, -30);
    EXPECT_LE(r, 29);
  }
}

TEST(Homogeneity, IdenticalImagesHaveNoSpread) {
  auto net = models::build_network("resnet20", "arch");
  models::Checkpoint ck;
  torch::manual_seed(5);
  for (const auto& [name, shape] : net->param_specs())
    ck.tensors.push_back({name, name.find("running_var") != std::string::npos ? torch::rand(shape) + 0.5
                                                                             : torch::randn(shape) * 0.2});
  net->load(ck);
  const at::Tensor one = torch::randn({1, 3, 32, 32});
  const Homogeneity h = homogeneity(*net, one.expand({5, 3, 32, 32}).contiguous());
  EXPECT_LT(h.spread, 1e-5);
  const Homogeneity g = homogeneity(*net, torch::randn({5, 3, 32, 32}));
  EXPECT_GT(g.spread, 1e-3);
}

TEST(Synthesizer, NonFiniteLossNamesBatchIterationAndTerm) {
  LossValue v;
  v.terms = {{"bn", 1.0}, {"input", std::nan("")}, {"ce", INFINITY}};
  try {
    check_finite(v, "synth k", 3, 17);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "synth k: the loss diverged at batch 3, iteration 17: term 'input' is nan; expected a finite value (lower [synth] lr?)");
  }
  v.terms = {{"bn", 1.0}};
  EXPECT_NO_THROW(check_finite(v, "synth k", 0, 0));
}
