#pragma once
// Packed image sets (design.md section 4, format "dsgq-packed/1"): what `dsgq pack` writes from an ImageNet-style
// folder, one HDF5 file written collectively (each rank its rows) as <name>.h5.part and renamed when complete:
//   /images uint8 [N,3,S,S]  pixels after torchvision's evaluation preprocessing (Resize(R) + CenterCrop(S))
//   /labels int64 [N]        class index (0..classes-1)
//   /names  string [N]       the image's path relative to the source folder
//   root attributes: format, size, resize, n_images, num_classes, source, labels_from, dsgq_version, created.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dist/comm.hpp"
#include "io/image_set.hpp"

namespace dsgq::io {

inline constexpr const char* kPackedFormat = "dsgq-packed/1";

struct PackedMeta {
  int64_t n_images = 0, size = 224, resize = 256, num_classes = 1000;
  std::string source, labels_from, dsgq_version, created;
};

class PackedWriter {
 public:
  // Collective. Creates <path>.part (a leftover .part of an earlier, killed run is replaced); `name_len` is the
  // longest name in bytes (every rank passes the same meta and name_len).
  PackedWriter(const std::string& path, const PackedMeta& meta, int64_t name_len, const dist::Comm& comm);
  ~PackedWriter();  // closes; removes the .part unless finish() ran
  PackedWriter(const PackedWriter&) = delete;
  PackedWriter& operator=(const PackedWriter&) = delete;

  // Collective: this rank's rows [first, first + n); pixels [n,3,S,S] and labels [n] (n may be 0).
  void write(int64_t first, int64_t n, const uint8_t* pixels, const int64_t* labels);
  // Collective: rank 0 passes all N names (the other ranks' argument is ignored).
  void write_names(const std::vector<std::string>& names);
  // Collective: closes and renames <path>.part to <path>.
  void finish();

 private:
  struct Impl;
  Impl* impl_;
};

// Local (serial HDF5). Throws InputError naming the file for a .part, a foreign file, missing datasets.
PackedMeta read_packed_meta(const std::string& path);
ImageSet read_packed(const std::string& path, int64_t first = 0, int64_t count = -1);
std::vector<std::string> read_packed_names(const std::string& path);

}  // namespace dsgq::io
