#include "quant/encodings.hpp"

#include <torch/torch.h>

#include <cmath>
#include <map>
#include <nlohmann/json.hpp>

#include "models/checkpoint.hpp"
#include "models/network.hpp"
#include "quant/adaround_protocol.hpp"
#include "quant/recon_protocol.hpp"
#include "quant/zeroq_protocol.hpp"

namespace dsgq::quant {
nlohmann::json grid_entry(double scale, double zero_point, int bits);

namespace {

nlohmann::json entry(double a, double b, int bits) {
  // Official: s = (2^k - 1)/(b - a), z = round(s*a) + 2^(k-1), x^ = (q + z)/s, q in [-2^(k-1), 2^(k-1) - 1].
  // With q_u = q + 2^(k-1) in [0, 2^k - 1]: x^ = (q_u + round(s*a)) / s, i.e. scale = 1/s, offset = round(s*a).
  const double s = (std::pow(2.0, bits) - 1.0) / std::max(b - a, 1e-8);
  return grid_entry(1.0 / s, -std::nearbyint(s * a), bits);
}

}  // namespace

// Every parameter of `net` in state_dict order, with layer l's weight replaced by weights[l].
void write_with_weights(const std::string& path, const models::Network& net, const std::vector<at::Tensor>& weights) {
  std::map<std::string, at::Tensor> replaced;
  for (size_t l = 0; l < net.layers().size(); ++l) replaced[net.layers()[l].name + ".weight"] = weights[l];
  std::vector<models::NamedTensor> out;
  for (const auto& [name, shape] : net.param_specs()) {
    auto it = replaced.find(name);
    out.push_back({name, it != replaced.end() ? it->second : net.param(name)});
  }
  models::write_checkpoint(path, out);
}

nlohmann::json grid_entry(double scale, double zero_point, int bits) {
  const double offset = -zero_point, levels = std::pow(2.0, bits) - 1.0;
  return {{"bitwidth", bits},
          {"dtype", "int"},
          {"is_symmetric", "False"},
          {"min", offset * scale},
          {"max", (offset + levels) * scale},
          {"offset", static_cast<int64_t>(offset)},
          {"scale", scale}};
}

// AIMET's torch layout of one activation quantizer (the `_torch.encodings` file that load_encodings_to_sim reads,
// aimet_torch 1.22-1.34): the output quantizer of the module named like the site, index "0", one entry (not a list).
nlohmann::json output_entry(nlohmann::json e) { return {{"output", {{"0", std::move(e)}}}}; }

nlohmann::json quantizer_args(int a_bits, int w_bits, const std::string& scheme) {
  return {{"activation_bitwidth", a_bits},    {"param_bitwidth", w_bits},   {"dtype", "int"},
          {"per_channel_quantization", true}, {"quant_scheme", scheme},     {"is_symmetric", false},
          {"strict_symmetric", false},        {"unsigned_symmetric", false}};
}

namespace {
// A BN-folded protocol's encodings: per-channel weight grids of `net`, the given activation entries.
nlohmann::json folded_encodings(const models::Network& net, const std::vector<WeightGrid>& grids, nlohmann::json acts,
                                const config::QuantConfig& cfg, const std::string& rounding) {
  nlohmann::json params = nlohmann::json::object();
  for (size_t l = 0; l < net.layers().size(); ++l) {
    const WeightGrid& g = grids[l];
    const at::Tensor sc = g.scale.to(at::kDouble).cpu(), zp = g.zero_point.to(at::kDouble).cpu();
    nlohmann::json per_channel = nlohmann::json::array();
    for (int64_t c = 0; c < sc.numel(); ++c)
      per_channel.push_back(grid_entry(sc[c].item<double>(), zp[c].item<double>(), g.bits));
    params[net.layers()[l].name + ".weight"] = per_channel;
  }
  return {{"version", "0.6.1"},
          {"activation_encodings", acts},
          {"param_encodings", params},
          {"excluded_layers", nlohmann::json::array()},
          {"quantizer_args",
           quantizer_args(cfg.a_bits, cfg.w_bits, rounding + "_bn_folded_" + config::name(cfg.act_observer))}};
}
}  // namespace

nlohmann::json encodings_json(const AdaRoundQuantizer& q) {
  const models::Network& net = q.folded();
  nlohmann::json acts = nlohmann::json::object();
  for (size_t i = 0; i < net.acts().size(); ++i)
    if (q.acts().bits()[i] < 32)
      acts[net.acts()[i].name] =
          output_entry(entry(q.acts().ranges()[i].a, q.acts().ranges()[i].b, q.acts().bits()[i]));
  return folded_encodings(net, q.grids(), acts, q.config(), q.config().adaround.enabled ? "adaround" : "nearest");
}

nlohmann::json encodings_json(const ReconQuantizer& q) {
  const models::Network& net = q.folded();
  nlohmann::json acts = nlohmann::json::object();
  for (size_t i = 0; i < net.acts().size(); ++i) {
    const ActGrid& g = q.act_grids()[i];
    if (g.bits < 32)
      acts[net.acts()[i].name] = output_entry(grid_entry(g.scale, static_cast<double>(g.zero_point), g.bits));
  }
  return folded_encodings(net, q.grids(), acts, q.config(), q.config().adaround.enabled ? "qdrop" : "qdrop_nearest");
}

void write_quantized_state_dict(const std::string& path, const ReconQuantizer& q) {
  write_with_weights(path, q.folded(), q.weights());
}

void write_quantized_state_dict(const std::string& path, const AdaRoundQuantizer& q) {
  write_with_weights(path, q.folded(), q.weights());
}

nlohmann::json encodings_json(const models::Network& net, const ZeroqQuantizer& q) {
  nlohmann::json acts = nlohmann::json::object(), params = nlohmann::json::object();
  for (size_t i = 0; i < net.acts().size() && q.config().a_bits < 32; ++i)
    acts[net.acts()[i].name] = output_entry(entry(q.acts().ranges()[i].a, q.acts().ranges()[i].b, q.config().a_bits));
  for (size_t l = 0; l < net.layers().size(); ++l) {
    const at::Tensor mn = q.weight_min()[l].to(at::kDouble).cpu(), mx = q.weight_max()[l].to(at::kDouble).cpu();
    nlohmann::json per_channel = nlohmann::json::array();
    for (int64_t c = 0; c < mn.numel(); ++c)
      per_channel.push_back(entry(mn[c].item<double>(), mx[c].item<double>(), q.config().w_bits));
    params[net.layers()[l].name + ".weight"] = per_channel;
  }
  return {{"version", "0.6.1"},
          {"activation_encodings", acts},
          {"param_encodings", params},
          {"excluded_layers", nlohmann::json::array()},
          {"quantizer_args", quantizer_args(q.config().a_bits, q.config().w_bits,
                                            "post_training_zeroq_" + config::name(q.config().act_observer))}};
}

void write_quantized_state_dict(const std::string& path, const models::Network& net, const ZeroqQuantizer& q) {
  write_with_weights(path, net, q.weights());
}

}  // namespace dsgq::quant
