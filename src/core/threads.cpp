#include "core/threads.hpp"

#include <cstdlib>

#include "core/error.hpp"

namespace dsgq {
namespace {
bool env_threads(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (!v || !*v) return false;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  if (*end != '\0' || n <= 0 || n > 4096)
    throw InputError(std::string("environment ") + name + " = " + quote_value(v) +
                     " is not a thread count; expected an integer 1..4096");
  *out = static_cast<int>(n);
  return true;
}
}  // namespace

ThreadChoice choose_threads(int cli_threads, int local_ranks, int hardware_cores) {
  ThreadChoice c;
  if (cli_threads > 0) {
    c.threads = cli_threads;
    c.source = "--threads";
  } else if (env_threads("SLURM_CPUS_PER_TASK", &c.threads)) {
    c.source = "SLURM_CPUS_PER_TASK";
  } else if (env_threads("OMP_NUM_THREADS", &c.threads)) {
    c.source = "OMP_NUM_THREADS";
  } else {
    const int ranks = local_ranks > 0 ? local_ranks : 1;
    c.threads = hardware_cores / ranks > 0 ? hardware_cores / ranks : 1;
    c.source = "cores/local ranks";
  }
  return c;
}

}  // namespace dsgq
