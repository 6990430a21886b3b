#include "pipeline/eval_stage.hpp"

#include <torch/torch.h>

#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/sha256.hpp"
#include "core/timer.hpp"
#include "dsgq/version.hpp"
#include "eval/evaluate.hpp"
#include "io/cifar10.hpp"
#include "io/json_record.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "pipeline/keys.hpp"

namespace dsgq::pipeline {

struct EvalStage::Impl {
  CommonArgs args;
  config::RunConfig cfg;
  Runtime rt;
  std::unique_ptr<models::Network> net;
  std::string weights_sha256;
  int64_t n_images = 0;
  std::string key, record_path;
  nlohmann::json point;
  double prepare_s = 0;
};

EvalStage::EvalStage() : impl_(std::make_unique<Impl>()) {}
EvalStage::~EvalStage() = default;

std::unique_ptr<EvalStage> EvalStage::prepare(const CommonArgs& args, const dist::Comm& comm) {
  Timer timer;
  std::unique_ptr<EvalStage> stage(new EvalStage());
  Impl& s = *stage->impl_;
  s.args = args;
  s.cfg = resolve_config(args);
  s.rt = setup_runtime(s.cfg, args, comm);
  const std::string& src = s.cfg.source;

  s.net = models::build_network(s.cfg.model.arch, src + " [model]: arch");
  const models::Checkpoint ck = models::read_checkpoint(s.cfg.model.weights);
  s.net->load(ck);
  s.net->to(s.rt.device);
  s.weights_sha256 = sha256_file(s.cfg.model.weights);

  if (s.cfg.model.dataset != "cifar10")
    throw InputError(src + " [model]: dataset = " + quote_value(s.cfg.model.dataset) +
                     ": evaluation in this dsgq version reads CIFAR-10 binary files only; expected cifar10");
  const int64_t available = io::cifar10_count(s.cfg.eval.data);
  s.n_images = s.cfg.eval.n_images > 0 ? s.cfg.eval.n_images : available;
  if (s.n_images > available)
    throw InputError(src + " [eval]: n_images = '" + std::to_string(s.cfg.eval.n_images) + "' but " +
                     s.cfg.eval.data + " holds " + std::to_string(available) + " images; expected 0 (all) or 1.." +
                     std::to_string(available));

  s.key = fp32_eval_key(s.cfg);
  s.record_path = s.cfg.output.dir + "/results/" + s.key + ".json";
  s.point = {{"stage", "eval"},           {"arch", s.cfg.model.arch}, {"dataset", s.cfg.model.dataset},
             {"precision", "fp32"},       {"weights", s.cfg.model.weights},
             {"weights_sha256", s.weights_sha256}, {"eval_data", s.cfg.eval.data}, {"n_images", s.n_images}};
  make_dirs(s.cfg.output.dir + "/results");
  if (::access((s.cfg.output.dir + "/results").c_str(), W_OK) != 0)
    throw InputError(src + " [output]: dir = " + quote_value(s.cfg.output.dir) + " is not writable; expected a writable folder");
  if (!args.force && file_exists(s.record_path)) {
    const nlohmann::json old = io::read_json(s.record_path);
    if (!old.contains("point") || old["point"] != s.point)
      throw InputError(s.record_path + ": exists for a different point (" +
                       (old.contains("point") ? old["point"].dump() : std::string("no 'point' field")) +
                       "); expected " + s.point.dump() + "; pass --force to overwrite or set output.dir elsewhere");
  }
  s.prepare_s = timer.seconds();
  return stage;
}

std::string EvalStage::resolved_toml() const { return config::to_toml(impl_->cfg); }

int EvalStage::execute(const dist::Comm& comm) {
  Impl& s = *impl_;
  Timer total;
  log_info0("dsgq %s (%s), %d rank(s), %d torch thread(s) per rank (%s), device %s", kVersion, kGitDescribe,
            comm.size(), s.rt.threads, s.rt.threads_source.c_str(), s.rt.device.str().c_str());
  if (!s.args.force && file_exists(s.record_path)) {
    const nlohmann::json old = io::read_json(s.record_path);
    log_info0("%s: %s already done (top1 %.2f); skipped, pass --force to redo", s.record_path.c_str(), s.key.c_str(),
              old["metrics"].value("top1", -1.0));
    return 0;
  }
  if (comm.is_root()) atomic_write_file(s.cfg.output.dir + "/resolved.toml", config::to_toml(s.cfg));

  Timer load_timer;
  const dist::Share share = dist::share_of(s.n_images, comm.rank(), comm.size());
  const io::ImageSet images = io::read_cifar10(s.cfg.eval.data, share.begin, share.size());
  const double load_s = load_timer.seconds();

  Timer eval_timer;
  const eval::Counts local = eval::count_correct(*s.net, images.images, images.labels, s.cfg.eval.batch, s.n_images);
  const double eval_s = eval_timer.seconds();
  const eval::Counts global = eval::allreduce(local, comm);
  DSGQ_CHECK(global.n == s.n_images, "evaluated " + std::to_string(global.n) + " of " + std::to_string(s.n_images));

  const Span prep = span_over_ranks(s.prepare_s, comm), load = span_over_ranks(load_s, comm),
             ev = span_over_ranks(eval_s, comm), tot = span_over_ranks(total.seconds() + s.prepare_s, comm);
  const std::vector<std::string> hosts_all = comm.allgather(dist::MpiEnv::processor_name());
  if (!comm.is_root()) return 0;

  auto span = [](const Span& p) { return nlohmann::json{{"min", p.min}, {"mean", p.mean}, {"max", p.max}}; };
  const double published = models::arch_info(s.cfg.model.arch, "arch").published_top1;
  const std::set<std::string> hosts(hosts_all.begin(), hosts_all.end());
  nlohmann::json rec = {
      {"format", io::kResultFormat},
      {"key", s.key},
      {"point", s.point},
      {"metrics",
       {{"top1", global.top1_pct()},
        {"top5", global.top5_pct()},
        {"n_images", global.n},
        {"top1_correct", global.top1},
        {"top5_correct", global.top5},
        {"fp32_top1", global.top1_pct()},
        {"published_top1", published >= 0 ? nlohmann::json(published) : nlohmann::json(nullptr)}}},
      {"timings_s", {{"prepare", span(prep)}, {"load", span(load)}, {"eval", span(ev)}, {"total", span(tot)}}},
      {"throughput_images_per_s", ev.max > 0 ? static_cast<double>(global.n) / ev.max : 0.0},
      {"provenance",
       {{"dsgq_version", kVersion},
        {"git", kGitDescribe},
        {"config_sha256", sha256_hex(config::to_toml(s.cfg))},
        {"world_size", comm.size()},
        {"threads_per_rank", s.rt.threads},
        {"device", s.rt.device.str()},
        {"hosts", std::vector<std::string>(hosts.begin(), hosts.end())},
        {"created", io::utc_timestamp()}}}};
  io::write_json_atomic(s.record_path, rec);
  log_info0("%s fp32: top1 %.2f%% (%lld/%lld), top5 %.2f%%, %.1f images/s -> %s", s.cfg.model.arch.c_str(),
            global.top1_pct(), static_cast<long long>(global.top1), static_cast<long long>(global.n),
            global.top5_pct(), ev.max > 0 ? global.n / ev.max : 0.0, s.record_path.c_str());
  return 0;
}

}  // namespace dsgq::pipeline
