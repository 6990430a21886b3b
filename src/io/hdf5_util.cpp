#include "io/hdf5_util.hpp"

#include <mpi.h>

#include <cstring>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/sha256.hpp"

namespace dsgq::io::h5 {

void check(herr_t rc, const std::string& what) {
  if (rc < 0) throw InternalError("HDF5: " + what + " failed");
}

void write_str_attr(hid_t obj, const char* name, const std::string& value) {
  Id type(H5Tcopy(H5T_C_S1), H5Tclose);
  check(H5Tset_size(type, value.empty() ? 1 : value.size()), "H5Tset_size");
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  Id attr(H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  const std::string v = value.empty() ? std::string(1, '\0') : value;
  check(H5Awrite(attr, type, v.data()), std::string("write attribute ") + name);
}

void write_int_attr(hid_t obj, const char* name, int64_t value) {
  Id space(H5Screate(H5S_SCALAR), H5Sclose);
  Id attr(H5Acreate2(obj, name, H5T_NATIVE_INT64, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  check(H5Awrite(attr, H5T_NATIVE_INT64, &value), std::string("write attribute ") + name);
}

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

std::string read_str_attr(hid_t obj, const char* name, const std::string& path, const std::string& format) {
  if (!has_attr(obj, name))
    throw InputError(path + ": attribute '" + name + "' is missing; expected a " + format + " file");
  Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  Id type(H5Aget_type(attr), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING) throw InputError(path + ": attribute '" + name + "' is not a string");
  const size_t n = H5Tget_size(type);
  std::string v(n, '\0');
  Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(mem, n);
  check(H5Aread(attr, mem, v.data()), std::string("read attribute ") + name);
  while (!v.empty() && v.back() == '\0') v.pop_back();
  return v;
}

int64_t read_int_attr(hid_t obj, const char* name, const std::string& path, const std::string& format) {
  if (!has_attr(obj, name))
    throw InputError(path + ": attribute '" + name + "' is missing; expected a " + format + " file");
  Id attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  int64_t v = 0;
  check(H5Aread(attr, H5T_NATIVE_INT64, &v), std::string("read attribute ") + name);
  return v;
}

void create_dataset(hid_t file, const char* name, hid_t type, const std::vector<hsize_t>& dims, bool fill) {
  Id space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
  Id dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  check(H5Pset_layout(dcpl, H5D_CONTIGUOUS), "H5Pset_layout");
  check(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), "H5Pset_alloc_time");
  check(H5Pset_fill_time(dcpl, fill ? H5D_FILL_TIME_ALLOC : H5D_FILL_TIME_NEVER), "H5Pset_fill_time");
  Id ds(H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose);
  if (ds < 0) throw InputError(std::string("HDF5: cannot create dataset ") + name + " (disk full?)");
}

void write_rows(hid_t file, const char* name, hid_t type, int64_t first, int64_t n, const void* data) {
  Id ds(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose);
  Id fspace(H5Dget_space(ds), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(fspace);
  std::vector<hsize_t> dims(rank), start(rank, 0), count(rank);
  H5Sget_simple_extent_dims(fspace, dims.data(), nullptr);
  count = dims;
  start[0] = static_cast<hsize_t>(first);
  count[0] = static_cast<hsize_t>(n);
  Id mspace(H5Screate_simple(rank, count.data(), nullptr), H5Sclose);
  if (n > 0) {
    check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), "select rows");
  } else {
    H5Sselect_none(fspace);
    H5Sselect_none(mspace);
  }
  Id dxpl(H5Pcreate(H5P_DATASET_XFER), H5Pclose);
  check(H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE), "H5Pset_dxpl_mpio");
  if (H5Dwrite(ds, type, mspace, fspace, dxpl, data) < 0)
    throw InputError(std::string("HDF5: writing ") + name + " failed (disk full?)");
}

void read_rows(hid_t file, const char* name, hid_t type, int64_t first, int64_t n, void* out) {
  if (n == 0) return;
  Id ds(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose);
  Id fspace(H5Dget_space(ds), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(fspace);
  std::vector<hsize_t> dims(rank), start(rank, 0);
  H5Sget_simple_extent_dims(fspace, dims.data(), nullptr);
  std::vector<hsize_t> count = dims;
  start[0] = static_cast<hsize_t>(first);
  count[0] = static_cast<hsize_t>(n);
  check(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr), "select rows");
  Id mspace(H5Screate_simple(rank, count.data(), nullptr), H5Sclose);
  check(H5Dread(ds, type, mspace, fspace, H5P_DEFAULT, out), std::string("read ") + name);
}

std::vector<hsize_t> dims_of(hid_t file, const char* name, const std::string& path, const std::string& format) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    throw InputError(path + ": dataset '" + name + "' is missing; expected a complete " + format + " file");
  Id ds(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose);
  Id space(H5Dget_space(ds), H5Sclose);
  std::vector<hsize_t> dims(H5Sget_simple_extent_ndims(space));
  H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  return dims;
}

hid_t open_readonly(const std::string& path, const std::string& format, const std::string& part_hint) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".part") == 0)
    throw InputError(path + ": is an incomplete " + part_hint);
  if (!file_exists(path)) throw InputError(path + ": no such file; expected a " + format + " HDF5 file");
  if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(path + ": is not an HDF5 file; expected a " + format + " file");
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw InputError(path + ": cannot open as HDF5 (corrupt?)");
  return f;
}

hid_t mpio_fapl(void* mpi_comm) {
  const hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  check(H5Pset_fapl_mpio(fapl, reinterpret_cast<MPI_Comm>(mpi_comm), MPI_INFO_NULL), "H5Pset_fapl_mpio");
  return fapl;
}

std::vector<uint8_t> row_sha256(const void* rows, int64_t n, size_t row_bytes) {
  std::vector<uint8_t> out(static_cast<size_t>(n) * 32);
  const auto* p = static_cast<const uint8_t*>(rows);
  for (int64_t i = 0; i < n; ++i) {
    Sha256 h;
    h.update(p + static_cast<size_t>(i) * row_bytes, row_bytes);
    const std::string hex = h.hex_digest();
    for (size_t k = 0; k < 32; ++k)
      out[static_cast<size_t>(i) * 32 + k] = static_cast<uint8_t>(std::stoi(hex.substr(2 * k, 2), nullptr, 16));
  }
  return out;
}

void verify_rows(hid_t file, const std::string& path, const void* rows, int64_t first, int64_t n, size_t row_bytes,
                 int64_t batch) {
  if (n <= 0 || H5Lexists(file, "/image_sha256", H5P_DEFAULT) <= 0) return;
  std::vector<uint8_t> stored(static_cast<size_t>(n) * 32);
  read_rows(file, "/image_sha256", H5T_NATIVE_UINT8, first, n, stored.data());
  const std::vector<uint8_t> now = row_sha256(rows, n, row_bytes);
  for (int64_t i = 0; i < n; ++i)
    if (std::memcmp(stored.data() + i * 32, now.data() + i * 32, 32) != 0) {
      const int64_t row = first + i;
      throw InputError(path + ": /images row " + std::to_string(row) +
                       (batch > 0 ? " (batch " + std::to_string(row / batch) + ")" : std::string()) +
                       " does not match its checksum in /image_sha256; the file is corrupt (rewrite it: rerun the "
                       "command that made it with --force)");
    }
}

}  // namespace dsgq::io::h5
