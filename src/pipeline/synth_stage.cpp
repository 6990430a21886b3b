#include "pipeline/synth_stage.hpp"

#include <unistd.h>

#include <torch/torch.h>

#include <filesystem>
#include <sstream>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/sha256.hpp"
#include "core/timer.hpp"
#include "dsgq/version.hpp"
#include "io/cifar10.hpp"
#include "io/json_record.hpp"
#include "io/synth_file.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "pipeline/keys.hpp"
#include "pipeline/stage_support.hpp"
#include "synth/synthesizer.hpp"

namespace dsgq::pipeline {

struct SynthStage::Impl {
  CommonArgs args;
  config::RunConfig cfg;
  Runtime rt;
  std::unique_ptr<models::Network> net;
  std::string weights_sha256, identity, key, path;
  synth::SynthSettings settings;
};

SynthStage::SynthStage() : impl_(std::make_unique<Impl>()) {}
SynthStage::~SynthStage() = default;

std::unique_ptr<SynthStage> SynthStage::prepare(const CommonArgs& args, const mpi::Comm& comm) {
  return prepare(resolve_config(args), args, comm);
}

std::unique_ptr<SynthStage> SynthStage::prepare(config::RunConfig cfg, const CommonArgs& args, const mpi::Comm& comm) {
  std::unique_ptr<SynthStage> stage(new SynthStage());
  Impl& s = *stage->impl_;
  s.args = args;
  s.cfg = std::move(cfg);
  s.rt = setup_runtime(s.cfg, args, comm);
  const config::SynthConfig& y = s.cfg.synth;
  const std::string where = s.cfg.source + " [synth]: ";

  LoadedModel model = load_model(s.cfg, s.rt);
  s.net = std::move(model.net);
  s.weights_sha256 = model.weights_sha256;

  if (y.batch < comm.size())
    throw InputError(where + "batch = '" + std::to_string(y.batch) + "' is smaller than the " +
                     std::to_string(comm.size()) + " ranks; expected batch >= ranks (each rank optimises a share)");
  const bool batch_stats = y.stats == config::BnStats::batch;
  if (batch_stats && y.method == config::SynthMethod::dsg && y.lse)
    throw InputError(where +
                     "lse = 'true' needs stats = 'per_sample' (LSE weights each sample's own statistics); "
                     "set lse = false or stats = \"per_sample\"");
  const bool own_batch_stats = y.method == config::SynthMethod::deepinversion || y.method == config::SynthMethod::genie;
  if (batch_stats && y.preset == config::Preset::official && !own_batch_stats)
    throw InputError(where +
                     "stats = 'batch' with preset = 'official': the released code uses per-sample "
                     "statistics; expected stats = \"per_sample\" or preset = \"paper\"");
  if (y.sci_weight > 0 && y.method != config::SynthMethod::dsg) {
    std::ostringstream w;
    w << y.sci_weight;
    throw InputError(where + "sci_weight = '" + w.str() + "' applies to method dsg only; expected 0 for method " +
                     config::name(y.method));
  }
  if (y.init != config::SynthInit::automatic &&
      (!config::optimised(y.method) || y.method == config::SynthMethod::genie))
    throw InputError(where + "init = '" + config::name(y.init) +
                     "' applies to the methods that optimise pixels (dsg, " +
                     "zeroq, deepinversion); expected \"preset\" for method " + config::name(y.method));
  if (y.method == config::SynthMethod::genie && (s.net->input().height % 4 != 0 || s.net->input().width % 4 != 0))
    throw InputError(where + "method = 'genie' needs an input size divisible by 4 (the generator upsamples twice); " +
                     s.cfg.model.arch + " takes " + std::to_string(s.net->input().height) + "x" +
                     std::to_string(s.net->input().width));
  if (y.method == config::SynthMethod::real)
    check_image_count(y.real_data, where + "real_data", *s.net, y.n_images, where + "n_images");

  s.identity = synth_identity(s.cfg, s.weights_sha256);
  s.key = synth_key(s.cfg, s.identity);
  s.settings = synth::resolve_settings(y, "synth " + s.key);
  s.path = y.out.empty() ? s.cfg.output.dir + "/synth/" + s.key + ".h5" : y.out;
  const std::filesystem::path dir = std::filesystem::path(s.path).parent_path();
  make_dirs(dir.string());
  if (::access(dir.empty() ? "." : dir.c_str(), W_OK) != 0)
    throw InputError(where + "output folder " + quote_value(dir.string()) +
                     " is not writable; expected a writable folder");
  if (!args.force && file_exists(s.path)) {
    const io::SynthMeta old = io::read_synth_meta(s.path);
    if (old.config_toml != s.identity)
      throw InputError(s.path + ": exists and was made by a different config (model " + old.model + ", method " +
                       old.method + ", " + std::to_string(old.n_images) +
                       " images); pass --force to overwrite or set [synth] out");
  }
  return stage;
}

std::string SynthStage::describe() const {
  return config::to_toml(impl_->cfg) + "# synth output: " + impl_->path + "\n";
}
const std::string& SynthStage::output_path() const { return impl_->path; }

// SDA margins for method dsg (empty otherwise): quantiles of Gaussian images' BN deviations, scaled. Collective.
synth::Margins SynthStage::dsg_margins(const mpi::Comm& comm) const {
  const Impl& s = *impl_;
  const config::SynthConfig& y = s.cfg.synth;
  synth::Margins margins;
  if (y.method != config::SynthMethod::dsg) return margins;
  Timer timer;
  const bool batch_stats = s.settings.batch_stats();
  margins = synth::gaussian_margins(*s.net, y.margin_samples, y.slack_quantile, static_cast<uint64_t>(y.seed),
                                    batch_stats, batch_stats ? y.batch : 64, comm);
  for (auto& d : margins.delta) d *= y.margin_scale;
  for (auto& g : margins.gamma) g *= y.margin_scale;
  double dmax = 0, gmax = 0;
  for (size_t l = 0; l < margins.delta.size(); ++l) {
    dmax = std::max(dmax, margins.delta[l]);
    gmax = std::max(gmax, margins.gamma[l]);
  }
  log_info0("SDA margins from %lld Gaussian images, quantile %.3g x %.3g: max delta %.4g, max gamma %.4g (%.1f s)",
            static_cast<long long>(y.margin_samples), y.slack_quantile, y.margin_scale, dmax, gmax, timer.seconds());
  return margins;
}

// The file's attributes: provenance and the identity compared on resume.
io::SynthMeta SynthStage::synth_meta(const mpi::Comm& comm) const {
  const Impl& s = *impl_;
  const config::SynthConfig& y = s.cfg.synth;
  io::SynthMeta meta;
  meta.model = s.cfg.model.arch;
  meta.weights = s.cfg.model.weights;
  meta.weights_sha256 = s.weights_sha256;
  meta.method = config::name(y.method);
  meta.preset = config::name(y.preset);
  meta.config_toml = s.identity;
  meta.dsgq_version = kVersion;
  meta.created = io::utc_timestamp();
  meta.seed = y.seed;
  meta.world_size = comm.size();
  meta.iterations = config::optimised(y.method) ? y.lowres_iters + y.iters : 0;  // the loss curve's length
  meta.n_images = y.n_images;
  meta.batch = y.batch;
  meta.channels = s.net->input().channels;
  meta.height = s.net->input().height;
  meta.width = s.net->input().width;
  return meta;
}

int SynthStage::execute(const mpi::Comm& comm) {
  Impl& s = *impl_;
  Timer total;
  log_info0("dsgq %s, %d rank(s) x %d thread(s) (%s), device %s: %s -> %s", kVersion, comm.size(), s.rt.threads,
            s.rt.threads_source.c_str(), s.rt.device.str().c_str(), s.key.c_str(), s.path.c_str());
  if (!s.args.force && file_exists(s.path)) {
    log_info0("%s: complete; skipped (pass --force to redo)", s.path.c_str());
    return 0;
  }
  if (comm.is_root()) atomic_write_file(s.cfg.output.dir + "/resolved.toml", config::to_toml(s.cfg));

  const synth::Margins margins = dsg_margins(comm);
  io::SynthWriter writer(s.path, synth_meta(comm), margins.delta, margins.gamma, comm, s.args.force);

  models::Network net(*s.net);  // a shallow copy: [synth] bf16 applies to the optimisation only
  net.set_conv_bf16(s.cfg.synth.bf16);
  synth::Synthesizer synth(net, s.settings, margins, comm);
  int64_t resumed = 0;
  for (int64_t b = 0; b < synth.n_batches(); ++b) {
    if (writer.done()[static_cast<size_t>(b)]) {
      ++resumed;
      continue;
    }
    const synth::BatchResult r = synth.make_batch(b);
    writer.write_batch(b, r.first, r.images, r.labels, r.lse_layer, r.loss, r.loss_curve);
    log_info0("%s: batch %lld/%lld written (loss %.6g)", s.key.c_str(), static_cast<long long>(b + 1),
              static_cast<long long>(synth.n_batches()), r.loss);
  }
  if (resumed > 0)
    log_info0("resumed: %lld of %lld batches were already in %s.part", static_cast<long long>(resumed),
              static_cast<long long>(synth.n_batches()), s.path.c_str());
  writer.finish();
  const Span t = span_over_ranks(total.seconds(), comm);
  const int64_t n = s.cfg.synth.n_images;
  log_info0("%s: %lld images in %.1f s (%.2f img/s) -> %s", s.key.c_str(), static_cast<long long>(n), t.max,
            t.max > 0 ? static_cast<double>(n) / t.max : 0.0, s.path.c_str());
  return 0;
}

}  // namespace dsgq::pipeline
