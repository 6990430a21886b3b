#pragma once
// `dsgq synth`: one synthetic calibration set (dsg | zeroq | gaussian | real), all ranks cooperating, written to
// the dsgq-synth/1 HDF5 file. Resumable batch by batch; a complete file is skipped unless --force.
#include <memory>
#include <string>

#include "dist/comm.hpp"
#include "pipeline/runtime.hpp"

namespace dsgq::pipeline {

class SynthStage {
 public:
  // Local, no collectives: resolves and validates config, weights, output; throws InputError on bad input.
  static std::unique_ptr<SynthStage> prepare(const CommonArgs& args, const dist::Comm& comm);
  // Same, for a config resolved elsewhere (a sweep point): `cfg` replaces the config file and --set overrides.
  static std::unique_ptr<SynthStage> prepare(config::RunConfig cfg, const CommonArgs& args, const dist::Comm& comm);
  ~SynthStage();
  std::string resolved_toml() const;
  const std::string& output_path() const;
  // Collective. Returns 0.
  int execute(const dist::Comm& comm);

 private:
  SynthStage();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsgq::pipeline
