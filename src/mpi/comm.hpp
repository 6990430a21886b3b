#pragma once
// MPI world (RAII) and the collectives dsgq needs. Every function below is COLLECTIVE (all ranks of the
// communicator call it, in the same order) unless marked "local". <mpi.h> stays in comm.cpp.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace at {
class Tensor;
}

namespace dsgq::mpi {

class NcclComm;

// Index range [begin, end) of rank r's share when n items are split over `world` ranks: the first n % world ranks
// get one more (10 over 3 -> 4, 3, 3). Local.
struct Share {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Share share_of(int64_t n, int rank, int world);

class Comm {
 public:
  int rank() const { return rank_; }
  int size() const { return size_; }
  int local_rank() const { return local_rank_; }  // rank among the ranks on this node
  int local_size() const { return local_size_; }
  bool is_root() const { return rank_ == 0; }

  void barrier() const;
  // In-place sums / extrema over ranks.
  void allreduce_sum(std::vector<int64_t>& values) const;
  void allreduce_sum(std::vector<double>& values) const;
  int64_t allreduce_max(int64_t value) const;
  double allreduce_min(double value) const;
  double allreduce_max(double value) const;
  double allreduce_sum(double value) const;
  // In-place elementwise sum of a float32/float64/int64 tensor on any device: CUDA tensors through NCCL once
  // use_nccl() ran, every other tensor over MPI (device tensors through a host copy).
  void allreduce_sum(at::Tensor& tensor) const;
  // Collective: from now on CUDA tensors are all-reduced with NCCL on GPU `device` (runtime.collectives, docs/gpu.md).
  // Idempotent for the same device. InputError without an NCCL build or a visible GPU.
  void use_nccl(int device) const;
  bool uses_nccl() const { return nccl_ != nullptr; }
  // Every rank's values concatenated in rank order (shares may differ in length).
  std::vector<float> allgatherv(const std::vector<float>& values) const;
  // Every rank's float32 rows [n_r, ...] concatenated along dim 0 in rank order (n_r may differ; the other dims must
  // not), on `local`'s device; detached.
  at::Tensor allgatherv(const at::Tensor& local) const;
  // Every rank's string, in rank order.
  std::vector<std::string> allgather(const std::string& value) const;
  // Rank 0's value on every rank.
  std::string broadcast(const std::string& value) const;

  // Ends every rank of the job with `code` (MPI_Abort). Local; never returns. Use after a failure once ranks may
  // be inside a collective; a single-rank job simply exits.
  [[noreturn]] void abort(int code) const;

  // A communicator holding only the calling rank (MPI_COMM_SELF): a one-rank reference inside a multi-rank job.
  static Comm self();

  // The MPI_Comm handle, for libraries that take one (parallel HDF5). Local.
  void* native() const { return handle_; }

 private:
  friend class MpiEnv;
  void* handle_ = nullptr;  // MPI_Comm
  int rank_ = 0, size_ = 1, local_rank_ = 0, local_size_ = 1;
  mutable std::shared_ptr<NcclComm> nccl_;  // set by use_nccl(); shared by copies of this communicator
};

// Collective sum whose backward pass is the identity: every rank then holds the same (replicated) loss built on
// the global sums, so the gradient w.r.t. each rank's share is the incoming gradient itself (docs/method.md section 7,
// stats = "batch"). float/double tensors; with one rank it is the identity.
at::Tensor allreduce_sum_autograd(const at::Tensor& local, const Comm& comm);

// The same forward, for a sum that each rank then feeds into a loss of its own (Genie's generator BatchNorm, whose
// statistics come from every rank's rows but whose outputs feed each rank's share of the loss): the backward pass
// all-reduces the incoming gradient, so each rank receives d(sum of the ranks' losses)/d(its share). Collective in
// both directions.
at::Tensor allreduce_sum_autograd_summed(const at::Tensor& local, const Comm& comm);

// Initializes MPI (asking for MPI_THREAD_MULTIPLE: the sweep queue serves requests from a thread) and finalizes it on
// normal destruction. Construct once, in main.
class MpiEnv {
 public:
  MpiEnv(int& argc, char**& argv);
  ~MpiEnv();
  MpiEnv(const MpiEnv&) = delete;
  MpiEnv& operator=(const MpiEnv&) = delete;
  const Comm& world() const { return world_; }
  static std::string processor_name();  // local

 private:
  Comm world_;
};

}  // namespace dsgq::mpi
