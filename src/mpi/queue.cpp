#include "mpi/queue.hpp"

#include <mpi.h>

#include <chrono>

#include "core/error.hpp"
#include "core/log.hpp"

namespace dsgq::mpi {
namespace {
constexpr int kTagRequest = 7101, kTagReply = 7102;
MPI_Comm as_mpi(void* h) { return reinterpret_cast<MPI_Comm>(h); }

void wait_polling(MPI_Request& req, MPI_Status* status) {
  int done = 0;
  while (true) {
    MPI_Test(&req, &done, status);
    if (done) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}
}  // namespace

void polling_barrier(const Comm& comm) {
  MPI_Request req;
  MPI_Ibarrier(as_mpi(comm.native()), &req);
  wait_polling(req, MPI_STATUS_IGNORE);
}

WorkQueue::WorkQueue(const Comm& comm, int64_t n) : comm_(comm), n_(n) {
  int level = 0;
  MPI_Query_thread(&level);
  dynamic_ = comm.size() > 1 && level == MPI_THREAD_MULTIPLE;
  if (comm.size() > 1 && !dynamic_)
    log_warn0("the MPI library does not provide MPI_THREAD_MULTIPLE: points are dealt round robin, not on demand");
  if (!dynamic_) {
    static_next_ = comm.rank();
    return;
  }
  MPI_Comm dup;
  MPI_Comm_dup(as_mpi(comm.native()), &dup);
  dup_ = reinterpret_cast<void*>(dup);
  if (comm.is_root()) server_ = std::thread([this] { serve(); });
}

WorkQueue::~WorkQueue() {
  if (server_.joinable()) server_.detach();  // only on an error path; the job is being aborted
}

void WorkQueue::serve() {
  int active = comm_.size() - 1;
  while (active > 0) {
    int64_t ignored = 0;
    MPI_Request req;
    MPI_Status st;
    MPI_Irecv(&ignored, 1, MPI_INT64_T, MPI_ANY_SOURCE, kTagRequest, as_mpi(dup_), &req);
    wait_polling(req, &st);
    int64_t idx = counter_.fetch_add(1);
    if (idx >= n_) idx = -1;
    MPI_Send(&idx, 1, MPI_INT64_T, st.MPI_SOURCE, kTagReply, as_mpi(dup_));
    if (idx < 0) --active;
  }
}

int64_t WorkQueue::next() {
  if (!dynamic_) {
    const int64_t idx = static_next_;
    static_next_ += comm_.size();
    return idx < n_ ? idx : -1;
  }
  if (comm_.is_root()) {
    const int64_t idx = counter_.fetch_add(1);
    return idx < n_ ? idx : -1;
  }
  int64_t ask = comm_.rank(), idx = -1;
  MPI_Send(&ask, 1, MPI_INT64_T, 0, kTagRequest, as_mpi(dup_));
  MPI_Request req;
  MPI_Irecv(&idx, 1, MPI_INT64_T, 0, kTagReply, as_mpi(dup_), &req);
  wait_polling(req, MPI_STATUS_IGNORE);
  return idx;
}

void WorkQueue::finish() {
  if (server_.joinable()) server_.join();
  polling_barrier(comm_);
  if (dup_) {
    MPI_Comm dup = as_mpi(dup_);
    MPI_Comm_free(&dup);
    dup_ = nullptr;
  }
}

}  // namespace dsgq::mpi
