// src/quant/observer.cpp: activation range observers and the linear quantile.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "quant/observer.hpp"
#include "quant/quantizer.hpp"

using namespace dsgq::quant;

namespace {
constexpr double kZeroTol = 1e-9;      // ranges always include 0: the lower end is min(0, q) = 0 up to double noise
constexpr double kQuantileTol = 1e-6;  // q * (n - 1) in double is ~1e-11 off an integer; values are 1 apart
}  // namespace

TEST(Observers, HandMadeTensors) {
  torch::manual_seed(11);  // the mse case's uniform draw
  const at::Tensor x = torch::tensor({1.0f, 5.0f, -2.0f, 3.0f}).view({2, 2});
  Range r = observe(dsgq::config::Observer::minmax, x, 8);
  EXPECT_DOUBLE_EQ(r.a, -2.0);
  EXPECT_DOUBLE_EQ(r.b, 5.0);
  r = observe(dsgq::config::Observer::ema, x, 8);  // mean of per-sample minima (1, -2) and maxima (5, 3)
  EXPECT_DOUBLE_EQ(r.a, -0.5);
  EXPECT_DOUBLE_EQ(r.b, 4.0);
  const at::Tensor pos = torch::tensor({2.0f, 4.0f, 6.0f, 8.0f}).view({2, 2});
  r = observe(dsgq::config::Observer::ema, pos, 8);  // ranges always include 0
  EXPECT_DOUBLE_EQ(r.a, 0.0);
  EXPECT_DOUBLE_EQ(r.b, 6.0);
  EXPECT_DOUBLE_EQ(quantile_linear(torch::arange(11, torch::kFloat), 0.25), 2.5);
  EXPECT_DOUBLE_EQ(quantile_linear(torch::arange(11, torch::kFloat), 1.0), 10.0);
  // percentile: 100001 values 0..100000 -> 0.001 % and 99.999 % are 1 and 99999.
  r = observe(dsgq::config::Observer::percentile, torch::arange(100001, torch::kFloat).view({1, -1}), 8);
  EXPECT_NEAR(r.a, 0.0, kZeroTol);  // min(0, 1)
  EXPECT_NEAR(r.b, 99999.0, kQuantileTol);
  // mse: one outlier at 3 among 4000 values in [0, 1): clipping it (error <= 2 on one value) beats a 3x coarser
  // grid for all the others, so the chosen maximum lies below 3 but not below the bulk.
  at::Tensor y = torch::rand({1, 4000});
  y[0][0] = 3.0f;
  r = observe(dsgq::config::Observer::mse, y, 4);
  EXPECT_LT(r.b, 2.0);
  EXPECT_GT(r.b, 0.9);
}

// The mse observer's one-pass residual kernel picks exactly the candidate the tensor composite
// ||x - fake_quant_official(x, a, b_i)|| picks (the residuals are the same float32 values), on activations with
// negative values, ties of the rounding and several bit-widths, whatever the input's memory layout.
TEST(Observers, MseKernelChoosesAsTheComposite) {
  torch::manual_seed(12);
  for (int bits : {2, 3, 4, 8}) {
    const at::Tensor x = torch::cat({torch::randn({6, 500}) * 1.7, torch::round(torch::randn({6, 100}) * 8) / 4}, 1);
    const double mn = std::min(0.0, x.min().item<double>()), mx = std::max(0.0, x.max().item<double>());
    const at::Tensor a = torch::tensor(mn);
    double best = INFINITY, best_b = mx;
    for (int i = 0; i < 80; ++i) {
      const double b = mx - i * 0.01 * (mx - mn);
      const double e = (x - fake_quant_official(x, a, torch::tensor(b), bits, 0)).norm().item<double>();
      if (e <= best) {
        best = e;
        best_b = b;
      }
    }
    EXPECT_EQ(observe(dsgq::config::Observer::mse, x, bits).b, best_b) << bits << " bits";
    EXPECT_EQ(observe(dsgq::config::Observer::mse, x.t().contiguous().t(), bits).b, best_b) << bits << " bits";
  }
}
