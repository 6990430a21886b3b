#include "mpi/nccl.hpp"

#include "core/error.hpp"
#include "mpi/comm.hpp"

#ifdef DSGQ_HAVE_NCCL
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <cstring>
#endif

namespace dsgq::mpi {

#ifdef DSGQ_HAVE_NCCL

namespace {

void cuda_check(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess) throw InternalError(std::string("CUDA: ") + what + " failed: " + cudaGetErrorString(rc));
}
void nccl_check(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess) throw InternalError(std::string("NCCL: ") + what + " failed: " + ncclGetErrorString(rc));
}
ncclDataType_t nccl_type(ElemType t) {
  switch (t) {
    case ElemType::f32:
      return ncclFloat32;
    case ElemType::f64:
      return ncclFloat64;
    case ElemType::i64:
      return ncclInt64;
  }
  return ncclFloat32;
}

}  // namespace

bool nccl_built() { return true; }

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "?";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch
  return std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

NcclComm::NcclComm(const Comm& comm, int device) : device_(device) {
  int n = 0;
  const cudaError_t count_rc = cudaGetDeviceCount(&n);
  if (count_rc != cudaSuccess || n == 0)
    throw InputError(std::string("collectives = nccl: no CUDA device is visible to this rank (") +
                     (count_rc != cudaSuccess ? cudaGetErrorString(count_rc) : "0 devices") +
                     "); expected one GPU per rank (Slurm: --gpus-per-task=1)");
  if (device < 0 || device >= n)
    throw InputError("collectives = nccl: device " + std::to_string(device) + " but this rank sees " +
                     std::to_string(n) + " GPU(s); expected 0.." + std::to_string(n - 1));
  cuda_check(cudaSetDevice(device), "cudaSetDevice");
  ncclUniqueId id;
  std::string bytes(sizeof id, '\0');
  if (comm.is_root()) {
    nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    std::memcpy(bytes.data(), &id, sizeof id);
  }
  bytes = comm.broadcast(bytes);
  std::memcpy(&id, bytes.data(), sizeof id);
  ncclComm_t c = nullptr;
  nccl_check(ncclCommInitRank(&c, comm.size(), id, comm.rank()), "ncclCommInitRank");
  comm_ = c;
}

NcclComm::~NcclComm() {
  if (comm_) ncclCommDestroy(static_cast<ncclComm_t>(comm_));
}

void NcclComm::allreduce_sum(void* data, size_t count, ElemType type, void* stream) const {
  const auto s = static_cast<cudaStream_t>(stream);
  nccl_check(ncclAllReduce(data, data, count, nccl_type(type), ncclSum, static_cast<ncclComm_t>(comm_), s),
             "ncclAllReduce");
  cuda_check(cudaStreamSynchronize(s), "cudaStreamSynchronize");
}

#else  // built without NCCL

bool nccl_built() { return false; }
std::string nccl_version() { return ""; }

NcclComm::NcclComm(const Comm&, int device) : device_(device) {
  throw InputError(
      "collectives = nccl: this dsgq was built without NCCL; expected a build configured with -DDSGQ_WITH_NCCL=ON "
      "(docs/gpu.md)");
}
NcclComm::~NcclComm() = default;
void NcclComm::allreduce_sum(void*, size_t, ElemType, void*) const {
  throw InternalError("NcclComm::allreduce_sum without NCCL");
}

#endif

}  // namespace dsgq::mpi
