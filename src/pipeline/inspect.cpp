#include "pipeline/inspect.hpp"

#include <torch/torch.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "core/paths.hpp"
#include "io/cifar10.hpp"
#include "core/sha256.hpp"
#include "io/json_record.hpp"
#include "models/checkpoint.hpp"
#include "io/packed_file.hpp"
#include "io/synth_file.hpp"
#include "models/registry.hpp"
#include "synth/bn_stats.hpp"
#include "synth/sampling.hpp"
#include "synth/synthesizer.hpp"

namespace dsgq::pipeline {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string inspect_checkpoint(const std::string& path) {
  const models::Checkpoint ck = models::read_checkpoint(path);
  std::ostringstream os;
  os << path << ": torch.save checkpoint, " << ck.container << ", " << ck.tensors.size() << " tensors"
     << (ck.stripped_module_prefix ? " ('module.' prefix stripped)" : "") << "\n";
  os << "sha256 " << sha256_file(path) << "\n";
  int64_t scalars = 0;
  for (const auto& nt : ck.tensors) {
    scalars += nt.tensor.numel();
    char line[512];
    std::snprintf(line, sizeof line, "  %-48s %-8s %s\n", nt.name.c_str(), c10::toString(nt.tensor.scalar_type()),
                  models::shape_string(nt.tensor).c_str());
    os << line;
  }
  os << "elements: " << scalars << "\n";
  std::string fits;
  for (const auto& a : models::architectures()) {
    auto net = models::build_network(a.name, "arch");
    if (net->mismatch(ck).empty()) fits += (fits.empty() ? "" : ", ") + a.name;
  }
  os << "fits architecture: " << (fits.empty() ? "none registered" : fits) << "\n";
  return os.str();
}

std::string inspect_record(const std::string& path) {
  const nlohmann::json j = io::read_json(path);
  if (j.value("format", "") != io::kResultFormat)
    throw InputError(path + ": format = " + quote_value(j.value("format", "(none)")) +
                     "; expected a dsgq result record (" + io::kResultFormat + ")");
  std::ostringstream os;
  os << path << ": dsgq result record " << j.value("key", "?") << "\n";
  os << "point:      " << j["point"].dump() << "\n";
  os << "metrics:    " << j["metrics"].dump() << "\n";
  os << "timings_s:  " << j["timings_s"].dump() << "\n";
  os << "provenance: " << j["provenance"].dump() << "\n";
  return os.str();
}

std::string inspect_synth(const std::string& path) {
  const io::SynthSet set = io::read_synth(path);
  const io::SynthMeta& m = set.meta;
  std::ostringstream os;
  os << path << ": " << io::kSynthFormat << " synthetic dataset, " << m.n_images << " images [" << m.channels << ","
     << m.height << "," << m.width << "], " << m.n_batches() << " batches of " << m.batch << "\n";
  os << "model " << m.model << " (weights sha256 " << m.weights_sha256.substr(0, 16) << "...), method " << m.method
     << ", preset " << m.preset << ", seed " << m.seed << ", " << m.iterations << " iterations, written by "
     << m.world_size << " rank(s), dsgq " << m.dsgq_version << ", " << m.created << "\n";
  const at::Tensor x = set.images;
  os << "pixels: mean " << x.mean().item<double>() << ", std " << x.std().item<double>() << ", min "
     << x.min().item<double>() << ", max " << x.max().item<double>() << "\n";
  os << "final loss per batch: mean " << set.loss.mean().item<double>() << ", max " << set.loss.max().item<double>()
     << "\n";
  const int64_t with_lse = set.lse_layer.ge(0).sum().item<int64_t>();
  const int64_t with_label = set.labels.ge(0).sum().item<int64_t>();
  os << "samples with an LSE layer: " << with_lse << ", with a target label: " << with_label << "\n";
  if (!set.delta.empty()) {
    double dmax = 0, gmax = 0;
    for (size_t l = 0; l < set.delta.size(); ++l) {
      dmax = std::max(dmax, set.delta[l]);
      gmax = std::max(gmax, set.gamma[l]);
    }
    os << "SDA margins: " << set.delta.size() << " layers, max delta " << dmax << ", max gamma " << gmax << "\n";
  }
  // How far optimisation moved the images from their (reproducible) initialisation.
  const auto method = config::parse_choice<config::SynthMethod>(m.method);
  const auto preset = config::parse_choice<config::Preset>(m.preset);
  if (method && preset && config::optimised(*method) && *method != config::SynthMethod::genie) {
    config::SynthConfig y;
    y.method = *method;
    y.preset = *preset;
    try {  // the set's own [synth] (its init key), when its stored configuration still parses
      y = config::parse_run_config(m.config_toml, path + ": config_toml", {}).synth;
    } catch (const InputError&) {
    }
    const synth::Init init = synth::resolve_settings(y, "").init;
    const at::Tensor x0 = synth::draw_images(init, static_cast<uint64_t>(m.seed), synth::Stream::init, 0, m.n_images,
                                             m.channels, m.height, m.width);
    char line[200];
    std::snprintf(line, sizeof line, "moved from initialisation: rms(x - x0) %.4f, rms(x0) %.4f (ratio %.3f)\n",
                  (x - x0).square().mean().sqrt().item<double>(), x0.square().mean().sqrt().item<double>(),
                  ((x - x0).square().mean() / x0.square().mean().clamp_min(1e-30)).sqrt().item<double>());
    os << line;
  }
  // Homogeneity (docs/method.md section 14) against the network that made the set, when its weights are still there.
  if (file_exists(m.weights) && sha256_file(m.weights) == m.weights_sha256 && m.n_images >= 2) {
    auto net = models::build_network(m.model, path + ": model");
    net->load(models::read_checkpoint(m.weights));
    at::Tensor logits, real_logits;
    const synth::Homogeneity h = synth::homogeneity(*net, set.images, 256, &logits);
    // Real data's signature on the same network and image count, when it is a CIFAR-10 network and the training
    // batch is at hand (docs/method.md section 14).
    synth::Homogeneity real;
    synth::ClassFit real_fit;
    const int64_t n_real = std::min<int64_t>(m.n_images, 10000);  // data_batch_1 holds 10,000 images
    const std::string real_path = data_dir().empty() ? "" : data_dir() + "/cifar10/data_batch_1.bin";
    const bool with_real = net->input().num_classes == 10 && net->input().height == 32 && file_exists(real_path);
    if (with_real) {
      const io::ImageSet r = io::read_cifar10(real_path, 0, n_real);
      real = synth::homogeneity(*net, net->normalize(r.images, at::kCPU), 256, &real_logits);
      real_fit = synth::class_fit(real_logits, r.labels);
    }
    char line[200];
    std::snprintf(line, sizeof line, "homogeneity on %s: spread %.4f, dev %.4f", m.model.c_str(), h.spread, h.dev);
    os << line;
    if (with_real) {
      std::snprintf(line, sizeof line, " (the first %lld real CIFAR-10 training images: %.4f, %.4f)",
                    static_cast<long long>(n_real), real.spread, real.dev);
      os << line;
    }
    os << "\nper BN layer:          spread    dev" << (with_real ? "   real spread  real dev" : "") << "\n";
    for (size_t l = 0; l < h.layer_spread.size(); ++l) {
      std::snprintf(line, sizeof line, "  %-20s %7.4f %7.4f", net->bns()[l].name.c_str(), h.layer_spread[l],
                    h.layer_dev[l]);
      os << line;
      if (with_real) {
        std::snprintf(line, sizeof line, "   %7.4f     %7.4f", real.layer_spread[l], real.layer_dev[l]);
        os << line;
      }
      os << "\n";
    }
    // How the network classifies the set's labels (a synthetic set's target classes, a real set's own labels).
    const synth::ClassFit fit = synth::class_fit(logits, set.labels);
    if (fit.n > 0) {
      std::snprintf(line, sizeof line,
                    "labels on %s: %.1f %% of %lld images classified as their label, cross-entropy %.4f, top-logit "
                    "margin %.2f",
                    m.model.c_str(), 100.0 * fit.agree, static_cast<long long>(fit.n), fit.ce, fit.margin);
      os << line;
      if (with_real) {
        std::snprintf(line, sizeof line, " (the first %lld real CIFAR-10 training images: %.1f %%, %.4f, %.2f)",
                      static_cast<long long>(n_real), 100.0 * real_fit.agree, real_fit.ce, real_fit.margin);
        os << line;
      }
      os << "\n";
    }
  } else {
    os << "homogeneity: weights " << m.weights << " not found or changed; not computed\n";
  }
  return os.str();
}

std::string inspect_packed(const std::string& path) {
  const io::PackedMeta m = io::read_packed_meta(path);
  const io::ImageSet set = io::read_packed(path);
  const std::vector<std::string> names = io::read_packed_names(path);
  std::ostringstream os;
  os << path << ": " << io::kPackedFormat << " packed image set, " << m.n_images << " images [3," << m.size << ","
     << m.size << "] uint8 (Resize(" << m.resize << ") + CenterCrop(" << m.size << ")), " << m.num_classes
     << " classes\n";
  os << "source " << m.source << ", labels from " << m.labels_from << ", dsgq " << m.dsgq_version << ", " << m.created
     << "\n";
  if (m.n_images > 0) {
    const at::Tensor px = set.images.to(at::kFloat);
    const at::Tensor mean = px.mean({0, 2, 3}) / 255.0;
    char line[200];
    std::snprintf(line, sizeof line, "pixel mean per channel (on [0,1]): %.4f %.4f %.4f\n", mean[0].item<double>(),
                  mean[1].item<double>(), mean[2].item<double>());
    os << line;
    os << "distinct labels: " << std::get<0>(at::_unique(set.labels)).numel() << ", label range "
       << set.labels.min().item<int64_t>() << ".." << set.labels.max().item<int64_t>() << "\n";
    os << "first image: " << names.front() << " (label " << set.labels[0].item<int64_t>() << "), last: " << names.back()
       << "\n";
  }
  return os.str();
}

}  // namespace

std::string inspect_file(const std::string& path) {
  if (!file_exists(path)) throw InputError(path + ": no such file; expected a .pt checkpoint or a .json result record");
  if (ends_with(path, ".json")) return inspect_record(path);
  if (io::hdf5_format(path) == io::kPackedFormat) return inspect_packed(path);
  if (ends_with(path, ".h5") || ends_with(path, ".part")) return inspect_synth(path);
  if (ends_with(path, ".pt") || ends_with(path, ".pth") || ends_with(path, ".th") || ends_with(path, ".tar"))
    return inspect_checkpoint(path);
  throw InputError(path +
                   ": unrecognised file type; expected a checkpoint (.pt, .pth, .th), a synthetic or packed set (.h5) "
                   "or a result record (.json)");
}

}  // namespace dsgq::pipeline
