// src/core/threads.cpp: the thread count's precedence (CLI, SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, cores / ranks).
#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"
#include "core/threads.hpp"
#include "test_util.hpp"

using namespace dsgq;

TEST(Threads, PrecedenceCliSlurmOmpCores) {
  test::ScopedEnv slurm("SLURM_CPUS_PER_TASK", "3");
  test::ScopedEnv omp("OMP_NUM_THREADS", "5");
  EXPECT_EQ(choose_threads(7, 1, 16).threads, 7);
  EXPECT_EQ(choose_threads(0, 1, 16).threads, 3);
  EXPECT_EQ(choose_threads(0, 1, 16).source, "SLURM_CPUS_PER_TASK");
  slurm.unset();
  EXPECT_EQ(choose_threads(0, 1, 16).threads, 5);
  omp.unset();
  EXPECT_EQ(choose_threads(0, 4, 16).threads, 4);
  EXPECT_EQ(choose_threads(0, 3, 2).threads, 1);
  omp.set("two");
  try {
    choose_threads(0, 1, 2);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("OMP_NUM_THREADS = 'two'"), std::string::npos) << e.what();
  }
}
