#pragma once
// Stable point keys and point identities, derived from the config keys that define a point (their roles in the
// field tables of src/config/run_config.cpp), so reruns find their own results.
#include <nlohmann/json_fwd.hpp>

#include <string>

#include "config/run_config.hpp"

namespace dsgq::pipeline {

// FP32 evaluation point: "<arch>-fp32" plus "-n<N>" when only the first N images are evaluated.
std::string fp32_eval_key(const config::RunConfig& cfg);

// What defines a synthetic dataset (the keys with role kSynthIdentity, real_data for method = real, the
// architecture and the weights' sha256), as TOML text: stored in the file and compared on resume and skip.
std::string synth_identity(const config::RunConfig& cfg, const std::string& weights_sha256);

// "<arch>-<method>-<preset>-n<N>-s<seed>-<first 8 hex of sha256(identity)>"
std::string synth_key(const config::RunConfig& cfg, const std::string& identity);

// A quantization point's key: "<calibration set>-<protocol>-w<W>a<A>-<observer>[-fl<F>-ar<iters>|-nearest-<hash>]
// [-c<n_calib>][-e<eval n_images>]"; the hash covers every key with role kAdaRoundVariant.
std::string quant_key(const config::RunConfig& cfg, const std::string& calib_name);

// {point name: value} of the keys carrying every role in `roles` (choices by name).
nlohmann::json point_fields(const config::RunConfig& cfg, unsigned roles);

}  // namespace dsgq::pipeline
