#include "pipeline/eval_stage.hpp"

#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/sha256.hpp"
#include "core/timer.hpp"
#include "dsgq/version.hpp"
#include "eval/evaluate.hpp"
#include "io/image_set.hpp"
#include "io/json_record.hpp"
#include "models/registry.hpp"
#include "pipeline/keys.hpp"
#include "pipeline/stage_support.hpp"

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

std::unique_ptr<EvalStage> EvalStage::prepare(const CommonArgs& args, const mpi::Comm& comm) {
  Timer timer;
  std::unique_ptr<EvalStage> stage(new EvalStage());
  Impl& s = *stage->impl_;
  s.args = args;
  s.cfg = resolve_config(args);
  s.rt = setup_runtime(s.cfg, args, comm);
  const std::string& src = s.cfg.source;

  LoadedModel model = load_model(s.cfg, s.rt);
  s.net = std::move(model.net);
  s.weights_sha256 = model.weights_sha256;

  s.n_images =
      check_image_count(s.cfg.eval.data, src + " [eval]: data", *s.net, s.cfg.eval.n_images, src + " [eval]: n_images");

  s.key = fp32_eval_key(s.cfg);
  s.record_path = s.cfg.output.dir + "/results/" + s.key + ".json";
  s.point = point_fields(s.cfg, config::kPoint);
  s.point.update({{"stage", "eval"},
                  {"precision", "fp32"},
                  {"weights", s.cfg.model.weights},
                  {"weights_sha256", s.weights_sha256},
                  {"n_images", s.n_images}});
  check_record_slot(s.cfg, s.record_path, s.point, args.force);
  s.prepare_s = timer.seconds();
  return stage;
}

std::string EvalStage::describe() const { return config::to_toml(impl_->cfg); }

int EvalStage::execute(const mpi::Comm& comm) {
  Impl& s = *impl_;
  Timer total;
  log_info0("dsgq %s (%s), %d rank(s), %d torch thread(s) per rank (%s), device %s", kVersion, kGitDescribe,
            comm.size(), s.rt.threads, s.rt.threads_source.c_str(), s.rt.device.str().c_str());
  if (already_done(s.record_path, s.key, s.args.force)) return 0;
  if (comm.is_root()) atomic_write_file(s.cfg.output.dir + "/resolved.toml", config::to_toml(s.cfg));

  Timer load_timer;
  const io::ImageSet images = eval_share(s.cfg, s.n_images, comm);
  const double load_s = load_timer.seconds();

  Timer eval_timer;
  const eval::Counts local = eval::count_correct(*s.net, images.images, images.labels, s.cfg.eval.batch, s.n_images);
  const double eval_s = eval_timer.seconds();
  const eval::Counts global = eval::allreduce(local, comm);
  DSGQ_CHECK(global.n == s.n_images, "evaluated " + std::to_string(global.n) + " of " + std::to_string(s.n_images));

  const Span prep = span_over_ranks(s.prepare_s, comm), load = span_over_ranks(load_s, comm),
             ev = span_over_ranks(eval_s, comm), tot = span_over_ranks(total.seconds() + s.prepare_s, comm);
  nlohmann::json provenance = provenance_json(s.cfg, s.rt, comm);
  if (comm.is_root()) {  // every input file the numbers were computed from
    provenance["weights_sha256"] = s.weights_sha256;
    provenance["eval_data_sha256"] = sha256_file(s.cfg.eval.data);
  }
  if (!comm.is_root()) return 0;

  const double published = models::arch_info(s.cfg.model.arch, "arch").published_top1;
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
      {"timings_s",
       {{"prepare", span_json(prep)}, {"load", span_json(load)}, {"eval", span_json(ev)}, {"total", span_json(tot)}}},
      {"throughput_images_per_s", ev.max > 0 ? static_cast<double>(global.n) / ev.max : 0.0},
      {"provenance", provenance}};
  io::write_json_atomic(s.record_path, rec);
  log_info0("%s fp32: top1 %.2f%% (%lld/%lld), top5 %.2f%%, %.1f images/s -> %s", s.cfg.model.arch.c_str(),
            global.top1_pct(), static_cast<long long>(global.top1), static_cast<long long>(global.n), global.top5_pct(),
            ev.max > 0 ? global.n / ev.max : 0.0, s.record_path.c_str());
  return 0;
}

}  // namespace dsgq::pipeline
