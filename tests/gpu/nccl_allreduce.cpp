// CTest label `gpu` (docs/gpu.md): NCCL all-reduce of device memory through dsgq's communicator, one rank per GPU.
// Each rank fills a float32, a float64 and an int64 buffer on its GPU with rank-dependent values, all-reduces them
// through mpi::Comm::use_nccl + mpi::NcclComm, and checks every element against the closed-form sum. Exits 77
// (reported as skipped by CTest, never as passed) when this rank sees no CUDA device or fewer GPUs than ranks on
// its node.
#include <cuda_runtime_api.h>

#include <cstdio>
#include <vector>

#include "mpi/comm.hpp"
#include "mpi/nccl.hpp"

using namespace dsgq;

namespace {

template <class T>
bool check_sum(const mpi::Comm& w, const mpi::NcclComm& nccl, mpi::ElemType type, const char* name) {
  const size_t n = 1000003;  // odd, not a multiple of any NCCL chunk
  std::vector<T> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<T>((w.rank() + 1) * static_cast<int64_t>(i % 1000));
  void* dev = nullptr;
  if (cudaMalloc(&dev, n * sizeof(T)) != cudaSuccess) return false;
  cudaMemcpy(dev, host.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  nccl.allreduce_sum(dev, n, type, nullptr);
  cudaMemcpy(host.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost);
  cudaFree(dev);
  const int64_t ranks_sum = static_cast<int64_t>(w.size()) * (w.size() + 1) / 2;
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i)
    if (host[i] != static_cast<T>(ranks_sum * static_cast<int64_t>(i % 1000))) ++bad;
  std::printf("[rank %d/%d] nccl all-reduce %s x %zu on GPU %d: %zu wrong\n", w.rank(), w.size(), name, n,
              nccl.device(), bad);
  return bad == 0;
}

}  // namespace

int main(int argc, char** argv) {
  mpi::MpiEnv env(argc, argv);
  const mpi::Comm& w = env.world();
  int gpus = 0;
  const bool visible = cudaGetDeviceCount(&gpus) == cudaSuccess && gpus > 0;
  const int64_t short_ranks = w.allreduce_max(static_cast<int64_t>(!visible || gpus < w.local_size()));
  if (short_ranks) {
    if (w.is_root())
      std::printf("skipped: %s\n", visible ? "fewer GPUs than ranks on a node" : "no CUDA device visible");
    return 77;
  }
  mpi::NcclComm nccl(w, w.local_rank());
  bool ok = check_sum<float>(w, nccl, mpi::ElemType::f32, "float32");
  ok = check_sum<double>(w, nccl, mpi::ElemType::f64, "float64") && ok;
  ok = check_sum<int64_t>(w, nccl, mpi::ElemType::i64, "int64") && ok;
  const int64_t failed = w.allreduce_max(static_cast<int64_t>(!ok));
  if (w.is_root())
    std::printf("%s (NCCL %s, %d rank(s))\n", failed ? "FAILED" : "passed", mpi::nccl_version().c_str(), w.size());
  return failed ? 1 : 0;
}
