// src/synth/sampling.cpp: every draw is a function of (seed, stream, global index) alone.
#include <gtest/gtest.h>
#include <torch/torch.h>

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
