#pragma once
// `dsgq eval`: FP32 top-1/top-5 of a network on an evaluation set, images split over ranks, one result record.
#include <memory>
#include <string>

#include "mpi/comm.hpp"
#include "pipeline/runtime.hpp"
#include "pipeline/stage.hpp"

namespace dsgq::pipeline {

class EvalStage final : public Stage {
 public:
  // Local, no collectives: resolves and validates the config, the weights (strict import), the evaluation data and
  // the output folder, sets threads and device. Throws InputError for any bad input, identically on every rank.
  static std::unique_ptr<EvalStage> prepare(const CommonArgs& args, const mpi::Comm& comm);
  ~EvalStage() override;
  // The resolved config as TOML.
  std::string describe() const override;
  // Collective: evaluates, all-reduces the counts, rank 0 writes <output.dir>/results/<key>.json. Returns 0.
  int execute(const mpi::Comm& comm) override;

 private:
  EvalStage();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsgq::pipeline
