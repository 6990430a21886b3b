#pragma once
// `dsgq sweep`: a grid of points (config/sweep_config.hpp) run as one MPI job (docs/running.md section 6). Every rank
// expands and validates the whole grid first. Then the synthetic datasets the pending points need are made one
// after another by all ranks together (each exactly once; a complete file is reused), and the quantize+eval points
// are handed out on demand (mpi::WorkQueue: rank 0 coordinates and works), each computed by one rank alone.
// A point whose result record exists is skipped; a killed sweep, rerun, does only what is missing (records and
// datasets are only ever renamed into place when complete).
#include <memory>
#include <string>
#include <vector>

#include "mpi/comm.hpp"
#include "pipeline/runtime.hpp"
#include "pipeline/stage.hpp"

namespace dsgq::pipeline {

class SweepStage final : public Stage {
 public:
  // Local: expands the grid, validates every point, refuses duplicates and unknown --only keys.
  // shard/shards: keep the points of every calibration set g (in first-use order) with g % shards == shard, so
  // that array tasks never make the same set twice.
  static std::unique_ptr<SweepStage> prepare(const CommonArgs& args, const std::vector<std::string>& only,
                                             const mpi::Comm& comm, int shard = 0, int shards = 1);
  ~SweepStage() override;
  // One line per point: state (done | pending), key, the varied keys; then the datasets. Local.
  std::string describe() const override;
  // Collective. Returns 0.
  int execute(const mpi::Comm& comm) override;

 private:
  SweepStage();
  // Collective: the calibration sets the pending points need, each made by all ranks together. Returns seconds.
  double make_calibration_sets(const std::vector<size_t>& pending, const mpi::Comm& comm);
  // Collective: the pending points handed out one at a time (mpi::WorkQueue), each computed by one rank alone.
  struct RankWork {
    int64_t computed = 0;  // points this rank computed
    double busy_s = 0, seconds = 0;
    std::string queue;  // "single rank" | "dynamic" | "round robin"
  };
  RankWork run_points(std::vector<size_t> pending, const mpi::Comm& comm);
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsgq::pipeline
