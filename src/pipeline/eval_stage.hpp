#pragma once
// `dsgq eval`: FP32 top-1/top-5 of a network on an evaluation set, images split over ranks, one result record.
#include <memory>
#include <string>

#include "dist/comm.hpp"
#include "pipeline/runtime.hpp"

namespace dsgq::pipeline {

class EvalStage {
 public:
  // Local, no collectives: resolves and validates the config, the weights (strict import), the evaluation data and
  // the output folder, sets threads and device. Throws InputError for any bad input, identically on every rank.
  static std::unique_ptr<EvalStage> prepare(const CommonArgs& args, const dist::Comm& comm);
  ~EvalStage();

  // The resolved config as TOML (what --dry-run prints).
  std::string resolved_toml() const;

  // Collective: evaluates, all-reduces the counts, rank 0 writes <output.dir>/results/<key>.json. Returns 0.
  int execute(const dist::Comm& comm);

 private:
  EvalStage();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsgq::pipeline
