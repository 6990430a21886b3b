#include "pipeline/quant_stage.hpp"

#include <filesystem>

#include <nlohmann/json.hpp>
#include <sstream>
#include <torch/torch.h>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/sha256.hpp"
#include "core/timer.hpp"
#include "deploy/onnx_export.hpp"
#include "dsgq/version.hpp"
#include "eval/evaluate.hpp"
#include "io/cifar10.hpp"
#include "io/json_record.hpp"
#include "io/synth_file.hpp"
#include "models/registry.hpp"
#include "pipeline/keys.hpp"
#include "pipeline/stage_support.hpp"
#include "quant/encodings.hpp"
#include "quant/adaround_protocol.hpp"
#include "quant/recon_protocol.hpp"
#include "quant/zeroq_protocol.hpp"

namespace dsgq::pipeline {

struct QuantStage::Impl {
  CommonArgs args;
  config::RunConfig cfg;
  Runtime rt;
  std::unique_ptr<models::Network> net;
  std::string weights_sha256, calib_path, key, record_path, enc_path, pt_path;
  std::string onnx_path;  // "" when [quant] onnx = false
  int64_t n_eval = 0;
  nlohmann::json point;
};

QuantStage::QuantStage() : impl_(std::make_unique<Impl>()) {}
QuantStage::~QuantStage() = default;

namespace {
// "base (a, b)", or base alone without notes.
std::string with_notes(std::string base, const std::vector<std::string>& notes) {
  for (size_t i = 0; i < notes.size(); ++i)
    base += (i == 0 ? " (" : ", ") + notes[i] + (i + 1 == notes.size() ? ")" : "");
  return base;
}

}  // namespace

ReportLabels report_labels(const config::RunConfig& cfg) {
  const config::SynthConfig& y = cfg.synth;
  using config::SynthMethod;
  std::string data = config::name(y.method);
  std::vector<std::string> extra;
  if (!cfg.quant.calib_data.empty()) {
    data = std::filesystem::path(cfg.quant.calib_data).stem().string();
  } else {
    if (y.method == SynthMethod::real && y.real_pick == config::RealPick::seeded) extra.push_back("drawn by seed");
    if (y.preset == config::Preset::official && (y.method == SynthMethod::dsg || y.method == SynthMethod::zeroq))
      extra.push_back(config::name(y.preset));
    if (y.method == SynthMethod::deepinversion) {  // the recommended settings, or the start alone when it differs
      const bool diverse = y.init == config::SynthInit::diverse ||
                           (y.init == config::SynthInit::automatic && y.preset == config::Preset::dsgq);
      if (y.preset == config::Preset::dsgq && diverse && y.bn_weight == 0)
        extra.push_back("dsgq");
      else if (y.init == config::SynthInit::diverse)
        extra.push_back("diverse start");
      if (y.init == config::SynthInit::dead_leaves) extra.push_back("dead-leaves start");
      if (y.mix > 0) {
        std::ostringstream m;
        m << "mix " << y.mix;
        extra.push_back(m.str());
      }
      // half-size steps get their own row: sets of 500 full-size steps (the default before 2026-12-05) stay apart
      if (y.lowres_iters > 0)
        extra.push_back("lowres " + std::to_string(y.lowres_iters) + "+" + std::to_string(y.iters));
    }
    if (y.method == SynthMethod::dsg) {
      if (!y.lse) extra.push_back("no LSE");
      if (y.margin_scale == 0 || y.slack_quantile == 0)
        extra.push_back("no SDA");
      else if (y.slack_quantile != 0.9) {
        std::ostringstream q;
        q << "q=" << y.slack_quantile;
        extra.push_back(q.str());
      }
      if (y.margin_scale != 0 && y.margin_scale != 1) {
        std::ostringstream m;
        m << "margins x" << y.margin_scale;
        extra.push_back(m.str());
      }
    }
  }
  if (cfg.quant.calib_data.empty() && y.bf16) extra.push_back("bf16");
  if (cfg.quant.calib_data.empty() && y.method != SynthMethod::real) {
    // Every other setting added after the first sets, where it differs from its default (ce_weight 10, jitter 4,
    // flip, crop 4, ...): sets made with it are other sets, so they get their own row. Those named above are skipped.
    for (const auto& f : config::fields_with(cfg, config::kSynthIdentity | config::kOnlyIfSet)) {
      if (f.section != "synth" || f.key == "init" || f.key == "mix" || f.key == "lowres_iters" || f.key == "bf16")
        continue;
      std::ostringstream v;  // "flip" / "no lse", else "ce_weight 10"
      std::visit(
          [&](const auto& x) {
            if constexpr (std::is_same_v<std::decay_t<decltype(x)>, bool>)
              v << (x ? "" : "no ") << f.key;
            else
              v << f.key << " " << x;
          },
          f.value);
      extra.push_back(v.str());
    }
  }
  data = with_notes(data, extra);
  std::string method = config::name(cfg.quant.protocol) + "/" + config::name(cfg.quant.act_observer);
  if (cfg.quant.protocol == config::Protocol::qdrop) {  // the variants that get their own report row
    std::vector<std::string> variant;
    if (cfg.quant.recon.drop != config::ReconConfig().drop) {
      std::ostringstream d;
      d << "drop " << cfg.quant.recon.drop;
      variant.push_back(d.str());
    }
    if (cfg.quant.recon.fisher) variant.push_back("fisher");
    if (cfg.quant.recon.bf16) variant.push_back("bf16");
    method = with_notes(method, variant);
  }
  return {data, method};
}

namespace {

void check_calibration_file(const std::string& path, const config::RunConfig& cfg, const models::Network& net,
                            const std::string& weights_sha256) {
  const io::SynthMeta m = io::read_synth_meta(path);
  const auto& in = net.input();
  if (m.model != cfg.model.arch)
    throw InputError(path + ": calibration set was made for model " + quote_value(m.model) +
                     "; expected one made for " + cfg.model.arch + " (dsgq synth with [model] arch = \"" +
                     cfg.model.arch + "\")");
  if (m.n_images == 0)
    throw InputError(path +
                     ": calibration set holds no images (n_images = 0); expected at least 1 (make one with "
                     "dsgq synth, [synth] n_images >= 1)");
  if (m.channels != in.channels || m.height != in.height || m.width != in.width)
    throw InputError(path + ": images are [" + std::to_string(m.channels) + "," + std::to_string(m.height) + "," +
                     std::to_string(m.width) + "]; " + cfg.model.arch + " expects [N," + std::to_string(in.channels) +
                     "," + std::to_string(in.height) + "," + std::to_string(in.width) + "]");
  if (m.weights_sha256 != weights_sha256)
    throw InputError(path + ": calibration set was made with other weights (sha256 " + m.weights_sha256.substr(0, 12) +
                     "...); expected " + cfg.model.weights + " (sha256 " + weights_sha256.substr(0, 12) + "...)");
  if (cfg.quant.n_calib > m.n_images)
    throw InputError(cfg.source + " [quant]: n_calib = '" + std::to_string(cfg.quant.n_calib) + "' but " + path +
                     " holds " + std::to_string(m.n_images) + " images; expected 0 (all) or 1.." +
                     std::to_string(m.n_images));
}

// The point's identity in its record: what [model], [synth], [quant] and [eval] fix, with the paths resolved.
nlohmann::json quant_point(const config::RunConfig& cfg, const std::string& weights_sha256,
                           const std::string& calib_path, int64_t n_eval) {
  const config::QuantConfig& q = cfg.quant;
  nlohmann::json point = point_fields(cfg, config::kPoint);
  point.update(point_fields(cfg, config::kQuantPoint));
  point["stage"] = "quantize";
  point["weights_sha256"] = weights_sha256;
  point["calib_data"] = calib_path;
  point["precision"] = "w" + std::to_string(q.w_bits) + "a" + std::to_string(q.a_bits);
  point["n_images"] = n_eval;
  if (q.protocol != config::Protocol::zeroq) point["adaround"] = point_fields(cfg, config::kAdaRoundVariant);
  if (q.protocol == config::Protocol::qdrop) point["recon"] = point_fields(cfg, config::kReconVariant);
  if (!q.calib_data.empty()) point.erase("method"), point.erase("preset"), point.erase("seed");
  return point;
}

nlohmann::json layer_reports_json(const std::vector<quant::LayerReport>& reports) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& r : reports)
    out.push_back({{"layer", r.name},
                   {"bits", r.bits},
                   {"mse_nearest", r.mse_nearest},
                   {"mse_adaround", r.mse_adaround},
                   {"flipped", r.flipped},
                   {"undecided", r.undecided},
                   {"seconds", r.seconds},
                   {"cache_mib", static_cast<double>(r.cache_bytes) / (1 << 20)},
                   {"spilled", r.spilled}});
  return out;
}
}  // namespace

std::unique_ptr<QuantStage> QuantStage::prepare(const CommonArgs& args, const mpi::Comm& comm, bool calib_will_exist) {
  return prepare(resolve_config(args), args, comm, calib_will_exist);
}

std::unique_ptr<QuantStage> QuantStage::prepare(config::RunConfig cfg, const CommonArgs& args, const mpi::Comm& comm,
                                                bool calib_will_exist) {
  std::unique_ptr<QuantStage> stage(new QuantStage());
  Impl& s = *stage->impl_;
  s.args = args;
  s.cfg = std::move(cfg);
  s.rt = setup_runtime(s.cfg, args, comm);
  LoadedModel model = load_model(s.cfg, s.rt);
  s.net = std::move(model.net);
  s.weights_sha256 = model.weights_sha256;
  const config::QuantConfig& q = s.cfg.quant;

  std::string synth_key_str;
  if (calib_will_exist && !q.calib_data.empty())
    throw InputError(s.cfg.source + " [quant]: calib_data = " + quote_value(q.calib_data) +
                     " is set, but dsgq run makes its own calibration set from [synth]; expected calib_data unset "
                     "(or use dsgq quantize)");
  if (q.calib_data.empty()) {
    const std::string identity = synth_identity(s.cfg, s.weights_sha256);
    synth_key_str = synth_key(s.cfg, identity);
    s.calib_path = s.cfg.synth.out.empty() ? s.cfg.output.dir + "/synth/" + synth_key_str + ".h5" : s.cfg.synth.out;
  } else {
    s.calib_path = q.calib_data;
  }
  if (!calib_will_exist) {
    if (!file_exists(s.calib_path))
      throw InputError(s.cfg.source + " [quant]: calibration set " + quote_value(s.calib_path) +
                       " does not exist; expected a dsgq-synth/1 file (make it with dsgq synth, or use dsgq run)");
    check_calibration_file(s.calib_path, s.cfg, *s.net, s.weights_sha256);
  }
  s.n_eval = check_image_count(s.cfg.eval.data, s.cfg.source + " [eval]: data", *s.net, s.cfg.eval.n_images,
                               s.cfg.source + " [eval]: n_images");

  const std::string calib_name =
      q.calib_data.empty() ? synth_key_str : std::filesystem::path(q.calib_data).stem().string();
  s.key = quant_key(s.cfg, calib_name);
  s.record_path = s.cfg.output.dir + "/results/" + s.key + ".json";
  s.enc_path = s.cfg.output.dir + "/quant/" + s.key + ".encodings.json";
  s.pt_path = s.cfg.output.dir + "/quant/" + s.key + ".pt";
  s.onnx_path = s.cfg.quant.onnx ? s.cfg.output.dir + "/quant/" + s.key + ".onnx" : "";
  s.point = quant_point(s.cfg, s.weights_sha256, s.calib_path, s.n_eval);
  check_record_slot(s.cfg, s.record_path, s.point, args.force);
  make_dirs(s.cfg.output.dir + "/quant");
  return stage;
}

std::string QuantStage::describe() const { return config::to_toml(impl_->cfg); }
const std::string& QuantStage::key() const { return impl_->key; }
const std::string& QuantStage::calib_path() const { return impl_->calib_path; }
const std::string& QuantStage::record_path() const { return impl_->record_path; }
bool QuantStage::complete() const { return !impl_->args.force && file_exists(impl_->record_path); }

// The calibrated network of either protocol, exported by rank 0.
struct QuantStage::Calibrated {
  std::unique_ptr<quant::ZeroqQuantizer> zq;
  std::unique_ptr<quant::AdaRoundQuantizer> aq;
  std::unique_ptr<quant::ReconQuantizer> rq;
  const models::Network* net = nullptr;  // the network the hooks apply to (BN folded for adaround)
  const models::ForwardHooks* hooks = nullptr;
  nlohmann::json layers = nlohmann::json::array();
};

// The quantized network as an ONNX QDQ graph (rank 0, after the encodings): the weights as the quantized forward
// uses them, the grids from the encodings just written.
void QuantStage::export_onnx(const models::Network& net, const models::ForwardHooks& hooks,
                             const nlohmann::json& enc) const {
  const Impl& s = *impl_;
  if (s.onnx_path.empty()) return;
  Timer t;
  std::vector<at::Tensor> weights;
  {
    at::NoGradGuard no_grad;
    for (const models::LayerSpec& l : net.layers()) {
      const at::Tensor& w = net.param(l.name + ".weight");
      weights.push_back(hooks.weight ? hooks.weight(static_cast<int>(weights.size()), w).detach() : w);
    }
  }
  const models::InputSpec& in = net.input();
  auto triple = [](const std::array<double, 3>& v) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.9g,%.9g,%.9g", v[0], v[1], v[2]);
    return std::string(buf);
  };
  const config::QuantConfig& q = s.cfg.quant;
  const deploy::OnnxSummary sum = deploy::write_onnx(s.onnx_path, net, weights, enc,
                                                     {{"dsgq_key", s.key},
                                                      {"arch", net.arch()},
                                                      {"protocol", config::name(q.protocol)},
                                                      {"w_bits", std::to_string(q.w_bits)},
                                                      {"a_bits", std::to_string(q.a_bits)},
                                                      {"input", "float32 NCHW (pixels/255 - mean)/std"},
                                                      {"input_mean", triple(in.mean)},
                                                      {"input_std", triple(in.std)}});
  log_info(
      "onnx: %lld nodes, %lld quantized weights (%lld as int32 codes), %lld quantized activation sites, %.1f MiB "
      "in %.1f s -> %s",
      static_cast<long long>(sum.nodes), static_cast<long long>(sum.quantized_weights),
      static_cast<long long>(sum.int32_weights), static_cast<long long>(sum.quantized_activations),
      static_cast<double>(sum.bytes) / (1 << 20), t.seconds(), s.onnx_path.c_str());
}

QuantStage::Calibrated QuantStage::calibrate(const at::Tensor& calib_images, const mpi::Comm& comm) const {
  const Impl& s = *impl_;
  const config::QuantConfig& q = s.cfg.quant;
  Calibrated c;
  switch (q.protocol) {
    case config::Protocol::zeroq:
      c.zq = std::make_unique<quant::ZeroqQuantizer>(*s.net, q);
      c.zq->calibrate(calib_images);
      c.net = s.net.get();
      c.hooks = &c.zq->hooks();
      if (comm.is_root()) {
        const nlohmann::json enc = quant::encodings_json(*s.net, *c.zq);
        io::write_json_atomic(s.enc_path, enc);
        quant::write_quantized_state_dict(s.pt_path, *s.net, *c.zq);
        export_onnx(*c.net, *c.hooks, enc);
      }
      break;
    case config::Protocol::adaround: {
      quant::AdaRoundRun run;
      run.seed = static_cast<uint64_t>(s.cfg.synth.seed);
      run.spill_prefix = s.cfg.output.dir + "/quant/." + s.key + ".r" + std::to_string(comm.rank()) + ".cache";
      c.aq = std::make_unique<quant::AdaRoundQuantizer>(*s.net, q, run);
      c.aq->run(calib_images, comm);
      c.net = &c.aq->folded();
      c.hooks = &c.aq->hooks();
      c.layers = layer_reports_json(c.aq->reports());
      if (comm.is_root()) {
        const nlohmann::json enc = quant::encodings_json(*c.aq);
        io::write_json_atomic(s.enc_path, enc);
        quant::write_quantized_state_dict(s.pt_path, *c.aq);
        export_onnx(*c.net, *c.hooks, enc);
      }
      break;
    }
    case config::Protocol::qdrop: {
      c.rq = std::make_unique<quant::ReconQuantizer>(*s.net, q, static_cast<uint64_t>(s.cfg.synth.seed));
      c.rq->run(calib_images, comm);
      c.net = &c.rq->folded();
      c.hooks = &c.rq->hooks();
      c.layers = layer_reports_json(c.rq->reports());
      if (comm.is_root()) {
        const nlohmann::json enc = quant::encodings_json(*c.rq);
        io::write_json_atomic(s.enc_path, enc);
        quant::write_quantized_state_dict(s.pt_path, *c.rq);
        export_onnx(*c.net, *c.hooks, enc);
      }
      break;
    }
  }
  return c;
}

int QuantStage::execute(const mpi::Comm& comm) {
  Impl& s = *impl_;
  Timer total;
  if (already_done(s.record_path, s.key, s.args.force)) return 0;
  check_calibration_file(s.calib_path, s.cfg, *s.net, s.weights_sha256);  // dsgq run: made by now
  const config::QuantConfig& q = s.cfg.quant;

  // zeroq: every rank calibrates the same way on the same images (deterministic); adaround and qdrop: the ranks
  // share each reconstruction step and the observers (the same result up to summation order). Rank 0 exports.
  Timer calib_timer;
  const io::SynthSet calib = io::read_synth(s.calib_path, 0, q.n_calib > 0 ? q.n_calib : -1);
  const Calibrated c = calibrate(calib.images.to(s.net->device()), comm);
  const double calib_s = calib_timer.seconds();

  Timer eval_timer;
  const io::ImageSet images = eval_share(s.cfg, s.n_eval, comm);
  const int64_t batch = s.cfg.eval.batch;
  const eval::Counts fp32 =
      eval::allreduce(eval::count_correct(*s.net, images.images, images.labels, batch, s.n_eval), comm);
  const eval::Counts qc =
      eval::allreduce(eval::count_correct(*c.net, images.images, images.labels, batch, s.n_eval, c.hooks), comm);
  const double eval_s = eval_timer.seconds();

  const Span cs = span_over_ranks(calib_s, comm), es = span_over_ranks(eval_s, comm),
             ts = span_over_ranks(total.seconds(), comm);
  nlohmann::json provenance = provenance_json(s.cfg, s.rt, comm);
  const double peak_mib = comm.allreduce_max(peak_rss_mib());
  if (!comm.is_root()) return 0;
  provenance["calib_sha256"] = sha256_file(s.calib_path);
  provenance["weights_sha256"] = s.weights_sha256;  // every input file the numbers were computed from
  provenance["eval_data_sha256"] = sha256_file(s.cfg.eval.data);
  nlohmann::json outputs = {{"encodings", s.enc_path}, {"state_dict", s.pt_path}};
  if (!s.onnx_path.empty()) outputs["onnx"] = s.onnx_path;
  const nlohmann::json metrics = {
      {"top1", qc.top1_pct()},        {"top5", qc.top5_pct()},          {"n_images", qc.n},
      {"top1_correct", qc.top1},      {"top5_correct", qc.top5},        {"fp32_top1", fp32.top1_pct()},
      {"fp32_top5", fp32.top5_pct()}, {"n_calib", calib.images.size(0)}};
  const ReportLabels labels = report_labels(s.cfg);
  io::write_json_atomic(
      s.record_path, {{"format", io::kResultFormat},
                      {"key", s.key},
                      {"point", s.point},
                      {"metrics", metrics},
                      {"timings_s", {{"calibrate", span_json(cs)}, {"eval", span_json(es)}, {"total", span_json(ts)}}},
                      {"peak_rss_mib", peak_mib},
                      {"outputs", outputs},
                      {"layers", c.layers},
                      {"labels", {{"data", labels.data}, {"method", labels.method}}},
                      {"provenance", provenance}});
  log_info0("%s %s W%lldA%lld (%s, %lld calibration images): top1 %.2f%% (FP32 %.2f%%), top5 %.2f%% -> %s",
            s.cfg.model.arch.c_str(), config::name(q.protocol).c_str(), static_cast<long long>(q.w_bits),
            static_cast<long long>(q.a_bits), config::name(q.act_observer).c_str(),
            static_cast<long long>(calib.images.size(0)), qc.top1_pct(), fp32.top1_pct(), qc.top5_pct(),
            s.record_path.c_str());
  return 0;
}

}  // namespace dsgq::pipeline
