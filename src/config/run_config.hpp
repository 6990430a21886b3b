#pragma once
// The run configuration: one TOML file, one struct per section. Defaults live only here, as member initializers;
// they describe the embedded default run (ResNet-20 on CIFAR-10). Paths are ${VAR}-expanded when loaded.
#include <cstdint>
#include <string>
#include <vector>

namespace dsgq::config {

struct ModelConfig {
  std::string arch = "resnet20";  // registry name (design.md section 4)
  std::string weights;            // torch.save state_dict; "" = the registry's file for `arch` under ${DSGQ_DATA}/models
  std::string dataset;            // "cifar10" | "imagenet"; "" = the architecture's own dataset
};

struct EvalConfig {
  std::string data = "${DSGQ_DATA}/cifar10/test_batch.bin";  // CIFAR-10 binary file
  int64_t batch = 500;      // images per forward pass on each rank
  int64_t n_images = 0;     // first n images of `data`; 0 = all
};

struct OutputConfig {
  std::string dir = "runs/quickstart";  // results/<key>.json and resolved.toml go here
};

struct RuntimeConfig {
  std::string device = "cpu";  // "cpu" | "cuda" | "cuda:N" (CUDA builds: "cuda" = this rank's local GPU)
  int64_t threads = 0;         // torch threads per rank; 0 = --threads / SLURM_CPUS_PER_TASK / OMP_NUM_THREADS / cores
};

struct RunConfig {
  std::string source = "(defaults)";  // the file it came from, for messages
  ModelConfig model;
  EvalConfig eval;
  OutputConfig output;
  RuntimeConfig runtime;
};

// "section.key=value" overrides from the command line; value is parsed as TOML (so 4, 0.5, true, "x"), else taken
// as a bare string.
struct Override {
  std::string text;  // as given, for messages
};

// Reads `path` (or only the defaults when path is empty), applies the overrides, validates every key and value.
// Unknown sections/keys, wrong types and out-of-range values throw InputError naming file, section, key and value.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides);

// Same, from TOML text (`source` names it in messages). Used by tests.
RunConfig parse_run_config(const std::string& toml_text, const std::string& source,
                           const std::vector<std::string>& overrides);

// The resolved config as TOML text (every key, defaults filled in, variables expanded).
std::string to_toml(const RunConfig& cfg);

}  // namespace dsgq::config
