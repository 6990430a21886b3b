#include "pipeline/sweep_stage.hpp"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config/sweep_config.hpp"
#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/timer.hpp"
#include "mpi/queue.hpp"
#include "io/json_record.hpp"
#include "pipeline/quant_stage.hpp"
#include "pipeline/stage_support.hpp"
#include "pipeline/synth_stage.hpp"

namespace dsgq::pipeline {

struct SweepStage::Impl {
  CommonArgs args;
  config::SweepSpec spec;
  struct Point {
    config::RunConfig cfg;
    std::string label, key, calib, record;
    bool complete = false;
  };
  std::vector<Point> points;
  std::vector<std::string> datasets;               // distinct calibration sets, first use first
  std::map<std::string, config::RunConfig> synth;  // by dataset path: the config that makes it
  bool empty_shard = false;                        // --shard with nothing to do: not an error
};

SweepStage::SweepStage() : impl_(std::make_unique<Impl>()) {}
SweepStage::~SweepStage() = default;

std::unique_ptr<SweepStage> SweepStage::prepare(const CommonArgs& args, const std::vector<std::string>& only,
                                                const mpi::Comm& comm, int shard, int shards) {
  std::unique_ptr<SweepStage> stage(new SweepStage());
  Impl& s = *stage->impl_;
  s.args = args;
  s.spec = config::load_sweep(args.config_path, args.overrides);
  const std::string& src = s.spec.source;
  if (s.spec.points.empty()) throw InputError(src + ": the sweep has no points; expected at least one");
  check_results_dir(complete_config(s.spec.points.front().cfg).output.dir);
  std::map<std::string, size_t> by_key;
  for (auto& p : s.spec.points) {
    config::RunConfig cfg = complete_config(p.cfg);
    if (!cfg.quant.calib_data.empty())
      throw InputError(src + " [quant]: calib_data = " + quote_value(cfg.quant.calib_data) +
                       " is set, but a sweep makes its calibration sets from [synth]; expected calib_data unset");
    if (!cfg.synth.out.empty())
      throw InputError(src + " [synth]: out = " + quote_value(cfg.synth.out) +
                       " is set, but a sweep names its datasets by key under output.dir; expected out unset");
    // Validates the point (weights, eval data, record slot) without keeping its model in memory.
    const auto q = QuantStage::prepare(cfg, args, comm, /*calib_will_exist=*/true);
    Impl::Point point{cfg, p.label, q->key(), q->calib_path(), q->record_path(), q->complete()};
    const auto [it, fresh] = by_key.emplace(point.key, s.points.size());
    if (!fresh)
      throw InputError(src + ": points '" + s.points[it->second].label + "' and '" + point.label +
                       "' are the same point (key " + point.key +
                       "); expected every point once (a duplicate in a "
                       "list, or two [[sweep.grid]] tables that overlap)");
    s.points.push_back(std::move(point));
  }
  if (!only.empty()) {
    std::vector<Impl::Point> kept;
    for (const auto& k : only) {
      const auto it = by_key.find(k);
      if (it == by_key.end())
        throw InputError("--only " + quote_value(k) + ": no such point in " + src +
                         "; expected a key that dsgq sweep "
                         "--list prints (e.g. " +
                         s.points.front().key + ")");
      kept.push_back(s.points[it->second]);
    }
    s.points = std::move(kept);
  }
  if (shards > 1) {
    std::map<std::string, size_t> group;
    std::vector<Impl::Point> kept;
    for (auto& p : s.points) {
      const size_t g = group.emplace(p.calib, group.size()).first->second;
      if (static_cast<int>(g % static_cast<size_t>(shards)) == shard) kept.push_back(std::move(p));
    }
    s.points = std::move(kept);
    if (s.points.empty()) {
      log_warn0("shard %d/%d of %s has no points (%zu calibration sets for %d shards)", shard, shards, src.c_str(),
                group.size(), shards);
      s.empty_shard = true;
      return stage;
    }
  }
  if (s.points.empty()) throw InputError(src + ": the sweep has no points; expected at least one");
  for (const auto& p : s.points) {
    if (s.synth.count(p.calib)) continue;
    s.datasets.push_back(p.calib);
    SynthStage::prepare(p.cfg, args, comm);  // validates; made again in execute (no model kept per set meanwhile)
    s.synth.emplace(p.calib, p.cfg);
  }
  return stage;
}

std::string SweepStage::describe() const {
  const Impl& s = *impl_;
  std::string axes;
  for (const auto& a : s.spec.axes) axes += (axes.empty() ? "" : ", ") + a;
  if (axes.empty()) axes = "nothing";
  std::string out = "# sweep " + (s.spec.name.empty() ? s.spec.source : s.spec.name) + ": " +
                    std::to_string(s.points.size()) + " points, " + std::to_string(s.datasets.size()) +
                    " calibration sets (varied: " + axes +
                    ")\n# output: " + (s.points.empty() ? std::string("-") : s.points.front().cfg.output.dir) + "\n";
  size_t done = 0;
  for (const auto& p : s.points) {
    done += p.complete;
    out += std::string(p.complete ? "done     " : "pending  ") + p.key + "  (" + p.label + ")\n";
  }
  for (const auto& d : s.datasets)
    out += std::string(file_exists(d) ? "complete " : file_exists(d + ".part") ? "partial  " : "missing  ") + d + "\n";
  out += "# " + std::to_string(done) + " of " + std::to_string(s.points.size()) + " points done\n";
  return out;
}

double SweepStage::make_calibration_sets(const std::vector<size_t>& pending, const mpi::Comm& comm) {
  const Impl& s = *impl_;
  Timer timer;
  std::vector<std::string> todo;  // the sets a pending point needs that are not complete yet (all of them with --force)
  for (const auto& d : s.datasets) {
    bool needed = false;
    for (size_t i : pending) needed = needed || s.points[i].calib == d;
    if (needed && (s.args.force || !file_exists(d))) todo.push_back(d);
  }
  for (size_t k = 0; k < todo.size(); ++k) {
    // A campaign's sets take hours: say which one of how many, and how long the earlier ones took.
    const std::string so_far = k ? ", " + format_duration(timer.seconds()) + " for the first " + std::to_string(k) : "";
    log_info0("sweep: calibration set %zu/%zu%s", k + 1, todo.size(), so_far.c_str());
    SynthStage::prepare(s.synth.at(todo[k]), s.args, comm)->execute(comm);
  }
  return timer.seconds();
}

SweepStage::RankWork SweepStage::run_points(std::vector<size_t> pending, const mpi::Comm& comm) {
  const Impl& s = *impl_;
  // The longest first (qdrop, then AdaRound, by steps), so that the last points handed out are short ones and no rank
  // waits long at the end (same order on every rank; results do not depend on it).
  auto cost = [&](size_t i) {
    const config::QuantConfig& q = s.points[i].cfg.quant;
    if (q.protocol == config::Protocol::zeroq || !q.adaround.enabled) return int64_t(0);
    return q.adaround.iters * (q.protocol == config::Protocol::qdrop ? 4 : 1);
  };
  std::stable_sort(pending.begin(), pending.end(), [&](size_t a, size_t b) { return cost(a) > cost(b); });
  RankWork w;
  Timer timer;
  mpi::WorkQueue queue(comm, static_cast<int64_t>(pending.size()));
  const mpi::Comm self = mpi::Comm::self();
  for (int64_t j; (j = queue.next()) >= 0;) {
    const Impl::Point& p = s.points[pending[static_cast<size_t>(j)]];
    Timer t;
    QuantStage::prepare(p.cfg, s.args, comm, /*calib_will_exist=*/false)->execute(self);
    const nlohmann::json rec = io::read_json(p.record);
    ++w.computed;
    w.busy_s += t.seconds();
    // A rough time left: this rank's mean point time for every point not yet handed out, shared by all ranks (the
    // longest points go first, so it shrinks towards the end).
    const int64_t left = static_cast<int64_t>(pending.size()) - (j + 1);
    const double eta = w.busy_s / double(w.computed) * double(left) / double(comm.size());
    log_info("point %lld/%zu %s: top1 %.2f (FP32 %.2f) in %.1f s; %lld not yet started, about %s left",
             static_cast<long long>(j + 1), pending.size(), p.key.c_str(), rec["metrics"]["top1"].get<double>(),
             rec["metrics"]["fp32_top1"].get<double>(), t.seconds(), static_cast<long long>(left),
             format_duration(eta).c_str());
  }
  queue.finish();
  w.queue = comm.size() == 1 ? "single rank" : queue.dynamic() ? "dynamic" : "round robin";
  w.seconds = timer.seconds();
  return w;
}

int SweepStage::execute(const mpi::Comm& comm) {
  Impl& s = *impl_;
  if (s.empty_shard) return 0;
  Timer total;
  std::vector<size_t> pending;
  for (size_t i = 0; i < s.points.size(); ++i)
    if (!s.points[i].complete) pending.push_back(i);
  log_info0("sweep %s: %zu points, %zu done, %zu to run on %d rank(s)",
            (s.spec.name.empty() ? s.spec.source : s.spec.name).c_str(), s.points.size(),
            s.points.size() - pending.size(), pending.size(), comm.size());
  // 1. Calibration sets, each by all ranks together (a complete one is skipped inside the stage).
  const double synth_s = make_calibration_sets(pending, comm);
  // 2. Quantize + eval points, one rank each, handed out on demand.
  const RankWork w = run_points(pending, comm);
  const std::vector<std::string> per_rank = comm.allgather(std::to_string(w.computed) + " " + std::to_string(w.busy_s));
  if (comm.is_root()) {
    // A summary for bench/sweep and humans: phase times and each rank's share of the points.
    nlohmann::json ranks = nlohmann::json::array();
    for (const auto& r : per_rank) {
      const size_t sp = r.find(' ');
      ranks.push_back({{"points", std::stoll(r.substr(0, sp))}, {"busy_s", std::stod(r.substr(sp + 1))}});
    }
    const std::string name = s.spec.name.empty() ? "sweep" : s.spec.name;
    io::write_json_atomic(s.points.front().cfg.output.dir + "/sweeps/" + name + ".json", {{"sweep", name},
                                                                                          {"source", s.spec.source},
                                                                                          {"points", s.points.size()},
                                                                                          {"computed", pending.size()},
                                                                                          {"world_size", comm.size()},
                                                                                          {"queue", w.queue},
                                                                                          {"synth_s", synth_s},
                                                                                          {"points_s", w.seconds},
                                                                                          {"total_s", total.seconds()},
                                                                                          {"ranks", ranks}});
  }
  log_info0(
      "sweep done: %zu points computed on %d rank(s) in %.1f s (calibration sets %.1f s, points %.1f s; %zu were "
      "already done); records in %s/results",
      pending.size(), comm.size(), total.seconds(), synth_s, w.seconds, s.points.size() - pending.size(),
      s.points.front().cfg.output.dir.c_str());
  return 0;
}

}  // namespace dsgq::pipeline
