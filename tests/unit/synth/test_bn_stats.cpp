// src/synth/bn_stats.cpp: per-sample BN statistics, the alignment term (by hand and against its plain-loop
// reference) and the homogeneity measure.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "synth/bn_stats.hpp"

using namespace dsgq;
using namespace dsgq::synth;

namespace {
constexpr double kFloatTol = 1e-6;     // float32 rounding of means, stds and sums of a few O(1) values
constexpr double kSmallStdTol = 1e-7;  // a constant channel's std sqrt(kStatEps) = 1e-3 in float32: 1e-4 relative
constexpr double kRefRelTol = 1e-5;   // float32 sums over 7 x 13 terms vs the double reference, relative to max(1, ref)
constexpr double kNoSpread = 1e-5;    // identical images: only float32 noise of the batched forward is left
constexpr double kSomeSpread = 1e-3;  // independent Gaussian images spread far above float32 noise
}  // namespace

TEST(BnStats, PerSampleStatsByHand) {
  // sample 0: channel 0 = [1,2;3,4], channel 1 constant 5; sample 1: channel 0 = [0,0;0,4], channel 1 = [-1,1;-1,1]
  const at::Tensor f = torch::tensor({1.f, 2.f, 3.f, 4.f, 5.f, 5.f, 5.f, 5.f, 0.f, 0.f, 0.f, 4.f, -1.f, 1.f, -1.f, 1.f})
                           .view({2, 2, 2, 2});
  const Stats st = per_sample_stats(f);
  EXPECT_NEAR(st.mean[0][0].item<float>(), 2.5f, kFloatTol);
  EXPECT_NEAR(st.mean[1][0].item<float>(), 1.0f, kFloatTol);
  EXPECT_NEAR(st.mean[1][1].item<float>(), 0.0f, kFloatTol);
  EXPECT_NEAR(st.std[0][0].item<float>(), std::sqrt(5.0 / 3.0 + kStatEps), kFloatTol);  // unbiased variance
  EXPECT_NEAR(st.std[0][1].item<float>(), std::sqrt(kStatEps), kSmallStdTol);           // constant: sqrt(1e-6)
  EXPECT_NEAR(st.std[1][0].item<float>(), std::sqrt(4.0 + kStatEps), kFloatTol);
  EXPECT_NEAR(st.std[1][1].item<float>(), std::sqrt(4.0 / 3.0 + kStatEps), kFloatTol);
}

TEST(BnStats, AlignmentTermByHand) {
  // m = [1, -2], s = [1.5, 0.5]; targets mu = 0, sigma = 1; delta 0.5, gamma 0.25; B = 2.
  Stats st{torch::tensor({1.f, -2.f}).view({1, 2}), torch::tensor({1.5f, 0.5f}).view({1, 2})};
  Target t{torch::zeros({2}), torch::ones({2})};
  // hinge: 0.5, 1.5 (mean); 0.25, 0.25 (std) -> squares 0.25 + 2.25 + 0.0625 + 0.0625 = 2.625; / B
  EXPECT_NEAR(alignment_term(st, t, 0.5, 0.25, {}, {}, 2).item<double>(), 1.3125, kFloatTol);
  EXPECT_NEAR(alignment_term(st, t, 0.5, 0.25, torch::tensor({2.f}), {}, 2).item<double>(), 2.625,
              kFloatTol);  // paper LSE
  EXPECT_NEAR(alignment_term(st, t, 0.5, 0.25, {}, torch::tensor({2.f}), 2).item<double>(), 5.25,
              kFloatTol);  // official
  // ZeroQ (no margins): 1 + 4 + 0.25 + 0.25 = 5.5
  EXPECT_NEAR(alignment_term(st, t, 0, 0, {}, {}, 2).item<double>(), 2.75, kFloatTol);
  // Inside the margins nothing is left.
  EXPECT_EQ(alignment_term(st, t, 2.0, 0.5, {}, {}, 2).item<double>(), 0.0);
}

TEST(BnStats, AlignmentTermMatchesReference) {
  torch::manual_seed(7);
  Stats st{torch::randn({7, 13}), torch::rand({7, 13}) * 2};
  Target t{torch::randn({13}) * 0.3, torch::rand({13}) + 0.5};
  const at::Tensor w = torch::tensor({1.f, 2.f, 1.f, 1.f, 2.f, 1.f, 1.f}),
                   f = torch::tensor({2.f, 1.f, 1.f, 2.f, 1.f, 1.f, 1.f});
  const std::vector<double> wv = {1, 2, 1, 1, 2, 1, 1}, fv = {2, 1, 1, 2, 1, 1, 1};
  for (double delta : {0.0, 0.3, 1.1}) {
    const double fast = alignment_term(st, t, delta, delta / 2, w, f, 11).item<double>();
    const double ref = alignment_term_ref(st, t, delta, delta / 2, wv, fv, 11);
    EXPECT_TRUE(!(std::abs(fast - ref) > kRefRelTol * std::max(1.0, std::abs(ref))))
        << "delta " << delta << ": " << fast << " vs " << ref;
  }
}

namespace {
// resnet20 with random weights (running variances positive), so a test needs no data files.
std::unique_ptr<models::Network> random_resnet20(uint64_t seed, double scale) {
  auto net = models::build_network("resnet20", "arch");
  models::Checkpoint ck;
  torch::manual_seed(seed);
  for (const auto& [name, shape] : net->param_specs())
    ck.tensors.push_back(
        {name, name.find("running_var") != std::string::npos ? torch::rand(shape) + 0.5 : torch::randn(shape) * scale});
  net->load(ck);
  return net;
}
}  // namespace

TEST(Homogeneity, IdenticalImagesHaveNoSpread) {
  const auto net = random_resnet20(5, 0.2);
  const at::Tensor one = torch::randn({1, 3, 32, 32});
  const Homogeneity h = homogeneity(*net, one.expand({5, 3, 32, 32}).contiguous());
  EXPECT_LT(h.spread, kNoSpread);
  const Homogeneity g = homogeneity(*net, torch::randn({5, 3, 32, 32}));
  EXPECT_GT(g.spread, kSomeSpread);
  // The overall figures are the means of the per-layer ones.
  ASSERT_EQ(g.layer_spread.size(), net->bns().size());
  ASSERT_EQ(g.layer_dev.size(), net->bns().size());
  double spread = 0, dev = 0;
  for (size_t l = 0; l < g.layer_spread.size(); ++l) {
    spread += g.layer_spread[l] / double(g.layer_spread.size());
    dev += g.layer_dev[l] / double(g.layer_dev.size());
  }
  EXPECT_NEAR(spread, g.spread, 1e-12);
  EXPECT_NEAR(dev, g.dev, 1e-12);
}

TEST(ClassFit, MatchesAPlainLoopAndSkipsUnlabelledImages) {
  const auto net = random_resnet20(11, 0.3);
  const at::Tensor x = torch::randn({7, 3, 32, 32});
  const std::vector<int64_t> y = {3, -1, 0, 9, -1, 5, 5};
  const at::Tensor z = net->forward(x).to(at::kDouble).contiguous();  // [7, 10], one batch
  double agree = 0, ce = 0, margin = 0;
  int64_t n = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i] < 0) continue;
    std::vector<double> row(10);
    for (int k = 0; k < 10; ++k) row[k] = z[static_cast<int64_t>(i)][k].item<double>();
    const auto top = std::max_element(row.begin(), row.end());
    double lse = 0;
    for (double v : row) lse += std::exp(v - *top);
    ce += *top + std::log(lse) - row[y[i]];
    agree += (top - row.begin()) == y[i] ? 1 : 0;
    std::vector<double> sorted = row;
    std::sort(sorted.rbegin(), sorted.rend());
    margin += sorted[0] - sorted[1];
    ++n;
  }
  at::Tensor logits;
  homogeneity(*net, x, 3, &logits);  // the logits as dsgq inspect takes them: chunks of 3, 3 and 1 images
  const ClassFit c = class_fit(logits, torch::tensor(y));
  ASSERT_EQ(c.n, 5);
  EXPECT_NEAR(c.agree, agree / 5, 1e-12);
  EXPECT_NEAR(c.ce, ce / 5, kRefRelTol * std::max(1.0, ce / 5));
  EXPECT_NEAR(c.margin, margin / 5, kRefRelTol * std::max(1.0, margin / 5));
  EXPECT_EQ(class_fit(logits, torch::full({7}, -1, at::kLong)).n, 0);  // no labels: nothing measured
}
