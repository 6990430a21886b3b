// src/core/fs.cpp: atomic writes and read errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "test_util.hpp"

using namespace dsgq;

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
