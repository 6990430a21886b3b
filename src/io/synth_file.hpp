#pragma once
// The synthetic dataset file (docs/formats.md section 2, format "dsgq-synth/1"), one HDF5 file written collectively by
// all ranks (parallel HDF5, each rank its hyperslab) as <name>.h5.part and renamed when complete:
//   /images    float32 [N,C,H,W]  in the network's normalized input space
//   /labels    int64   [N]        target label, -1 if none
//   /lse_layer int32   [N]        the BN layer a sample enhanced, -1 if none
//   /loss      float32 [batches]  final loss of each batch
//   /batch_done uint8  [batches]  1 once a batch is written (resume state; all 1 in a complete file)
//   /loss_curve float32 [batches, iterations]  the loss at every iteration (dsg/zeroq; absent in older files)
//   /margins/delta, /margins/gamma float64 [L]  SDA margins used (empty when none)
//   root attributes: format, model, weights, weights_sha256, method, preset, config_toml, seed, world_size,
//   iterations, dsgq_version, created, n_images, batch.
// Crash safety: every dataset is contiguous and allocated when the file is created and every attribute is
// written then, so later writes only touch raw data; a killed run leaves a .part that reopens with its finished
// batches marked.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mpi/comm.hpp"

namespace dsgq::io {

inline constexpr const char* kSynthFormat = "dsgq-synth/1";

struct SynthMeta {
  std::string model, weights, weights_sha256, method, preset, config_toml, dsgq_version, created;
  int64_t seed = 0, world_size = 1, iterations = 0, n_images = 0, batch = 0;
  int64_t channels = 3, height = 32, width = 32;
  int64_t n_batches() const { return (n_images + batch - 1) / batch; }
};

class SynthWriter {
 public:
  // Collective. Creates <path>.part, or reopens an existing one whose config_toml and shape match (resume);
  // a .part of another config throws InputError naming both (pass --force to start over: `restart`).
  SynthWriter(const std::string& path, const SynthMeta& meta, const std::vector<double>& delta,
              const std::vector<double>& gamma, const mpi::Comm& comm, bool restart);
  ~SynthWriter();
  SynthWriter(const SynthWriter&) = delete;
  SynthWriter& operator=(const SynthWriter&) = delete;

  // Batches already complete in the .part (every rank sees the same).
  const std::vector<uint8_t>& done() const { return done_; }

  // Collective: this rank's rows [first, first + n) (global image indices) of batch `b`; then the batch is marked
  // done. images float [n,C,H,W] (any device), labels int64 [n], lse int32/int64 [n]; loss from every rank (same).
  void write_batch(int64_t b, int64_t first, const at::Tensor& images, const at::Tensor& labels, const at::Tensor& lse,
                   double loss, const std::vector<float>& loss_curve = {});

  // Collective: closes the file and renames <path>.part to <path>.
  void finish();

 private:
  struct Impl;
  Impl* impl_;
  std::vector<uint8_t> done_;
};

struct SynthSet {
  SynthMeta meta;
  at::Tensor images;     // float [n,C,H,W]
  at::Tensor labels;     // int64 [n]
  at::Tensor lse_layer;  // int32 [n]
  at::Tensor loss;       // float [batches]
  std::vector<double> delta, gamma;
};

// Local (serial HDF5 read). Rows [first, first + count) (count < 0: to the end). Throws InputError naming the
// file for: a .part (incomplete), a foreign file (no or another format attribute), missing datasets, unfinished
// batches.
SynthSet read_synth(const std::string& path, int64_t first = 0, int64_t count = -1);
SynthMeta read_synth_meta(const std::string& path);

}  // namespace dsgq::io
