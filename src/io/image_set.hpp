#pragma once
// A labelled set of uint8 images, whichever file holds it: a CIFAR-10 binary file or a packed HDF5 set
// (io/packed_file.hpp). The kind is told by the file's signature (HDF5 or not). Local (each rank reads its range).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace dsgq::io {

struct ImageSet {
  at::Tensor images;  // uint8 [N,3,H,W], CPU
  at::Tensor labels;  // int64 [N], CPU
};

struct ImageSetInfo {
  std::string kind;  // "cifar10" | "packed"
  int64_t n_images = 0, channels = 3, height = 0, width = 0;
};

// The root "format" attribute of a dsgq HDF5 file ("dsgq-synth/1", "dsgq-packed/1"); "" when the file is not HDF5
// or has none. Local.
std::string hdf5_format(const std::string& path);

// Throws InputError naming the file when it is missing, unreadable or malformed.
ImageSetInfo image_set_info(const std::string& path);
// Images [first, first + count) (count < 0: to the end).
ImageSet read_image_set(const std::string& path, int64_t first = 0, int64_t count = -1);

}  // namespace dsgq::io
