#include "models/registry.hpp"

#include <cstdlib>

#include "core/error.hpp"
#include "models/architectures.hpp"

namespace dsgq::models {

const std::vector<ArchInfo>& architectures() {
  static const std::vector<ArchInfo> kArchs = {
      {"resnet20", "cifar10", "cifar10_resnet20.pt", 91.73},
      {"resnet32", "cifar10", "cifar10_resnet32.pt", 92.63},
      {"resnet44", "cifar10", "cifar10_resnet44.pt", 93.10},
      {"resnet56", "cifar10", "cifar10_resnet56.pt", 93.39},
      {"resnet8", "cifar10", "cifar10_resnet8_mlperf_tiny.pt", 87.19},
      {"mobilenet_v1_0.25", "imagenet", "imagenet_mobilenet_v1_0.25_224.pt", -1},
      // torchvision IMAGENET1K_V1 top-1 and checkpoint file (none shipped: found in torchvision_checkpoint_dir())
      {"resnet18", "imagenet", "", 69.758, "resnet18-f37072fd.pth"},
      {"resnet50", "imagenet", "", 76.130, "resnet50-0676ba61.pth"},
      {"mobilenet_v2", "imagenet", "", 71.878, "mobilenet_v2-b0353104.pth"},
      {"inception_v3", "imagenet", "", 77.294, "inception_v3_google-0cc3c7bd.pth"},
      {"shufflenet_v2_x0_5", "imagenet", "", 60.552, "shufflenetv2_x0.5-f707e7126e.pth"},
      {"shufflenet_v2_x1_0", "imagenet", "", 69.362, "shufflenetv2_x1-5666bf0f80.pth"},
  };
  return kArchs;
}

std::string torchvision_checkpoint_dir() {
  if (const char* v = std::getenv("DSGQ_TORCHVISION_MODELS"); v && *v) return v;
  if (const char* v = std::getenv("TORCH_HOME"); v && *v) return std::string(v) + "/hub/checkpoints";
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : ".") + "/.cache/torch/hub/checkpoints";
}

const ArchInfo& arch_info(const std::string& name, const std::string& where) {
  std::string known;
  for (const auto& a : architectures()) {
    if (a.name == name) return a;
    known += (known.empty() ? "" : ", ") + a.name;
  }
  throw InputError(where + " = " + quote_value(name) + " is not a known architecture; expected one of " + known);
}

std::unique_ptr<Network> build_network(const std::string& name, const std::string& where) {
  const ArchInfo& a = arch_info(name, where);
  if (a.name == "resnet8") return build_resnet8();
  if (a.name == "mobilenet_v1_0.25") return build_mobilenet_v1(a.name, 0.25, 224);
  if (a.name == "resnet18") return build_resnet_torchvision(a.name, false, {2, 2, 2, 2});
  if (a.name == "resnet50") return build_resnet_torchvision(a.name, true, {3, 4, 6, 3});
  if (a.name == "mobilenet_v2") return build_mobilenet_v2(a.name);
  if (a.name == "inception_v3") return build_inception_v3(a.name);
  if (a.name == "shufflenet_v2_x0_5") return build_shufflenet_v2(a.name, {4, 8, 4}, {24, 48, 96, 192, 1024});
  if (a.name == "shufflenet_v2_x1_0") return build_shufflenet_v2(a.name, {4, 8, 4}, {24, 116, 232, 464, 1024});
  return build_resnet_cifar(a.name, std::stoi(a.name.substr(6)));
}

}  // namespace dsgq::models
