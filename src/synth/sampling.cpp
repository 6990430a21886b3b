#include "synth/sampling.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <algorithm>

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

at::Tensor draw_labels(uint64_t seed, int64_t first, int64_t n, int64_t classes) {
  at::Tensor out = torch::empty({n}, torch::kLong);
  for (int64_t i = 0; i < n; ++i) {
    auto gen =
        at::make_generator<at::CPUGeneratorImpl>(mix_seed(seed, Stream::label, static_cast<uint64_t>(first + i)));
    out[i] = at::randint(0, classes, {1}, gen)[0];
  }
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
