// src/models/registry.cpp: every registered architecture builds with the reference layer, BN, activation and
// parameter counts.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <tuple>
#include <vector>

#include "models/registry.hpp"

using namespace dsgq;

TEST(Network, RegistryShapesAndParameterCounts) {
  // Parameter counts from the data folder's models/*.json (num_params).
  const std::vector<std::tuple<std::string, size_t, size_t, size_t, int64_t>> expect = {
      {"resnet20", 20, 19, 19, 269722},
      {"resnet56", 56, 55, 55, 853018},
      {"resnet8", 10, 7, 7, 78186},
      {"mobilenet_v1_0.25", 28, 27, 27, 470072},
      // torchvision 0.14: sum(p.numel() for p in model.parameters())
      {"resnet18", 21, 20, 17, 11689512},
      {"resnet50", 54, 53, 49, 25557032},
      {"mobilenet_v2", 53, 52, 35, 3504872},
      // inception_v3(aux_logits=True): 27161264 in torchvision, of which AuxLogits.* (unused in eval mode, not dsgq
      // parameters) hold 3326696; 94 BasicConv2d + fc in eval forward, 94 of the 96 BatchNorm2d (2 are in AuxLogits).
      {"inception_v3", 95, 94, 94, 27161264 - 3326696},
      {"shufflenet_v2_x0_5", 57, 56, 37, 1366792},
      {"shufflenet_v2_x1_0", 57, 56, 37, 2278604}};
  for (const auto& [arch, layers, bns, acts, params] : expect) {
    auto net = models::build_network(arch, "arch");
    EXPECT_EQ(net->layers().size(), layers) << arch;
    EXPECT_EQ(net->bns().size(), bns) << arch;
    EXPECT_EQ(net->acts().size(), acts) << arch;
    EXPECT_EQ(net->num_params(), params) << arch;
  }
}
