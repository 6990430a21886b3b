#pragma once
// Packed image sets (docs/formats.md section 3, format "dsgq-packed/1"): what `dsgq pack` writes from an ImageNet-style
// folder, one HDF5 file written collectively (each rank its rows) as <name>.h5.part and renamed when complete:
//   /images uint8 [N,3,S,S]  pixels after torchvision's evaluation preprocessing (Resize(R) + CenterCrop(S))
//   /labels int64 [N]        class index (0..classes-1)
//   /names  string [N]       the image's path relative to the source folder
//   /row_done uint8 [N]      1 once an image's row is written (resume state; all 1 in a complete file)
//   root attributes: format, size, resize, n_images, num_classes, source, labels_from, list_sha256 (of the names
//   and labels), dsgq_version, created.
// A killed `dsgq pack` leaves the .part; run again with the same inputs, it reopens it and decodes only the rows
// not yet written (any world size).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mpi/comm.hpp"
#include "io/image_set.hpp"

namespace dsgq::io {

inline constexpr const char* kPackedFormat = "dsgq-packed/1";

struct PackedMeta {
  int64_t n_images = 0, size = 224, resize = 256, num_classes = 1000;
  std::string source, labels_from, list_sha256, dsgq_version, created;
};

class PackedWriter {
 public:
  // Collective. Reopens <path>.part when it was left by a run with the same size, resize, source, labels and image
  // list (list_sha256), else creates it and writes the names (rank 0's `names`). Every rank passes the same meta.
  PackedWriter(const std::string& path, const PackedMeta& meta, const std::vector<std::string>& names,
               const mpi::Comm& comm);
  ~PackedWriter();  // closes; removes the .part unless finish() ran
  PackedWriter(const PackedWriter&) = delete;
  PackedWriter& operator=(const PackedWriter&) = delete;

  // Rows already written by an earlier run of this .part (all 0 for a new file); the same on every rank.
  const std::vector<uint8_t>& done() const { return done_; }
  bool resumed() const { return resumed_; }

  // Collective: this rank's rows [first, first + n); pixels [n,3,S,S] and labels [n] (n may be 0); then the rows
  // with ok[i] != 0 are marked done.
  void write(int64_t first, int64_t n, const uint8_t* pixels, const int64_t* labels, const uint8_t* ok);
  // Collective: closes and renames <path>.part to <path>.
  void finish();

 private:
  struct Impl;
  Impl* impl_;
  std::vector<uint8_t> done_;
  bool resumed_ = false;
};

// Local (serial HDF5). Throws InputError naming the file for a .part, a foreign file, missing datasets.
PackedMeta read_packed_meta(const std::string& path);
ImageSet read_packed(const std::string& path, int64_t first = 0, int64_t count = -1);
std::vector<std::string> read_packed_names(const std::string& path);

}  // namespace dsgq::io
