#pragma once
// Stable point keys: derived from the fields that define a point, so reruns find their own results.
#include <string>

#include "config/run_config.hpp"

namespace dsgq::pipeline {

// FP32 evaluation point: "<arch>-fp32" plus "-n<N>" when only the first N images are evaluated.
std::string fp32_eval_key(const config::RunConfig& cfg);

}  // namespace dsgq::pipeline

namespace dsgq::pipeline {

// What defines a synthetic dataset (the [synth] section without `out`, the architecture and the weights' sha256),
// as TOML text: stored in the file and compared on resume and skip.
std::string synth_identity(const config::RunConfig& cfg, const std::string& weights_sha256);

// "<arch>-<method>-<preset>-n<N>-s<seed>-<first 8 hex of sha256(identity)>"
std::string synth_key(const config::RunConfig& cfg, const std::string& identity);

}  // namespace dsgq::pipeline
