#include "quant/activation_cache.hpp"

#include <torch/torch.h>

#include "io/spill_file.hpp"

namespace dsgq::quant {

int64_t row_bytes(const std::vector<int64_t>& row_shape) {
  int64_t n = 4;
  for (int64_t d : row_shape) n *= d;
  return n;
}

RowCache::RowCache(int64_t rows, std::vector<int64_t> row_shape, c10::Device device, const std::string& spill_path)
    : rows_(rows), device_(device) {
  if (spill_path.empty()) {
    std::vector<int64_t> shape{rows};
    shape.insert(shape.end(), row_shape.begin(), row_shape.end());
    mem_ = torch::empty(shape, torch::TensorOptions().dtype(torch::kFloat).device(device));
  } else {
    spill_ = std::make_unique<io::SpillRows>(spill_path, rows, std::move(row_shape));
  }
}

RowCache::RowCache(at::Tensor rows) : rows_(rows.size(0)), device_(rows.device()), mem_(std::move(rows)) {}

RowCache::~RowCache() = default;
RowCache::RowCache(RowCache&&) noexcept = default;
RowCache& RowCache::operator=(RowCache&&) noexcept = default;

void RowCache::write(int64_t first, const at::Tensor& rows) {
  if (spill_) {
    spill_->write(first, rows);
  } else {
    mem_.slice(0, first, first + rows.size(0)).copy_(rows);
  }
}

at::Tensor RowCache::gather(const at::Tensor& index) const {
  if (spill_) return spill_->gather(index).to(device_);
  return mem_.index_select(0, index.to(device_));
}

at::Tensor RowCache::slice(int64_t first, int64_t n) const {
  if (spill_) return spill_->read(first, n).to(device_);
  return mem_.slice(0, first, first + n);
}

}  // namespace dsgq::quant
