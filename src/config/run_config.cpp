#include "config/run_config.hpp"

#include <deque>
#include <iomanip>
#include <regex>
#include <sstream>
#include <type_traits>
#include <utility>

#include "config/field_table.hpp"
#include "config/toml_section.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"

namespace dsgq::config {
namespace {

constexpr int64_t k2p31 = int64_t(1) << 31;

// ---- The field tables: the one declaration of every key. ----

const Table<ModelConfig>& model_table() {
  using S = ModelConfig;
  static const Table<S> t = {
      text_field<S>("arch", &S::arch, "resnet20", false,
                    "network from the model registry (dsgq --help lists the architectures)", kPoint),
      text_field<S>("weights", &S::weights, "", true,
                    "torch.save state_dict; \"\" = the registry's file for arch under ${DSGQ_DATA}/models "
                    "(torchvision's cache for ImageNet networks)"),
      choice_field<S>("dataset", &S::dataset, Dataset::from_arch,
                      "fixes input size, classes and normalization; \"\" = the architecture's own", kPoint),
  };
  return t;
}

const Table<SynthConfig>& synth_table() {
  using S = SynthConfig;
  const unsigned id = kSynthIdentity;
  static const Table<S> t = {
      choice_field<S>("method", &S::method, SynthMethod::deepinversion,
                      "dsg | zeroq | deepinversion (batch statistics, class targets, jitter, priors) | genie (a "
                      "generator and latents per batch, batch statistics) | gaussian (N(0,1), no optimisation) | "
                      "real (the first n_images of real_data)",
                      id | kQuantPoint),
      choice_field<S>("preset", &S::preset, Preset::dsgq,
                      "paper (the papers' settings) | official (the released code's, bug for bug; docs/method.md "
                      "section 5) | dsgq (the recommended settings, chosen by measurement: deepinversion from the "
                      "diverse start with bn_weight 10; the paper's for every other method; section 7.4)",
                      id | kQuantPoint),
      text_field<S>("real_data", &S::real_data, "${DSGQ_DATA}/cifar10/data_batch_1.bin", true,
                    "method = real: a CIFAR-10 binary file or a packed set (dsgq pack)", kSynthIdentityReal),
      choice_field<S>("real_pick", &S::real_pick, RealPick::first,
                      "method = real: first (images 0..n_images-1 of real_data) | seeded (n_images distinct images "
                      "drawn uniformly from the whole file by the seed, so each seed calibrates on other images, "
                      "as each seed of a synthetic method does); other methods ignore it, as they ignore real_data",
                      kSynthIdentityReal | kOnlyIfSet),
      int_field<S>("n_images", &S::n_images, 256, 1, k2p31, "images in the calibration set", id),
      int_field<S>("batch", &S::batch, 64, 1, 1 << 16, "images optimised together (split over the ranks)", id),
      int_field<S>("iters", &S::iters, 500, 1, 1000000,
                   "Adam steps per batch; deepinversion with neither iters nor lowres_iters given: 100, after 400 "
                   "half-size steps (lowres_iters), at lr 0.08 unless lr is given",
                   id),
      float_field<S>("lr", &S::lr, 0.0, 0.0, 1e3,
                     "Adam learning rate; 0 = the method's and preset's (paper 0.5; official dsg 0.9, "
                     "zeroq 0.5; deepinversion 0.1, in its default schedule 0.08 (see iters); genie: the latents' 0.1)",
                     id),
      int_field<S>("patience", &S::patience, 0, 0, 1000000,
                   "ReduceLROnPlateau patience; 0 = the preset's (paper 100; official dsg 260, zeroq 100); "
                   "deepinversion keeps its lr constant",
                   id),
      choice_field<S>("stats", &S::stats, BnStats::per_sample,
                      "per_sample (the released code) | batch (BN statistics of the global batch, all-reduced)", id),
      float_field<S>("slack_quantile", &S::slack_quantile, 0.9, 0.0, 1.0,
                     "dsg: SDA margins are this quantile of Gaussian images' BN deviations", id),
      int_field<S>("margin_samples", &S::margin_samples, 1024, 1, 1 << 20,
                   "dsg: Gaussian images used for the margins (spread over the ranks)", id),
      float_field<S>("margin_scale", &S::margin_scale, 1.0, 0.0, 1e6,
                     "dsg: the SDA margins are multiplied by this (1 = the paper's recipe, 0 = no slack)", id),
      bool_field<S>("lse", &S::lse, true, "dsg: layerwise sample enhancement", id),
      float_field<S>("sci_weight", &S::sci_weight, 0.0, 0.0, 1e9,
                     "dsg: weight of the journal version's sample-correlation term SCI (differentiable; 1 = the "
                     "journal's); 0 = off",
                     id | kOnlyIfSet),
      // deepinversion: added after sets existed, so at their defaults they stay out of a set's identity.
      float_field<S>("ce_weight", &S::ce_weight, 1.0, 0.0, 1e6,
                     "deepinversion: weight of the cross-entropy to the target classes (image i: class i mod K)",
                     id | kOnlyIfSet),
      float_field<S>("bn_weight", &S::bn_weight, 0.0, 0.0, 1e9,
                     "deepinversion: weight of the batch-statistics term; 0 = the preset's (paper and official: the "
                     "CIFAR-10 script's 100; dsgq: 10; ImageNet script: 0.01)",
                     id | kOnlyIfSet),
      float_field<S>("first_bn_weight", &S::first_bn_weight, 1.0, 0.0, 1e6,
                     "deepinversion: multiplier of the first BN layer's term (ImageNet code: 10)", id | kOnlyIfSet),
      float_field<S>("tv_l2", &S::tv_l2, 2.5e-5, 0.0, 1e6,
                     "deepinversion: weight of the TV-L2 prior (sum of the Frobenius norms of 4 difference images)",
                     id | kOnlyIfSet),
      float_field<S>("tv_l1", &S::tv_l1, 0.0, 0.0, 1e6, "deepinversion: weight of the TV-L1 prior", id | kOnlyIfSet),
      float_field<S>("l2", &S::l2, 0.0, 0.0, 1e6,
                     "deepinversion: weight of the images' mean L2 norm (ImageNet code: 1e-5)", id | kOnlyIfSet),
      int_field<S>("jitter", &S::jitter, 2, 0, 1 << 16,
                   "deepinversion: random shift of the whole batch by up to this many pixels per step (ImageNet: 30)",
                   id | kOnlyIfSet),
      bool_field<S>("flip", &S::flip, false,
                    "deepinversion: random horizontal flip of the whole batch per step (ImageNet code: true); "
                    "with crop or zoom > 0, of each image",
                    id | kOnlyIfSet),
      int_field<S>("crop", &S::crop, 0, 0, 1 << 10,
                   "deepinversion: the classifier's training augmentation instead of the jitter: each image, each "
                   "step, padded by this many black pixels and cropped back at its own random offset (CIFAR's "
                   "RandomCrop(32, padding=4): 4), flipped on its own when flip = true; 0 = off",
                   id | kOnlyIfSet),
      float_field<S>("zoom", &S::zoom, 0.0, 0.0, 1.0,
                     "deepinversion: IntraQ's local object reinforcement instead of the jitter: each image, each "
                     "step, with probability 1/2 a random resized crop (area fraction uniform on [zoom, 1], aspect "
                     "ratio log-uniform on [3/4, 4/3]) scaled back bilinearly, flipped on its own when flip = true "
                     "(IntraQ's CIFAR setting: 0.5); 0 = off",
                     id | kOnlyIfSet),
      float_field<S>("stem_l1", &S::stem_l1, 0.0, 0.0, 1e6,
                     "deepinversion: weight of the mean |standardized response| of the first BN layer (its input "
                     "minus the running mean over the running std): at a held variance, a sparsity prior that makes "
                     "the responses heavy-tailed like natural images'; 0 = off",
                     id | kOnlyIfSet),
      float_field<S>("mix", &S::mix, 0.0, 0.0, 1.0,
                     "deepinversion: fraction of the images whose target mixes two classes, lambda x class i mod K + "
                     "(1 - lambda) x another class, lambda uniform on [0, 1) per image (Qimera's boundary-supporting "
                     "samples); 0 = off",
                     id | kOnlyIfSet),
      float_field<S>("soft_target", &S::soft_target, 0.0, 0.0, 1.0,
                     "deepinversion: IntraQ's soft targets in place of the cross-entropy: the class term becomes "
                     "(softmax probability of the image's class - t)^2, t = 1 for half the images and uniform on "
                     "[soft_target, 1) for the others, drawn per image (IntraQ's CIFAR setting: 0.95); weighted by "
                     "ce_weight; 0 = off",
                     id | kOnlyIfSet),
      bool_field<S>("clip", &S::clip, false,
                    "zeroq, dsg, deepinversion: after every step clamp each channel to the image range [0, 1] in "
                    "normalized units (DeepInversion's ImageNet code); the start is clamped too",
                    id | kOnlyIfSet),
      choice_field<S>(
          "init", &S::init, SynthInit::automatic,
          "starting images of a pixel-optimising method: preset (the method's and preset's; deepinversion with "
          "preset dsgq: diverse) | gaussian (N(0,1)) | "
          "diverse (per image and channel a random mean and scale, then a 5x5 smoothing; Sony MCT's "
          "DataInitType.Diverse) | dead_leaves (opaque discs of random colour, radii from a power law, painted "
          "until the image is covered: flat regions and sharp edges, docs/method.md section 7.2)",
          id | kOnlyIfSet),
      int_field<S>("lowres_iters", &S::lowres_iters, 0, 0, 1000000,
                   "deepinversion: Adam steps before the `iters` ones in which the network sees the images "
                   "average-pooled 2x2 (half the resolution; jitter and crop halved; a fresh Adam for the full-size "
                   "steps): DeepInversion's multi-resolution setting; 0 = off; with neither iters nor lowres_iters "
                   "given: 400, and iters 100 (docs/method.md section 7.5)",
                   id | kOnlyIfSet),
      float_field<S>("generator_lr", &S::generator_lr, 0.01, 0.0, 1e3,
                     "genie: Adam learning rate of the generator (x0.95 every 100 iterations)", id | kOnlyIfSet),
      int_field<S>("swing", &S::swing, 1, 0, 64,
                   "genie: swing convolution, the input of every strided conv padded by this many pixels (reflect) "
                   "and cut at a random offset per step; 0 = off",
                   id | kOnlyIfSet),
      float_field<S>("stop_rtol", &S::stop_rtol, 0.0, 0.0, 1.0,
                     "end a batch early once the last stop_window iterations improved its best loss by less than "
                     "this fraction of the whole improvement since the first iteration, or it reached 0; 0 = always "
                     "run iters (docs/method.md section 6)",
                     id | kOnlyIfSet),
      int_field<S>("stop_window", &S::stop_window, 50, 1, 1000000,
                   "iterations over which stop_rtol's improvement is measured", id | kOnlyIfSet),
      bool_field<S>("bf16", &S::bf16, false,
                    "convolutions and linear layers of the optimisation in bfloat16 (statistics, losses and gradients "
                    "outside the layers in float32; docs/method.md section 6): 1.0-1.3x faster here, a measured "
                    "option, off by default",
                    id | kOnlyIfSet),
      int_field<S>("seed", &S::seed, 0, 0, int64_t(1) << 62,
                   "every random draw derives from (seed, global sample index)", id | kQuantPoint),
      text_field<S>("out", &S::out, "", true, "\"\" = <output.dir>/synth/<key>.h5"),
  };
  return t;
}

const Table<QuantConfig>& quant_table() {
  using S = QuantConfig;
  static const Table<S> t = {
      choice_field<S>("protocol", &S::protocol, Protocol::zeroq,
                      "zeroq (the released DSG/ZeroQ pipeline) | adaround (BN folded, AdaRound layer by layer) | qdrop "
                      "(BN folded, block reconstruction with quantized activations, QDrop/BRECQ)",
                      kQuantPoint),
      int_field<S>("w_bits", &S::w_bits, 4, kMinBits, kMaxBits, "weight bits", kQuantPoint),
      int_field<S>("a_bits", &S::a_bits, 4, kMinBits, kFloatBits,
                   "activation bits: 2..8, or 32 for activations in floating point", kQuantPoint),
      choice_field<S>("act_observer", &S::act_observer, Observer::automatic,
                      "activation range observer; auto = the protocol's (zeroq: ema, adaround and qdrop: mse)",
                      kQuantPoint),
      text_field<S>("calib_data", &S::calib_data, "", true,
                    "dsgq-synth/1 file; \"\" = the file [synth] describes (dsgq run makes it)"),
      int_field<S>("n_calib", &S::n_calib, 0, 0, k2p31, "first n images of the calibration file; 0 = all", kQuantPoint),
      int_field<S>("first_last_bits", &S::first_last_bits, 8, 0, kMaxBits,
                   "adaround, qdrop: bits of the first/last layer weights and the classifier input; 0 = the same "
                   "as the rest (1 is refused)",
                   kAdaRoundVariant),
      int_field<S>("cache_mib", &S::cache_mib, 2048, 0, int64_t(1) << 30,
                   "adaround: one layer's cached inputs+targets above this go to two temporary HDF5 files (qdrop "
                   "keeps its unit caches in memory)"),
      bool_field<S>("onnx", &S::onnx, true,
                    "also write the quantized network as an ONNX QDQ graph, <key>.onnx beside the encodings "
                    "(docs/formats.md section 10)"),
  };
  return t;
}

const Table<AdaRoundConfig>& adaround_table() {
  using S = AdaRoundConfig;
  const unsigned v = kAdaRoundVariant;
  static const Table<S> t = {
      bool_field<S>("enabled", &S::enabled, true, "false: round to nearest on the MSE-searched grid", v),
      int_field<S>("iters", &S::iters, 2000, 1, 10000000,
                   "optimisation steps per layer (qdrop: per unit; BRECQ: 20000, the AdaRound paper: 10000); 1000 "
                   "with lr 2e-2 (qdrop: act_lr 4e-4) is 1.8x faster, W4A4 top-1 within a seed-std on resnet20 "
                   "(docs/campaigns.md section 9)",
                   v),
      int_field<S>("batch", &S::batch, 32, 1, 1 << 16, "images per step", v),
      float_field<S>("reg", &S::reg, 0.01, 0.0, 1e6, "lambda, the weight of the rounding regulariser", v),
      float_field<S>("beta_start", &S::beta_start, 20.0, 0.0, 1e3, "regulariser beta, annealed linearly ...", v),
      float_field<S>("beta_end", &S::beta_end, 2.0, 0.0, 1e3, "... to this", v),
      float_field<S>("warmup", &S::warmup, 0.2, 0.0, 1.0, "fraction of iterations without the regulariser", v),
      float_field<S>(
          "lr", &S::lr, 1e-2, 1e-8, 10.0,
          "Adam on the rounding variables (reference 1e-3 at 10-20k iterations; docs/method.md section 12.6)", v),
      bool_field<S>("gram", &S::gram, false,
                    "protocol adaround: every step's loss over the whole calibration set, exactly, as a quadratic "
                    "form in the weight change through the layer inputs' second moments (summed once per layer), "
                    "instead of over `batch` sampled images (docs/method.md section 12.7); with lr 3e-2 a layer is "
                    "3.9x faster on resnet20, top-1 level to W3A3 and higher at W2A4 (docs/campaigns.md section 9)",
                    v | kOnlyIfSet),
  };
  return t;
}

const Table<ReconConfig>& recon_table() {
  using S = ReconConfig;
  const unsigned v = kReconVariant;
  static const Table<S> t = {
      float_field<S>("drop", &S::drop, 0.5, 0.0, 1.0,
                     "QDrop: probability that an activation (and the unit input) stays unquantized during "
                     "reconstruction; 0 = BRECQ",
                     v),
      float_field<S>("act_lr", &S::act_lr, 2e-4, 0.0, 10.0,
                     "Adam on the activation step sizes (LSQ), cosine-annealed to 0 (QDrop's 4e-5 is for 20000 "
                     "steps; 2e-4 measured best at 2000); 0 = steps fixed",
                     v),
      float_field<S>("weight_scale_lr", &S::weight_scale_lr, 0.0, 0.0, 10.0,
                     "Adam on the weight scales (Genie-M: 1e-4); 0 = scales fixed", v),
      int_field<S>("observer_images", &S::observer_images, 256, 1, k2p31,
                   "calibration images the MSE observer sees to initialise the step sizes", v),
      bool_field<S>("bf16", &S::bf16, false,
                    "the unit's convolutions in bfloat16 during reconstruction (the caches, the error figures and "
                    "the quantized network stay float32; docs/method.md section 13): a measured option, off by "
                    "default",
                    v | kOnlyIfSet),
      bool_field<S>("fisher", &S::fisher, false,
                    "BRECQ's diagonal-Fisher loss: each squared output error weighted by (1 + |g|)^2, g the gradient "
                    "of KL(FP logits || logits of the network quantized up to the unit) w.r.t. the unit's output",
                    v | kOnlyIfSet),
  };
  return t;
}

const Table<EvalConfig>& eval_table() {
  using S = EvalConfig;
  static const Table<S> t = {
      text_field<S>("data", &S::data, "${DSGQ_DATA}/cifar10/test_batch.bin", true,
                    "test images: a CIFAR-10 binary file or a packed set (dsgq pack)", kPoint, "eval_data"),
      int_field<S>("batch", &S::batch, 500, 1, 1 << 20, "images per forward pass on each rank"),
      int_field<S>("n_images", &S::n_images, 0, 0, int64_t(1) << 40, "the first n images of data; 0 = all"),
  };
  return t;
}

const Table<OutputConfig>& output_table() {
  using S = OutputConfig;
  static const Table<S> t = {
      text_field<S>("dir", &S::dir, "runs/quickstart", true,
                    "synth/<key>.h5, quant/<key>.*, results/<key>.json and resolved.toml go here"),
  };
  return t;
}

const Table<RuntimeConfig>& runtime_table() {
  using S = RuntimeConfig;
  static const Table<S> t = {
      text_field<S>("device", &S::device, "cpu", false, "cpu | cuda (this rank's local GPU) | cuda:N (CUDA builds)"),
      int_field<S>("threads", &S::threads, 0, 0, 4096,
                   "torch threads per rank; 0 = --threads, SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, or cores/ranks"),
      bool_field<S>("channels_last", &S::channels_last, false,
                    "convolutions take channels-last (NHWC) inputs, oneDNN's native layout on CPUs (every stage; "
                    "results agree to float rounding; docs/campaigns.md section 9: no faster on this CPU)"),
      choice_field<S>("collectives", &S::collectives, Collectives::automatic,
                      "how device tensors are all-reduced: auto (NCCL for CUDA tensors when built with "
                      "-DDSGQ_WITH_NCCL=ON, else MPI) | mpi (through host memory) | nccl (refused without an NCCL "
                      "build or a CUDA device)"),
  };
  return t;
}

// Every section in file order, with its table and struct: f(name, table, section struct).
template <class Cfg, class F>
void for_each_section(Cfg& cfg, F&& f) {
  f("model", model_table(), cfg.model);
  f("synth", synth_table(), cfg.synth);
  f("quant", quant_table(), cfg.quant);
  f("quant.adaround", adaround_table(), cfg.quant.adaround);
  f("quant.recon", recon_table(), cfg.quant.recon);
  f("eval", eval_table(), cfg.eval);
  f("output", output_table(), cfg.output);
  f("runtime", runtime_table(), cfg.runtime);
}

template <class S>
void apply_defaults(S& s, const Table<S>& table) {
  for (const auto& f : table) f.set_default(s);
}

// deepinversion's default schedule when neither [synth] iters nor lowres_iters is given (docs/method.md section 7.5):
// the steps, and the Adam learning rate unless lr is given.
constexpr int64_t kDeepInversionLowresIters = 400, kDeepInversionFullIters = 100;
constexpr double kDeepInversionScheduleLr = 0.08;

// Checks that involve more than one key's range, after a section's keys are read (and the defaults resolved from
// what was left out).
void check_section(const std::string& name, RunConfig& cfg, const TomlSection& t) {
  if (name == "quant") {
    QuantConfig& q = cfg.quant;
    if (q.a_bits > kMaxBits && q.a_bits != kFloatBits)
      throw InputError(t.where("a_bits") + " = '" + std::to_string(q.a_bits) +
                       "' is out of range; expected 2..8, or 32 for activations in floating point");
    if (q.first_last_bits == 1)
      throw InputError(t.where("first_last_bits") +
                       " = '1' is out of range; expected 2..8, or 0 for the same bits as the rest");
    // auto: the protocol's own choice. zeroq keeps the released DSG code's ema; adaround uses the MSE search,
    // which measured 90.48 (real) / 89.96 (DSG) against ema's 90.32 / 88.49 on resnet20 W4A4 (docs/campaigns.md).
    if (q.act_observer == Observer::automatic)
      q.act_observer = q.protocol == Protocol::zeroq ? Observer::ema : Observer::mse;
  } else if (name == "synth") {
    SynthConfig& y = cfg.synth;
    // deepinversion's schedule: with neither iters nor lowres_iters given, 400 half-size steps and then 100 full-size
    // ones at lr 0.08 (docs/method.md section 7.5: the statistics and quantized accuracy of 500 full-size steps at lr
    // 0.1, about 3x faster). Resolved here, so a set's identity holds what it ran and the sets made with 500 full-size
    // steps before the schedule existed keep their keys (iters = 500 given, or lowres_iters = 0, makes them again).
    if (y.method == SynthMethod::deepinversion && !t.has("iters") && !t.has("lowres_iters")) {
      y.lowres_iters = kDeepInversionLowresIters;
      y.iters = kDeepInversionFullIters;
      if (!t.has("lr")) y.lr = kDeepInversionScheduleLr;
    }
    if (y.clip && y.method != SynthMethod::dsg && y.method != SynthMethod::zeroq &&
        y.method != SynthMethod::deepinversion)
      throw InputError(t.where("clip") + " = true applies to the pixel-optimising methods; method is " +
                       quote_value(config::name(y.method)) + ", expected zeroq, dsg or deepinversion");
    // deepinversion's keys that are off at 0
    const std::pair<const char*, double> deepinversion_only[] = {{"crop", static_cast<double>(y.crop)},
                                                                 {"zoom", y.zoom},
                                                                 {"lowres_iters", static_cast<double>(y.lowres_iters)},
                                                                 {"stem_l1", y.stem_l1},
                                                                 {"mix", y.mix},
                                                                 {"soft_target", y.soft_target}};
    const auto number = [](double value) {  // integers in full, 0.5 as 0.5
      std::ostringstream v;
      v << std::setprecision(15) << value;
      return v.str();
    };
    for (const auto& [key, value] : deepinversion_only)
      if (value > 0 && y.method != SynthMethod::deepinversion)
        throw InputError(t.where(key) + " = " + number(value) + " applies to method deepinversion; method is " +
                         quote_value(config::name(y.method)) + ", expected deepinversion or " + key + " = 0");
    if (y.crop > 0 && y.zoom > 0)
      throw InputError(t.where("zoom") + " = " + number(y.zoom) + " and crop = " + std::to_string(y.crop) +
                       " are two augmentations of the same step; expected one of them, the other 0");
    if (y.mix > 0 && y.soft_target > 0)
      throw InputError(t.where("soft_target") + " = " + number(y.soft_target) + " and mix = " + number(y.mix) +
                       " are two class terms; expected one of them, the other 0");
  } else if (name == "quant.adaround") {
    // qdrop rounds with [quant.adaround] too, but its units' losses pass through quantized activations, which no
    // second-moment form describes; zeroq ignores every [quant.adaround] key.
    if (cfg.quant.adaround.gram && cfg.quant.protocol == Protocol::qdrop)
      throw InputError(t.where("gram") +
                       " = true applies to protocol adaround (layer by layer, activations in "
                       "floating point); protocol is " +
                       quote_value(config::name(cfg.quant.protocol)) + ", expected adaround or gram = false");
  } else if (name == "output") {
    if (cfg.output.dir.empty()) throw InputError(t.where("dir") + " is empty; expected a folder path");
  } else if (name == "runtime") {
    static const std::regex kDevice("cpu|cuda|cuda:[0-9]+");
    if (!std::regex_match(cfg.runtime.device, kDevice))
      throw InputError(t.where("device") + " = " + quote_value(cfg.runtime.device) +
                       " is not a device; expected cpu, cuda or cuda:N");
  }
}

void check_top_level(const toml::table& root, const std::string& source) {
  std::vector<std::string> top;
  for (const auto& s : section_names())
    if (s.find('.') == std::string::npos) top.push_back(s);
  for (const auto& [k, v] : root) {
    const std::string name(k.str());
    bool known = false;
    for (const auto& s : top) known = known || s == name;
    if (!known || !v.is_table())
      throw InputError(source + ": " +
                       (v.is_table() ? "[" + name + "] is an unknown section" : "'" + name + "' is a top-level key") +
                       "; known sections: " + join(top, ", "));
  }
}

toml::table* table_at(toml::table& root, const std::string& dotted) {
  toml::table* t = &root;
  std::string rest = dotted;
  while (true) {
    const size_t dot = rest.find('.');
    const std::string part = rest.substr(0, dot);
    if (!t->get(part)) t->insert(part, toml::table{});
    t = t->get(part)->as_table();
    if (dot == std::string::npos) return t;
    rest = rest.substr(dot + 1);
  }
}

// A Markdown table cell: '|' escaped.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

}  // namespace

ModelConfig::ModelConfig() { apply_defaults(*this, model_table()); }
EvalConfig::EvalConfig() { apply_defaults(*this, eval_table()); }
SynthConfig::SynthConfig() { apply_defaults(*this, synth_table()); }
AdaRoundConfig::AdaRoundConfig() { apply_defaults(*this, adaround_table()); }
ReconConfig::ReconConfig() { apply_defaults(*this, recon_table()); }
QuantConfig::QuantConfig() { apply_defaults(*this, quant_table()); }
OutputConfig::OutputConfig() { apply_defaults(*this, output_table()); }
RuntimeConfig::RuntimeConfig() { apply_defaults(*this, runtime_table()); }

const std::vector<std::string>& section_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    RunConfig cfg;
    for_each_section(cfg, [&](const char* name, const auto&, auto&) { n.emplace_back(name); });
    return n;
  }();
  return names;
}

void apply_override(toml::table& root, const std::string& text, OverrideOrigins& origins) {
  const std::string origin = "--set " + text;
  const size_t eq = text.find('=');
  const size_t dot = text.find('.');
  if (eq == std::string::npos || dot == std::string::npos || dot > eq || dot == 0 || dot + 1 == eq)
    throw InputError(origin + ": expected section.key=value (e.g. --set eval.batch=256)");
  const std::string section = text.substr(0, dot);
  const std::string key = text.substr(dot + 1, eq - dot - 1);
  const std::string value = text.substr(eq + 1);
  if (root.get(section) && !root.get(section)->is_table())
    throw InputError(origin + ": '" + section + "' is not a section in the config file");
  toml::table* t = table_at(root, section);
  // Nested keys (quant.adaround.iters): walk or create the inner tables.
  std::string leaf = key;
  for (size_t dot2; (dot2 = leaf.find('.')) != std::string::npos; leaf = leaf.substr(dot2 + 1)) {
    const std::string part = leaf.substr(0, dot2);
    if (!t->get(part)) t->insert(part, toml::table{});
    if (!t->get(part)->is_table()) throw InputError(origin + ": '" + part + "' is not a table");
    t = t->get(part)->as_table();
  }
  // Parse the value as TOML; a bare word (resnet56, runs/x) is taken as a string.
  try {
    toml::table parsed = toml::parse("v = " + value);
    t->insert_or_assign(leaf, *parsed.get("v"));
  } catch (const toml::parse_error&) {
    t->insert_or_assign(leaf, value);
  }
  origins[section + "." + key] = origin;
}

RunConfig read_run_table(const toml::table& root, const std::string& source, const OverrideOrigins& origins) {
  check_top_level(root, source);
  RunConfig cfg;
  cfg.source = source;
  std::deque<TomlSection> open;  // the section being read and the sections it is nested in
  for_each_section(cfg, [&](const std::string& name, const auto& table, auto& s) {
    const size_t dot = name.rfind('.');
    const std::string parent = dot == std::string::npos ? "" : name.substr(0, dot);
    while (!open.empty() && open.back().name() != parent) {
      open.back().reject_unread();
      open.pop_back();
    }
    if (open.empty())
      open.emplace_back(root.get_as<toml::table>(name), source, name, &origins);
    else
      open.push_back(open.back().sub(name.substr(dot + 1)));
    for (const auto& f : table) f.read(s, open.back());
    check_section(name, cfg, open.back());
  });
  for (; !open.empty(); open.pop_back()) open.back().reject_unread();
  return cfg;
}

toml::table parse_with_overrides(const std::string& toml_text, const std::string& source,
                                 const std::vector<std::string>& overrides, OverrideOrigins& origins) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& err) {
    const auto& b = err.source().begin;
    throw InputError(source + ":" + std::to_string(b.line) + ":" + std::to_string(b.column) +
                     ": TOML syntax error: " + std::string(err.description()));
  }
  for (const auto& o : overrides) apply_override(root, o, origins);
  return root;
}

RunConfig parse_run_config(const std::string& toml_text, const std::string& source,
                           const std::vector<std::string>& overrides) {
  OverrideOrigins origins;
  const toml::table root = parse_with_overrides(toml_text, source, overrides, origins);
  return read_run_table(root, source, origins);
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return parse_run_config("", "(defaults)", overrides);
  return parse_run_config(read_file(path), path, overrides);
}

std::string to_toml(const RunConfig& cfg) {
  toml::table root;
  for_each_section(cfg, [&](const std::string& name, const auto& table, const auto& s) {
    toml::table* t = table_at(root, name);
    for (const auto& f : table) std::visit([&](const auto& v) { t->insert_or_assign(f.key, v); }, f.get(s));
  });
  std::ostringstream os;
  os << "# resolved from " << cfg.source << "\n" << root << "\n";
  return os.str();
}

std::vector<FieldValue> fields_with(const RunConfig& cfg, unsigned roles) {
  std::vector<FieldValue> out;
  for_each_section(cfg, [&](const std::string& name, const auto& table, const auto& s) {
    for (const auto& f : table) {
      if ((f.roles & roles) != roles) continue;
      if (roles != 0 && (f.roles & kOnlyIfSet)) {
        std::decay_t<decltype(s)> defaults;
        f.set_default(defaults);
        if (f.get(defaults) == f.get(s)) continue;
      }
      out.push_back({name, f.key, f.point.empty() ? f.key : f.point, f.get(s)});
    }
  });
  return out;
}

std::string config_reference() {
  std::ostringstream os;
  os << "# Configuration reference\n\n"
        "Generated by `dsgq config` from the field tables in src/config/run_config.cpp; do not edit by hand (a test\n"
        "compares this file with the program's output). A run file holds any of these sections; a key left out\n"
        "takes its default. `--set section.key=value` overrides one key; in a sweep file any key of [model],\n"
        "[synth], [quant] and [eval] may hold a list (docs/running.md). Paths expand ${VAR}.\n";
  const RunConfig cfg;
  for_each_section(cfg, [&](const std::string& name, const auto& table, const auto&) {
    os << "\n## [" << name << "]\n\n| key | type | default | range or choices | meaning |\n|---|---|---|---|---|\n";
    for (const auto& f : table)
      os << "| `" << f.key << "` | " << f.type << " | `" << f.default_text << "` | " << cell(f.range) << " | "
         << cell(f.doc) << " |\n";
  });
  return os.str();
}

}  // namespace dsgq::config
