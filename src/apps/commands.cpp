#include "apps/commands.hpp"

#include "pipeline/eval_stage.hpp"
#include "pipeline/inspect.hpp"
#include "pipeline/pack_stage.hpp"
#include "pipeline/quant_stage.hpp"
#include "pipeline/report.hpp"
#include "pipeline/sweep_stage.hpp"
#include "pipeline/synth_stage.hpp"

namespace dsgq::apps {
namespace {

using StagePtr = std::unique_ptr<pipeline::Stage>;

// --dry-run (or sweep --list): the stage's description is the answer; nothing is executed.
StagePtr or_describe(StagePtr stage, bool describe_only, std::string& output) {
  if (!describe_only) return stage;
  output = stage->describe();
  return nullptr;
}

StagePtr help(const Args&, const mpi::Comm&, std::string& output) {
  output = usage();
  return nullptr;
}

StagePtr eval(const Args& a, const mpi::Comm& w, std::string& out) {
  return or_describe(pipeline::EvalStage::prepare(a.common, w), a.common.dry_run, out);
}

StagePtr synth(const Args& a, const mpi::Comm& w, std::string& out) {
  return or_describe(pipeline::SynthStage::prepare(a.common, w), a.common.dry_run, out);
}

StagePtr quantize(const Args& a, const mpi::Comm& w, std::string& out) {
  return or_describe(pipeline::QuantStage::prepare(a.common, w, /*calib_will_exist=*/false), a.common.dry_run, out);
}

StagePtr run(const Args& a, const mpi::Comm& w, std::string& out) {
  std::vector<StagePtr> stages;
  stages.push_back(pipeline::SynthStage::prepare(a.common, w));
  stages.push_back(pipeline::QuantStage::prepare(a.common, w, /*calib_will_exist=*/true));
  return or_describe(std::make_unique<pipeline::StageSequence>(std::move(stages)), a.common.dry_run, out);
}

StagePtr sweep(const Args& a, const mpi::Comm& w, std::string& out) {
  return or_describe(pipeline::SweepStage::prepare(a.common, a.only, w, a.shard, a.shards), a.list || a.common.dry_run,
                     out);
}

StagePtr pack(const Args& a, const mpi::Comm& w, std::string& out) {
  return or_describe(pipeline::PackStage::prepare(a.pack, w), a.common.dry_run, out);
}

StagePtr inspect(const Args& a, const mpi::Comm& w, std::string& out) {
  if (w.is_root()) out = pipeline::inspect_file(a.positional[0]);
  return nullptr;
}

StagePtr report(const Args& a, const mpi::Comm& w, std::string& out) {
  if (w.is_root()) out = pipeline::write_report(a.positional[0]);
  return nullptr;
}

StagePtr config_reference(const Args&, const mpi::Comm&, std::string& out) {
  out = config::config_reference();
  return nullptr;
}

}  // namespace

const std::vector<Command>& commands() {
  static const std::vector<Command> table = {
      {"eval", "eval     --config FILE   evaluate the FP32 network (top-1/top-5), images split over ranks", true, eval},
      {"synth",
       "synth    --config FILE   synthesize a calibration set (dsg | zeroq | deepinversion | genie | gaussian | real) "
       "to HDF5",
       true, synth},
      {"quantize", "quantize --config FILE   calibrate on a calibration set, export encodings, evaluate", true,
       quantize},
      {"run", "run      --config FILE   synth (skipped when done) -> quantize -> eval for one point", true, run},
      {"sweep", "sweep    --config FILE   a grid of points (lists in a run file); resumable; ranks share the work",
       true, sweep},
      {"report", "report   RUNS_DIR        aggregate result records into tables (RUNS_DIR/report/table.md|csv|tex)",
       false, report},
      {"pack",
       "pack     --images DIR --out FILE.h5 [--labels FILE] [--synsets FILE] [--size 224] [--resize R]\n"
       "                           pack an ImageNet-style folder (torchvision eval preprocessing) into HDF5",
       true, pack},
      {"inspect", "inspect  FILE            describe a .pt checkpoint, a .h5 synthetic set or a .json result record",
       false, inspect},
      {"config", "config                   print the configuration reference (every key: default, range, meaning)",
       false, config_reference},
      {"help", "help                     this text (also --help)", false, help},
  };
  return table;
}

const Command* find_command(const std::string& name) {
  for (const auto& c : commands())
    if (name == c.name) return &c;
  return nullptr;
}

std::string command_names() {
  std::string out;
  for (const auto& c : commands())
    if (std::string(c.name) != "help") out += (out.empty() ? "" : ", ") + std::string(c.name);
  return out;
}

}  // namespace dsgq::apps
