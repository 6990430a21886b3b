#include "io/cifar10.hpp"

#include <sys/stat.h>
#include <torch/torch.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/error.hpp"

namespace dsgq::io {

int64_t cifar10_count(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw InputError(path + ": cannot open CIFAR-10 file (" + std::strerror(errno) + ")");
  if (!S_ISREG(st.st_mode)) throw InputError(path + ": is not a regular file; expected a CIFAR-10 .bin file");
  const int64_t size = st.st_size;
  if (size == 0)
    throw InputError(path + ": CIFAR-10 file is empty (0 bytes); expected a multiple of 3073-byte records");
  if (size % kCifarRecordBytes != 0)
    throw InputError(path + ": CIFAR-10 file size " + std::to_string(size) + " bytes is not a multiple of the " +
                     std::to_string(kCifarRecordBytes) + "-byte record (" + std::to_string(size / kCifarRecordBytes) +
                     " whole records + " + std::to_string(size % kCifarRecordBytes) + " bytes); truncated?");
  return size / kCifarRecordBytes;
}

ImageSet read_cifar10(const std::string& path, int64_t first, int64_t count) {
  const int64_t total = cifar10_count(path);
  if (count < 0) count = total - first;
  if (first < 0 || first + count > total)
    throw InputError(path + ": records [" + std::to_string(first) + ", " + std::to_string(first + count) +
                     ") requested but the file holds " + std::to_string(total));
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw InputError(path + ": cannot open CIFAR-10 file (" + std::strerror(errno) + ")");
  std::string buf(static_cast<size_t>(count * kCifarRecordBytes), '\0');
  const bool ok = std::fseek(f, static_cast<long>(first * kCifarRecordBytes), SEEK_SET) == 0 &&
                  std::fread(buf.data(), 1, buf.size(), f) == buf.size();
  std::fclose(f);
  if (!ok) throw InputError(path + ": read error at record " + std::to_string(first));

  ImageSet set;
  set.images = torch::empty({count, 3, 32, 32}, torch::kUInt8);
  set.labels = torch::empty({count}, torch::kLong);
  auto* img = set.images.data_ptr<uint8_t>();
  auto* lab = set.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i) {
    const auto* rec = reinterpret_cast<const uint8_t*>(buf.data()) + i * kCifarRecordBytes;
    if (rec[0] > 9)
      throw InputError(path + ": record " + std::to_string(first + i) + " has label " + std::to_string(rec[0]) +
                       "; expected 0..9 (is this a CIFAR-10 binary file?)");
    lab[i] = rec[0];
    std::memcpy(img + i * 3072, rec + 1, 3072);
  }
  return set;
}

}  // namespace dsgq::io
