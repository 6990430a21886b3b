#pragma once
// A private, temporary HDF5 file of float32 rows [N, ...] that one rank writes and reads back (AdaRound's
// activation caches when they exceed [quant] cache_mib). Serial HDF5 (no communicator), contiguous layout so that
// a row is one read; the file is deleted when the object goes away, also on an exception.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dsgq::io {

class SpillRows {
 public:
  // Creates `path` (replacing a leftover of an earlier, killed run) holding `rows` rows of `row_shape`.
  SpillRows(std::string path, int64_t rows, std::vector<int64_t> row_shape);
  ~SpillRows();
  SpillRows(const SpillRows&) = delete;
  SpillRows& operator=(const SpillRows&) = delete;

  void write(int64_t first, const at::Tensor& rows);  // rows [n, row_shape...], any device/dtype convertible
  at::Tensor read(int64_t first, int64_t n) const;    // CPU float32
  at::Tensor gather(const at::Tensor& index) const;   // CPU float32 [index.numel(), row_shape...], index order
  int64_t rows() const { return rows_; }
  const std::string& path() const { return path_; }

 private:
  void read_into(int64_t first, int64_t n, float* dst) const;
  int transfer(int64_t first, int64_t n, float* buf, bool write) const;
  std::string path_;
  int64_t rows_;
  std::vector<int64_t> row_shape_;
  int64_t row_elems_ = 1;
  int64_t file_ = -1, dataset_ = -1;  // hid_t
};

}  // namespace dsgq::io
