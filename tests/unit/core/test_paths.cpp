// src/core/paths.cpp: ${VAR} expansion (DSGQ_DATA through data_dir()) and the message for an unset variable.
#include <gtest/gtest.h>

#include <string>

#include "core/error.hpp"
#include "core/paths.hpp"
#include "test_util.hpp"

using namespace dsgq;

TEST(Paths, ExpandsVariablesAndNamesUnsetOnes) {
  test::ScopedEnv var("DSGQ_TEST_VAR", "/x/y");
  EXPECT_EQ(expand_env("${DSGQ_TEST_VAR}/z.pt", "[model] weights"), "/x/y/z.pt");
  {
    test::ScopedEnv data("DSGQ_DATA", "/data/here");
    EXPECT_EQ(expand_env("${DSGQ_DATA}/m.pt", "k"), "/data/here/m.pt");
  }
  test::ScopedEnv unset("DSGQ_NOT_SET_ANYWHERE");
  unset.unset();
  try {
    expand_env("${DSGQ_NOT_SET_ANYWHERE}/a", "cfg.toml [eval]: data");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(
        std::string(e.what()),
        "cfg.toml [eval]: data = '${DSGQ_NOT_SET_ANYWHERE}/a': environment variable DSGQ_NOT_SET_ANYWHERE is not set");
  }
}
