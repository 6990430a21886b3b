#pragma once
// Per-rank runtime set-up shared by every stage: torch thread count and the compute device.
#include <c10/core/Device.h>

#include <string>

#include "config/run_config.hpp"
#include "mpi/comm.hpp"

namespace dsgq::pipeline {

// What the command line adds to a config file.
struct CommonArgs {
  std::string config_path;             // "" = the embedded defaults
  std::vector<std::string> overrides;  // --set section.key=value
  bool dry_run = false;
  bool force = false;
  int threads = 0;  // --threads; 0 = not given
};

struct Runtime {
  c10::Device device{c10::kCPU};
  int threads = 1;
  std::string threads_source;
  std::string collectives = "mpi";  // what all-reduces device tensors: "mpi" or "nccl"
};

// Validates [runtime] (device available in this build, thread count, collectives) and applies it
// (at::set_num_threads; NCCL for device tensors: collective over `comm` when it starts NCCL, else local).
Runtime setup_runtime(const config::RunConfig& cfg, const CommonArgs& args, const mpi::Comm& comm);

// Loads the config file with the overrides and fills in what depends on the architecture (weights path, dataset).
config::RunConfig resolve_config(const CommonArgs& args);
// The part of resolve_config that fills in what depends on the architecture (a sweep point's config).
config::RunConfig complete_config(config::RunConfig cfg);

// min/mean/max of a per-rank duration, as a JSON-ready triple. Collective.
struct Span {
  double min = 0, mean = 0, max = 0;
};
Span span_over_ranks(double seconds, const mpi::Comm& comm);

}  // namespace dsgq::pipeline
