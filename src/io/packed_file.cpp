#include "io/packed_file.hpp"

#include <torch/torch.h>

#include <cstdio>
#include <algorithm>
#include <cstring>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/hdf5_util.hpp"

namespace dsgq::io {
namespace {

using h5::Id;

hid_t name_type(int64_t len) {
  const hid_t t = H5Tcopy(H5T_C_S1);
  h5::check(H5Tset_size(t, static_cast<size_t>(len < 1 ? 1 : len)), "H5Tset_size");
  h5::check(H5Tset_strpad(t, H5T_STR_NULLPAD), "H5Tset_strpad");
  return t;
}

hid_t open_packed(const std::string& path) {
  return h5::open_readonly(path, kPackedFormat, "packed set (.part: dsgq pack was interrupted); run dsgq pack again");
}

PackedMeta read_meta(hid_t f, const std::string& path) {
  const std::string format = h5::has_attr(f, "format") ? h5::read_str_attr(f, "format", path, kPackedFormat) : "";
  if (format != kPackedFormat)
    throw InputError(path + ": format = '" + (format.empty() ? std::string("(none)") : format) +
                     "'; expected a packed image set (" + kPackedFormat + ", written by dsgq pack)");
  PackedMeta m;
  m.n_images = h5::read_int_attr(f, "n_images", path, kPackedFormat);
  m.size = h5::read_int_attr(f, "size", path, kPackedFormat);
  m.resize = h5::read_int_attr(f, "resize", path, kPackedFormat);
  m.num_classes = h5::read_int_attr(f, "num_classes", path, kPackedFormat);
  m.source = h5::read_str_attr(f, "source", path, kPackedFormat);
  m.labels_from = h5::read_str_attr(f, "labels_from", path, kPackedFormat);
  m.dsgq_version = h5::read_str_attr(f, "dsgq_version", path, kPackedFormat);
  m.created = h5::read_str_attr(f, "created", path, kPackedFormat);
  if (h5::has_attr(f, "list_sha256")) m.list_sha256 = h5::read_str_attr(f, "list_sha256", path, kPackedFormat);
  const auto dims = h5::dims_of(f, "/images", path, kPackedFormat);
  const std::vector<hsize_t> want{hsize_t(m.n_images), 3, hsize_t(m.size), hsize_t(m.size)};
  if (dims != want)
    throw InputError(path + ": /images has the wrong shape; expected [" + std::to_string(m.n_images) + ",3," +
                     std::to_string(m.size) + "," + std::to_string(m.size) + "]");
  if (h5::dims_of(f, "/labels", path, kPackedFormat) != std::vector<hsize_t>{hsize_t(m.n_images)})
    throw InputError(path + ": /labels has the wrong length; expected " + std::to_string(m.n_images));
  return m;
}

}  // namespace

struct PackedWriter::Impl {
  std::string path, part;
  const mpi::Comm* comm = nullptr;
  hid_t file = -1;
  int64_t name_len = 1;
  int64_t size = 0;  // image side S
  bool finished = false;
};

PackedWriter::PackedWriter(const std::string& path, const PackedMeta& meta, const std::vector<std::string>& names,
                           const mpi::Comm& comm)
    : impl_(new Impl) {
  impl_->path = path;
  impl_->part = path + ".part";
  impl_->comm = &comm;
  impl_->size = meta.size;
  for (const auto& n : names) impl_->name_len = std::max<int64_t>(impl_->name_len, static_cast<int64_t>(n.size()));
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const std::string& part = impl_->part;

  // Rank 0 decides from the leftover .part (if any), every rank follows: resume when it was made from the same
  // inputs, else start over.
  std::string verdict;
  if (comm.is_root() && file_exists(part) && H5Fis_hdf5(part.c_str()) > 0) {
    const hid_t f = H5Fopen(part.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) {
      try {
        const PackedMeta old = read_meta(f, part);
        if (old.size == meta.size && old.resize == meta.resize && old.n_images == meta.n_images &&
            old.source == meta.source && old.labels_from == meta.labels_from &&
            h5::read_str_attr(f, "list_sha256", part, kPackedFormat) == meta.list_sha256 &&
            H5Lexists(f, "/row_done", H5P_DEFAULT) > 0)
          verdict = "resume";
      } catch (const InputError&) {
      }
      H5Fclose(f);
    }
  }
  verdict = comm.broadcast(verdict);
  Id fapl(h5::mpio_fapl(comm.native()), H5Pclose);
  done_.assign(static_cast<size_t>(meta.n_images), 0);
  if (verdict == "resume") {
    impl_->file = H5Fopen(part.c_str(), H5F_ACC_RDWR, fapl);
    if (impl_->file < 0) {
      delete impl_;
      throw InputError(part + ": cannot reopen for resuming (remove it to start over)");
    }
    h5::read_rows(impl_->file, "/row_done", H5T_NATIVE_UINT8, 0, meta.n_images, done_.data());
    resumed_ = true;
    return;
  }
  impl_->file = H5Fcreate(part.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (impl_->file < 0) {
    delete impl_;
    throw InputError(path + ".part: cannot create (folder missing or not writable?)");
  }
  const hid_t f = impl_->file;
  const hsize_t n = static_cast<hsize_t>(meta.n_images), s = static_cast<hsize_t>(meta.size);
  h5::create_dataset(f, "/images", H5T_NATIVE_UINT8, {n, 3, s, s});
  h5::create_dataset(f, "/image_sha256", H5T_NATIVE_UINT8, {n, 32});
  h5::create_dataset(f, "/labels", H5T_NATIVE_INT64, {n});
  h5::create_dataset(f, "/row_done", H5T_NATIVE_UINT8, {n});
  Id nt(name_type(impl_->name_len), H5Tclose);
  h5::create_dataset(f, "/names", nt, {n});
  h5::write_str_attr(f, "format", kPackedFormat);
  h5::write_int_attr(f, "n_images", meta.n_images);
  h5::write_int_attr(f, "size", meta.size);
  h5::write_int_attr(f, "resize", meta.resize);
  h5::write_int_attr(f, "num_classes", meta.num_classes);
  h5::write_str_attr(f, "source", meta.source);
  h5::write_str_attr(f, "labels_from", meta.labels_from);
  h5::write_str_attr(f, "list_sha256", meta.list_sha256);
  h5::write_str_attr(f, "dsgq_version", meta.dsgq_version);
  h5::write_str_attr(f, "created", meta.created);
  // The names, collectively with rank 0's selection only.
  const bool root = comm.is_root();
  const size_t len = static_cast<size_t>(impl_->name_len);
  std::vector<char> buf(root ? names.size() * len + 1 : 1, '\0');
  if (root)
    for (size_t i = 0; i < names.size(); ++i)
      std::memcpy(buf.data() + i * len, names[i].data(), std::min(len, names[i].size()));
  h5::write_rows(f, "/names", nt, 0, root ? static_cast<int64_t>(names.size()) : 0, buf.data());
  h5::check(H5Fflush(f, H5F_SCOPE_GLOBAL), "H5Fflush");
}

PackedWriter::~PackedWriter() {
  if (impl_->file >= 0) H5Fclose(impl_->file);  // an unfinished .part stays: the next run resumes it
  delete impl_;
}

void PackedWriter::write(int64_t first, int64_t n, const uint8_t* pixels, const int64_t* labels, const uint8_t* ok) {
  h5::write_rows(impl_->file, "/images", H5T_NATIVE_UINT8, first, n, pixels);
  if (H5Lexists(impl_->file, "/image_sha256", H5P_DEFAULT) > 0) {  // a .part from before the checksums: none
    const std::vector<uint8_t> digests = h5::row_sha256(pixels, n, static_cast<size_t>(3 * impl_->size * impl_->size));
    h5::write_rows(impl_->file, "/image_sha256", H5T_NATIVE_UINT8, first, n, digests.data());
  }
  h5::write_rows(impl_->file, "/labels", H5T_NATIVE_INT64, first, n, labels);
  h5::check(H5Fflush(impl_->file, H5F_SCOPE_GLOBAL), "H5Fflush");
  // Rows are marked done only after their pixels are on disk; a failed image keeps 0 (redone next time).
  std::vector<uint8_t> flags(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    flags[static_cast<size_t>(i)] = std::max(ok[i] ? uint8_t{1} : uint8_t{0}, done_[static_cast<size_t>(first + i)]);
  h5::write_rows(impl_->file, "/row_done", H5T_NATIVE_UINT8, first, n, flags.data());
  h5::check(H5Fflush(impl_->file, H5F_SCOPE_GLOBAL), "H5Fflush");
}

void PackedWriter::finish() {
  h5::check(H5Fclose(impl_->file), "H5Fclose");
  impl_->file = -1;
  impl_->comm->barrier();
  if (impl_->comm->is_root() && std::rename(impl_->part.c_str(), impl_->path.c_str()) != 0)
    throw InputError(impl_->path + ": cannot rename from " + impl_->part);
  impl_->finished = true;
  impl_->comm->barrier();
}

PackedMeta read_packed_meta(const std::string& path) {
  Id f(open_packed(path), H5Fclose);
  return read_meta(f, path);
}

ImageSet read_packed(const std::string& path, int64_t first, int64_t count) {
  Id f(open_packed(path), H5Fclose);
  const PackedMeta m = read_meta(f, path);
  if (count < 0) count = m.n_images - first;
  if (first < 0 || first + count > m.n_images)
    throw InputError(path + ": images [" + std::to_string(first) + ", " + std::to_string(first + count) +
                     ") requested but the file holds " + std::to_string(m.n_images));
  ImageSet set;
  set.images = torch::empty({count, 3, m.size, m.size}, torch::kUInt8);
  set.labels = torch::empty({count}, torch::kLong);
  h5::read_rows(f, "/images", H5T_NATIVE_UINT8, first, count, set.images.data_ptr());
  h5::verify_rows(f, path, set.images.data_ptr(), first, count, static_cast<size_t>(3 * m.size * m.size), 0);
  h5::read_rows(f, "/labels", H5T_NATIVE_INT64, first, count, set.labels.data_ptr());
  const auto* lab = set.labels.data_ptr<int64_t>();
  for (int64_t i = 0; i < count; ++i)
    if (lab[i] < 0 || lab[i] >= m.num_classes)
      throw InputError(path + ": image " + std::to_string(first + i) + " has label " + std::to_string(lab[i]) +
                       "; expected 0.." + std::to_string(m.num_classes - 1));
  return set;
}

std::vector<std::string> read_packed_names(const std::string& path) {
  Id f(open_packed(path), H5Fclose);
  const PackedMeta m = read_meta(f, path);
  Id ds(H5Dopen2(f, "/names", H5P_DEFAULT), H5Dclose);
  if (ds < 0)
    throw InputError(path + ": dataset '/names' is missing; expected a complete " + std::string(kPackedFormat) +
                     " file");
  Id type(H5Dget_type(ds), H5Tclose);
  const size_t len = H5Tget_size(type);
  std::vector<char> buf(static_cast<size_t>(m.n_images) * len + 1, '\0');
  Id mem(name_type(static_cast<int64_t>(len)), H5Tclose);
  if (m.n_images > 0) h5::check(H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), "read /names");
  std::vector<std::string> names;
  for (int64_t i = 0; i < m.n_images; ++i) {
    const char* p = buf.data() + static_cast<size_t>(i) * len;
    names.emplace_back(p, strnlen(p, len));
  }
  return names;
}

}  // namespace dsgq::io
