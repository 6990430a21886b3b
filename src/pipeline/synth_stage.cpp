#include "pipeline/synth_stage.hpp"

#include <unistd.h>

#include <filesystem>
#include <torch/torch.h>

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
#include "pipeline/record.hpp"
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

std::unique_ptr<SynthStage> SynthStage::prepare(const CommonArgs& args, const dist::Comm& comm) {
  return prepare(resolve_config(args), args, comm);
}

std::unique_ptr<SynthStage> SynthStage::prepare(config::RunConfig cfg, const CommonArgs& args, const dist::Comm& comm) {
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
  if (y.stats == "batch" && y.method == "dsg" && y.lse)
    throw InputError(where + "lse = 'true' needs stats = 'per_sample' (LSE weights each sample's own statistics); "
                             "set lse = false or stats = \"per_sample\"");
  if (y.stats == "batch" && y.preset == "official")
    throw InputError(where + "stats = 'batch' with preset = 'official': the released code uses per-sample "
                             "statistics; expected stats = \"per_sample\" or preset = \"paper\"");
  if (y.method == "real") {
    const int64_t available = check_image_set(y.real_data, where + "real_data", *s.net);
    if (y.n_images > available)
      throw InputError(where + "n_images = '" + std::to_string(y.n_images) + "' but real_data " + y.real_data +
                       " holds " + std::to_string(available) + " images; expected at most " + std::to_string(available));
  }

  synth::SynthSettings& st = s.settings;
  st.method = y.method;
  st.preset = y.preset;
  st.n_images = y.n_images;
  st.batch = y.batch;
  st.iters = y.iters;
  const bool official = y.preset == "official";
  st.lr = y.lr > 0 ? y.lr : (official && y.method == "dsg" ? 0.9 : 0.5);
  st.patience = y.patience > 0 ? y.patience : (official && y.method == "dsg" ? 260 : 100);
  st.batch_stats = y.stats == "batch";
  st.lse = y.lse;
  st.seed = static_cast<uint64_t>(y.seed);
  st.init = !official ? synth::Init::gaussian : y.method == "dsg" ? synth::Init::uniform01 : synth::Init::zeroq_official;
  st.real_data = y.real_data;

  s.identity = synth_identity(s.cfg, s.weights_sha256);
  s.key = synth_key(s.cfg, s.identity);
  st.label = "synth " + s.key;
  s.path = y.out.empty() ? s.cfg.output.dir + "/synth/" + s.key + ".h5" : y.out;
  const std::filesystem::path dir = std::filesystem::path(s.path).parent_path();
  make_dirs(dir.string());
  if (::access(dir.empty() ? "." : dir.c_str(), W_OK) != 0)
    throw InputError(where + "output folder " + quote_value(dir.string()) + " is not writable; expected a writable folder");
  if (!args.force && file_exists(s.path)) {
    const io::SynthMeta old = io::read_synth_meta(s.path);
    if (old.config_toml != s.identity)
      throw InputError(s.path + ": exists and was made by a different config (model " + old.model + ", method " +
                       old.method + ", " + std::to_string(old.n_images) + " images); pass --force to overwrite or set [synth] out");
  }
  return stage;
}

std::string SynthStage::resolved_toml() const { return config::to_toml(impl_->cfg); }
const std::string& SynthStage::output_path() const { return impl_->path; }

int SynthStage::execute(const dist::Comm& comm) {
  Impl& s = *impl_;
  Timer total;
  log_info0("dsgq %s, %d rank(s) x %d thread(s) (%s), device %s: %s -> %s", kVersion, comm.size(), s.rt.threads,
            s.rt.threads_source.c_str(), s.rt.device.str().c_str(), s.key.c_str(), s.path.c_str());
  if (!s.args.force && file_exists(s.path)) {
    log_info0("%s: complete; skipped (pass --force to redo)", s.path.c_str());
    return 0;
  }
  if (comm.is_root()) atomic_write_file(s.cfg.output.dir + "/resolved.toml", config::to_toml(s.cfg));

  synth::Margins margins;
  Timer margin_timer;
  if (s.settings.method == "dsg") {
    const config::SynthConfig& y = s.cfg.synth;
    margins = synth::gaussian_margins(*s.net, y.margin_samples, y.slack_quantile, s.settings.seed, s.settings.batch_stats,
                                      s.settings.batch_stats ? y.batch : 64, comm);
    for (auto& d : margins.delta) d *= y.margin_scale;
    for (auto& g : margins.gamma) g *= y.margin_scale;
    double dmax = 0, gmax = 0;
    for (size_t l = 0; l < margins.delta.size(); ++l) {
      dmax = std::max(dmax, margins.delta[l]);
      gmax = std::max(gmax, margins.gamma[l]);
    }
    log_info0("SDA margins from %lld Gaussian images, quantile %.3g x %.3g: max delta %.4g, max gamma %.4g (%.1f s)",
              static_cast<long long>(y.margin_samples), y.slack_quantile, y.margin_scale, dmax, gmax,
              margin_timer.seconds());
  }

  io::SynthMeta meta;
  meta.model = s.cfg.model.arch;
  meta.weights = s.cfg.model.weights;
  meta.weights_sha256 = s.weights_sha256;
  meta.method = s.settings.method;
  meta.preset = s.settings.preset;
  meta.config_toml = s.identity;
  meta.dsgq_version = kVersion;
  meta.created = io::utc_timestamp();
  meta.seed = static_cast<int64_t>(s.settings.seed);
  meta.world_size = comm.size();
  meta.iterations = (s.settings.method == "dsg" || s.settings.method == "zeroq") ? s.settings.iters : 0;
  meta.n_images = s.settings.n_images;
  meta.batch = s.settings.batch;
  meta.channels = s.net->input().channels;
  meta.height = s.net->input().height;
  meta.width = s.net->input().width;
  io::SynthWriter writer(s.path, meta, margins.delta, margins.gamma, comm, s.args.force);

  synth::Synthesizer synth(*s.net, s.settings, margins, comm);
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
  log_info0("%s: %lld images in %.1f s (%.2f img/s) -> %s", s.key.c_str(), static_cast<long long>(meta.n_images), t.max,
            t.max > 0 ? meta.n_images / t.max : 0.0, s.path.c_str());
  return 0;
}

}  // namespace dsgq::pipeline
