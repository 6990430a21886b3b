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

// [synth]: making a calibration set without data (method.md sections 1-5, 11).
struct SynthConfig {
  std::string method = "dsg";          // dsg | zeroq | gaussian (N(0,1), no optimisation) | real (images of real_data)
  std::string preset = "paper";        // paper | official (the released code, bug for bug; method.md section 11)
  std::string real_data = "${DSGQ_DATA}/cifar10/data_batch_1.bin";  // method = "real": its first n_images images
  int64_t n_images = 256;              // images in the dataset
  int64_t batch = 64;                  // images optimised together (split over ranks)
  int64_t iters = 500;                 // Adam steps per batch
  double lr = 0.0;                     // 0 = the preset's: paper 0.5; official dsg 0.9, zeroq 0.5
  int64_t patience = 0;                // ReduceLROnPlateau patience; 0 = the preset's: paper 100; official dsg 260, zeroq 100
  std::string stats = "per_sample";    // per_sample (the official code) | batch (batch statistics all-reduced over ranks)
  double slack_quantile = 0.9;         // SDA margins: this quantile of Gaussian images' deviations
  int64_t margin_samples = 1024;       // Gaussian images used for the margins (spread over ranks)
  double margin_scale = 1.0;           // SDA margins are multiplied by this (1 = the paper's recipe)
  bool lse = true;                     // layerwise sample enhancement (dsg only)
  int64_t seed = 0;                    // every random draw derives from (seed, global sample index)
  std::string out;                     // "" = <output.dir>/synth/<key>.h5
};

// [quant.adaround]: AdaRound with the BRECQ reference defaults (method.md section 6).
struct AdaRoundConfig {
  bool enabled = true;        // false: round to nearest on the MSE-searched grid
  int64_t iters = 2000;       // per layer (BRECQ: 20000; the AdaRound paper: 10000)
  int64_t batch = 32;
  double reg = 0.01;          // lambda
  double beta_start = 20.0;   // annealed linearly to beta_end after the warm-up
  double beta_end = 2.0;
  double warmup = 0.2;        // fraction of iterations without the regulariser
  double lr = 1e-2;           // Adam on the rounding variables (reference 1e-3 at 10-20k iterations; see README)
};

// [quant]: quantization protocol and calibration (method.md sections 6 and 11).
struct QuantConfig {
  std::string protocol = "zeroq";      // zeroq (the released DSG/ZeroQ pipeline) | adaround (BN folded, AdaRound)
  int64_t w_bits = 4;                  // 2..8
  int64_t a_bits = 4;                  // 2..8; 32 = activations in floating point (weights-only quantization)
  std::string act_observer = "auto";   // auto (zeroq: ema, adaround: mse) | minmax | ema | percentile | mse
  std::string calib_data;              // dsgq-synth/1 file; "" = the file [synth] describes (dsgq run makes it)
  int64_t n_calib = 0;                 // first n images of the calibration file; 0 = all
  int64_t first_last_bits = 8;         // adaround: first/last layer weights and the classifier input; 0 = same
  int64_t cache_mib = 2048;            // adaround: one layer's cached inputs+targets above this go to a temp HDF5 file
  AdaRoundConfig adaround;
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
  SynthConfig synth;
  QuantConfig quant;
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
