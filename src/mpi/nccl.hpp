#pragma once
// NCCL collectives for device tensors (docs/gpu.md): one rank per GPU, the communicator bootstrapped over MPI (rank 0's
// unique id broadcast). Raw device pointers and CUDA streams only, so this compiles and links against the CUDA
// toolkit and NCCL without a CUDA LibTorch; a build without -DDSGQ_WITH_NCCL=ON has no NCCL and says so.
#include <cstddef>
#include <string>

namespace dsgq::mpi {

class Comm;

// Whether this build has NCCL (-DDSGQ_WITH_NCCL=ON), and its version ("" without).
bool nccl_built();
std::string nccl_version();

enum class ElemType { f32, f64, i64 };

class NcclComm {
 public:
  // Collective over `comm`: every rank binds CUDA device `device`, rank 0 creates the unique id, MPI broadcasts it,
  // every rank joins (ncclCommInitRank). InputError when the build has no NCCL; InternalError naming the CUDA/NCCL
  // call and its message when a call fails.
  NcclComm(const Comm& comm, int device);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  // In-place sum over the ranks of `count` elements at the device pointer `data`, enqueued on `stream` (nullptr: the
  // legacy default stream, which LibTorch uses unless told otherwise) and waited for. Collective.
  void allreduce_sum(void* data, size_t count, ElemType type, void* stream) const;
  int device() const { return device_; }

 private:
  void* comm_ = nullptr;  // ncclComm_t
  int device_ = -1;
};

}  // namespace dsgq::mpi
