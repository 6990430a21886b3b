// src/quant/lsq.cpp: the LSQ fake quantizer's value and gradients, worked out by hand, QDrop's mixing, the fused passes
// against their composites, and every vector variant of the kernels against the baseline. src/quant/soft_rounding.cpp:
// AdaRound's fused soft rounding against its torch composite, bit for bit. src/quant/adam.cpp against
// torch::optim::Adam, bit for bit.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "core/simd.hpp"
#include "quant/adam.hpp"
#include "quant/lsq.hpp"
#include "quant/observer.hpp"
#include "quant/soft_rounding.hpp"

using namespace dsgq;

namespace {
constexpr double kExact = 1e-6;  // float32 arithmetic on values of order 1
}  // namespace

// step 0.5, zero point 1, 2 bits (codes 0..3, values -0.5, 0, 0.5, 1.0):
//   x = -1.0: x/s = -2, code -1 < 0: clamped below -> -0.5, d/dx 0, d/ds = 0 - zp = -1
//   x = 0.3:  x/s = 0.6 -> 1, code 2: inside -> 0.5, d/dx 1, d/ds = round(0.6) - 0.6 = 0.4
//   x = 0.6:  x/s = 1.2 -> 1, code 2: inside -> 0.5, d/dx 1, d/ds = 1 - 1.2 = -0.2
//   x = 2.0:  x/s = 4, code 5 > 3: clamped above -> 1.0, d/dx 0, d/ds = 3 - zp = 2
// The step's gradient is the sum over elements times grad_factor.
TEST(Lsq, ValueAndGradientsByHand) {
  const at::Tensor x = torch::tensor({-1.0f, 0.3f, 0.6f, 2.0f}).requires_grad_(true);
  const at::Tensor step = torch::tensor({0.5f}).requires_grad_(true);
  const double g = 0.25;
  const at::Tensor y = quant::lsq_quantize(x, step, 1, 2, g);
  const std::vector<float> want = {-0.5f, 0.5f, 0.5f, 1.0f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(y[i].item<double>(), want[i], kExact) << "element " << i;
  y.sum().backward();
  const std::vector<float> dx = {0, 1, 1, 0};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(x.grad()[i].item<double>(), dx[i], kExact) << "element " << i;
  EXPECT_NEAR(step.grad().item<double>(), g * (-1.0 + 0.4 - 0.2 + 2.0), kExact);
}

TEST(Lsq, GradFactorIsOneOverRootOfElementsTimesLevels) {
  EXPECT_DOUBLE_EQ(quant::lsq_grad_factor(1000, 4), 1.0 / std::sqrt(1000.0 * 15.0));
}

// drop 0.3: elements whose uniform is below 0.3 keep the float value, the others the quantized one; the gradient
// reaches each input only where it was taken.
TEST(Lsq, DropMixTakesTheFloatValueBelowTheProbability) {
  const at::Tensor q = torch::tensor({1.0f, 2.0f, 3.0f, 4.0f}).requires_grad_(true);
  const at::Tensor x = torch::tensor({10.0f, 20.0f, 30.0f, 40.0f}).requires_grad_(true);
  const at::Tensor u = torch::tensor({0.1f, 0.3f, 0.29f, 0.9f});
  const at::Tensor y = quant::drop_mix(q, x, u, 0.3);
  const std::vector<float> want = {10, 2, 30, 4};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y[i].item<float>(), want[i]) << "element " << i;
  y.sum().backward();
  const std::vector<float> gq = {0, 1, 0, 1}, gx = {1, 0, 1, 0};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(q.grad()[i].item<float>(), gq[i]);
    EXPECT_EQ(x.grad()[i].item<float>(), gx[i]);
  }
  EXPECT_TRUE(quant::drop_mix(q, x, u, 0.0).equal(q)) << "drop 0: BRECQ, always quantized";
  EXPECT_TRUE(quant::drop_mix(q, x, u, 1.0).equal(x)) << "drop 1: never quantized";
}

// The fused CPU pass equals the composite (torch's learnable fake-quant kernel, then where) in value and gradients.
TEST(Lsq, FusedPassEqualsComposite) {
  torch::manual_seed(5);
  for (double drop : {0.0, 0.5, 1.0}) {
    const at::Tensor x0 = torch::randn({3, 4, 9, 7}) * 2.0;
    const at::Tensor u = torch::rand({3, 4, 9, 7});
    const at::Tensor g = torch::randn({3, 4, 9, 7});
    auto run = [&](bool fused) {
      const at::Tensor x = x0.clone().requires_grad_(true), step = torch::tensor({0.3f}).requires_grad_(true);
      const at::Tensor y = fused ? quant::lsq_drop(x, step, 3, 3, 0.1, u, drop)
                                 : quant::drop_mix(quant::lsq_quantize(x, step, 3, 3, 0.1), x, u, drop);
      (y * g).sum().backward();
      return std::make_tuple(y.detach(), x.grad(), step.grad().defined() ? step.grad() : torch::zeros({1}));
    };
    const auto [y1, gx1, gs1] = run(true);
    const auto [y0, gx0, gs0] = run(false);
    EXPECT_TRUE(y1.allclose(y0, 0, 1e-6)) << "drop " << drop;
    EXPECT_TRUE(gx1.allclose(gx0, 0, 1e-6)) << "drop " << drop;
    EXPECT_NEAR(gs1.item<double>(), gs0.item<double>(), 1e-4 * std::max(1.0, std::abs(gs0.item<double>())))
        << "drop " << drop;
  }
}

// A channels-last activation ([runtime] channels_last) takes the fused pass in its own memory order: the masks are
// matched to the element they belong to, so values and gradients equal the contiguous run's exactly, and the output
// stays channels-last (no copy back to NCHW before the next conv).
TEST(Lsq, ChannelsLastEqualsContiguous) {
  torch::manual_seed(6);
  const at::Tensor x0 = torch::randn({2, 5, 6, 3}) * 2.0, u = torch::rand({2, 5, 6, 3}), g = torch::randn({2, 5, 6, 3});
  auto run = [&](bool channels_last) {
    const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    const at::Tensor x = x0.clone(fmt).requires_grad_(true), step = torch::tensor({0.3f}).requires_grad_(true);
    const at::Tensor y = quant::lsq_drop(x, step, 3, 3, 0.1, u, 0.5);
    EXPECT_TRUE(y.is_contiguous(fmt));
    (y * g).sum().backward();
    return std::make_tuple(y.detach().contiguous(), x.grad().contiguous(), step.grad().item<double>());
  };
  const auto [y1, gx1, gs1] = run(true);
  const auto [y0, gx0, gs0] = run(false);
  EXPECT_TRUE(y1.equal(y0));
  EXPECT_TRUE(gx1.equal(gx0));
  EXPECT_NEAR(gs1, gs0, 1e-4 * std::max(1.0, std::abs(gs0)));  // the step's sum in another order
}

// ReLU / ReLU6 fused into the quantizer's passes equals the activation followed by lsq_drop: the same values, the
// same gradients (the activation's backward stops the gradient at and beyond its bounds), the same step gradient.
TEST(Lsq, ActivationFusedEqualsActivationThenQuantizer) {
  torch::manual_seed(7);
  for (double act_hi : {std::numeric_limits<double>::infinity(), 6.0}) {
    for (double drop : {0.0, 0.5}) {
      const at::Tensor x0 = torch::randn({3, 4, 9, 7}) * 4.0, u = torch::rand({3, 4, 9, 7});
      const at::Tensor g = torch::randn({3, 4, 9, 7});
      auto run = [&](bool fused) {
        const at::Tensor x = x0.clone().requires_grad_(true), step = torch::tensor({0.3f}).requires_grad_(true);
        const at::Tensor a = std::isinf(act_hi) ? at::relu(x) : at::hardtanh(x, 0.0, act_hi);
        const at::Tensor y = fused ? quant::act_lsq_drop(x, act_hi, step, 3, 3, 0.1, u, drop)
                                   : quant::lsq_drop(a, step, 3, 3, 0.1, u, drop);
        (y * g).sum().backward();
        return std::make_tuple(y.detach(), x.grad(), step.grad());
      };
      const auto [y1, gx1, gs1] = run(true);
      const auto [y0, gx0, gs0] = run(false);
      EXPECT_TRUE(y1.equal(y0)) << "act_hi " << act_hi << " drop " << drop;
      EXPECT_TRUE(gx1.equal(gx0)) << "act_hi " << act_hi << " drop " << drop;
      EXPECT_TRUE(gs1.equal(gs0)) << "act_hi " << act_hi << " drop " << drop;
      EXPECT_GT(x0.lt(0).sum().item<int64_t>(), 0);  // both bounds are exercised
      if (!std::isinf(act_hi)) EXPECT_GT(x0.gt(act_hi).sum().item<int64_t>(), 0);
    }
  }
}

// gather_mix(q, x, rows, u, p) = drop_mix(q[rows], x[rows], u, p), in both memory layouts and at drop 0 and 1.
TEST(Lsq, GatherMixEqualsGatherThenMix) {
  torch::manual_seed(8);
  const at::Tensor rows = torch::tensor({4, 1, 1, 0}, torch::kLong);
  for (bool channels_last : {false, true}) {
    const auto fmt = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    const at::Tensor q = torch::randn({5, 3, 6, 7}).contiguous(fmt), x = torch::randn({5, 3, 6, 7}).contiguous(fmt);
    const at::Tensor u = torch::rand({4, 3, 6, 7});
    for (double drop : {0.0, 0.3, 1.0}) {
      const at::Tensor want = quant::drop_mix(q.index_select(0, rows), x.index_select(0, rows), u, drop);
      const at::Tensor got = quant::gather_mix(q, x, rows, u, drop);
      EXPECT_TRUE(got.equal(want)) << "channels_last " << channels_last << " drop " << drop;
      if (drop > 0 && drop < 1) EXPECT_TRUE(got.is_contiguous(fmt)) << "keeps the caches' layout";
    }
  }
}

// sq_error_sum(out, y, rows) = at::mse_loss(out, y[rows], sum): the value up to summation order, the gradient (after
// the loss's division by the element count) bit for bit.
TEST(Lsq, SquaredErrorSumEqualsMseLoss) {
  torch::manual_seed(9);
  const at::Tensor y = torch::randn({6, 5, 8, 8}), rows = torch::tensor({5, 2, 2}, torch::kLong);
  const at::Tensor base = torch::randn({3, 5, 8, 8});
  const double count = 3.0 * 64;
  auto run = [&](bool fused) {
    const at::Tensor out = base.clone().requires_grad_(true);
    const at::Tensor loss =
        fused ? quant::sq_error_sum(out, y, rows) : at::mse_loss(out, y.index_select(0, rows), at::Reduction::Sum);
    loss.div(count).backward();
    return std::make_pair(loss.item<double>(), out.grad());
  };
  const auto [l1, g1] = run(true);
  const auto [l0, g0] = run(false);
  EXPECT_NEAR(l1, l0, 1e-6 * l0);
  EXPECT_TRUE(g1.equal(g0));
  // rows undefined: y itself
  const at::Tensor out = torch::randn({6, 5, 8, 8});
  EXPECT_NEAR(quant::sq_error_sum(out, y, at::Tensor()).item<double>(), (out - y).square().sum().item<double>(),
              1e-5 * (out - y).square().sum().item<double>());
}

// The element-wise kernels are compiled for AVX-512, AVX2 and baseline x86-64 and chosen by the CPU's features
// (core/simd.hpp); every variant this CPU can run must give the same bits: the fused LSQ pass forward and backward,
// the gathered mix, the squared error and its gradient, the drop masks' uniforms and the mse observer's choice.
TEST(Lsq, EveryVectorVariantGivesTheSameBits) {
  const simd::Level best = simd::detected();
  if (best == simd::kBase) GTEST_SKIP() << "this CPU runs only the baseline variant: nothing to compare";
  torch::manual_seed(10);
  const at::Tensor x0 = torch::randn({3, 5, 17, 19}) * 3.0, u = torch::rand({3, 5, 17, 19});
  const at::Tensor g = torch::randn({3, 5, 17, 19}), y = torch::randn({4, 5, 17, 19});
  const at::Tensor rows = torch::tensor({2, 0, 3}, torch::kLong);
  auto run = [&](int cap) {
    simd::level_cap() = cap;
    std::vector<at::Tensor> out;
    const at::Tensor x = x0.clone().requires_grad_(true), step = torch::tensor({0.37f}).requires_grad_(true);
    const at::Tensor q = quant::act_lsq_drop(x, 6.0, step, 2, 3, 0.1, u, 0.5);
    (q * g).sum().backward();
    out.insert(out.end(), {q.detach(), x.grad(), step.grad()});
    out.push_back(quant::gather_mix(y, y * 2.0, rows, u, 0.5));
    const at::Tensor o = x0.clone().requires_grad_(true);
    const at::Tensor e = quant::sq_error_sum(o, y, rows);
    e.div(777.0).backward();
    out.insert(out.end(), {e.detach(), o.grad()});
    at::Tensor uni = at::empty({1001});
    quant::fill_uniform(uni.data_ptr<float>(), uni.numel(), 0x1234567ull);
    out.push_back(uni);
    const quant::Range r = quant::observe(config::Observer::mse, x0, 4);
    out.push_back(torch::tensor({r.a, r.b}, torch::kDouble));
    const at::Tensor v = (x0 * 2.0).requires_grad_(true);
    const at::Tensor w = quant::soft_weight(quant::rectified_sigmoid(v), x0.floor(), torch::full({3}, 2.0f),
                                            torch::tensor({0.1f, 0.2f, 0.3f}), 3.0);
    ((w * g).sum() + quant::rounding_regularizer(quant::rectified_sigmoid(v), 5.5)).backward();
    out.insert(out.end(), {w.detach(), v.grad()});
    simd::level_cap() = -1;
    return out;
  };
  const auto base = run(simd::kBase);
  for (int cap = simd::kAvx2; cap <= best; ++cap) {
    const auto other = run(cap);
    ASSERT_EQ(other.size(), base.size());
    for (size_t i = 0; i < base.size(); ++i)
      EXPECT_TRUE(other[i].equal(base[i])) << "variant " << cap << " against the baseline, output " << i;
  }
}

// The soft weight (clamp(floor + h(V) + z, 0, qmax) - z) * s, the rounding regulariser and their gradient w.r.t. V,
// fused, against the torch composite: every element equal, with V spread so that h saturates at 0 and 1 and the grid
// clamps at 0 and qmax (including elements exactly on the clamp bounds, where torch's clamp passes the gradient).
TEST(SoftRounding, FusedEqualsCompositeBitForBit) {
  torch::manual_seed(21);
  const int64_t c = 7;
  at::Tensor v0 = torch::randn({c, 5, 3, 3}) * 4.0;
  v0.view(-1).slice(0, 0, 6).copy_(torch::tensor({-20.0f, 20.0f, 0.0f, -2.3978953f, 2.3978953f, 1e-8f}));
  const at::Tensor fl = torch::randint(-9, 9, {c, 5, 3, 3}).to(at::kFloat);
  const at::Tensor z = torch::randint(0, 16, {c}).to(at::kFloat), s = torch::rand({c}) * 0.1 + 0.01;
  const at::Tensor g = torch::randn({c, 5, 3, 3});
  // h feeds the soft weight and (on a slice, as a rank's share) the regulariser, as in adaround; beta 2 and 3 take
  // torch's special cases of pow's backward (exponents 1 and 2)
  auto run = [&](bool fused, double beta) {
    const at::Tensor v = v0.clone().requires_grad_(true);
    const at::Tensor h = fused ? quant::rectified_sigmoid(v) : quant::rectified_sigmoid_ref(v);
    const at::Tensor w = fused ? quant::soft_weight(h, fl, z, s, 15.0) : quant::soft_weight_ref(h, fl, z, s, 15.0);
    const at::Tensor share = h.view(-1).slice(0, 40, 300);
    const at::Tensor reg =
        fused ? quant::rounding_regularizer(share, beta) : quant::rounding_regularizer_ref(share, beta);
    ((w * g).sum() + 0.01 * reg).backward();
    return std::vector<at::Tensor>{h.detach(), w.detach(), reg.detach(), v.grad()};
  };
  for (double beta : {20.0, 7.3, 3.0, 2.0}) {
    const auto ref = run(false, beta), got = run(true, beta);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_TRUE(got[i].equal(ref[i])) << "beta " << beta << ", output " << i;
  }
  const auto ref = run(false, 20.0);
  // the clamps were exercised: h at 0 and 1, the grid at both ends, and some gradient zero and some not
  EXPECT_GT(ref[0].eq(0).sum().item<int64_t>(), 0);
  EXPECT_GT(ref[0].eq(1).sum().item<int64_t>(), 0);
  const at::Tensor b = fl + ref[0] + z.view({c, 1, 1, 1});
  EXPECT_GT((b < 0).sum().item<int64_t>(), 0);
  EXPECT_GT((b > 15).sum().item<int64_t>(), 0);
  EXPECT_GT(ref[3].eq(0).sum().item<int64_t>(), 0);
  EXPECT_GT(ref[3].ne(0).sum().item<int64_t>(), 0);
}

// Learned scales (qdrop's weight_scale_lr) and non-float32 inputs take the composite: same values, the scale's
// gradient present.
TEST(SoftRounding, LearnedScaleTakesTheComposite) {
  torch::manual_seed(22);
  const at::Tensor h = torch::rand({4, 9}).requires_grad_(true), fl = torch::randint(-3, 3, {4, 9}).to(at::kFloat);
  const at::Tensor z = torch::full({4}, 3.0f), s = (torch::rand({4}) + 0.5).requires_grad_(true);
  const at::Tensor w = quant::soft_weight(h, fl, z, s, 7.0);
  w.sum().backward();
  ASSERT_TRUE(s.grad().defined());
  EXPECT_TRUE(w.detach().equal(quant::soft_weight_ref(h.detach(), fl, z, s.detach(), 7.0)));
  const at::Tensor hd = h.detach().to(at::kDouble);
  EXPECT_TRUE(quant::soft_weight(hd, fl.to(at::kDouble), z, s.detach(), 7.0)
                  .equal(quant::soft_weight_ref(hd, fl.to(at::kDouble), z, s.detach(), 7.0)));
}

// FusedAdam against torch::optim::Adam over 60 steps: the same parameters and moments bit for bit, for a parameter
// with a length that is no multiple of any vector width, a conv-weight shape and a scalar; the learning rate changed
// between steps (qdrop's cosine schedule); a parameter without a gradient skipped; on every vector variant.
TEST(FusedAdam, EqualsTorchAdamBitForBit) {
  torch::manual_seed(23);
  const std::vector<at::Tensor> start = {torch::randn({37}), torch::randn({16, 16, 3, 3}) * 3.0, torch::rand({1})};
  std::vector<std::vector<at::Tensor>> grads;
  for (int t = 0; t < 60; ++t) {
    std::vector<at::Tensor> g;
    for (const auto& p : start) g.push_back(torch::randn(p.sizes()) * (t % 7 == 0 ? 1e-6 : 0.3));
    grads.push_back(g);
  }
  auto run = [&](bool fused) {
    std::vector<at::Tensor> ps;
    for (const auto& p : start) ps.push_back(p.clone().requires_grad_(true));
    torch::optim::Adam ref(ps, torch::optim::AdamOptions(1e-2));
    quant::FusedAdam ours(ps, 1e-2);
    for (int t = 0; t < 60; ++t) {
      const double lr = 1e-2 * 0.5 * (1.0 + std::cos(M_PI * t / 60.0));
      for (size_t i = 0; i < ps.size(); ++i)
        ps[i].mutable_grad() = (i == 2 && t % 5 == 3) ? at::Tensor() : grads[static_cast<size_t>(t)][i].clone();
      if (fused) {
        ours.set_lr(lr);
        ours.step();
      } else {
        for (auto& group : ref.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
        ref.step();
      }
    }
    std::vector<at::Tensor> out;
    for (const auto& p : ps) out.push_back(p.detach());
    return out;
  };
  const auto want = run(false);
  for (int cap = simd::kBase; cap <= simd::detected(); ++cap) {
    simd::level_cap() = cap;
    const auto got = run(true);
    simd::level_cap() = -1;
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_TRUE(got[i].equal(want[i])) << "variant " << cap << ", parameter " << i << ": max difference "
                                         << (got[i] - want[i]).abs().max().item<float>();
  }
}
