#pragma once
// `dsgq synth`: one synthetic calibration set (dsg | zeroq | deepinversion | genie | gaussian | real), all ranks
// cooperating, written to the dsgq-synth/1 HDF5 file. Resumable batch by batch; a complete file is skipped unless
// --force.
#include <memory>
#include <string>

#include "mpi/comm.hpp"
#include "pipeline/runtime.hpp"
#include "pipeline/stage.hpp"
#include "io/synth_file.hpp"
#include "synth/margins.hpp"

namespace dsgq::pipeline {

class SynthStage final : public Stage {
 public:
  // Local, no collectives: resolves and validates config, weights, output; throws InputError on bad input.
  static std::unique_ptr<SynthStage> prepare(const CommonArgs& args, const mpi::Comm& comm);
  // Same, for a config resolved elsewhere (a sweep point): `cfg` replaces the config file and --set overrides.
  static std::unique_ptr<SynthStage> prepare(config::RunConfig cfg, const CommonArgs& args, const mpi::Comm& comm);
  ~SynthStage() override;
  // The resolved config as TOML and the output path.
  std::string describe() const override;
  const std::string& output_path() const;
  // Collective. Returns 0.
  int execute(const mpi::Comm& comm) override;

 private:
  SynthStage();
  synth::Margins dsg_margins(const mpi::Comm& comm) const;
  io::SynthMeta synth_meta(const mpi::Comm& comm) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsgq::pipeline
