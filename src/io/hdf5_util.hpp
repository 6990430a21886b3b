#pragma once
// HDF5 helpers shared by the io/ file formats (synthetic datasets, packed image sets). io-internal: include only
// from io/*.cpp (it pulls in <hdf5.h>). `format` names the expected file format in messages.
#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace dsgq::io::h5 {

// RAII for an HDF5 id with its close function.
struct Id {
  hid_t id = -1;
  herr_t (*close)(hid_t) = nullptr;
  Id(hid_t i, herr_t (*c)(hid_t)) : id(i), close(c) {}
  ~Id() {
    if (id >= 0 && close) close(id);
  }
  Id(const Id&) = delete;
  Id& operator=(const Id&) = delete;
  operator hid_t() const { return id; }
};

void check(herr_t rc, const std::string& what);  // InternalError "HDF5: <what> failed" when rc < 0

void write_str_attr(hid_t obj, const char* name, const std::string& value);
void write_int_attr(hid_t obj, const char* name, int64_t value);
bool has_attr(hid_t obj, const char* name);
// InputError naming path and attribute when it is missing (or not a string).
std::string read_str_attr(hid_t obj, const char* name, const std::string& path, const std::string& format);
int64_t read_int_attr(hid_t obj, const char* name, const std::string& path, const std::string& format);

// A contiguous dataset allocated at creation (so a crash later only leaves raw data unwritten).
void create_dataset(hid_t file, const char* name, hid_t type, const std::vector<hsize_t>& dims, bool fill = true);
// Collective (MPI-IO) write of rows [first, first + n) along dim 0; n may be 0 on some ranks.
void write_rows(hid_t file, const char* name, hid_t type, int64_t first, int64_t n, const void* data);
// Local read of rows [first, first + n) along dim 0.
void read_rows(hid_t file, const char* name, hid_t type, int64_t first, int64_t n, void* out);
// The dataset's dimensions; InputError naming path and dataset when it is missing.
std::vector<hsize_t> dims_of(hid_t file, const char* name, const std::string& path, const std::string& format);

// Opens `path` read-only with clear errors (a .part: "<path>: is an incomplete <part_hint>", a missing file, not
// HDF5); HDF5's error printing is silenced.
hid_t open_readonly(const std::string& path, const std::string& format, const std::string& part_hint);

// Per-row checksums (docs/formats.md): the SHA-256 of each row's bytes as stored (row_bytes each), 32 bytes per
// row, for the `/image_sha256` dataset [n, 32] (uint8) beside a file's images.
std::vector<uint8_t> row_sha256(const void* rows, int64_t n, size_t row_bytes);
// Checks rows [first, first + n) (already read into `rows`) against `/image_sha256` when the file has it (files
// written before it was added have none); InputError "<path>: /images row R (batch B) does not match its checksum
// in /image_sha256 ..." for the first mismatch. batch = 0 names no batch (packed sets).
void verify_rows(hid_t file, const std::string& path, const void* rows, int64_t first, int64_t n, size_t row_bytes,
                 int64_t batch);

// A file access property list for collective access over `comm` (an MPI_Comm passed as void*).
hid_t mpio_fapl(void* mpi_comm);

}  // namespace dsgq::io::h5
