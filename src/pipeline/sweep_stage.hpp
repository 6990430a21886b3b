#pragma once
// `dsgq sweep`: a grid of points (config/sweep_config.hpp) run as one MPI job (design.md section 5). Every rank
// expands and validates the whole grid first. Then the synthetic datasets the pending points need are made one
// after another by all ranks together (each exactly once; a complete file is reused), and the quantize+eval points
// are handed out on demand (dist::WorkQueue: rank 0 coordinates and works), each computed by one rank alone.
// A point whose result record exists is skipped; a killed sweep, rerun, does only what is missing (records and
// datasets are only ever renamed into place when complete).
#include <memory>
#include <string>
#include <vector>

#include "dist/comm.hpp"
#include "pipeline/runtime.hpp"

namespace dsgq::pipeline {

class SweepStage {
 public:
  // Local: expands the grid, validates every point, refuses duplicates and unknown --only keys.
  // shard/shards: keep the points of every calibration set g (in first-use order) with g % shards == shard, so
  // that array tasks never make the same set twice.
  static std::unique_ptr<SweepStage> prepare(const CommonArgs& args, const std::vector<std::string>& only,
                                             const dist::Comm& comm, int shard = 0, int shards = 1);
  ~SweepStage();
  // One line per point: state (done | pending), key, the varied keys; then the datasets. Local.
  std::string listing() const;
  // Collective. Returns 0.
  int execute(const dist::Comm& comm);

 private:
  SweepStage();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsgq::pipeline
