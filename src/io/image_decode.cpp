#include "io/image_decode.hpp"

// clang-format off
#include <cstdio>   // jpeglib.h needs FILE and size_t first
#include <csetjmp>
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.hpp"

namespace dsgq::io {
namespace {

// ---- JPEG (libjpeg-turbo), errors turned into a message + longjmp ----

struct JpegError {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated = false;
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

// Warnings are ignored as PIL ignores them (many ImageNet files carry "extraneous bytes before marker"), except
// premature end of data: PIL refuses a truncated file ("image file is truncated"), and so does dsgq.
void jpeg_message(j_common_ptr cinfo, int level) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) err->truncated = true;
}

inline uint8_t clip8i(int v) { return static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v); }

// PIL's cmyk2rgb (Convert.c) on the inverted ("CMYK;I", Adobe) samples libjpeg returns.
inline uint8_t cmyk_channel(int c, int nk) {
  const int tmp = c * nk + 128;
  return clip8i(nk - (((tmp >> 8) + tmp) >> 8));
}

RgbImage decode_jpeg(const std::string& bytes, const std::string& name) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  RgbImage img;
  std::vector<uint8_t> row;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_message;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw InputError(name + ": cannot decode JPEG (" + err.message + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  const J_COLOR_SPACE in = cinfo.jpeg_color_space;
  const bool cmyk = in == JCS_CMYK || in == JCS_YCCK;
  const bool grey = in == JCS_GRAYSCALE;
  cinfo.out_color_space = cmyk ? JCS_CMYK : grey ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(&cinfo);
  const int comps = cinfo.output_components;
  img.width = cinfo.output_width;
  img.height = cinfo.output_height;
  img.data.resize(static_cast<size_t>(img.width * img.height * 3));
  row.resize(static_cast<size_t>(img.width * comps));
  while (cinfo.output_scanline < cinfo.output_height) {
    const int64_t y = cinfo.output_scanline;
    JSAMPROW rows[1] = {row.data()};
    jpeg_read_scanlines(&cinfo, rows, 1);
    uint8_t* out = img.data.data() + y * img.width * 3;
    for (int64_t x = 0; x < img.width; ++x) {
      const uint8_t* p = row.data() + x * comps;
      if (comps == 3) {
        out[3 * x] = p[0], out[3 * x + 1] = p[1], out[3 * x + 2] = p[2];
      } else if (comps == 1) {
        out[3 * x] = out[3 * x + 1] = out[3 * x + 2] = p[0];
      } else {  // CMYK;I: PIL inverts every sample, then cmyk2rgb uses nk = 255 - k, i.e. the stored K
        for (int c = 0; c < 3; ++c) out[3 * x + c] = cmyk_channel(255 - p[c], p[3]);
      }
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  if (err.truncated) throw InputError(name + ": JPEG data ends early (truncated file); PIL refuses it too");
  return img;
}

// ---- PNG (libpng), PIL's convert("RGB") semantics: palette expanded, 16-bit -> high byte, alpha dropped ----

struct PngReader {
  const std::string* bytes;
  size_t pos = 0;
};

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngReader*>(png_get_io_ptr(png));
  if (r->pos + n > r->bytes->size()) png_error(png, "PNG data ends early (truncated file)");
  std::memcpy(out, r->bytes->data() + r->pos, n);
  r->pos += n;
}

void png_fail(png_structp png, png_const_charp msg) {
  auto* text = static_cast<std::string*>(png_get_error_ptr(png));
  *text = msg;
  png_longjmp(png, 1);
}
void png_warn(png_structp, png_const_charp) {}

RgbImage decode_png(const std::string& bytes, const std::string& name) {
  std::string message;
  PngReader reader{&bytes, 0};
  RgbImage img;
  std::vector<png_bytep> rows;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &message, png_fail, png_warn);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!png || !info) throw InternalError("libpng: out of memory");
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw InputError(name + ": cannot decode PNG (" + message + ")");
  }
  png_set_read_fn(png, &reader, png_read_mem);
  png_read_info(png, info);
  png_set_expand(png);
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  img.width = png_get_image_width(png, info);
  img.height = png_get_image_height(png, info);
  if (png_get_rowbytes(png, info) != static_cast<size_t>(img.width * 3))
    png_error(png, "unexpected row layout after conversion to RGB");
  img.data.resize(static_cast<size_t>(img.width * img.height * 3));
  rows.resize(static_cast<size_t>(img.height));
  for (int64_t y = 0; y < img.height; ++y) rows[y] = img.data.data() + y * img.width * 3;
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return img;
}

// ---- Pillow's Resample.c (ImagingResample with the BILINEAR filter, 8 bits per channel) ----

constexpr int kPrecisionBits = 32 - 8 - 2;

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;  // [out, 2]: first input index, count
  std::vector<int32_t> kk;  // [out, ksize], fixed point
};

// precompute_coeffs + normalize_coeffs_8bpc for the box [in0, in1) of an input of in_size pixels.
Coeffs precompute(int in_size, float in0, float in1, int out_size) {
  const double support_base = 1.0;  // bilinear
  const double scale = static_cast<double>(in1 - in0) / out_size;
  const double filterscale = scale < 1.0 ? 1.0 : scale;
  const double support = support_base * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<size_t>(out_size) * 2);
  std::vector<double> kk(static_cast<size_t>(out_size) * c.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &kk[static_cast<size_t>(xx) * c.ksize];
    double ww = 0.0;
    for (int x = 0; x < xmax; ++x) {
      const double w = bilinear_filter((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x)
      if (ww != 0.0) k[x] /= ww;
    c.bounds[2 * xx] = xmin;
    c.bounds[2 * xx + 1] = xmax;
  }
  c.kk.resize(kk.size());
  for (size_t i = 0; i < kk.size(); ++i)
    c.kk[i] = kk[i] < 0 ? static_cast<int32_t>(-0.5 + kk[i] * (1 << kPrecisionBits))
                        : static_cast<int32_t>(0.5 + kk[i] * (1 << kPrecisionBits));
  return c;
}

inline uint8_t clip8(int v) {
  if (v >= (1 << kPrecisionBits << 8)) return 255;
  if (v <= 0) return 0;
  return static_cast<uint8_t>(v >> kPrecisionBits);
}

}  // namespace

RgbImage decode_image(const std::string& bytes, const std::string& name) {
  static const char kJpeg[3] = {'\xFF', '\xD8', '\xFF'};
  if (bytes.size() >= 3 && std::memcmp(bytes.data(), kJpeg, 3) == 0) return decode_jpeg(bytes, name);
  static const char kPng[8] = {'\x89', 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kPng, 8) == 0) return decode_png(bytes, name);
  if (bytes.empty()) throw InputError(name + ": is empty (0 bytes); expected a JPEG or PNG image");
  throw InputError(name + ": is neither JPEG nor PNG (first bytes do not match either signature)");
}

RgbImage resize_bilinear_pil(const RgbImage& in, int64_t out_width, int64_t out_height) {
  DSGQ_CHECK(in.width > 0 && in.height > 0 && out_width > 0 && out_height > 0, "resize of an empty image");
  const int iw = static_cast<int>(in.width), ih = static_cast<int>(in.height);
  const int ow = static_cast<int>(out_width), oh = static_cast<int>(out_height);
  const Coeffs hz = precompute(iw, 0.f, static_cast<float>(iw), ow);
  Coeffs vt = precompute(ih, 0.f, static_cast<float>(ih), oh);
  const bool need_h = ow != iw, need_v = oh != ih;

  // Horizontal pass first, over the input rows the vertical pass will use only.
  RgbImage tmp;
  const RgbImage* src = &in;
  if (need_h) {
    const int ybox_first = vt.bounds[0];
    const int ybox_last = vt.bounds[2 * oh - 2] + vt.bounds[2 * oh - 1];
    for (int i = 0; i < oh; ++i) vt.bounds[2 * i] -= ybox_first;
    tmp.width = ow;
    tmp.height = ybox_last - ybox_first;
    tmp.data.resize(static_cast<size_t>(tmp.width * tmp.height * 3));
    for (int yy = 0; yy < tmp.height; ++yy) {
      const uint8_t* row = in.data.data() + static_cast<size_t>(yy + ybox_first) * iw * 3;
      uint8_t* out = tmp.data.data() + static_cast<size_t>(yy) * ow * 3;
      for (int xx = 0; xx < ow; ++xx) {
        const int xmin = hz.bounds[2 * xx], xmax = hz.bounds[2 * xx + 1];
        const int32_t* k = &hz.kk[static_cast<size_t>(xx) * hz.ksize];
        int s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
        for (int x = 0; x < xmax; ++x) {
          const uint8_t* p = row + (x + xmin) * 3;
          s0 += p[0] * k[x];
          s1 += p[1] * k[x];
          s2 += p[2] * k[x];
        }
        out[3 * xx] = clip8(s0), out[3 * xx + 1] = clip8(s1), out[3 * xx + 2] = clip8(s2);
      }
    }
    src = &tmp;
  }
  if (!need_v) return src == &in ? in : tmp;
  RgbImage out;
  out.width = src->width;
  out.height = oh;
  out.data.resize(static_cast<size_t>(out.width * oh * 3));
  const int w = static_cast<int>(src->width);
  for (int yy = 0; yy < oh; ++yy) {
    const int ymin = vt.bounds[2 * yy], ymax = vt.bounds[2 * yy + 1];
    const int32_t* k = &vt.kk[static_cast<size_t>(yy) * vt.ksize];
    uint8_t* dst = out.data.data() + static_cast<size_t>(yy) * w * 3;
    for (int xx = 0; xx < w; ++xx) {
      int s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
      for (int y = 0; y < ymax; ++y) {
        const uint8_t* p = src->data.data() + (static_cast<size_t>(y + ymin) * w + xx) * 3;
        s0 += p[0] * k[y];
        s1 += p[1] * k[y];
        s2 += p[2] * k[y];
      }
      dst[3 * xx] = clip8(s0), dst[3 * xx + 1] = clip8(s1), dst[3 * xx + 2] = clip8(s2);
    }
  }
  return out;
}

namespace {
// Python's round() of d / 2 for an integer d >= 0: half to even.
int64_t half_round_even(int64_t d) {
  const int64_t k = d / 2;
  if (d % 2 == 0) return k;
  return k % 2 == 0 ? k : k + 1;
}
}  // namespace

void eval_transform(const RgbImage& in, int64_t resize, int64_t crop, uint8_t* out, const std::string& name) {
  // torchvision 0.14 _compute_resized_output_size: the shorter side becomes `resize`, the longer int(resize*l/s).
  const bool wide = in.width >= in.height;
  const int64_t s = wide ? in.height : in.width, l = wide ? in.width : in.height;
  const int64_t new_l =
      static_cast<int64_t>(static_cast<double>(resize) * static_cast<double>(l) / static_cast<double>(s));
  const int64_t rw = wide ? new_l : resize, rh = wide ? resize : new_l;
  RgbImage resized;
  if (rw != in.width || rh != in.height) resized = resize_bilinear_pil(in, rw, rh);
  const RgbImage& r = resized.data.empty() ? in : resized;
  if (r.width < crop || r.height < crop)
    throw InputError(name + ": resized to " + std::to_string(r.width) + "x" + std::to_string(r.height) +
                     ", smaller than the crop " + std::to_string(crop) + "; expected --resize >= --size");
  const int64_t top = half_round_even(r.height - crop), left = half_round_even(r.width - crop);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < crop; ++y) {
      const uint8_t* row = r.data.data() + ((y + top) * r.width + left) * 3 + c;
      uint8_t* dst = out + (c * crop + y) * crop;
      for (int64_t x = 0; x < crop; ++x) dst[x] = row[3 * x];
    }
}

int64_t default_resize_for(int64_t crop) {
  return static_cast<int64_t>(std::lround(static_cast<double>(crop) / 0.875));
}

}  // namespace dsgq::io
