#include "io/image_set.hpp"

#include <cstdio>
#include <cstring>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/cifar10.hpp"
#include "io/hdf5_util.hpp"
#include "io/packed_file.hpp"

namespace dsgq::io {
namespace {
// HDF5's superblock signature at offset 0 (a user block would move it; dsgq never writes one).
bool is_hdf5(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  unsigned char sig[8] = {0};
  const size_t n = std::fread(sig, 1, 8, f);
  std::fclose(f);
  static const unsigned char kSig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  return n == 8 && std::memcmp(sig, kSig, 8) == 0;
}

// True for a packed set (HDF5, or a .part that the packed reader refuses by name), false for a CIFAR-10 binary file;
// InputError for a missing file.
bool is_packed(const std::string& path) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".part") == 0) return true;
  if (!file_exists(path))
    throw InputError(path + ": no such file; expected a CIFAR-10 binary file or a packed image set (dsgq pack)");
  return is_hdf5(path);
}
}  // namespace

std::string hdf5_format(const std::string& path) {
  if (!is_hdf5(path)) return "";
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return "";
  std::string format;
  try {
    if (h5::has_attr(f, "format")) format = h5::read_str_attr(f, "format", path, "dsgq");
  } catch (const InputError&) {
  }
  H5Fclose(f);
  return format;
}

ImageSetInfo image_set_info(const std::string& path) {
  ImageSetInfo info;
  if (is_packed(path)) {
    const PackedMeta m = read_packed_meta(path);
    info.kind = "packed";
    info.n_images = m.n_images;
    info.height = info.width = m.size;
    return info;
  }
  info.kind = "cifar10";
  info.n_images = cifar10_count(path);
  info.height = info.width = 32;
  return info;
}

ImageSet read_image_set(const std::string& path, int64_t first, int64_t count) {
  if (is_packed(path)) return read_packed(path, first, count);
  return read_cifar10(path, first, count);
}

}  // namespace dsgq::io
