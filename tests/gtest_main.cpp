// gtest main for the non-MPI test binaries: the same allocator set-up as the dsgq binary.
#include <gtest/gtest.h>

#include "core/allocator.hpp"

int main(int argc, char** argv) {
  dsgq::tune_allocator();
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
