#include "pipeline/keys.hpp"

#include <nlohmann/json.hpp>
#include <sstream>

#include "core/sha256.hpp"

namespace dsgq::pipeline {
namespace {

// "key = value\n" in TOML syntax, floats with 17 significant digits.
void identity_line(std::ostream& os, const config::FieldValue& f) {
  os << f.key << " = ";
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>)
          os << '"' << v << '"';
        else if constexpr (std::is_same_v<T, bool>)
          os << (v ? "true" : "false");
        else
          os << v;
      },
      f.value);
  os << "\n";
}

}  // namespace

std::string fp32_eval_key(const config::RunConfig& cfg) {
  std::string key = cfg.model.arch + "-fp32";
  if (cfg.eval.n_images > 0) key += "-n" + std::to_string(cfg.eval.n_images);
  return key;
}

std::string synth_identity(const config::RunConfig& cfg, const std::string& weights_sha256) {
  std::ostringstream os;
  os.precision(17);
  os << "arch = \"" << cfg.model.arch << "\"\nweights_sha256 = \"" << weights_sha256 << "\"\n";
  for (const auto& f : config::fields_with(cfg, config::kSynthIdentity)) identity_line(os, f);
  if (cfg.synth.method == config::SynthMethod::real)
    for (const auto& f : config::fields_with(cfg, config::kSynthIdentityReal)) identity_line(os, f);
  return os.str();
}

std::string synth_key(const config::RunConfig& cfg, const std::string& identity) {
  const config::SynthConfig& y = cfg.synth;
  return cfg.model.arch + "-" + config::name(y.method) + "-" + config::name(y.preset) + "-n" +
         std::to_string(y.n_images) + "-s" + std::to_string(y.seed) + "-" + sha256_hex(identity).substr(0, 8);
}

std::string quant_key(const config::RunConfig& cfg, const std::string& calib_name) {
  const config::QuantConfig& q = cfg.quant;
  std::string variant;
  switch (q.protocol) {
    case config::Protocol::zeroq:
      break;
    case config::Protocol::adaround:
    case config::Protocol::qdrop: {
      const bool qdrop = q.protocol == config::Protocol::qdrop;
      std::ostringstream os;  // the values back to back, as the first release hashed them
      os.precision(17);
      for (const auto& f : config::fields_with(cfg, config::kAdaRoundVariant))
        std::visit([&](const auto& v) { os << v; }, f.value);
      if (qdrop)
        for (const auto& f : config::fields_with(cfg, config::kReconVariant))
          std::visit([&](const auto& v) { os << v; }, f.value);
      std::ostringstream drop;
      drop << q.recon.drop;
      variant = "-fl" + std::to_string(q.first_last_bits) + (q.adaround.enabled ? "-ar" : "-nearest") +
                std::to_string(q.adaround.iters) + (qdrop ? "-p" + drop.str() : "") + "-" +
                sha256_hex(os.str()).substr(0, 6);
      break;
    }
  }
  return calib_name + "-" + config::name(q.protocol) + "-w" + std::to_string(q.w_bits) + "a" +
         std::to_string(q.a_bits) + "-" + config::name(q.act_observer) + variant +
         (q.n_calib > 0 ? "-c" + std::to_string(q.n_calib) : "") +
         (cfg.eval.n_images > 0 ? "-e" + std::to_string(cfg.eval.n_images) : "");
}

nlohmann::json point_fields(const config::RunConfig& cfg, unsigned roles) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& f : config::fields_with(cfg, roles)) std::visit([&](const auto& v) { out[f.point] = v; }, f.value);
  return out;
}

}  // namespace dsgq::pipeline
