// src/synth/sampling.cpp: every draw is a function of (seed, stream, global index) alone.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>

#include "synth/sampling.hpp"

using namespace dsgq::synth;

namespace {
constexpr float kFloatSlack = 1e-7f;  // float32 rounding of (k - 127.5) / 5418.75 at the ends of the range
}  // namespace

// No torch::manual_seed here: draw_images/labels/roll use their own generators seeded from their arguments.
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
  EXPECT_GE(z.min().item<float>(), -127.5f / 5418.75f - kFloatSlack);
  EXPECT_LE(z.max().item<float>(), 126.5f / 5418.75f + kFloatSlack);
  EXPECT_TRUE(torch::equal(draw_labels(1, 2, 3, 10), draw_labels(1, 0, 5, 10).slice(0, 2, 5)));
  for (int it = 0; it < 200; ++it) {
    const int64_t r = draw_roll(1, 0, it);
    EXPECT_GE(r, -30);
    EXPECT_LE(r, 29);
  }
}

// deepinversion's per-step augmentation covers {-limit..limit} in both axes evenly, flips about half the steps only
// when allowed, and depends on (seed, batch, iteration) only.
TEST(Sampling, JitterCoversItsRangeAndFlipsOnlyWhenAllowed) {
  const int64_t limit = 2, steps = 5000;
  std::map<int64_t, int64_t> h, w;
  int64_t flips = 0;
  for (int64_t it = 0; it < steps; ++it) {
    const Jitter j = draw_jitter(7, 3, it, limit, true);
    ++h[j.h];
    ++w[j.w];
    flips += j.flip;
    EXPECT_FALSE(draw_jitter(7, 3, it, limit, false).flip);
    const Jitter again = draw_jitter(7, 3, it, limit, true);
    EXPECT_EQ(again.h, j.h);
    EXPECT_EQ(again.w, j.w);
    EXPECT_EQ(again.flip, j.flip);
  }
  ASSERT_EQ(h.size(), 5u);
  ASSERT_EQ(w.size(), 5u);
  for (int64_t v = -limit; v <= limit; ++v) {  // 1000 expected per value; 5 sigma is about 140
    EXPECT_NEAR(double(h[v]), steps / 5.0, 150.0) << "h = " << v;
    EXPECT_NEAR(double(w[v]), steps / 5.0, 150.0) << "w = " << v;
  }
  EXPECT_NEAR(double(flips), steps / 2.0, 180.0);
  const Jitter none = draw_jitter(7, 3, 0, 0, false);
  EXPECT_EQ(none.h, 0);
  EXPECT_EQ(none.w, 0);
}
