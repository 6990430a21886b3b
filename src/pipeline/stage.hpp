#pragma once
// The shape every dsgq command shares. A stage is made by its static prepare() on every rank, locally and
// without collectives: it validates all input and throws InputError, identically on every rank. The ranks then
// agree (apps/dsgq.cpp: the worst exit code, the messages printed once), and only when all prepared without error
// does each rank call execute(), which is collective. A new command is a Stage and one row in apps' command table.
#include <memory>
#include <string>
#include <vector>

#include "mpi/comm.hpp"

namespace dsgq::pipeline {

class Stage {
 public:
  virtual ~Stage() = default;
  // Local: what --dry-run prints (the resolved config, the sweep's points, the pack plan).
  virtual std::string describe() const = 0;
  // Collective: does the work. Returns the process exit code (0, or 2 for bad input found while working).
  virtual int execute(const mpi::Comm& comm) = 0;
};

// Stages run one after the other (dsgq run: synth, then quantize); stops at the first non-zero code. Describes
// itself as its first stage does.
class StageSequence final : public Stage {
 public:
  explicit StageSequence(std::vector<std::unique_ptr<Stage>> stages) : stages_(std::move(stages)) {}
  std::string describe() const override { return stages_.empty() ? std::string() : stages_.front()->describe(); }
  int execute(const mpi::Comm& comm) override {
    for (auto& s : stages_)
      if (const int code = s->execute(comm); code != 0) return code;
    return 0;
  }

 private:
  std::vector<std::unique_ptr<Stage>> stages_;
};

}  // namespace dsgq::pipeline
