#pragma once
// Per-sample random draws seeded by (seed, stream, global sample index), so a dataset does not depend on how its
// samples are split over ranks. Drawn on the CPU, then moved: identical on every device.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace dsgq::synth {

enum class Stream : uint64_t {
  init = 1,
  margin = 2,
  label = 3,
  roll = 4,
  jitter = 5,
  sci = 6,
  latent = 7,     // genie: each image's latent vector
  generator = 8,  // genie: each batch's generator initialisation
  swing = 9,      // genie: each step's swing-convolution shifts
  crop = 10,      // deepinversion crop: each image's crop offset and flip per step
  mix = 11,       // deepinversion mix: whether an image's target mixes two classes, the second class and the weight
  pick = 12,      // real_pick = seeded: which images of the file a real set takes
  zoom = 13,      // deepinversion zoom: whether each image is cropped per step, its box and flip
  soft = 14,      // deepinversion soft_target: whether an image's target probability is below 1, and its value
};

uint64_t mix_seed(uint64_t seed, Stream stream, uint64_t index);

enum class Init { gaussian, uniform01, zeroq_official, diverse, dead_leaves };

// [n, C, H, W] images for global indices first..first+n-1. gaussian: N(0,1); uniform01: U[0,1) (the released DSG
// code); zeroq_official: (k - 127.5) / 5418.75 with k uniform on {0..254} (the released ZeroQ code); diverse: Sony
// MCT's start; dead_leaves: opaque discs painted over each other (docs/method.md section 7.2).
at::Tensor draw_images(Init init, uint64_t seed, Stream stream, int64_t first, int64_t n, int64_t C, int64_t H,
                       int64_t W);

// n distinct indices drawn uniformly from {0..available-1} (a partial Fisher-Yates shuffle whose step k draws from
// (seed, k)), in ascending order: the images of real data that `real_pick = "seeded"` takes. The same on every rank.
std::vector<int64_t> draw_subset(uint64_t seed, int64_t available, int64_t n);

// [n] labels uniform on {0..classes-1}, one per global index.
at::Tensor draw_labels(uint64_t seed, int64_t first, int64_t n, int64_t classes);

// deepinversion's mixed targets (mix > 0) for global images first..first+n-1 whose first class is labels[i]: with
// probability `fraction` an image's target is lambda * labels[i] + (1 - lambda) * other[i], other[i] uniform on the
// other classes and lambda uniform on [0, 1); else other[i] = labels[i] and lambda 1. From (seed, global index).
struct MixedTargets {
  at::Tensor other;   // int64 [n]
  at::Tensor weight;  // float64 [n]: lambda, the weight of labels[i]
};
MixedTargets draw_mixed_targets(uint64_t seed, int64_t first, const at::Tensor& labels, int64_t classes,
                                double fraction);

// deepinversion's soft targets (soft_target = low > 0; IntraQ) for global images first..first+n-1: float64 [n], each
// 1 with probability 1/2, else uniform on [low, 1). From (seed, global index).
at::Tensor draw_soft_targets(uint64_t seed, int64_t first, int64_t n, double low);

// Official jitter offset for (batch, iteration): uniform on {-30..29}.
int64_t draw_roll(uint64_t seed, int64_t batch, int64_t iteration);

// deepinversion's augmentation of one step, the same for the whole batch: shifts in H and W each uniform on
// {-limit..limit}, and a flip with probability 1/2 when `flip` is allowed; from (seed, batch, iteration).
struct Jitter {
  int64_t h = 0, w = 0;
  bool flip = false;
};
Jitter draw_jitter(uint64_t seed, int64_t batch, int64_t iteration, int64_t limit, bool flip);

// deepinversion's training augmentation (crop > 0) for global images first..first+n-1 at one step: each image padded
// by `pad` pixels on every side, cropped back to H x W at an offset uniform on {0..2 pad} in each axis and, when
// `flip`, mirrored with probability 1/2 (RandomCrop(H, padding=pad), RandomHorizontalFlip). Returns int64 [n, H * W]:
// output pixel (y, x) of image i is pixel crop_index[i][y * W + x] of its padded (H + 2 pad) x (W + 2 pad) plane.
// From (seed, global index, iteration), so independent of the ranks' split.
at::Tensor draw_crop_index(uint64_t seed, int64_t first, int64_t n, int64_t iteration, int64_t H, int64_t W,
                           int64_t pad, bool flip);

// deepinversion's local object reinforcement (zoom > 0; IntraQ) for global images first..first+n-1 at one step: with
// probability 1/2 an image is a random resized crop of itself, torchvision's RandomResizedCrop(scale = (min_area, 1),
// ratio = (3/4, 4/3)) with the box in continuous pixel units (area fraction s uniform on [min_area, 1], log aspect
// ratio uniform, up to 10 tries for a box inside the image, else the whole image; its corner uniform on the free
// range), scaled back to H x W and, when `flip`, mirrored with probability 1/2; otherwise unchanged. Returns float64
// [n, 2, 3]: each image's affine map from output to source in the normalized coordinates of affine_grid and
// grid_sample with align_corners = false (the identity for an unchanged image). From (seed, global index, iteration)
// alone, so independent of the ranks' split; H and W set the box's pixel units (the same fractions at half size).
at::Tensor draw_zoom_theta(uint64_t seed, int64_t first, int64_t n, int64_t iteration, int64_t H, int64_t W,
                           double min_area, bool flip);

// SCI's Gaussian reference of one step: [B, C, H, W] N(0,1) from (seed, batch, iteration), the same on every rank.
at::Tensor draw_sci_gauss(uint64_t seed, int64_t batch, int64_t iteration, int64_t B, int64_t C, int64_t H, int64_t W);

}  // namespace dsgq::synth
