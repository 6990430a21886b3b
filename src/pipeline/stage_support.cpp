#include "pipeline/stage_support.hpp"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <torch/torch.h>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/log.hpp"
#include "core/sha256.hpp"
#include "dsgq/version.hpp"
#include "io/json_record.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"

namespace dsgq::pipeline {

LoadedModel load_model(const config::RunConfig& cfg, const Runtime& rt) {
  LoadedModel m;
  m.net = models::build_network(cfg.model.arch, cfg.source + " [model]: arch");
  const models::ArchInfo& arch = models::arch_info(cfg.model.arch, cfg.source + " [model]: arch");
  if (!arch.torchvision_file.empty() && !file_exists(cfg.model.weights))
    throw InputError(cfg.source + " [model]: weights = " + quote_value(cfg.model.weights) +
                     " does not exist; expected " + arch.name +
                     "'s torchvision checkpoint (https://download.pytorch.org/models/" + arch.torchvision_file +
                     ", what torchvision." + arch.name +
                     "(weights='IMAGENET1K_V1') downloads) there, or set [model] weights or DSGQ_TORCHVISION_MODELS");
  m.net->load(models::read_checkpoint(cfg.model.weights));
  m.net->to(rt.device);
  m.net->set_channels_last(cfg.runtime.channels_last);
  m.weights_sha256 = sha256_file(cfg.model.weights);
  return m;
}

std::vector<std::string> result_files(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir + "/results", ec)) return files;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/results", ec))
    if (e.path().extension() == ".json") files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

void check_results_dir(const std::string& dir) {
  const std::string results = dir + "/results";
  for (const auto& f : result_files(dir)) {
    nlohmann::json r;
    try {
      r = io::read_json(f);
    } catch (const InputError&) {
      throw InputError(f + ": is not a JSON result record; expected only dsgq records (" + io::kResultFormat + ") in " +
                       results);
    }
    const std::string format =
        r.contains("format") && r["format"].is_string() ? r["format"].get<std::string>() : "(none)";
    if (format != io::kResultFormat)
      throw InputError(f + ": format = '" + format + "' was written by an incompatible dsgq version; expected " +
                       io::kResultFormat + " (use another output.dir, or move the old results away)");
  }
}

void check_record_slot(const config::RunConfig& cfg, const std::string& record_path, const nlohmann::json& point,
                       bool force) {
  make_dirs(cfg.output.dir + "/results");
  if (::access((cfg.output.dir + "/results").c_str(), W_OK) != 0)
    throw InputError(cfg.source + " [output]: dir = " + quote_value(cfg.output.dir) +
                     " is not writable; expected a writable folder");
  if (force || !file_exists(record_path)) return;
  const nlohmann::json old = io::read_json(record_path);
  if (!old.contains("point") || old["point"] != point)
    throw InputError(record_path + ": exists for a different point (" +
                     (old.contains("point") ? old["point"].dump() : std::string("no 'point' field")) + "); expected " +
                     point.dump() + "; pass --force to overwrite or set output.dir elsewhere");
}

bool already_done(const std::string& record_path, const std::string& key, bool force) {
  if (force || !file_exists(record_path)) return false;
  const nlohmann::json old = io::read_json(record_path);
  log_info0("%s: %s already done (top1 %.2f); skipped, pass --force to redo", record_path.c_str(), key.c_str(),
            old["metrics"].value("top1", -1.0));
  return true;
}

int64_t check_image_set(const std::string& path, const std::string& where, const models::Network& net) {
  const io::ImageSetInfo info = io::image_set_info(path);
  const auto& in = net.input();
  if (info.height != in.height || info.width != in.width)
    throw InputError(where + " = " + quote_value(path) + " holds " + std::to_string(info.height) + "x" +
                     std::to_string(info.width) + " images (" + info.kind + "); " + net.arch() + " expects " +
                     std::to_string(in.height) + "x" + std::to_string(in.width) +
                     (info.kind == "packed" ? " (dsgq pack --size " + std::to_string(in.height) + ")" : std::string()));
  return info.n_images;
}

int64_t check_image_count(const std::string& path, const std::string& where, const models::Network& net,
                          int64_t requested, const std::string& where_n) {
  const int64_t available = check_image_set(path, where, net);
  if (requested > available)
    throw InputError(where_n + " = '" + std::to_string(requested) + "' but " + path + " holds " +
                     std::to_string(available) + " images; expected 0 (all) or 1.." + std::to_string(available));
  return requested > 0 ? requested : available;
}

io::ImageSet eval_share(const config::RunConfig& cfg, int64_t n, const mpi::Comm& comm) {
  const mpi::Share share = mpi::share_of(n, comm.rank(), comm.size());
  return io::read_image_set(cfg.eval.data, share.begin, share.size());
}

nlohmann::json span_json(const Span& s) { return {{"min", s.min}, {"mean", s.mean}, {"max", s.max}}; }

nlohmann::json provenance_json(const config::RunConfig& cfg, const Runtime& rt, const mpi::Comm& comm) {
  const std::vector<std::string> all = comm.allgather(mpi::MpiEnv::processor_name());
  const std::set<std::string> hosts(all.begin(), all.end());
  return {{"dsgq_version", kVersion},
          {"git", kGitDescribe},
          {"config_sha256", sha256_hex(config::to_toml(cfg))},
          {"world_size", comm.size()},
          {"threads_per_rank", rt.threads},
          {"device", rt.device.str()},
          {"collectives", rt.collectives},
          {"hosts", std::vector<std::string>(hosts.begin(), hosts.end())},
          {"created", io::utc_timestamp()}};
}

}  // namespace dsgq::pipeline
