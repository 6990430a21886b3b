#pragma once
// The command table: one row per dsgq command. main() looks the command up and calls its prepare on every rank;
// a new command is one row here (and its Stage in src/pipeline).
#include <memory>
#include <string>
#include <vector>

#include "apps/cli.hpp"
#include "mpi/comm.hpp"
#include "pipeline/stage.hpp"

namespace dsgq::apps {

struct Command {
  const char* name;
  const char* synopsis;  // the line(s) of `dsgq --help`
  bool every_rank;       // does work on every rank (false: inspect, report and help answer from rank 0 alone)
  // Local, on every rank: validates and prepares. Returns the stage to execute, or null when `output` (printed by
  // rank 0) is the whole answer: help, inspect, report, --dry-run, --list.
  std::unique_ptr<pipeline::Stage> (*prepare)(const Args& args, const mpi::Comm& world, std::string& output);
};

const std::vector<Command>& commands();
// The row named `name`, or null.
const Command* find_command(const std::string& name);
// "eval, synth, quantize, ...", for messages.
std::string command_names();

}  // namespace dsgq::apps
