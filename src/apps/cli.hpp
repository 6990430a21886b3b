#pragma once
// Command-line parsing for the dsgq binary: the option table, the usage text.
#include <string>
#include <vector>

#include "pipeline/pack_stage.hpp"
#include "pipeline/runtime.hpp"

namespace dsgq::apps {

struct Args {
  std::string command;  // "eval", "inspect", "help", ...
  pipeline::CommonArgs common;
  std::vector<std::string> positional;
  std::vector<std::string> only;  // sweep --only KEY...
  bool list = false;              // sweep --list
  int shard = 0, shards = 1;      // sweep --shard I/N (a Slurm array task: I = SLURM_ARRAY_TASK_ID)
  pipeline::PackArgs pack;        // pack --images --labels --synsets --size --resize --out
};

// Throws InputError naming the option and what was expected. The command must be in the command table.
Args parse_args(int argc, char** argv);
std::string usage();

}  // namespace dsgq::apps
