// src/synth/sampling.cpp: every draw is a function of (seed, stream, global index) alone.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <map>
#include <vector>

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

// deepinversion's crop (crop > 0): each image's positions are one crop of its padded plane, its offsets cover
// {0..2 pad} in both axes evenly, about half the images are mirrored only when flip is allowed, and every image's
// draw depends on (seed, global index, iteration) alone, so any split over ranks gives the same crops.
TEST(Sampling, CropIndexIsOneMirroredOrPlainCropPerImage) {
  const int64_t H = 5, W = 6, pad = 2, n = 4000, Wp = W + 2 * pad, span = 2 * pad + 1;
  const at::Tensor idx = draw_crop_index(9, 0, n, 3, H, W, pad, true);
  ASSERT_EQ(idx.sizes(), (at::IntArrayRef{n, H * W}));
  std::map<int64_t, int64_t> dys, dxs;
  int64_t mirrored = 0;
  for (int64_t i = 0; i < n; ++i) {
    const at::Tensor row = idx[i];
    bool found = false;
    for (int64_t dy = 0; dy < span && !found; ++dy)
      for (int64_t dx = 0; dx < span && !found; ++dx)
        for (const bool m : {false, true}) {
          at::Tensor want = torch::empty({H * W}, torch::kLong);
          for (int64_t y = 0; y < H; ++y)
            for (int64_t x = 0; x < W; ++x) want[y * W + x] = (y + dy) * Wp + (m ? W - 1 - x : x) + dx;
          if (torch::equal(row, want)) {
            found = true;
            ++dys[dy];
            ++dxs[dx];
            mirrored += m;
            break;
          }
        }
    ASSERT_TRUE(found) << "image " << i << " is no crop of its padded plane: " << row;
  }
  ASSERT_EQ(dys.size(), size_t(span));
  ASSERT_EQ(dxs.size(), size_t(span));
  for (int64_t v = 0; v < span; ++v) {  // 800 expected per value; 5 sigma is about 130
    EXPECT_NEAR(double(dys[v]), n / double(span), 140.0) << "dy = " << v;
    EXPECT_NEAR(double(dxs[v]), n / double(span), 140.0) << "dx = " << v;
  }
  EXPECT_NEAR(double(mirrored), n / 2.0, 160.0);
  // no flip: the same offsets, nothing mirrored (an image's first position is then dy * Wp + dx)
  const at::Tensor plain = draw_crop_index(9, 0, 50, 3, H, W, pad, false);
  for (int64_t i = 0; i < 50; ++i)
    EXPECT_EQ(plain[i][1].item<int64_t>(), plain[i][0].item<int64_t>() + 1) << "image " << i << " mirrored";
  // the split over ranks, the seed and the iteration
  EXPECT_TRUE(torch::equal(draw_crop_index(9, 3, 5, 3, H, W, pad, true), idx.slice(0, 3, 8)));
  EXPECT_FALSE(torch::equal(draw_crop_index(9, 0, 50, 4, H, W, pad, true), idx.slice(0, 0, 50)));
  EXPECT_FALSE(torch::equal(draw_crop_index(8, 0, 50, 3, H, W, pad, true), idx.slice(0, 0, 50)));
}

// deepinversion's zoom (IntraQ's local object reinforcement): about half the images keep the identity, the others'
// boxes lie inside the image with an area fraction in [min_area, 1] and an aspect ratio in [3/4, 4/3], about half of
// them mirrored when flip is allowed; the draws depend on (seed, global index, iteration) alone.
TEST(Sampling, ZoomBoxesLieInsideTheImageWithinTheirRanges) {
  const int64_t H = 32, W = 32, n = 4000;
  const double min_area = 0.5;
  const at::Tensor th = draw_zoom_theta(5, 0, n, 7, H, W, min_area, true);
  ASSERT_EQ(th.sizes(), (at::IntArrayRef{n, 2, 3}));
  int64_t zoomed = 0, mirrored = 0, small = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double sx = th[i][0][0].item<double>(), tx = th[i][0][2].item<double>();
    const double sy = th[i][1][1].item<double>(), ty = th[i][1][2].item<double>();
    EXPECT_EQ(th[i][0][1].item<double>(), 0.0);
    EXPECT_EQ(th[i][1][0].item<double>(), 0.0);
    if (sx == 1.0 && sy == 1.0 && tx == 0.0 && ty == 0.0) continue;  // unchanged (a whole-image fallback too)
    ++zoomed;
    mirrored += sx < 0;
    const double bw = std::abs(sx) * W, bh = sy * H;
    const double left = ((tx + 1.0) * W - bw) / 2.0, top = ((ty + 1.0) * H - bh) / 2.0;
    ASSERT_GE(left, -1e-9) << "image " << i;
    ASSERT_GE(top, -1e-9) << "image " << i;
    ASSERT_LE(left + bw, W + 1e-9) << "image " << i;
    ASSERT_LE(top + bh, H + 1e-9) << "image " << i;
    const double area = bw * bh / double(H * W), ratio = bw / bh;
    ASSERT_GE(area, min_area - 1e-12) << "image " << i;
    ASSERT_LE(area, 1.0 + 1e-12) << "image " << i;
    ASSERT_GE(ratio, 0.75 - 1e-12) << "image " << i;
    ASSERT_LE(ratio, 4.0 / 3.0 + 1e-12) << "image " << i;
    small += area < 0.75;
  }
  EXPECT_NEAR(double(zoomed), n / 2.0, 160.0);  // 5 sigma is about 160
  EXPECT_NEAR(double(mirrored), zoomed / 2.0, 120.0);
  EXPECT_GT(small, zoomed / 4);  // the area fraction spreads over [0.5, 1]: not all near the whole image
  // no flip: nothing mirrored, the same boxes
  const at::Tensor plain = draw_zoom_theta(5, 0, 200, 7, H, W, min_area, false);
  EXPECT_TRUE(torch::equal(plain.select(2, 2), th.slice(0, 0, 200).select(2, 2)));
  EXPECT_TRUE((plain.select(1, 0).select(1, 0) > 0).all().item<bool>());
  // the split over ranks, the seed and the iteration; half size: the same fractions of the image
  EXPECT_TRUE(torch::equal(draw_zoom_theta(5, 3, 5, 7, H, W, min_area, true), th.slice(0, 3, 8)));
  EXPECT_FALSE(torch::equal(draw_zoom_theta(5, 0, 50, 8, H, W, min_area, true), th.slice(0, 0, 50)));
  EXPECT_FALSE(torch::equal(draw_zoom_theta(4, 0, 50, 7, H, W, min_area, true), th.slice(0, 0, 50)));
  EXPECT_TRUE(torch::allclose(draw_zoom_theta(5, 0, 50, 7, H / 2, W / 2, min_area, true), th.slice(0, 0, 50)));
}

// The zoom's geometry against torchvision's resize of a crop (bilinear, align_corners = false): output column c of a
// box [left, left + bw) reads the source at left + (c + 1/2) bw / W - 1/2 (mirrored: c -> W - 1 - c). A ramp image
// (pixel value = its column) is interpolated exactly wherever both neighbours lie inside the image.
TEST(Sampling, ZoomSamplesTheBoxAsTorchvisionResizesACrop) {
  namespace F = torch::nn::functional;
  const int64_t H = 16, W = 16, n = 400;
  const at::Tensor th = draw_zoom_theta(11, 0, n, 2, H, W, 0.3, true);
  const at::Tensor cols = torch::arange(W, torch::kDouble).view({1, 1, 1, W}).expand({n, 1, H, W}).contiguous();
  const at::Tensor rows = torch::arange(H, torch::kDouble).view({1, 1, H, 1}).expand({n, 1, H, W}).contiguous();
  const at::Tensor grid = F::affine_grid(th, {n, 1, H, W}, false);
  const auto opts = F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kZeros).align_corners(false);
  const at::Tensor cx = F::grid_sample(cols, grid, opts), cy = F::grid_sample(rows, grid, opts);
  int64_t checked = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double sx = th[i][0][0].item<double>(), tx = th[i][0][2].item<double>();
    const double sy = th[i][1][1].item<double>(), ty = th[i][1][2].item<double>();
    const double bw = std::abs(sx) * W, bh = sy * H;
    const double left = ((tx + 1.0) * W - bw) / 2.0, top = ((ty + 1.0) * H - bh) / 2.0;
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const double c = sx < 0 ? double(W - 1 - x) : double(x);
        const double want_x = left + (c + 0.5) * bw / double(W) - 0.5, want_y = top + (y + 0.5) * bh / double(H) - 0.5;
        if (want_x < 0 || want_x > W - 1 || want_y < 0 || want_y > H - 1) continue;  // a border pixel: zeros blend in
        ASSERT_NEAR(cx[i][0][y][x].item<double>(), want_x, 1e-9) << "image " << i << " (" << y << ", " << x << ")";
        ASSERT_NEAR(cy[i][0][y][x].item<double>(), want_y, 1e-9) << "image " << i << " (" << y << ", " << x << ")";
        ++checked;
      }
  }
  EXPECT_GT(checked, n * H * W / 2);
}

// The diverse start, rebuilt by hand from the same generator: per image and channel a scale and a mean, per pixel
// N(0,1), then a 5x5 box of weight 1/16 with reflect-101 borders (index -1 reads 1, index n reads n - 2).
// real_pick = "seeded": n distinct indices in ascending order, each index equally likely, a function of the seed alone.
TEST(Sampling, SubsetIsDistinctSortedUniformAndKeyedBySeed) {
  const std::vector<int64_t> a = draw_subset(7, 10000, 1024);
  ASSERT_EQ(a.size(), 1024u);
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_TRUE(a[i] >= 0 && a[i] < 10000) << i << ": " << a[i];
    if (i > 0) ASSERT_LT(a[i - 1], a[i]) << "not distinct and ascending at " << i;
  }
  EXPECT_EQ(a, draw_subset(7, 10000, 1024));
  EXPECT_NE(a, draw_subset(8, 10000, 1024));
  EXPECT_GT(a.back() - a.front(), 9000);  // drawn from the whole file, not its start
  std::vector<int64_t> all(10);
  for (int64_t i = 0; i < 10; ++i) all[static_cast<size_t>(i)] = i;
  EXPECT_EQ(draw_subset(3, 10, 10), all);  // the whole file
  EXPECT_TRUE(draw_subset(3, 10, 0).empty());
  // 4000 seeds, 3 of 10: each index about 1200 times (binomial sd 29); each of the 120 triples about 33
  std::vector<int64_t> hits(10, 0);
  std::map<std::vector<int64_t>, int64_t> triples;
  for (uint64_t seed = 0; seed < 4000; ++seed) {
    const std::vector<int64_t> s = draw_subset(seed, 10, 3);
    for (const int64_t i : s) ++hits[static_cast<size_t>(i)];
    ++triples[s];
  }
  for (int64_t i = 0; i < 10; ++i) EXPECT_NEAR(double(hits[static_cast<size_t>(i)]), 1200.0, 5 * 29.0) << i;
  ASSERT_EQ(triples.size(), 120u);
  for (const auto& [s, count] : triples) EXPECT_NEAR(double(count), 4000.0 / 120.0, 30.0);
}

TEST(Sampling, MixedTargetsPairTwoDifferentClassesForTheirFraction) {
  const int64_t n = 6000, K = 10;
  const at::Tensor labels = torch::arange(0, n, torch::kLong).remainder(K);
  const MixedTargets none = draw_mixed_targets(4, 0, labels, K, 0.0);
  EXPECT_TRUE(torch::equal(none.other, labels));
  EXPECT_TRUE(torch::equal(none.weight, torch::ones({n}, torch::kDouble)));

  const MixedTargets m = draw_mixed_targets(4, 0, labels, K, 0.3);
  std::map<int64_t, int64_t> shifts;
  int64_t mixed = 0, low = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t a = labels[i].item<int64_t>(), b = m.other[i].item<int64_t>();
    const double w = m.weight[i].item<double>();
    ASSERT_TRUE(b >= 0 && b < K) << "image " << i << ": other class " << b;
    if (b == a) {
      EXPECT_EQ(w, 1.0) << "image " << i << " has one class but weight " << w;
      continue;
    }
    ++mixed;
    ++shifts[(b - a + K) % K];
    ASSERT_TRUE(w >= 0.0 && w < 1.0) << "image " << i << ": weight " << w;
    low += w < 0.5;
  }
  EXPECT_NEAR(double(mixed), 0.3 * n, 5 * std::sqrt(n * 0.3 * 0.7));  // about 1800, 5 sigma 177
  EXPECT_NEAR(double(low), 0.5 * mixed, 5 * std::sqrt(mixed * 0.25));
  ASSERT_EQ(shifts.size(), size_t(K - 1));  // every other class, never the image's own
  for (const auto& [shift, count] : shifts) EXPECT_NEAR(double(count), mixed / double(K - 1), 110.0) << shift;

  // a function of (seed, global index): a later slice draws what the whole set drew there, another seed differs
  const MixedTargets part = draw_mixed_targets(4, 1000, labels.slice(0, 1000, 1100), K, 0.3);
  EXPECT_TRUE(torch::equal(part.other, m.other.slice(0, 1000, 1100)));
  EXPECT_TRUE(torch::equal(part.weight, m.weight.slice(0, 1000, 1100)));
  EXPECT_FALSE(torch::equal(draw_mixed_targets(5, 0, labels, K, 0.3).other, m.other));
}

// IntraQ's soft targets: half the images keep target 1, the others uniform on [low, 1); per global index.
TEST(Sampling, SoftTargetsAreOneForHalfAndUniformAboveTheLowestForTheRest) {
  const int64_t n = 6000;
  const double low = 0.9;
  const at::Tensor t = draw_soft_targets(4, 0, n, low);
  ASSERT_EQ(t.sizes(), (at::IntArrayRef{n}));
  ASSERT_EQ(t.scalar_type(), torch::kDouble);
  int64_t soft = 0, upper_half = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double v = t[i].item<double>();
    if (v == 1.0) continue;
    ++soft;
    ASSERT_TRUE(v >= low && v < 1.0) << "image " << i << ": target " << v;
    upper_half += v >= 0.95;
  }
  EXPECT_NEAR(double(soft), 0.5 * n, 5 * std::sqrt(n * 0.25));  // about 3000, 5 sigma 194
  EXPECT_NEAR(double(upper_half), 0.5 * soft, 5 * std::sqrt(soft * 0.25));
  // a function of (seed, global index): a later slice draws what the whole set drew there, another seed differs
  EXPECT_TRUE(torch::equal(draw_soft_targets(4, 1000, 100, low), t.slice(0, 1000, 1100)));
  EXPECT_FALSE(torch::equal(draw_soft_targets(5, 0, n, low), t));
}

TEST(Sampling, DiverseStartIsScaledShiftedAndBoxSmoothed) {
  const int64_t n = 3, C = 3, H = 6, W = 7, first = 4;
  const uint64_t seed = 11;
  const at::Tensor x = draw_images(Init::diverse, seed, Stream::init, first, n, C, H, W);
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{n, C, H, W}));
  const auto reflect = [](int64_t i, int64_t size) { return i < 0 ? -i : i >= size ? 2 * (size - 1) - i : i; };
  for (int64_t k = 0; k < n; ++k) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, Stream::init, static_cast<uint64_t>(first + k)));
    const at::Tensor scale = at::randn({C, 1, 1}, gen), mean = at::randn({C, 1, 1}, gen);
    const at::Tensor raw = at::randn({C, H, W}, gen).to(at::kDouble);
    for (int64_t c = 0; c < C; ++c) {
      const double s = scale[c][0][0].item<double>(), m = mean[c][0][0].item<double>();
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          double want = 0;
          for (int64_t di = -2; di <= 2; ++di)
            for (int64_t dj = -2; dj <= 2; ++dj)
              want += (s * raw[c][reflect(i + di, H)][reflect(j + dj, W)].item<double>() + m) / 16.0;
          EXPECT_NEAR(x[k][c][i][j].item<double>(), want, 1e-5)
              << "image " << k << " channel " << c << " at " << i << "," << j;
        }
    }
  }
  // keyed by the global index like every other draw
  EXPECT_TRUE(torch::equal(x.slice(0, 1, 3), draw_images(Init::diverse, seed, Stream::init, first + 1, 2, C, H, W)));
}

TEST(Sampling, DeadLeavesStartIsFlatRegionsOfCorrelatedColours) {
  const int64_t n = 64, C = 3, H = 32, W = 32;
  const at::Tensor x = draw_images(Init::dead_leaves, 7, Stream::init, 0, n, C, H, W);
  ASSERT_EQ(x.sizes(), (at::IntArrayRef{n, C, H, W}));
  ASSERT_TRUE(torch::isfinite(x).all().item<bool>());
  // every pixel takes one disc's colour: neighbours share it except across an edge, so most horizontal pairs are equal
  // in all channels (about 85 % at 32 x 32 with these radii), and an image has far fewer colours than pixels
  const at::Tensor same = x.slice(3, 1, W).eq(x.slice(3, 0, W - 1)).all(1);
  EXPECT_GT(same.to(at::kDouble).mean().item<double>(), 0.6);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t colours = std::get<0>(at::_unique(x[i][0].flatten())).numel();
    EXPECT_LT(colours, H * W / 4) << "image " << i;
    EXPECT_GT(colours, 4) << "image " << i;
  }
  // per channel grey N(0,1) + 0.5 N(0,1): std sqrt(1.25) ~ 1.12 over discs, channels correlated 1 / 1.25 = 0.8
  for (int64_t c = 0; c < C; ++c) EXPECT_NEAR(x.select(1, c).std().item<double>(), 1.118, 0.2) << "channel " << c;
  const at::Tensor r = x.select(1, 0).flatten(), g = x.select(1, 1).flatten();
  const double corr = ((r - r.mean()) * (g - g.mean())).mean().item<double>() / (r.std() * g.std()).item<double>();
  EXPECT_NEAR(corr, 0.8, 0.15);
  // keyed by the global index like every other draw; another seed gives other images
  EXPECT_TRUE(torch::equal(x.slice(0, 5, 9), draw_images(Init::dead_leaves, 7, Stream::init, 5, 4, C, H, W)));
  EXPECT_FALSE(torch::equal(x.slice(0, 0, 4), draw_images(Init::dead_leaves, 8, Stream::init, 0, 4, C, H, W)));
}
