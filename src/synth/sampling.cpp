#include "synth/sampling.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace dsgq::synth {

uint64_t mix_seed(uint64_t seed, Stream stream, uint64_t index) {
  // splitmix64 over the three words
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(stream) * 0xBF58476D1CE4E5B9ull + index;
  for (int k = 0; k < 2; ++k) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
  }
  return z;
}

namespace {

// A uniform on [0, 1) from the top 53 bits of one splitmix64 word.
double unit_uniform(uint64_t seed, Stream stream, uint64_t index) {
  return static_cast<double>(mix_seed(seed, stream, index) >> 11) * 0x1.0p-53;
}

// A dead-leaves image [C, H, W] (Lee, Mumford and Huang 2001; Baradad et al. 2021 as a procedural image source):
// opaque discs of random colour painted one over the other until every pixel is covered (at most 4096 discs), radii
// r with density ~ r^-3 on [1, max(H, W) / 2], centres uniform over the image. A disc's colour is a grey level
// g ~ N(0, 1) plus 0.5 N(0, 1) per channel (normalized units: real images' pixels are about N(0, 1) per channel and
// strongly correlated across channels). The draws come from splitmix64 words of `key`, independent of torch's
// generators.
at::Tensor dead_leaves(uint64_t key, int64_t C, int64_t H, int64_t W) {
  uint64_t counter = 0;
  const auto uniform = [&]() { return unit_uniform(key, Stream::init, counter++); };
  const auto normal = [&]() {  // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  };
  at::Tensor img = torch::empty({C, H, W});
  float* p = img.data_ptr<float>();
  std::vector<char> painted(static_cast<size_t>(H * W), 0);
  int64_t left = H * W;
  const double r_min = 1.0, r_max = std::max<double>(r_min, 0.5 * static_cast<double>(std::max(H, W)));
  std::vector<float> colour(static_cast<size_t>(C));
  // Painted front to back: a pixel takes the colour of the first disc that covers it (the same image as painting
  // back to front, and every pixel is final once set).
  for (int disc = 0; disc < 4096 && left > 0; ++disc) {
    // inverse CDF of p(r) ~ r^-3 on [r_min, r_max]
    const double u = uniform();
    const double r = 1.0 / std::sqrt(1.0 / (r_min * r_min) - u * (1.0 / (r_min * r_min) - 1.0 / (r_max * r_max)));
    const double cy = uniform() * static_cast<double>(H), cx = uniform() * static_cast<double>(W);
    const double grey = normal();
    for (int64_t c = 0; c < C; ++c) colour[static_cast<size_t>(c)] = static_cast<float>(grey + 0.5 * normal());
    const auto y0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(cy - r))),
               y1 = std::min<int64_t>(H - 1, static_cast<int64_t>(std::ceil(cy + r)));
    const auto x0 = std::max<int64_t>(0, static_cast<int64_t>(std::floor(cx - r))),
               x1 = std::min<int64_t>(W - 1, static_cast<int64_t>(std::ceil(cx + r)));
    for (int64_t y = y0; y <= y1; ++y)
      for (int64_t x = x0; x <= x1; ++x) {
        const double dy = static_cast<double>(y) + 0.5 - cy, dx = static_cast<double>(x) + 0.5 - cx;
        char& done = painted[static_cast<size_t>(y * W + x)];
        if (done || dy * dy + dx * dx > r * r) continue;
        done = 1;
        --left;
        for (int64_t c = 0; c < C; ++c) p[(c * H + y) * W + x] = colour[static_cast<size_t>(c)];
      }
  }
  if (left > 0) {  // what 4096 discs left uncovered: a last, background colour
    const double grey = normal();
    for (int64_t c = 0; c < C; ++c) colour[static_cast<size_t>(c)] = static_cast<float>(grey + 0.5 * normal());
    for (int64_t k = 0; k < H * W; ++k)
      if (!painted[static_cast<size_t>(k)])
        for (int64_t c = 0; c < C; ++c) p[c * H * W + k] = colour[static_cast<size_t>(c)];
  }
  return img;
}

}  // namespace

at::Tensor draw_images(Init init, uint64_t seed, Stream stream, int64_t first, int64_t n, int64_t C, int64_t H,
                       int64_t W) {
  at::Tensor out = torch::empty({n, C, H, W});
  for (int64_t i = 0; i < n; ++i) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, stream, static_cast<uint64_t>(first + i)));
    switch (init) {
      case Init::gaussian:
        out[i] = at::randn({C, H, W}, gen);
        break;
      case Init::uniform01:
        out[i] = at::rand({C, H, W}, gen);
        break;
      case Init::zeroq_official:
        out[i] = (at::randint(0, 255, {C, H, W}, gen).to(at::kFloat) - 127.5f) / 5418.75f;
        break;
      case Init::dead_leaves:
        out[i] = dead_leaves(mix_seed(seed, stream, static_cast<uint64_t>(first + i)), C, H, W);
        break;
      case Init::diverse: {
        const at::Tensor scale = at::randn({C, 1, 1}, gen);
        const at::Tensor mean = at::randn({C, 1, 1}, gen);
        const at::Tensor raw = (scale * at::randn({C, H, W}, gen) + mean).unsqueeze(0);
        const int64_t pad = std::min<int64_t>(2, std::min(H, W) - 1);  // reflection needs pad < size
        const at::Tensor padded = pad > 0 ? at::reflection_pad2d(raw, {pad, pad, pad, pad}) : raw;
        const at::Tensor box = torch::full({C, 1, 2 * pad + 1, 2 * pad + 1}, 1.0f / 16.0f);
        out[i] =
            at::conv2d(padded, box, at::Tensor(), at::IntArrayRef{1}, at::IntArrayRef{0}, at::IntArrayRef{1}, C)[0];
        break;
      }
    }
  }
  return out;
}

std::vector<int64_t> draw_subset(uint64_t seed, int64_t available, int64_t n) {
  TORCH_CHECK(n >= 0 && n <= available, "draw_subset: n = ", n, " of ", available, " images");
  std::vector<int64_t> all(static_cast<size_t>(available));
  for (int64_t i = 0; i < available; ++i) all[static_cast<size_t>(i)] = i;
  for (int64_t k = 0; k < n; ++k) {  // swap a uniform pick of [k, available) into place k
    const uint64_t left = static_cast<uint64_t>(available - k);
    const int64_t j = k + static_cast<int64_t>(mix_seed(seed, Stream::pick, static_cast<uint64_t>(k)) % left);
    std::swap(all[static_cast<size_t>(k)], all[static_cast<size_t>(j)]);
  }
  all.resize(static_cast<size_t>(n));
  std::sort(all.begin(), all.end());
  return all;
}

at::Tensor draw_labels(uint64_t seed, int64_t first, int64_t n, int64_t classes) {
  at::Tensor out = torch::empty({n}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) {
    auto gen =
        at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, Stream::label, static_cast<uint64_t>(first + i)));
    out[i] = at::randint(0, classes, {1}, gen)[0];
  }
  return out;
}

MixedTargets draw_mixed_targets(uint64_t seed, int64_t first, const at::Tensor& labels, int64_t classes,
                                double fraction) {
  const int64_t n = labels.size(0);
  MixedTargets m{labels.clone(), torch::ones({n}, torch::kDouble)};
  if (classes < 2) return m;
  const auto* a = labels.data_ptr<int64_t>();
  auto* other = m.other.data_ptr<int64_t>();
  auto* weight = m.weight.data_ptr<double>();
  // three 53-bit uniforms per image from splitmix64 words: whether it mixes, the other class, lambda
  const auto uniform = [&](int64_t index, uint64_t k) {
    return unit_uniform(seed, Stream::mix, static_cast<uint64_t>(index) * 3u + k);
  };
  for (int64_t i = 0; i < n; ++i) {
    if (uniform(first + i, 0) >= fraction) continue;
    const auto shift = 1 + static_cast<int64_t>(uniform(first + i, 1) * static_cast<double>(classes - 1));
    other[i] = (a[i] + std::min(shift, classes - 1)) % classes;
    weight[i] = uniform(first + i, 2);
  }
  return m;
}

at::Tensor draw_soft_targets(uint64_t seed, int64_t first, int64_t n, double low) {
  at::Tensor out = torch::ones({n}, torch::kDouble);
  auto* t = out.data_ptr<double>();
  // two 53-bit uniforms per image from splitmix64 words: whether its target is soft, and the target
  const auto uniform = [&](int64_t index, uint64_t k) {
    return unit_uniform(seed, Stream::soft, static_cast<uint64_t>(index) * 2u + k);
  };
  for (int64_t i = 0; i < n; ++i)
    if (uniform(first + i, 0) < 0.5) t[i] = low + (1.0 - low) * uniform(first + i, 1);
  return out;
}

int64_t draw_roll(uint64_t seed, int64_t batch, int64_t iteration) {
  const uint64_t z =
      mix_seed(seed, Stream::roll, static_cast<uint64_t>(batch) * 1000003ull + static_cast<uint64_t>(iteration));
  return static_cast<int64_t>(z % 60) - 30;
}

at::Tensor draw_crop_index(uint64_t seed, int64_t first, int64_t n, int64_t iteration, int64_t H, int64_t W,
                           int64_t pad, bool flip) {
  at::Tensor out = torch::empty({n, H * W}, torch::kLong);
  int64_t* p = out.data_ptr<int64_t>();
  const uint64_t span = static_cast<uint64_t>(2 * pad + 1);
  const int64_t Wp = W + 2 * pad;
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t z =
        mix_seed(seed, Stream::crop, static_cast<uint64_t>(first + i) * 1000003ull + static_cast<uint64_t>(iteration));
    const int64_t dy = static_cast<int64_t>((z & 0xFFFFFF) % span),
                  dx = static_cast<int64_t>(((z >> 24) & 0xFFFFFF) % span);
    const bool mirror = flip && ((z >> 63) & 1u);
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) *p++ = (y + dy) * Wp + (mirror ? W - 1 - x : x) + dx;
  }
  return out;
}

at::Tensor draw_zoom_theta(uint64_t seed, int64_t first, int64_t n, int64_t iteration, int64_t H, int64_t W,
                           double min_area, bool flip) {
  at::Tensor out = torch::zeros({n, 2, 3}, torch::kDouble);
  double* p = out.data_ptr<double>();
  const double Hd = static_cast<double>(H), Wd = static_cast<double>(W), area = Hd * Wd;
  const double log_lo = std::log(3.0 / 4.0), log_hi = std::log(4.0 / 3.0);
  for (int64_t i = 0; i < n; ++i, p += 6) {
    const uint64_t key = (static_cast<uint64_t>(first + i) * 1000003ull + static_cast<uint64_t>(iteration)) * 64u;
    const auto uniform = [&](uint64_t k) {  // [0, 1) from the draw's own counter
      return unit_uniform(seed, Stream::zoom, key + k);
    };
    double bw = Wd, bh = Hd, left = 0, top = 0;  // the box in pixels; the whole image unless zoomed
    bool mirror = false;
    if (uniform(0) < 0.5) {
      mirror = flip && uniform(1) < 0.5;
      for (uint64_t attempt = 0; attempt < 10; ++attempt) {
        const double s = min_area + (1.0 - min_area) * uniform(2 + 3 * attempt);
        const double r = std::exp(log_lo + (log_hi - log_lo) * uniform(3 + 3 * attempt));
        const double w = std::sqrt(s * area * r), h = std::sqrt(s * area / r);
        if (w <= Wd && h <= Hd) {
          const double u = uniform(4 + 3 * attempt);
          bw = w;
          bh = h;
          left = (Wd - w) * u;
          top = (Hd - h) * uniform(63);
          break;
        }
      }
    }
    // Output x_n in [-1, 1] samples source x_n' = sx x_n + tx: the box's left edge at -1, its right at +1.
    const double sx = bw / Wd, sy = bh / Hd;
    p[0] = mirror ? -sx : sx;
    p[2] = (2.0 * left + bw) / Wd - 1.0;
    p[4] = sy;
    p[5] = (2.0 * top + bh) / Hd - 1.0;
  }
  return out;
}

at::Tensor draw_sci_gauss(uint64_t seed, int64_t batch, int64_t iteration, int64_t B, int64_t C, int64_t H, int64_t W) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(
      mix_seed(seed, Stream::sci, static_cast<uint64_t>(batch) * 1000003ull + static_cast<uint64_t>(iteration)));
  return at::randn({B, C, H, W}, gen);
}

Jitter draw_jitter(uint64_t seed, int64_t batch, int64_t iteration, int64_t limit, bool flip) {
  const uint64_t z =
      mix_seed(seed, Stream::jitter, static_cast<uint64_t>(batch) * 1000003ull + static_cast<uint64_t>(iteration));
  const uint64_t span = static_cast<uint64_t>(2 * limit + 1);
  Jitter j;
  j.h = static_cast<int64_t>((z & 0xFFFFFF) % span) - limit;
  j.w = static_cast<int64_t>(((z >> 24) & 0xFFFFFF) % span) - limit;
  j.flip = flip && ((z >> 63) & 1u);
  return j;
}

}  // namespace dsgq::synth
