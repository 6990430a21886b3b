// gtest main for tests run under mpiexec: every rank runs every test; only rank 0 prints; the job fails if any
// rank failed (verdicts reduced with MAX).
#include <gtest/gtest.h>

#include "core/allocator.hpp"
#include "mpi/comm.hpp"
#include "mpi/mpi_world.hpp"

namespace dsgq::test {
const mpi::Comm* g_world = nullptr;
}

int main(int argc, char** argv) {
  dsgq::tune_allocator();
  dsgq::mpi::MpiEnv mpi(argc, argv);
  dsgq::test::g_world = &mpi.world();
  ::testing::InitGoogleTest(&argc, argv);
  if (mpi.world().rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int local = RUN_ALL_TESTS();
  const int64_t worst = mpi.world().allreduce_max(static_cast<int64_t>(local));
  if (local != 0) std::fprintf(stderr, "rank %d had failures\n", mpi.world().rank());
  return static_cast<int>(worst);
}
