#pragma once
// Stable point keys: derived from the fields that define a point, so reruns find their own results.
#include <string>

#include "config/run_config.hpp"

namespace dsgq::pipeline {

// FP32 evaluation point: "<arch>-fp32" plus "-n<N>" when only the first N images are evaluated.
std::string fp32_eval_key(const config::RunConfig& cfg);

}  // namespace dsgq::pipeline
