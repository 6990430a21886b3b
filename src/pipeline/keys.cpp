#include "pipeline/keys.hpp"

namespace dsgq::pipeline {

std::string fp32_eval_key(const config::RunConfig& cfg) {
  std::string key = cfg.model.arch + "-fp32";
  if (cfg.eval.n_images > 0) key += "-n" + std::to_string(cfg.eval.n_images);
  return key;
}

}  // namespace dsgq::pipeline
