#pragma once
// Image decoding and torchvision's evaluation preprocessing, pixel for pixel as PIL (Pillow 9) does it:
//   torchvision.datasets.folder.pil_loader  -> Image.open(f).convert("RGB")
//   transforms.Resize(R)                    -> shorter side to R, longer int(R * long / short), BILINEAR, antialiased
//   transforms.CenterCrop(S)                -> top = round((h - S) / 2) (Python's round: half to even), same for left
// Local, CPU only, no torch: the packer calls it per image.
#include <cstdint>
#include <string>
#include <vector>

namespace dsgq::io {

struct RgbImage {  // interleaved RGB, row-major: pixel (y, x) channel c at data[(y * width + x) * 3 + c]
  int64_t width = 0, height = 0;
  std::vector<uint8_t> data;
};

// Decodes a JPEG (libjpeg-turbo) or PNG (libpng) held in `bytes`, chosen by the file signature, to RGB as PIL's
// convert("RGB") does: greyscale is replicated, CMYK/YCCK JPEGs (Adobe-inverted, as PIL assumes) go through PIL's
// cmyk2rgb, a PNG's alpha channel is dropped. `name` is used in messages only. Throws InputError naming the file
// for an unknown signature, a corrupt or truncated stream.
RgbImage decode_image(const std::string& bytes, const std::string& name);

// PIL's Image.resize(size, Image.BILINEAR) on an RGB image (Pillow's two-pass fixed-point resampler with the
// support scaled by the reduction factor: antialiased when shrinking).
RgbImage resize_bilinear_pil(const RgbImage& in, int64_t out_width, int64_t out_height);

// torchvision's Resize(resize) + CenterCrop(crop) for a PIL image, written as planar uint8 [3, crop, crop] into out.
// Throws InputError (naming `name`) when the resized image is smaller than the crop.
void eval_transform(const RgbImage& in, int64_t resize, int64_t crop, uint8_t* out, const std::string& name);

// The shorter-side size torchvision's ImageNet recipe uses for a crop: round(crop / 0.875) (224 -> 256, 299 -> 342).
int64_t default_resize_for(int64_t crop);

}  // namespace dsgq::io
