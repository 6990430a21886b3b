#pragma once
// Export of a quantized network: AIMET's encodings layout (version 0.6.1: activation_encodings and
// param_encodings keyed by tensor name, one entry per channel for per-channel weights, each with bitwidth, dtype,
// is_symmetric, min, max, offset, scale) and a state_dict of the fake-quantized weights that torch.load reads.
#include <nlohmann/json_fwd.hpp>

#include <string>

namespace dsgq::models {
class Network;
}

namespace dsgq::quant {

class ZeroqQuantizer;
class AdaRoundQuantizer;
class ReconQuantizer;

// The official quantizer's range [a, b] at k bits as AIMET's (scale, offset): scale = (b - a)/(2^k - 1) after the
// official rounding of the offset, offset = round(a/scale) (so x^ = (q + offset) * scale, q in 0..2^k - 1).
nlohmann::json encodings_json(const models::Network& net, const ZeroqQuantizer& q);

// The adaround protocol: per-channel grids (scale, offset = -zero_point) of the folded network's weights.
nlohmann::json encodings_json(const AdaRoundQuantizer& q);
// The qdrop protocol: the same weight grids (learned scales when weight_scale_lr > 0) and the learned activation
// steps (scale = step, offset = -zero_point).
nlohmann::json encodings_json(const ReconQuantizer& q);

// Every parameter of `net`, with conv/linear weights replaced by their fake-quantized values. Atomic, local.
void write_quantized_state_dict(const std::string& path, const models::Network& net, const ZeroqQuantizer& q);
// The folded network's parameters (convs with their folded biases, no BN) with the rounded weights.
void write_quantized_state_dict(const std::string& path, const AdaRoundQuantizer& q);
void write_quantized_state_dict(const std::string& path, const ReconQuantizer& q);

}  // namespace dsgq::quant
