#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/paths.hpp"
#include "core/sha256.hpp"
#include "core/threads.hpp"
#include "core/timer.hpp"
#include "test_util.hpp"

using namespace dsgq;

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  std::string million(1000000, 'a');
  EXPECT_EQ(sha256_hex(million), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Fs, AtomicWriteReplacesAndLeavesNoTemporary) {
  test::TempDir tmp;
  const std::string path = tmp / "sub/dir/file.txt";
  atomic_write_file(path, "first");
  atomic_write_file(path, "second");
  EXPECT_EQ(read_file(path), "second");
  int entries = 0;
  for (auto& e : std::filesystem::directory_iterator(tmp.path / "sub/dir")) entries += e.is_regular_file();
  EXPECT_EQ(entries, 1);
}

TEST(Fs, MissingFileNamesThePath) {
  try {
    read_file("/nonexistent/dsgq/x.toml");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dsgq/x.toml: cannot open"), std::string::npos) << e.what();
  }
}

TEST(Threads, PrecedenceCliSlurmOmpCores) {
  ::setenv("SLURM_CPUS_PER_TASK", "3", 1);
  ::setenv("OMP_NUM_THREADS", "5", 1);
  EXPECT_EQ(choose_threads(7, 1, 16).threads, 7);
  EXPECT_EQ(choose_threads(0, 1, 16).threads, 3);
  EXPECT_EQ(choose_threads(0, 1, 16).source, "SLURM_CPUS_PER_TASK");
  ::unsetenv("SLURM_CPUS_PER_TASK");
  EXPECT_EQ(choose_threads(0, 1, 16).threads, 5);
  ::unsetenv("OMP_NUM_THREADS");
  EXPECT_EQ(choose_threads(0, 4, 16).threads, 4);
  EXPECT_EQ(choose_threads(0, 3, 2).threads, 1);
  ::setenv("OMP_NUM_THREADS", "two", 1);
  try {
    choose_threads(0, 1, 2);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("OMP_NUM_THREADS = 'two'"), std::string::npos) << e.what();
  }
  ::unsetenv("OMP_NUM_THREADS");
}

TEST(Paths, ExpandsVariablesAndNamesUnsetOnes) {
  ::setenv("DSGQ_TEST_VAR", "/x/y", 1);
  EXPECT_EQ(expand_env("${DSGQ_TEST_VAR}/z.pt", "[model] weights"), "/x/y/z.pt");
  ::setenv("DSGQ_DATA", "/data/here", 1);
  EXPECT_EQ(expand_env("${DSGQ_DATA}/m.pt", "k"), "/data/here/m.pt");
  ::unsetenv("DSGQ_DATA");
  try {
    expand_env("${DSGQ_NOT_SET_ANYWHERE}/a", "cfg.toml [eval]: data");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "cfg.toml [eval]: data = '${DSGQ_NOT_SET_ANYWHERE}/a': environment variable DSGQ_NOT_SET_ANYWHERE is not set");
  }
}

TEST(Timer, FormatsDurations) {
  EXPECT_EQ(format_duration(0), "00:00");
  EXPECT_EQ(format_duration(75), "01:15");
  EXPECT_EQ(format_duration(3725), "01:02:05");
}
