// src/models/bn_kernels.cpp: per-channel batch sums and the fused inference BatchNorm against float64 references
// (values and gradients), their independence of the thread count, and the fallback paths; with them the network's
// channels-last and bfloat16 options (src/models/network.cpp).
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <string>
#include <tuple>

#include "models/bn_kernels.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"

using namespace dsgq;

namespace {
constexpr double kSumRelTol = 1e-6;     // float32 plane sums combined in float64, relative to the float64 reference
constexpr double kVarRelTol = 1e-5;     // the variance formed from the sums (mean^2 / var ~ 10 here) vs float64
constexpr double kBnTol = 1e-5;         // x * alpha + beta vs torch's batch_norm, outputs O(10)
constexpr double kGradTol = 1e-5;       // float32 gradients of O(10) against the float64 reference
constexpr double kLayoutRelTol = 1e-4;  // channels-last vs NCHW resnet20 logits: another summation order, 20 layers
constexpr double kBf16RelTol = 0.1;     // bfloat16 convs (8-bit mantissa) through 20 layers, relative to max|logit|
constexpr double kBf16Moved = 1e-5;     // ... and the option really changed the arithmetic

// f with a channel-dependent offset (mean^2 / var up to ~10: the cancellation a plain sum of squares would suffer)
at::Tensor offset_features(std::vector<int64_t> shape, uint64_t seed) {
  torch::manual_seed(seed);
  const at::Tensor off = torch::arange(shape[1], torch::kFloat).view({1, -1, 1, 1}) * 1.5 - 2.0;
  return torch::randn(shape) * 1.3 + off;
}

// Random He-scaled weights for resnet20 (BN running statistics positive), so the logits are O(1).
std::unique_ptr<models::Network> random_resnet20() {
  auto net = models::build_network("resnet20", "test");
  models::Checkpoint ck;
  torch::manual_seed(11);
  for (const auto& [name, shape] : net->param_specs()) {
    int64_t fan_in = 1;
    for (size_t k = 1; k < shape.size(); ++k) fan_in *= shape[k];
    ck.tensors.push_back({name, name.find("running_var") != std::string::npos ? torch::rand(shape) + 0.5
                                : shape.size() > 1 ? torch::randn(shape) * std::sqrt(2.0 / fan_in)
                                                   : torch::randn(shape) * 0.1});
  }
  net->load(ck);
  return net;
}
}  // namespace

TEST(BnKernels, ChannelSumsMatchFloat64ValuesAndGradients) {
  // hw = 35 (a partial lane block) and 1024; n = 3 and 2
  for (const auto& shape : {std::vector<int64_t>{3, 4, 5, 7}, std::vector<int64_t>{2, 6, 32, 32}}) {
    const at::Tensor f0 = offset_features(shape, 1);
    const int64_t C = shape[1];
    const double count = static_cast<double>(shape[0] * shape[2] * shape[3]);
    const at::Tensor f = f0.clone().requires_grad_(true);
    const at::Tensor sums = models::channel_sums(f);
    ASSERT_EQ(sums.scalar_type(), at::kDouble);
    const at::Tensor fd = f0.to(at::kDouble);
    const at::Tensor s1 = fd.sum({0, 2, 3}), s2 = fd.square().sum({0, 2, 3});
    EXPECT_TRUE(sums.slice(0, 0, C).allclose(s1, kSumRelTol, kSumRelTol));
    EXPECT_TRUE(sums.slice(0, C, 2 * C).allclose(s2, kSumRelTol, 0));
    const at::Tensor var = sums.slice(0, C, 2 * C) / count - (sums.slice(0, 0, C) / count).square();
    EXPECT_TRUE(var.allclose(fd.var({0, 2, 3}, /*unbiased=*/false), kVarRelTol, 0));
    const at::Tensor g = torch::randn({2 * C}, torch::kDouble);
    (sums * g).sum().backward();
    const at::Tensor want = g.slice(0, 0, C).view({1, C, 1, 1}) + 2.0 * fd * g.slice(0, C, 2 * C).view({1, C, 1, 1});
    EXPECT_LT((f.grad().to(at::kDouble) - want).abs().max().item<double>(), kGradTol * want.abs().max().item<double>());
  }
}

TEST(BnKernels, SameBytesForAnyThreadCount) {
  const at::Tensor x = offset_features({4, 5, 9, 11}, 2);
  const at::Tensor w = torch::rand({5}) + 0.5, b = torch::randn({5}), m = torch::randn({5}), v = torch::rand({5}) + 0.1;
  const int before = at::get_num_threads();
  auto run = [&](int threads) {
    at::set_num_threads(threads);
    const at::Tensor xi = x.clone().requires_grad_(true);
    auto [y, sums] = models::bn_eval_with_sums(xi, w, b, m, v, 1e-5);
    ((y * y).sum() + sums.sum().to(at::kFloat)).backward();
    return std::make_tuple(y.detach(), sums.detach(), xi.grad());
  };
  const auto [y1, s1, g1] = run(1);
  const auto [y2, s2, g2] = run(2);
  at::set_num_threads(before);
  EXPECT_TRUE(y1.equal(y2));
  EXPECT_TRUE(s1.equal(s2));
  EXPECT_TRUE(g1.equal(g2));
}

// The kernels' at::parallel_for is a header template: without OpenMP in their translation units it runs serially
// whatever --threads says (as it did, unnoticed, until this test). Built with OpenMP, a loop of 64 planes takes both.
TEST(BnKernels, KernelsUseTheThreadsGiven) {
  const int before = at::get_num_threads();
  at::set_num_threads(2);
  const int used = models::kernel_threads(64);
  at::set_num_threads(before);
  EXPECT_EQ(used, DSGQ_KERNELS_OPENMP ? 2 : 1);
}

TEST(BnKernels, FusedBatchNormMatchesBatchNormAndItsGradient) {
  const at::Tensor x0 = offset_features({3, 6, 8, 5}, 3);
  const at::Tensor w = torch::rand({6}) + 0.5, b = torch::randn({6}), m = torch::randn({6}), v = torch::rand({6}) + 0.1;
  const at::Tensor gy = torch::randn({3, 6, 8, 5}), gs = torch::randn({12}, torch::kDouble);
  auto run = [&](bool fused, at::MemoryFormat fmt) {
    const at::Tensor x = x0.clone(fmt).requires_grad_(true);
    at::Tensor y, sums;
    if (fused) {
      std::tie(y, sums) = models::bn_eval_with_sums(x, w, b, m, v, 1e-5);
    } else {  // the reference: torch's batch_norm, the sums in float64
      y = at::batch_norm(x, w, b, m, v, false, 0.1, 1e-5, true);
      const at::Tensor xd = x.to(at::kDouble);
      sums = torch::cat({xd.sum({0, 2, 3}), xd.square().sum({0, 2, 3})});
    }
    ((y * gy).sum() + (sums * gs).sum().to(at::kFloat)).backward();
    return std::make_tuple(y.detach().contiguous(), sums.detach(), x.grad().contiguous());
  };
  const auto [y0, s0, g0] = run(false, at::MemoryFormat::Contiguous);
  for (const auto fmt : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {  // fast path, fallback
    const auto [y1, s1, g1] = run(true, fmt);
    EXPECT_LT((y1 - y0).abs().max().item<double>(), kBnTol * y0.abs().max().item<double>());
    EXPECT_TRUE(s1.allclose(s0, kSumRelTol, kSumRelTol));
    EXPECT_LT((g1 - g0).abs().max().item<double>(), kGradTol * g0.abs().max().item<double>());
  }
}

TEST(BnKernels, ForwardHookGetsTheSumsOfEveryBnInput) {
  auto net = random_resnet20();
  const at::Tensor x = torch::randn({2, 3, 32, 32});
  std::vector<at::Tensor> inputs, sums;
  models::ForwardHooks hooks;
  hooks.bn_input = [&](int, const at::Tensor& f) { inputs.push_back(f.detach()); };
  hooks.bn_sums = [&](int, const at::Tensor& s) { sums.push_back(s.detach()); };
  const at::Tensor with = net->forward(x, &hooks), without = net->forward(x);
  ASSERT_EQ(inputs.size(), net->bns().size());
  ASSERT_EQ(sums.size(), inputs.size());
  for (size_t l = 0; l < sums.size(); ++l) EXPECT_TRUE(sums[l].equal(models::channel_sums(inputs[l]))) << l;
  EXPECT_LT((with - without).abs().max().item<double>(), kLayoutRelTol * without.abs().max().item<double>());
}

TEST(BnKernels, ChannelsLastAndBf16Forward) {
  auto net = random_resnet20();
  const at::Tensor x = torch::randn({4, 3, 32, 32});
  const at::Tensor ref = net->forward(x);
  const double scale = ref.abs().max().item<double>();
  net->set_channels_last(true);
  const at::Tensor cl = net->forward(x);
  net->set_channels_last(false);
  EXPECT_LT((cl - ref).abs().max().item<double>(), kLayoutRelTol * scale);
  net->set_conv_bf16(true);
  const at::Tensor xg = x.clone().requires_grad_(true);
  const at::Tensor bf = net->forward(xg);
  net->set_conv_bf16(false);
  EXPECT_EQ(bf.scalar_type(), at::kFloat);
  const double diff = (bf - ref).abs().max().item<double>();
  EXPECT_LT(diff, kBf16RelTol * scale);
  EXPECT_GT(diff, kBf16Moved * scale);
  bf.sum().backward();  // the gradient reaches the float32 input through the casts
  EXPECT_EQ(xg.grad().scalar_type(), at::kFloat);
  EXPECT_GT(xg.grad().abs().sum().item<double>(), 0.0);
}

TEST(BnKernels, FusedPerSampleMomentsMatchVarMeanAndTheirGradient) {
  const at::Tensor x0 = offset_features({3, 5, 7, 6}, 4) * 0.01 + 30.0;  // mean^2 / var ~ 1e7: no cancellation
  const at::Tensor w = torch::rand({5}) + 0.5, b = torch::randn({5}), m = torch::randn({5}), v = torch::rand({5}) + 0.1;
  const at::Tensor gy = torch::randn({3, 5, 7, 6}), gm = torch::randn({3, 5}), gv = torch::randn({3, 5});
  auto run = [&](bool fused, at::MemoryFormat fmt) {
    const at::Tensor x = x0.clone(fmt).requires_grad_(true);
    at::Tensor y, mean, var;
    if (fused) {
      std::tie(y, mean, var) = models::bn_eval_with_moments(x, w, b, m, v, 1e-5);
    } else {  // the reference in float64
      y = at::batch_norm(x, w, b, m, v, false, 0.1, 1e-5, true);
      std::tie(var, mean) = at::var_mean(x.to(at::kDouble), {2, 3}, /*unbiased=*/true);
    }
    ((y * gy).sum() + (mean * gm).sum() + (var * gv).sum()).to(at::kDouble).backward();
    return std::make_tuple(y.detach(), mean.detach().to(at::kDouble), var.detach().to(at::kDouble),
                           x.grad().contiguous().to(at::kDouble));
  };
  const auto [y0, m0, v0, g0] = run(false, at::MemoryFormat::Contiguous);
  for (const auto fmt : {at::MemoryFormat::Contiguous, at::MemoryFormat::ChannelsLast}) {  // fast path, fallback
    const auto [y1, m1, v1, g1] = run(true, fmt);
    EXPECT_LT((y1 - y0).abs().max().item<double>(), kBnTol * y0.abs().max().item<double>());
    EXPECT_TRUE(m1.allclose(m0, kSumRelTol, 0));
    EXPECT_TRUE(v1.allclose(v0, kVarRelTol, 0)) << (v1 / v0 - 1).abs().max().item<double>();
    EXPECT_LT((g1 - g0).abs().max().item<double>(), kGradTol * g0.abs().max().item<double>());
  }
}

// On a CPU with FMA (every x86-64 of the last decade; torch then runs its AVX2/AVX-512 BatchNorm kernel, which
// rounds x * alpha + beta once), the fused pass gives torch's batch_norm bytes, so swapping it in changes no
// synthesized image; elsewhere the two agree to float rounding.
TEST(BnKernels, FusedBatchNormGivesTorchsBytes) {
  torch::manual_seed(9);
  const at::Tensor x = torch::randn({8, 16, 32, 32}) * 3;
  const at::Tensor w = torch::rand({16}) + 0.5, b = torch::randn({16}), m = torch::randn({16}),
                   v = torch::rand({16}) + 0.1;
  const at::Tensor ref = at::batch_norm(x, w, b, m, v, false, 0.1, 1e-5, true);
  const at::Tensor y = std::get<0>(models::bn_eval_with_sums(x, w, b, m, v, 1e-5));
  const at::Tensor y2 = std::get<0>(models::bn_eval_with_moments(x, w, b, m, v, 1e-5));
#if defined(__x86_64__) && defined(__GNUC__)
  const bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  const bool fma = false;
#endif
  if (fma) {
    EXPECT_TRUE(y.equal(ref)) << y.ne(ref).sum().item<int64_t>() << " of " << ref.numel() << " differ";
    EXPECT_TRUE(y2.equal(ref)) << y2.ne(ref).sum().item<int64_t>() << " of " << ref.numel() << " differ";
  } else {
    EXPECT_LT((y - ref).abs().max().item<double>(), kBnTol * ref.abs().max().item<double>());
  }
}
