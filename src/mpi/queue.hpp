#pragma once
// A dynamic work queue over MPI ranks (docs/layout.md section 2, sweeps): indices 0..n-1 handed out one at a time to
// whichever rank asks first. Rank 0 coordinates from a helper thread (polling, so it does not spin a core) and also
// takes work itself; other ranks ask with one message round trip. Needs MPI_THREAD_MULTIPLE; where the MPI library
// does not provide it, the queue falls back to a static round robin (rank r takes r, r + R, ...), with a warning.
#include <atomic>
#include <cstdint>
#include <thread>

#include "mpi/comm.hpp"

namespace dsgq::mpi {

class WorkQueue {
 public:
  WorkQueue(const Comm& comm, int64_t n);  // collective
  ~WorkQueue();                            // joins the helper thread if finish() was not reached (error paths)
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  int64_t next();  // the next index for this rank, or -1 when none is left
  // Collective: every rank has received -1; waits without spinning (idle ranks leave the cores to busy ones).
  void finish();
  bool dynamic() const { return dynamic_; }

 private:
  void serve();
  const Comm& comm_;
  int64_t n_;
  bool dynamic_ = false;
  void* dup_ = nullptr;  // MPI_Comm for the queue's messages
  std::atomic<int64_t> counter_{0};
  int64_t static_next_ = 0;
  std::thread server_;
};

// A barrier that sleeps between polls instead of spinning. Collective.
void polling_barrier(const Comm& comm);

}  // namespace dsgq::mpi
