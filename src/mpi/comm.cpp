#include "mpi/comm.hpp"

#include <mpi.h>
#include <torch/torch.h>

#include <cstdlib>

#include "core/error.hpp"
#include "core/log.hpp"
#include "mpi/nccl.hpp"

namespace dsgq::mpi {
namespace {
MPI_Comm as_mpi(void* h) { return reinterpret_cast<MPI_Comm>(h); }
void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw InternalError(std::string(what) + " failed: " + std::string(msg, len));
  }
}
}  // namespace

Share share_of(int64_t n, int rank, int world) {
  DSGQ_CHECK(world > 0 && rank >= 0 && rank < world, "bad rank/world");
  const int64_t base = n / world, extra = n % world;
  Share s;
  s.begin = rank * base + std::min<int64_t>(rank, extra);
  s.end = s.begin + base + (rank < extra ? 1 : 0);
  return s;
}

MpiEnv::MpiEnv(int& argc, char**& argv) {
  int provided = 0;
  check(MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  world_.handle_ = reinterpret_cast<void*>(MPI_COMM_WORLD);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_.rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &world_.size_);
  MPI_Comm node;
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_.rank_, MPI_INFO_NULL, &node),
        "MPI_Comm_split_type");
  MPI_Comm_rank(node, &world_.local_rank_);
  MPI_Comm_size(node, &world_.local_size_);
  MPI_Comm_free(&node);
  set_log_rank(world_.rank_, world_.size_);
}

MpiEnv::~MpiEnv() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

std::string MpiEnv::processor_name() {
  char name[MPI_MAX_PROCESSOR_NAME];
  int len = 0;
  MPI_Get_processor_name(name, &len);
  return std::string(name, len);
}

Comm Comm::self() {
  Comm c;
  c.handle_ = reinterpret_cast<void*>(MPI_COMM_SELF);
  c.rank_ = 0;
  c.size_ = 1;
  c.local_rank_ = 0;
  c.local_size_ = 1;
  return c;
}

void Comm::barrier() const { check(MPI_Barrier(as_mpi(handle_)), "MPI_Barrier"); }

void Comm::allreduce_sum(std::vector<int64_t>& values) const {
  check(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_INT64_T, MPI_SUM,
                      as_mpi(handle_)),
        "MPI_Allreduce(int64 sum)");
}

void Comm::allreduce_sum(std::vector<double>& values) const {
  check(
      MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM, as_mpi(handle_)),
      "MPI_Allreduce(double sum)");
}

int64_t Comm::allreduce_max(int64_t value) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_INT64_T, MPI_MAX, as_mpi(handle_)), "MPI_Allreduce(max)");
  return value;
}

double Comm::allreduce_min(double value) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MIN, as_mpi(handle_)), "MPI_Allreduce(min)");
  return value;
}

double Comm::allreduce_max(double value) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_MAX, as_mpi(handle_)), "MPI_Allreduce(max)");
  return value;
}

double Comm::allreduce_sum(double value) const {
  check(MPI_Allreduce(MPI_IN_PLACE, &value, 1, MPI_DOUBLE, MPI_SUM, as_mpi(handle_)), "MPI_Allreduce(sum)");
  return value;
}

void Comm::allreduce_sum(at::Tensor& tensor) const {
  MPI_Datatype type;
  switch (tensor.scalar_type()) {
    case at::kFloat:
      type = MPI_FLOAT;
      break;
    case at::kDouble:
      type = MPI_DOUBLE;
      break;
    case at::kLong:
      type = MPI_INT64_T;
      break;
    default:
      throw InternalError("allreduce_sum: unsupported dtype " + std::string(c10::toString(tensor.scalar_type())));
  }
  if (nccl_ && tensor.device().is_cuda()) {  // device to device over NCCL
    at::Tensor dense = tensor.is_contiguous() ? tensor : tensor.contiguous();
    const ElemType t = type == MPI_FLOAT ? ElemType::f32 : type == MPI_DOUBLE ? ElemType::f64 : ElemType::i64;
    nccl_->allreduce_sum(dense.data_ptr(), static_cast<size_t>(dense.numel()), t, nullptr);
    if (!dense.is_same(tensor)) tensor.copy_(dense);
    return;
  }
  // Host staging: other device tensors are copied to a contiguous CPU buffer (the tensors reduced here are per-layer
  // BN statistics and gradients of one layer or unit: at most a few MB per step).
  at::Tensor host = tensor.device().is_cpu() && tensor.is_contiguous() ? tensor : tensor.to(at::kCPU).contiguous();
  DSGQ_CHECK(host.numel() <= INT32_MAX, "allreduce_sum: tensor too large for one MPI call");
  check(MPI_Allreduce(MPI_IN_PLACE, host.data_ptr(), static_cast<int>(host.numel()), type, MPI_SUM, as_mpi(handle_)),
        "MPI_Allreduce(tensor sum)");
  if (!host.is_same(tensor)) tensor.copy_(host);
}

void Comm::use_nccl(int device) const {
  if (nccl_ && nccl_->device() == device) return;
  nccl_ = std::make_shared<NcclComm>(*this, device);
}

std::vector<float> Comm::allgatherv(const std::vector<float>& values) const {
  int len = static_cast<int>(values.size());
  std::vector<int> lens(size_);
  check(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, as_mpi(handle_)), "MPI_Allgather(len)");
  std::vector<int> displs(size_, 0);
  for (int r = 1; r < size_; ++r) displs[r] = displs[r - 1] + lens[r - 1];
  std::vector<float> all(static_cast<size_t>(displs.back()) + lens.back());
  check(
      MPI_Allgatherv(values.data(), len, MPI_FLOAT, all.data(), lens.data(), displs.data(), MPI_FLOAT, as_mpi(handle_)),
      "MPI_Allgatherv(float)");
  return all;
}

at::Tensor Comm::allgatherv(const at::Tensor& local) const {
  DSGQ_CHECK(local.scalar_type() == at::kFloat && local.dim() >= 1, "allgatherv: expected float32 rows");
  const at::Tensor host = local.detach().to(at::kCPU).contiguous();
  const std::vector<float> all =
      allgatherv(std::vector<float>(host.data_ptr<float>(), host.data_ptr<float>() + host.numel()));
  std::vector<int64_t> shape(local.sizes().begin(), local.sizes().end());
  shape[0] = -1;
  return torch::from_blob(const_cast<float*>(all.data()), {static_cast<int64_t>(all.size())}, torch::kFloat)
      .clone()
      .view(shape)
      .to(local.device());
}

namespace {
class AllreduceSumFn : public torch::autograd::Function<AllreduceSumFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& local, int64_t comm_ptr) {
    at::Tensor global = local.detach().clone().contiguous();
    reinterpret_cast<const Comm*>(comm_ptr)->allreduce_sum(global);
    return global;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grad) {
    return {grad[0], at::Tensor()};
  }
};

class AllreduceSumSummedFn : public torch::autograd::Function<AllreduceSumSummedFn> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& local, int64_t comm_ptr) {
    ctx->saved_data["comm"] = comm_ptr;
    at::Tensor global = local.detach().clone().contiguous();
    reinterpret_cast<const Comm*>(comm_ptr)->allreduce_sum(global);
    return global;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad) {
    at::Tensor summed = grad[0].detach().clone().contiguous();
    reinterpret_cast<const Comm*>(ctx->saved_data["comm"].toInt())->allreduce_sum(summed);
    return {summed, at::Tensor()};
  }
};
}  // namespace

at::Tensor allreduce_sum_autograd_summed(const at::Tensor& local, const Comm& comm) {
  if (comm.size() == 1) return local;
  return AllreduceSumSummedFn::apply(local, static_cast<int64_t>(reinterpret_cast<intptr_t>(&comm)));
}

at::Tensor allreduce_sum_autograd(const at::Tensor& local, const Comm& comm) {
  if (comm.size() == 1) return local;
  return AllreduceSumFn::apply(local, static_cast<int64_t>(reinterpret_cast<intptr_t>(&comm)));
}

std::vector<std::string> Comm::allgather(const std::string& value) const {
  int len = static_cast<int>(value.size());
  std::vector<int> lens(size_);
  check(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, as_mpi(handle_)), "MPI_Allgather(len)");
  std::vector<int> displs(size_, 0);
  for (int r = 1; r < size_; ++r) displs[r] = displs[r - 1] + lens[r - 1];
  std::string all(displs.back() + lens.back(), '\0');
  check(MPI_Allgatherv(value.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, as_mpi(handle_)),
        "MPI_Allgatherv");
  std::vector<std::string> out(size_);
  for (int r = 0; r < size_; ++r) out[r] = all.substr(displs[r], lens[r]);
  return out;
}

std::string Comm::broadcast(const std::string& value) const {
  int64_t len = static_cast<int64_t>(value.size());
  check(MPI_Bcast(&len, 1, MPI_INT64_T, 0, as_mpi(handle_)), "MPI_Bcast(len)");
  std::string out = rank_ == 0 ? value : std::string(static_cast<size_t>(len), '\0');
  check(MPI_Bcast(out.data(), static_cast<int>(len), MPI_CHAR, 0, as_mpi(handle_)), "MPI_Bcast");
  return out;
}

void Comm::abort(int code) const {
  if (size_ <= 1) std::exit(code);
  MPI_Abort(as_mpi(handle_), code);
  std::_Exit(code);
}

}  // namespace dsgq::mpi
