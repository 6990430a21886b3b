#include "pipeline/keys.hpp"

namespace dsgq::pipeline {

std::string fp32_eval_key(const config::RunConfig& cfg) {
  std::string key = cfg.model.arch + "-fp32";
  if (cfg.eval.n_images > 0) key += "-n" + std::to_string(cfg.eval.n_images);
  return key;
}

}  // namespace dsgq::pipeline

#include <sstream>

#include "core/sha256.hpp"

namespace dsgq::pipeline {

std::string synth_identity(const config::RunConfig& cfg, const std::string& weights_sha256) {
  const config::SynthConfig& y = cfg.synth;
  std::ostringstream os;
  os.precision(17);
  os << "arch = \"" << cfg.model.arch << "\"\nweights_sha256 = \"" << weights_sha256 << "\"\n"
     << "method = \"" << y.method << "\"\npreset = \"" << y.preset << "\"\nn_images = " << y.n_images
     << "\nbatch = " << y.batch << "\niters = " << y.iters << "\nlr = " << y.lr << "\npatience = " << y.patience
     << "\nstats = \"" << y.stats << "\"\nslack_quantile = " << y.slack_quantile
     << "\nmargin_samples = " << y.margin_samples << "\nmargin_scale = " << y.margin_scale
     << "\nlse = " << (y.lse ? "true" : "false") << "\nseed = " << y.seed << "\n";
  if (y.method == "real") os << "real_data = \"" << y.real_data << "\"\n";
  return os.str();
}

std::string synth_key(const config::RunConfig& cfg, const std::string& identity) {
  const config::SynthConfig& y = cfg.synth;
  return cfg.model.arch + "-" + y.method + "-" + y.preset + "-n" + std::to_string(y.n_images) + "-s" +
         std::to_string(y.seed) + "-" + sha256_hex(identity).substr(0, 8);
}

}  // namespace dsgq::pipeline
