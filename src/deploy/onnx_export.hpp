#pragma once
// The quantized network as a standard ONNX QDQ graph (docs/formats.md section 10), written through Debian's ONNX
// library (libonnx-dev 1.12: IR version 8, opset 13) and checked by its checker and strict shape inference before
// the atomic rename. The graph comes from a trace of the network's own forward pass (every architecture of the
// zoo), with
//  - weights as integer codes with per-output-channel DequantizeLinear (int8 with zero point 0 where every code fits,
//    as every grid of up to 7 bits that contains zero does; else uint8 with the zero point -offset; int32 codes
//    with zero point 0 for a layer with a channel whose range lies on one side of zero),
//  - every activation site that has an encoding followed by Clip to its k-bit range, QuantizeLinear (uint8, zero
//    point -offset) and DequantizeLinear, so any bit-width from 2 to 8 is emulated exactly,
//  - BatchNormalization where the protocol keeps BN (zeroq), folded convs where it folds it (adaround, qdrop).
// Input "input": float [batch, C, H, W], the normalized image (pixels/255 - mean)/std (mean and std are in the
// model's metadata); output "logits": float [batch, classes].
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <map>
#include <string>
#include <vector>

namespace dsgq::models {
class Network;
}

namespace dsgq::deploy {

struct OnnxSummary {
  int64_t nodes = 0, quantized_weights = 0, quantized_activations = 0, initializers = 0;
  int64_t int32_weights = 0;  // layers whose codes no 8-bit type holds (a channel's range excludes zero)
  int64_t bytes = 0;
};

// `weights[l]`: layer l's weight as the quantized forward uses it (undefined: the network's own); `encodings`: the
// point's AIMET torch-layout encodings (param_encodings "<layer>.weight" per channel, activation_encodings
// "<site>"/"output"/"0"); `metadata`: extra key/value pairs for the model's metadata_props. Throws dsgq::Error naming
// the layer, site or traced op that cannot be expressed (a weight off its grid, a zero point outside uint8, an op
// without a mapping). Local (rank 0 calls it); writes `path` atomically.
OnnxSummary write_onnx(const std::string& path, const models::Network& net, const std::vector<at::Tensor>& weights,
                       const nlohmann::json& encodings, const std::map<std::string, std::string>& metadata);

}  // namespace dsgq::deploy
