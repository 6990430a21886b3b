#pragma once
// Shared helpers for the gtest binaries.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <utility>

#include "core/paths.hpp"

namespace dsgq::test {

// A file of the real data set; throws (fails the test, never skips) when the data folder is missing.
inline std::string data_path(const std::string& rel) {
  const std::string dir = dsgq::data_dir();
  if (dir.empty()) throw std::runtime_error("no data folder: set DSGQ_DATA or run jobs/fetch-data");
  return dir + "/" + rel;
}

// A fresh temporary folder, removed when the object goes away.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    char tmpl[] = "/tmp/dsgq_test_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    path = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// One environment variable, restored on scope exit to what it was before (its value, or unset). Every test that
// changes the environment does so through one of these, so no test leaks a variable into the next.
//   test::ScopedEnv data("DSGQ_DATA", "/d");   // set now
//   test::ScopedEnv omp("OMP_NUM_THREADS");    // unchanged now; omp.set("5") / omp.unset() later
class ScopedEnv {
 public:
  explicit ScopedEnv(std::string name) : name_(std::move(name)) {
    if (const char* v = std::getenv(name_.c_str())) saved_ = std::string(v);
  }
  ScopedEnv(std::string name, const std::string& value) : ScopedEnv(std::move(name)) { set(value); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    if (saved_)
      ::setenv(name_.c_str(), saved_->c_str(), 1);
    else
      ::unsetenv(name_.c_str());
  }
  void set(const std::string& value) const {
    if (::setenv(name_.c_str(), value.c_str(), 1) != 0) throw std::runtime_error("setenv failed: " + name_);
  }
  void unset() const { ::unsetenv(name_.c_str()); }

 private:
  std::string name_;
  std::optional<std::string> saved_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// Runs a shell command, capturing both streams.
inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  std::FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

inline std::string env_or(const char* name, const std::string& def) {
  const char* v = std::getenv(name);
  return v && *v ? v : def;
}

// The dsgq binary and the MPI launcher the CLI tests run (CTest sets both).
inline std::string dsgq_bin() { return env_or("DSGQ_BIN", "dsgq"); }
inline std::string mpiexec() { return env_or("DSGQ_MPIEXEC", "mpiexec") + " --oversubscribe --bind-to none"; }

// Polls `cond` every 100 ms for up to `seconds`.
inline bool wait_for(const std::function<bool()>& cond, double seconds) {
  const auto t0 = std::chrono::steady_clock::now();
  while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < seconds) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return cond();
}

// Exit code 2 and exactly one error line, containing `fragment`.
inline void expect_exit2(const CommandResult& r, const std::string& fragment) {
  EXPECT_EQ(r.exit_code, 2) << r.output;
  size_t errors = 0, pos = 0;
  while ((pos = r.output.find("] error: ", pos)) != std::string::npos) ++errors, ++pos;
  EXPECT_EQ(errors, 1u) << r.output;
  EXPECT_NE(r.output.find(fragment), std::string::npos) << "missing '" << fragment << "' in\n" << r.output;
}

}  // namespace dsgq::test
