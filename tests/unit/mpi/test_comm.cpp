// src/mpi/comm.cpp: the local share arithmetic (the collectives run under mpiexec in tests/mpi).
#include <gtest/gtest.h>

#include "mpi/comm.hpp"

using dsgq::mpi::share_of;

TEST(Share, UnevenSplitsCoverEverythingInOrder) {
  EXPECT_EQ(share_of(10, 0, 3).size(), 4);
  EXPECT_EQ(share_of(10, 1, 3).size(), 3);
  EXPECT_EQ(share_of(10, 2, 3).begin, 7);
  for (int64_t n : {0, 1, 2, 7, 13, 10000})
    for (int world : {1, 2, 3, 5}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto s = share_of(n, r, world);
        EXPECT_EQ(s.begin, next) << "n=" << n << " world=" << world << " rank=" << r;
        EXPECT_GE(s.size(), n / world);
        EXPECT_LE(s.size(), n / world + 1);
        next = s.end;
      }
      EXPECT_EQ(next, n);
    }
}
