// src/models/inception_v3.cpp: the AuxLogits branch is required by the strict import but never used.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <string>

#include "core/error.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"

using namespace dsgq;

TEST(Network, InceptionRequiresAuxLogitsKeysButNeverUsesThem) {
  auto net = models::build_network("inception_v3", "arch");
  // torchvision's inception_v3 state_dict: 580 keys, 96 of them num_batches_tracked; AuxLogits.* are 12 of the rest.
  ASSERT_EQ(net->ignored_specs().size(), 12u);
  EXPECT_EQ(net->param_specs().size() + net->ignored_specs().size(), 484u);
  for (const auto& [name, shape] : net->ignored_specs()) EXPECT_EQ(name.rfind("AuxLogits.", 0), 0u) << name;
  for (const auto& [name, shape] : net->param_specs()) EXPECT_NE(name.rfind("AuxLogits.", 0), 0u) << name;
  for (const auto& l : net->layers()) EXPECT_NE(l.name.rfind("AuxLogits.", 0), 0u) << l.name;
  for (const auto& b : net->bns()) EXPECT_NE(b.name.rfind("AuxLogits.", 0), 0u) << b.name;

  models::Checkpoint ck;
  ck.path = "m.pt";
  torch::manual_seed(9);
  for (const auto& [name, shape] : net->param_specs())
    ck.tensors.push_back(
        {name, name.find("running_var") != std::string::npos ? torch::rand(shape) + 0.5 : torch::randn(shape) * 0.1});
  for (const auto& [name, shape] : net->ignored_specs())
    ck.tensors.push_back({name, torch::full(shape, std::numeric_limits<float>::quiet_NaN())});
  ck.tensors.push_back({"AuxLogits.conv0.bn.num_batches_tracked", torch::tensor(int64_t(5))});  // tolerated
  net->load(ck);
  // NaN AuxLogits weights would poison the logits if the forward read them (75x75: the smallest input it takes).
  const auto y = net->forward(torch::randn({1, 3, 75, 75}));
  EXPECT_EQ(y.sizes(), (std::vector<int64_t>{1, 1000}));
  EXPECT_TRUE(torch::isfinite(y).all().item<bool>());

  // A missing or wrong-shaped AuxLogits key is reported like any other; an unknown AuxLogits key is unexpected.
  auto find = [&](const std::string& name) {
    return std::find_if(ck.tensors.begin(), ck.tensors.end(), [&](const auto& nt) { return nt.name == name; });
  };
  ck.tensors.erase(find("AuxLogits.fc.bias"));
  find("AuxLogits.conv1.conv.weight")->tensor = torch::zeros({768, 128, 3, 3});
  ck.tensors.push_back({"AuxLogits.fc2.weight", torch::zeros({3})});
  try {
    net->load(ck);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "m.pt: does not fit inception_v3: 1 missing (AuxLogits.fc.bias); 1 unexpected (AuxLogits.fc2.weight "
              "[3]); 1 wrong (AuxLogits.conv1.conv.weight is [768,128,3,3], expected [768,128,5,5]); expected the "
              "inception_v3 state_dict (484 tensors)");
  }
}
