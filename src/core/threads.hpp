#pragma once
// Thread count for the torch intra-op pool. LibTorch starts with ONE thread on these machines; this decides how
// many each rank gets: --threads, else SLURM_CPUS_PER_TASK, else OMP_NUM_THREADS, else the node's cores divided by
// the ranks on this node.
#include <string>

namespace dsgq {

struct ThreadChoice {
  int threads = 1;
  std::string source;  // "--threads", "SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS", "cores/local ranks"
};

// cli_threads <= 0 means "not given". Throws InputError naming the variable if an environment value is not a
// positive integer.
ThreadChoice choose_threads(int cli_threads, int local_ranks, int hardware_cores);

}  // namespace dsgq
