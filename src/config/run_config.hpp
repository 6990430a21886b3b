#pragma once
// The run configuration: one TOML file, one struct per section. Each key is declared once, as a row of its
// section's field table in run_config.cpp (name, member, default, range or choices, one-line doc); the table drives
// reading with its errors, the default values (each struct's constructor), resolved.toml, the identity text and
// hashes of points, the record's point fields and the reference `dsgq config` prints (docs/config.md). Adding a key:
// a member here and a row in its table.
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "config/choices.hpp"

namespace dsgq::config {

// Bit-widths dsgq quantizes to; kFloatBits as a_bits leaves activations in floating point.
inline constexpr int64_t kMinBits = 2, kMaxBits = 8, kFloatBits = 32;

struct ModelConfig {
  ModelConfig();
  std::string arch;
  std::string weights;
  Dataset dataset;
};

struct EvalConfig {
  EvalConfig();
  std::string data;
  int64_t batch;
  int64_t n_images;
};

// [synth]: making a calibration set without data (docs/method.md sections 1-8).
struct SynthConfig {
  SynthConfig();
  SynthMethod method;
  Preset preset;
  std::string real_data;
  RealPick real_pick;  // method real: the first n_images of real_data, or n_images drawn by the seed
  int64_t n_images;
  int64_t batch;
  int64_t iters;
  double lr;
  int64_t patience;
  BnStats stats;
  double slack_quantile;
  int64_t margin_samples;
  double margin_scale;
  bool lse;
  double sci_weight;  // dsg: the journal's sample-correlation term (docs/method.md section 4.1)
  // deepinversion (docs/method.md section 7.1)
  double ce_weight;
  double bn_weight;
  double first_bn_weight;
  double tv_l2;
  double tv_l1;
  double l2;
  int64_t jitter;
  bool flip;
  int64_t crop;          // the training augmentation: pad with black, crop per image (docs/method.md section 7.1)
  double zoom;           // IntraQ's random resized crops: the smallest area fraction (docs/method.md section 7.1)
  double stem_l1;        // sparsity prior on the first BN layer's responses (docs/method.md section 7.1)
  double mix;            // fraction of images with a two-class target (docs/method.md section 7.1)
  double soft_target;    // IntraQ's soft targets: the lowest target probability; 0 = cross-entropy (section 7.1)
  bool clip;             // clamp the optimised images to the image range after every step (docs/method.md section 7.1)
  SynthInit init;        // the starting images (docs/method.md section 7.2)
  int64_t lowres_iters;  // steps at half resolution before `iters` (docs/method.md section 7.5)
  // genie (docs/method.md section 7.3)
  double generator_lr;
  int64_t swing;
  // stop when converged (docs/method.md section 6)
  double stop_rtol;
  int64_t stop_window;
  bool bf16;  // the optimisation's convs/linear layers in bfloat16 (models::Network::set_conv_bf16)
  int64_t seed;
  std::string out;
};

// [quant.adaround]: AdaRound with the BRECQ reference defaults (docs/method.md section 12).
struct AdaRoundConfig {
  AdaRoundConfig();
  bool enabled;
  int64_t iters;
  int64_t batch;
  double reg;
  double beta_start;
  double beta_end;
  double warmup;
  double lr;
  bool gram;  // protocol adaround: the whole set's loss through the inputs' second moments (quant/adaround.hpp)
};

// [quant.recon]: block reconstruction with activations in the loop (protocol qdrop; docs/method.md section 13). The
// rounding itself takes [quant.adaround] (iters per unit, batch, reg, beta, warmup, lr).
struct ReconConfig {
  ReconConfig();
  double drop;
  double act_lr;
  double weight_scale_lr;
  int64_t observer_images;
  bool bf16;  // the unit's convs in bfloat16 while it is reconstructed
  bool fisher;
};

// [quant]: quantization protocol and calibration (docs/method.md sections 9-12).
struct QuantConfig {
  QuantConfig();
  Protocol protocol;
  int64_t w_bits;
  int64_t a_bits;         // 32 = activations in floating point
  Observer act_observer;  // never `automatic` once read
  std::string calib_data;
  int64_t n_calib;
  int64_t first_last_bits;  // 0 = same as w_bits / a_bits
  int64_t cache_mib;
  bool onnx;  // also write <key>.onnx (QDQ graph)
  AdaRoundConfig adaround;
  ReconConfig recon;
};

struct OutputConfig {
  OutputConfig();
  std::string dir;
};

struct RuntimeConfig {
  RuntimeConfig();
  std::string device;
  int64_t threads;
  bool channels_last;
  Collectives collectives;
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

// Reads `path` (or only the defaults when path is empty), applies the "section.key=value" overrides (value parsed
// as TOML, else taken as a bare string), validates every key and value. Unknown sections/keys, wrong types and
// out-of-range values throw InputError naming file, section, key and value.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides);

// Same, from TOML text (`source` names it in messages). Used by tests.
RunConfig parse_run_config(const std::string& toml_text, const std::string& source,
                           const std::vector<std::string>& overrides);

// The resolved config as TOML text (every key, defaults filled in, variables expanded).
std::string to_toml(const RunConfig& cfg);

// What a key takes part in besides the config file itself.
enum Role : unsigned {
  kSynthIdentity = 1u << 0,      // the calibration set's identity text (its key's hash)
  kSynthIdentityReal = 1u << 1,  // ... only when synth.method = real, after the others
  kPoint = 1u << 2,              // every result record's point (eval and quantize)
  kQuantPoint = 1u << 3,         // a quantize record's point
  kAdaRoundVariant = 1u << 4,    // adaround and qdrop: the point's "adaround" object and its key's hash
  kReconVariant = 1u << 5,       // qdrop: the point's "recon" object and its key's hash
  // A key added after records existed: fields_with(cfg, roles != 0) leaves it out while it holds its default, so the
  // keys and points of earlier records stay what they were.
  kOnlyIfSet = 1u << 6,
};

using Value = std::variant<bool, int64_t, double, std::string>;  // choices as their names

struct FieldValue {
  std::string section;  // "quant.adaround"
  std::string key;      // "iters"
  std::string point;    // the name in a record's point ("eval_data" for eval.data)
  Value value;
};

// The keys carrying every role in `roles`, with their values in `cfg`, in table order (sections in file order);
// roles 0: every key; otherwise a kOnlyIfSet key only when it differs from its default.
std::vector<FieldValue> fields_with(const RunConfig& cfg, unsigned roles);

// The configuration reference as Markdown: every section and key, type, default, range or choices, meaning.
// `dsgq config` prints it; docs/config.md is this text (a test fails when they differ).
std::string config_reference();

}  // namespace dsgq::config
