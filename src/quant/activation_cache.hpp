#pragma once
// One layer's cached rows (AdaRound's inputs or targets) for the whole calibration set: a tensor on the device when
// it fits the budget, else a temporary HDF5 file (io::SpillRows) read back a mini-batch at a time. Both modes hand
// out the same values, so the rounding they lead to is the same bytes.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dsgq::io {
class SpillRows;
}

namespace dsgq::quant {

class RowCache {
 public:
  // spill_path empty = in memory on `device`; else a temporary HDF5 file at spill_path.
  RowCache(int64_t rows, std::vector<int64_t> row_shape, c10::Device device, const std::string& spill_path);
  // Wraps rows already in memory (no copy).
  explicit RowCache(at::Tensor rows);
  ~RowCache();
  RowCache(RowCache&&) noexcept;
  RowCache& operator=(RowCache&&) noexcept;

  void write(int64_t first, const at::Tensor& rows);
  at::Tensor gather(const at::Tensor& index) const;  // [index.numel(), ...] on the device
  at::Tensor slice(int64_t first, int64_t n) const;  // [n, ...] on the device
  int64_t rows() const { return rows_; }
  bool spilled() const { return spill_ != nullptr; }

 private:
  int64_t rows_ = 0;
  c10::Device device_;
  at::Tensor mem_;
  std::unique_ptr<io::SpillRows> spill_;
};

// Bytes of one row of `shape` (float32).
int64_t row_bytes(const std::vector<int64_t>& row_shape);

}  // namespace dsgq::quant
