#include "io/synth_file.hpp"

#include <torch/torch.h>

#include <cstdio>
#include <filesystem>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "io/hdf5_util.hpp"

namespace dsgq::io {
namespace {

using h5::check;
using h5::create_dataset;
using h5::has_attr;
using h5::Id;
using h5::read_rows;
using h5::write_int_attr;
using h5::write_rows;
using h5::write_str_attr;

std::string read_str_attr(hid_t obj, const char* name, const std::string& path) {
  return h5::read_str_attr(obj, name, path, kSynthFormat);
}
int64_t read_int_attr(hid_t obj, const char* name, const std::string& path) {
  return h5::read_int_attr(obj, name, path, kSynthFormat);
}
std::vector<hsize_t> dims_of(hid_t file, const char* name, const std::string& path) {
  return h5::dims_of(file, name, path, kSynthFormat);
}

SynthMeta read_meta(hid_t f, const std::string& path) {
  SynthMeta m;
  const std::string format = has_attr(f, "format") ? read_str_attr(f, "format", path) : "";
  if (format != kSynthFormat)
    throw InputError(path + ": format = '" + (format.empty() ? std::string("(none)") : format) +
                     "'; expected a dsgq synthetic dataset (" + kSynthFormat + ")");
  m.model = read_str_attr(f, "model", path);
  m.weights = read_str_attr(f, "weights", path);
  m.weights_sha256 = read_str_attr(f, "weights_sha256", path);
  m.method = read_str_attr(f, "method", path);
  m.preset = read_str_attr(f, "preset", path);
  m.config_toml = read_str_attr(f, "config_toml", path);
  m.dsgq_version = read_str_attr(f, "dsgq_version", path);
  m.created = read_str_attr(f, "created", path);
  m.seed = read_int_attr(f, "seed", path);
  m.world_size = read_int_attr(f, "world_size", path);
  m.iterations = read_int_attr(f, "iterations", path);
  m.n_images = read_int_attr(f, "n_images", path);
  m.batch = read_int_attr(f, "batch", path);
  const auto dims = dims_of(f, "/images", path);
  if (dims.size() != 4 || static_cast<int64_t>(dims[0]) != m.n_images)
    throw InputError(path + ": /images has the wrong shape; expected [" + std::to_string(m.n_images) + ",C,H,W]");
  m.channels = static_cast<int64_t>(dims[1]);
  m.height = static_cast<int64_t>(dims[2]);
  m.width = static_cast<int64_t>(dims[3]);
  return m;
}

std::vector<double> read_doubles(hid_t f, const char* name, const std::string& path) {
  if (H5Lexists(f, "/margins", H5P_DEFAULT) <= 0 || H5Lexists(f, name, H5P_DEFAULT) <= 0) return {};
  const auto dims = dims_of(f, name, path);
  std::vector<double> v(dims.empty() ? 0 : dims[0]);
  if (!v.empty()) read_rows(f, name, H5T_NATIVE_DOUBLE, 0, static_cast<int64_t>(v.size()), v.data());
  return v;
}

hid_t open_readonly(const std::string& path) {
  return h5::open_readonly(path, kSynthFormat,
                           "dataset (.part: synthesis was interrupted); rerun dsgq synth to finish it");
}

}  // namespace

struct SynthWriter::Impl {
  std::string path, part;
  const mpi::Comm* comm;
  hid_t file = -1;
};

SynthWriter::SynthWriter(const std::string& path, const SynthMeta& meta, const std::vector<double>& delta,
                         const std::vector<double>& gamma, const mpi::Comm& comm, bool restart)
    : impl_(new Impl{path, path + ".part", &comm, -1}) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  const std::string& part = impl_->part;
  const int64_t nb = meta.n_batches();
  Id fapl(h5::mpio_fapl(comm.native()), H5Pclose);

  // Decide on every rank from the same file: resume a matching .part, else (re)create. Rank 0 checks, all agree.
  std::string verdict;  // "" = create, "resume", or an error message
  if (comm.is_root() && !restart && file_exists(part)) {
    const hid_t f = H5Fis_hdf5(part.c_str()) > 0 ? H5Fopen(part.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
    if (f < 0) {
      verdict = "";  // unreadable leftover: start over
    } else {
      try {
        const SynthMeta old = read_meta(f, part);
        if (old.config_toml != meta.config_toml || old.n_images != meta.n_images || old.batch != meta.batch ||
            old.channels != meta.channels || old.height != meta.height || old.width != meta.width)
          verdict = part + ": is a partial dataset from a different config (model " + old.model + ", method " +
                    old.method + ", " + std::to_string(old.n_images) + " images, batch " + std::to_string(old.batch) +
                    "); expected this run's config; pass --force to start over or remove it";
        else
          verdict = "resume";
      } catch (const InputError& e) {
        verdict = std::string(e.what()) + "; pass --force to start over or remove it";
      }
      H5Fclose(f);
    }
  }
  verdict = comm.broadcast(verdict);
  if (!verdict.empty() && verdict != "resume") throw InputError(verdict);

  done_.assign(static_cast<size_t>(nb), 0);
  if (verdict == "resume") {
    impl_->file = H5Fopen(part.c_str(), H5F_ACC_RDWR, fapl);
    if (impl_->file < 0) throw InputError(part + ": cannot reopen for resuming");
    read_rows(impl_->file, "/batch_done", H5T_NATIVE_UINT8, 0, nb, done_.data());
    return;
  }
  if (comm.is_root()) std::remove(path.c_str());  // --force: an old complete file goes too
  impl_->file = H5Fcreate(part.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (impl_->file < 0) throw InputError(part + ": cannot create (folder missing or not writable?)");
  const hid_t f = impl_->file;
  create_dataset(f, "/images", H5T_NATIVE_FLOAT,
                 {hsize_t(meta.n_images), hsize_t(meta.channels), hsize_t(meta.height), hsize_t(meta.width)});
  create_dataset(f, "/image_sha256", H5T_NATIVE_UINT8, {hsize_t(meta.n_images), 32});
  create_dataset(f, "/labels", H5T_NATIVE_INT64, {hsize_t(meta.n_images)});
  create_dataset(f, "/lse_layer", H5T_NATIVE_INT32, {hsize_t(meta.n_images)});
  create_dataset(f, "/loss", H5T_NATIVE_FLOAT, {hsize_t(nb)});
  create_dataset(f, "/batch_done", H5T_NATIVE_UINT8, {hsize_t(nb)});
  if (meta.iterations > 0)  // optimised methods (dsg, zeroq) only
    create_dataset(f, "/loss_curve", H5T_NATIVE_FLOAT, {hsize_t(nb), hsize_t(meta.iterations)});
  Id group(H5Gcreate2(f, "/margins", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!delta.empty()) {  // same on every rank
    create_dataset(f, "/margins/delta", H5T_NATIVE_DOUBLE, {hsize_t(delta.size())});
    create_dataset(f, "/margins/gamma", H5T_NATIVE_DOUBLE, {hsize_t(gamma.size())});
  }
  write_str_attr(f, "format", kSynthFormat);
  write_str_attr(f, "model", meta.model);
  write_str_attr(f, "weights", meta.weights);
  write_str_attr(f, "weights_sha256", meta.weights_sha256);
  write_str_attr(f, "method", meta.method);
  write_str_attr(f, "preset", meta.preset);
  write_str_attr(f, "config_toml", meta.config_toml);
  write_str_attr(f, "dsgq_version", meta.dsgq_version);
  write_str_attr(f, "created", meta.created);
  write_int_attr(f, "seed", meta.seed);
  write_int_attr(f, "world_size", meta.world_size);
  write_int_attr(f, "iterations", meta.iterations);
  write_int_attr(f, "n_images", meta.n_images);
  write_int_attr(f, "batch", meta.batch);
  // Small datasets: every rank writes the same values collectively (rank 0's selection only).
  if (!delta.empty()) {
    write_rows(f, "/margins/delta", H5T_NATIVE_DOUBLE, 0, comm.is_root() ? int64_t(delta.size()) : 0, delta.data());
    write_rows(f, "/margins/gamma", H5T_NATIVE_DOUBLE, 0, comm.is_root() ? int64_t(gamma.size()) : 0, gamma.data());
  }
  check(H5Fflush(f, H5F_SCOPE_GLOBAL), "H5Fflush");
}

SynthWriter::~SynthWriter() {
  if (impl_->file >= 0) H5Fclose(impl_->file);
  delete impl_;
}

void SynthWriter::write_batch(int64_t b, int64_t first, const at::Tensor& images, const at::Tensor& labels,
                              const at::Tensor& lse, double loss, const std::vector<float>& loss_curve) {
  const hid_t f = impl_->file;
  const at::Tensor img = images.detach().to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor lab = labels.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor lsl = lse.to(at::kCPU, at::kInt).contiguous();
  const int64_t n = img.size(0);
  write_rows(f, "/images", H5T_NATIVE_FLOAT, first, n, img.data_ptr());
  if (H5Lexists(f, "/image_sha256", H5P_DEFAULT) > 0) {  // a .part from before the checksums: none
    const size_t row_bytes = static_cast<size_t>(n > 0 ? img[0].numel() : 0) * sizeof(float);
    const std::vector<uint8_t> digests = h5::row_sha256(img.data_ptr(), n, row_bytes);
    write_rows(f, "/image_sha256", H5T_NATIVE_UINT8, first, n, digests.data());
  }
  write_rows(f, "/labels", H5T_NATIVE_INT64, first, n, lab.data_ptr());
  write_rows(f, "/lse_layer", H5T_NATIVE_INT32, first, n, lsl.data_ptr());
  const float lossf = static_cast<float>(loss);
  write_rows(f, "/loss", H5T_NATIVE_FLOAT, b, impl_->comm->is_root() ? 1 : 0, &lossf);
  if (!loss_curve.empty() && H5Lexists(f, "/loss_curve", H5P_DEFAULT) > 0) {  // a .part from before the curve: none
    const auto dims = dims_of(f, "/loss_curve", impl_->part);
    DSGQ_CHECK(dims[1] == loss_curve.size(),
               "loss curve length " + std::to_string(loss_curve.size()) + " != iterations " + std::to_string(dims[1]));
    write_rows(f, "/loss_curve", H5T_NATIVE_FLOAT, b, impl_->comm->is_root() ? 1 : 0, loss_curve.data());
  }
  check(H5Fflush(f, H5F_SCOPE_GLOBAL), "H5Fflush");
  const uint8_t one = 1;
  write_rows(f, "/batch_done", H5T_NATIVE_UINT8, b, impl_->comm->is_root() ? 1 : 0, &one);
  check(H5Fflush(f, H5F_SCOPE_GLOBAL), "H5Fflush");
  done_[static_cast<size_t>(b)] = 1;
}

void SynthWriter::finish() {
  for (size_t b = 0; b < done_.size(); ++b)
    DSGQ_CHECK(done_[b], "finish() with batch " + std::to_string(b) + " not written");
  check(H5Fclose(impl_->file), "H5Fclose");
  impl_->file = -1;
  impl_->comm->barrier();
  if (impl_->comm->is_root() && std::rename(impl_->part.c_str(), impl_->path.c_str()) != 0)
    throw InputError(impl_->path + ": cannot rename from " + impl_->part);
  impl_->comm->barrier();
}

SynthMeta read_synth_meta(const std::string& path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  Id f(open_readonly(path), H5Fclose);
  return read_meta(f, path);
}

SynthSet read_synth(const std::string& path, int64_t first, int64_t count) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  Id f(open_readonly(path), H5Fclose);
  SynthSet s;
  s.meta = read_meta(f, path);
  const int64_t nb = s.meta.n_batches();
  std::vector<uint8_t> done(static_cast<size_t>(nb));
  if (static_cast<int64_t>(dims_of(f, "/batch_done", path)[0]) != nb)
    throw InputError(path + ": /batch_done has the wrong length; expected " + std::to_string(nb));
  read_rows(f, "/batch_done", H5T_NATIVE_UINT8, 0, nb, done.data());
  for (int64_t b = 0; b < nb; ++b)
    if (!done[b])
      throw InputError(path + ": batch " + std::to_string(b) + " was never written; the file is incomplete");
  if (count < 0) count = s.meta.n_images - first;
  if (first < 0 || first + count > s.meta.n_images)
    throw InputError(path + ": rows [" + std::to_string(first) + ", " + std::to_string(first + count) +
                     ") requested but the file holds " + std::to_string(s.meta.n_images) + " images");
  s.images = torch::empty({count, s.meta.channels, s.meta.height, s.meta.width});
  s.labels = torch::empty({count}, torch::kLong);
  s.lse_layer = torch::empty({count}, torch::kInt);
  s.loss = torch::empty({nb});
  read_rows(f, "/images", H5T_NATIVE_FLOAT, first, count, s.images.data_ptr());
  h5::verify_rows(f, path, s.images.data_ptr(), first, count,
                  static_cast<size_t>(s.meta.channels * s.meta.height * s.meta.width) * sizeof(float), s.meta.batch);
  read_rows(f, "/labels", H5T_NATIVE_INT64, first, count, s.labels.data_ptr());
  read_rows(f, "/lse_layer", H5T_NATIVE_INT32, first, count, s.lse_layer.data_ptr());
  read_rows(f, "/loss", H5T_NATIVE_FLOAT, 0, nb, s.loss.data_ptr());
  s.delta = read_doubles(f, "/margins/delta", path);
  s.gamma = read_doubles(f, "/margins/gamma", path);
  return s;
}

}  // namespace dsgq::io
