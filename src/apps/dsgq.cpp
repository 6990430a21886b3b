// dsgq: one thin main. Looks the command up in the command table, prepares it on every rank, agrees, executes.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <set>
#include <string>

#include "apps/cli.hpp"
#include "apps/commands.hpp"
#include "core/allocator.hpp"
#include "core/error.hpp"
#include "core/log.hpp"
#include "mpi/comm.hpp"

namespace {

using dsgq::log_error;

// srun without MPI support starts N singletons: each would run the whole job alone and race on its files.
void check_not_singletons(const dsgq::apps::Command& cmd, const dsgq::mpi::Comm& world) {
  const char* step_tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  if (cmd.every_rank && step_tasks && std::atoi(step_tasks) > 1 && world.size() == 1)
    throw dsgq::InputError(std::string("srun started ") + step_tasks +
                           " tasks but MPI sees a world of 1 rank: every task would run the whole job alone; "
                           "expected srun --mpi=pmix (slurm/env/generic.sh launch()) or mpirun");
}

// Collective: the worst exit code over the ranks; rank 0 prints each distinct message once, naming the rank if
// not its own (ranks validate the same inputs, so they usually fail alike).
int agree(int code, const std::string& message, const dsgq::mpi::Comm& world) {
  const int worst = static_cast<int>(world.allreduce_max(static_cast<int64_t>(code)));
  if (worst == 0) return 0;
  const std::vector<std::string> all = world.allgather(message);
  if (world.is_root()) {
    std::set<std::string> printed;
    for (size_t r = 0; r < all.size(); ++r)
      if (!all[r].empty() && printed.insert(all[r]).second)
        log_error("%s%s", r == 0 ? "" : ("(from rank " + std::to_string(r) + ") ").c_str(), all[r].c_str());
  }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  dsgq::tune_allocator();
  dsgq::mpi::MpiEnv mpi(argc, argv);
  const dsgq::mpi::Comm& world = mpi.world();

  // Phase 1, local: parse and validate everything. No collective may run before every rank agrees.
  int code = 0;
  std::string message, output;
  std::unique_ptr<dsgq::pipeline::Stage> stage;
  try {
    const dsgq::apps::Args args = dsgq::apps::parse_args(argc, argv);
    const dsgq::apps::Command& cmd = *dsgq::apps::find_command(args.command);
    check_not_singletons(cmd, world);
    stage = cmd.prepare(args, world, output);
  } catch (const dsgq::InputError& e) {
    code = 2;
    message = e.what();
  } catch (const std::exception& e) {
    code = 1;
    message = std::string("internal error: ") + e.what();
  }
  if (const int worst = agree(code, message, world); worst != 0) return worst;
  if (!stage) {
    if (world.is_root()) std::fputs(output.c_str(), stdout);
    return 0;
  }

  // Phase 2, collective: run. A failure now may leave other ranks inside a collective: abort the job.
  try {
    return stage->execute(world);
  } catch (const dsgq::InputError& e) {
    log_error("%s", e.what());
    world.abort(2);
  } catch (const std::exception& e) {
    log_error("internal error: %s", e.what());
    world.abort(1);
  }
}
