// src/io/cifar10.cpp: the CIFAR-10 binary reader and its messages.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/cifar10.hpp"
#include "test_util.hpp"

using namespace dsgq;

namespace {
// n records; record i has label i % 10 and pixel value (i + c*7 + y*3 + x) % 256 at [c][y][x].
std::string make_records(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += static_cast<char>(i % 10);
    for (int c = 0; c < 3; ++c)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) out += static_cast<char>((i + c * 7 + y * 3 + x) % 256);
  }
  return out;
}
std::string error_of(const std::string& path) {
  try {
    io::read_cifar10(path);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Cifar10, ReadsLayoutAndRanges) {
  test::TempDir tmp;
  const std::string path = tmp / "x.bin";
  atomic_write_file(path, make_records(13));
  EXPECT_EQ(io::cifar10_count(path), 13);
  const auto all = io::read_cifar10(path);
  ASSERT_EQ(all.images.sizes(), (std::vector<int64_t>{13, 3, 32, 32}));
  EXPECT_EQ(all.labels[12].item<int64_t>(), 2);
  EXPECT_EQ(all.images[5][2][4][9].item<uint8_t>(), (5 + 14 + 12 + 9) % 256);
  const auto part = io::read_cifar10(path, 4, 3);
  EXPECT_TRUE(torch::equal(part.images, all.images.slice(0, 4, 7)));
  EXPECT_TRUE(torch::equal(part.labels, all.labels.slice(0, 4, 7)));
}

TEST(Cifar10, BadFilesNameTheFileAndTheProblem) {
  test::TempDir tmp;
  atomic_write_file(tmp / "empty.bin", "");
  EXPECT_EQ(error_of(tmp / "empty.bin"),
            tmp / "empty.bin" + ": CIFAR-10 file is empty (0 bytes); expected a multiple of 3073-byte records");
  atomic_write_file(tmp / "trunc.bin", make_records(3).substr(0, 3 * 3073 - 100));
  EXPECT_EQ(error_of(tmp / "trunc.bin"), tmp / "trunc.bin" +
                                             ": CIFAR-10 file size 9119 bytes is not a multiple of the "
                                             "3073-byte record (2 whole records + 2973 bytes); truncated?");
  std::string bad = make_records(2);
  bad[3073] = 17;
  atomic_write_file(tmp / "label.bin", bad);
  EXPECT_EQ(error_of(tmp / "label.bin"),
            tmp / "label.bin" + ": record 1 has label 17; expected 0..9 (is this a CIFAR-10 binary file?)");
  EXPECT_EQ(error_of(tmp / "missing.bin"),
            tmp / "missing.bin" + ": cannot open CIFAR-10 file (No such file or directory)");
}
