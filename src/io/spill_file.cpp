#include "io/spill_file.hpp"

#include <hdf5.h>
#include <torch/torch.h>

#include <cstdio>

#include "core/error.hpp"
#include "io/hdf5_util.hpp"

namespace dsgq::io {
namespace {
hid_t row_space(const std::vector<hsize_t>& dims) {
  return H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
}
}  // namespace

SpillRows::SpillRows(std::string path, int64_t rows, std::vector<int64_t> row_shape)
    : path_(std::move(path)), rows_(rows), row_shape_(std::move(row_shape)) {
  for (int64_t d : row_shape_) row_elems_ *= d;
  std::vector<hsize_t> dims{static_cast<hsize_t>(rows_)};
  for (int64_t d : row_shape_) dims.push_back(static_cast<hsize_t>(d));
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  file_ = H5Fcreate(path_.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (file_ < 0)
    throw InputError(path_ +
                     ": cannot create the activation spill file (is the folder writable? set [output] dir or "
                     "raise [quant] cache_mib to keep the cache in memory)");
  try {
    h5::create_dataset(file_, "rows", H5T_NATIVE_FLOAT, dims, /*fill=*/false);
    dataset_ = H5Dopen2(file_, "rows", H5P_DEFAULT);
  } catch (const InputError&) {
    dataset_ = -1;
  }
  if (dataset_ < 0) {
    H5Fclose(file_);
    std::remove(path_.c_str());
    throw InputError(path_ + ": cannot allocate " + std::to_string(rows_ * row_elems_ * 4 / (1 << 20)) +
                     " MiB for the activation spill file (disk full?)");
  }
}

SpillRows::~SpillRows() {
  if (dataset_ >= 0) H5Dclose(dataset_);
  if (file_ >= 0) H5Fclose(file_);
  std::remove(path_.c_str());
}

// Rows [first, first + n) of the dataset to (write) or from (read) `buf`; HDF5's status.
int SpillRows::transfer(int64_t first, int64_t n, float* buf, bool write) const {
  const hid_t fspace = H5Dget_space(dataset_);
  std::vector<hsize_t> start(row_shape_.size() + 1, 0), count{static_cast<hsize_t>(n)};
  for (int64_t d : row_shape_) count.push_back(static_cast<hsize_t>(d));
  start[0] = static_cast<hsize_t>(first);
  H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  const hid_t mspace = row_space(count);
  const herr_t rc = write ? H5Dwrite(dataset_, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, buf)
                          : H5Dread(dataset_, H5T_NATIVE_FLOAT, mspace, fspace, H5P_DEFAULT, buf);
  H5Sclose(mspace);
  H5Sclose(fspace);
  return rc;
}

void SpillRows::write(int64_t first, const at::Tensor& rows) {
  const int64_t n = rows.size(0);
  DSGQ_CHECK(first >= 0 && first + n <= rows_ && rows.numel() == n * row_elems_,
             path_ + ": spill write outside the file");
  const at::Tensor c = rows.detach().to(at::kCPU, at::kFloat).contiguous();
  const herr_t rc = transfer(first, n, c.data_ptr<float>(), true);
  if (rc < 0)
    throw InputError(path_ + ": writing rows " + std::to_string(first) + ".." + std::to_string(first + n) +
                     " of the activation spill file failed (disk full?)");
}

void SpillRows::read_into(int64_t first, int64_t n, float* dst) const {
  DSGQ_CHECK(first >= 0 && first + n <= rows_, path_ + ": spill read outside the file");
  const herr_t rc = transfer(first, n, dst, false);
  if (rc < 0) throw InputError(path_ + ": reading the activation spill file failed");
}

at::Tensor SpillRows::read(int64_t first, int64_t n) const {
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
  at::Tensor out = torch::empty(shape, torch::kFloat);
  if (n > 0) read_into(first, n, out.data_ptr<float>());
  return out;
}

at::Tensor SpillRows::gather(const at::Tensor& index) const {
  const at::Tensor idx = index.to(at::kCPU, at::kLong).contiguous();
  const int64_t n = idx.numel();
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), row_shape_.begin(), row_shape_.end());
  at::Tensor out = torch::empty(shape, torch::kFloat);
  const int64_t* ix = idx.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) read_into(ix[i], 1, out.data_ptr<float>() + i * row_elems_);
  return out;
}

}  // namespace dsgq::io
