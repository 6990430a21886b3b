#include <gtest/gtest.h>
#include <torch/torch.h>

#include "quant/observer.hpp"
#include "quant/quantizer.hpp"

using namespace dsgq::quant;

TEST(FakeQuant, OfficialQuantizerByHand) {
  // bits 2, range [0, 3]: s = 1, z = 2, q = clamp(round(x - 2), -2, 1), x^ = q + 2; round half to even.
  const at::Tensor x = torch::tensor({0.0f, 1.4f, 2.5f, 3.7f, -1.0f, 1.5f});
  const at::Tensor y = fake_quant_official(x, torch::tensor(0.0f), torch::tensor(3.0f), 2, 0);
  const at::Tensor expected = torch::tensor({0.0f, 1.0f, 2.0f, 3.0f, 0.0f, 2.0f});
  EXPECT_TRUE(torch::equal(y, expected)) << y;
}

TEST(FakeQuant, OfficialPerChannelUsesEachChannelsRange) {
  torch::manual_seed(3);
  const at::Tensor w = torch::randn({13, 7, 3, 3});
  auto [mn, mx] = channel_minmax(w);
  for (int bits : {2, 4, 8}) {
    const at::Tensor q = fake_quant_official(w, mn, mx, bits, 0);
    for (int64_t c = 0; c < 13; c += 4) {
      const at::Tensor one = fake_quant_official(w[c], mn[c], mx[c], bits, 0);
      EXPECT_TRUE(torch::equal(q[c], one)) << "bits " << bits << " channel " << c;
    }
    // At most 2^bits distinct levels per channel, and the error is at most half a step (plus rounding of z).
    EXPECT_LE(std::get<0>(at::_unique(q[0].reshape({-1}))).numel(), 1 << bits);
    const double step = ((mx - mn) / ((1 << bits) - 1)).max().item<double>();
    EXPECT_TRUE(!((q - w).abs().max().item<double>() > step)) << "bits " << bits;
  }
}

TEST(FakeQuant, AffineMatchesReference) {
  torch::manual_seed(5);
  const at::Tensor w = torch::randn({13, 7, 3, 3}) * 3;
  for (int bits : {2, 4, 8}) {
    const int64_t qmax = (1 << bits) - 1;
    const at::Tensor scale = torch::rand({13}) * 0.2 + 0.01, zp = torch::randint(0, qmax + 1, {13}).to(torch::kFloat);
    const double err = (fake_quant_affine(w, scale, zp, 0, qmax, 0).to(torch::kDouble) -
                        fake_quant_affine_ref(w, scale, zp, 0, qmax, 0))
                           .abs().max().item<double>();
    EXPECT_TRUE(!(err > 1e-6)) << "per-channel bits " << bits << " err " << err;
    const at::Tensor s1 = torch::tensor({0.07f}), z1 = torch::tensor({3.0f});
    const double err1 = (fake_quant_affine(w, s1, z1, 0, qmax, 0).to(torch::kDouble) -
                         fake_quant_affine_ref(w, s1, z1, 0, qmax, 0)).abs().max().item<double>();
    EXPECT_TRUE(!(err1 > 1e-6)) << "per-tensor bits " << bits << " err " << err1;
  }
}

TEST(Observers, HandMadeTensors) {
  const at::Tensor x = torch::tensor({1.0f, 5.0f, -2.0f, 3.0f}).view({2, 2});
  Range r = observe("minmax", x, 8);
  EXPECT_DOUBLE_EQ(r.a, -2.0);
  EXPECT_DOUBLE_EQ(r.b, 5.0);
  r = observe("ema", x, 8);  // mean of per-sample minima (1, -2) and maxima (5, 3)
  EXPECT_DOUBLE_EQ(r.a, -0.5);
  EXPECT_DOUBLE_EQ(r.b, 4.0);
  const at::Tensor pos = torch::tensor({2.0f, 4.0f, 6.0f, 8.0f}).view({2, 2});
  r = observe("ema", pos, 8);  // ranges always include 0
  EXPECT_DOUBLE_EQ(r.a, 0.0);
  EXPECT_DOUBLE_EQ(r.b, 6.0);
  EXPECT_DOUBLE_EQ(quantile_linear(torch::arange(11, torch::kFloat), 0.25), 2.5);
  EXPECT_DOUBLE_EQ(quantile_linear(torch::arange(11, torch::kFloat), 1.0), 10.0);
  // percentile: 100001 values 0..100000 -> 0.001 % and 99.999 % are 1 and 99999.
  r = observe("percentile", torch::arange(100001, torch::kFloat).view({1, -1}), 8);
  EXPECT_NEAR(r.a, 0.0, 1e-9);  // min(0, 1)
  EXPECT_NEAR(r.b, 99999.0, 1e-6);
  // mse: one outlier at 3 among 4000 values in [0, 1): clipping it (error <= 2 on one value) beats a 3x coarser
  // grid for all the others, so the chosen maximum lies below 3 but not below the bulk.
  at::Tensor y = torch::rand({1, 4000});
  y[0][0] = 3.0f;
  r = observe("mse", y, 4);
  EXPECT_LT(r.b, 2.0);
  EXPECT_GT(r.b, 0.9);
}
