// dsgq: one thin main with subcommands. Parses, validates on every rank, agrees, runs one pipeline function.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <set>
#include <string>

#include "apps/cli.hpp"
#include "core/allocator.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "dist/comm.hpp"
#include "pipeline/eval_stage.hpp"
#include "pipeline/inspect.hpp"
#include "pipeline/pack_stage.hpp"
#include "pipeline/quant_stage.hpp"
#include "pipeline/report.hpp"
#include "pipeline/synth_stage.hpp"
#include "pipeline/sweep_stage.hpp"

int main(int argc, char** argv) {
  dsgq::tune_allocator();
  dsgq::dist::MpiEnv mpi(argc, argv);
  const dsgq::dist::Comm& world = mpi.world();
  using dsgq::log_error;

  // Phase 1, local: parse and validate everything. No collective may run before every rank agrees.
  int code = 0;
  std::string message, output;
  dsgq::apps::Args args;
  std::unique_ptr<dsgq::pipeline::EvalStage> eval_stage;
  std::unique_ptr<dsgq::pipeline::SynthStage> synth_stage;
  std::unique_ptr<dsgq::pipeline::QuantStage> quant_stage;
  std::unique_ptr<dsgq::pipeline::SweepStage> sweep_stage;
  std::unique_ptr<dsgq::pipeline::PackStage> pack_stage;
  try {
    args = dsgq::apps::parse_args(argc, argv);
    // srun without MPI support starts N singletons: each would run the whole job alone and race on its files.
    const char* step_tasks = std::getenv("SLURM_STEP_NUM_TASKS");
    if (step_tasks && std::atoi(step_tasks) > 1 && world.size() == 1 && args.command != "help" &&
        args.command != "inspect" && args.command != "report")
      throw dsgq::InputError(std::string("srun started ") + step_tasks +
                             " tasks but MPI sees a world of 1 rank: every task would run the whole job alone; "
                             "expected srun --mpi=pmix (slurm/env/generic.sh launch()) or mpirun");
    if (args.command == "help") output = dsgq::apps::usage();
    if (args.command == "inspect" && world.is_root()) output = dsgq::pipeline::inspect_file(args.positional[0]);
    if (args.command == "report" && world.is_root()) output = dsgq::pipeline::write_report(args.positional[0]);
    if (args.command == "eval") {
      eval_stage = dsgq::pipeline::EvalStage::prepare(args.common, world);
      if (args.common.dry_run) output = eval_stage->resolved_toml();
    }
    if (args.command == "synth" || args.command == "run") {
      synth_stage = dsgq::pipeline::SynthStage::prepare(args.common, world);
      if (args.common.dry_run) output = synth_stage->resolved_toml() + "# synth output: " + synth_stage->output_path() + "\n";
    }
    if (args.command == "quantize" || args.command == "run") {
      quant_stage = dsgq::pipeline::QuantStage::prepare(args.common, world, args.command == "run");
      if (args.common.dry_run && output.empty()) output = quant_stage->resolved_toml();
    }
    if (args.command == "pack") {
      pack_stage = dsgq::pipeline::PackStage::prepare(args.pack, world);
      if (args.common.dry_run) output = pack_stage->describe();
    }
    if (args.command == "sweep") {
      sweep_stage = dsgq::pipeline::SweepStage::prepare(args.common, args.only, world, args.shard, args.shards);
      if (args.list || args.common.dry_run) output = sweep_stage->listing();
    }
  } catch (const dsgq::InputError& e) {
    code = 2;
    message = e.what();
  } catch (const std::exception& e) {
    code = 1;
    message = std::string("internal error: ") + e.what();
  }
  const int worst = static_cast<int>(world.allreduce_max(static_cast<int64_t>(code)));
  if (worst != 0) {
    // Ranks validate the same inputs: rank 0 prints each distinct message once, naming the rank if not its own.
    const std::vector<std::string> all = world.allgather(message);
    if (world.is_root()) {
      std::set<std::string> printed;
      for (size_t r = 0; r < all.size(); ++r)
        if (!all[r].empty() && printed.insert(all[r]).second)
          log_error("%s%s", r == 0 ? "" : ("(from rank " + std::to_string(r) + ") ").c_str(), all[r].c_str());
    }
    return worst;
  }
  if (!output.empty() || (!eval_stage && !synth_stage && !quant_stage && !sweep_stage && !pack_stage)) {
    if (world.is_root()) std::fputs(output.c_str(), stdout);
    return 0;
  }

  // Phase 2, collective: run. A failure now may leave other ranks inside a collective: abort the job.
  try {
    if (eval_stage) return eval_stage->execute(world);
    if (sweep_stage) return sweep_stage->execute(world);
    if (pack_stage) return pack_stage->execute(world);
    if (synth_stage && synth_stage->execute(world) != 0) return 1;
    return quant_stage ? quant_stage->execute(world) : 0;
  } catch (const dsgq::InputError& e) {
    log_error("%s", e.what());
    world.abort(2);
  } catch (const std::exception& e) {
    log_error("internal error: %s", e.what());
    world.abort(1);
  }
}
