#pragma once
// CIFAR-10 "binary version" files: records of 3073 bytes (1 label byte 0..9, then 1024 R, 1024 G, 1024 B, each
// 32x32 row-major), no header. Local (each rank reads its own range).
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "io/image_set.hpp"

namespace dsgq::io {

inline constexpr int64_t kCifarRecordBytes = 3073;

// Number of records; throws InputError naming the file when it is missing, empty or not a whole number of records.
int64_t cifar10_count(const std::string& path);

// Records [first, first + count) of the file (count < 0: to the end). Throws InputError for a missing, empty or
// truncated file, a range beyond the end, or a label outside 0..9 (naming the record).
ImageSet read_cifar10(const std::string& path, int64_t first = 0, int64_t count = -1);

}  // namespace dsgq::io
