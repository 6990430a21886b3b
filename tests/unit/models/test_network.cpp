#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>

#include "core/error.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"

using namespace dsgq;

TEST(Network, TfSamePaddingMatchesExplicitPad) {
  for (int64_t size : {7, 8, 13, 32}) {
    for (int64_t stride : {1, 2}) {
      models::InputSpec in;
      models::Network net("tiny", in);
      const int c = net.add_conv("c", 3, 5, 3, stride, 1, true, 1, true);
      net.set_forward([c](const models::Ops& op, const at::Tensor& x) { return op.conv(c, x); });
      torch::manual_seed(size * 10 + stride);
      models::Checkpoint ck;
      ck.tensors = {{"c.weight", torch::randn({5, 3, 3, 3})}, {"c.bias", torch::randn({5})}};
      net.load(ck);
      const auto x = torch::randn({2, 3, size, size});
      const int64_t out = (size + stride - 1) / stride;
      const int64_t total = std::max<int64_t>((out - 1) * stride + 3 - size, 0);
      const auto ref = torch::conv2d(torch::constant_pad_nd(x, {total / 2, total - total / 2, total / 2, total - total / 2}),
                                     ck.tensors[0].tensor, ck.tensors[1].tensor, stride);
      const auto y = net.forward(x);
      ASSERT_EQ(y.sizes(), ref.sizes()) << "size " << size << " stride " << stride;
      EXPECT_TRUE(!((y - ref).abs().max().item<double>() > 1e-5)) << "size " << size << " stride " << stride;
    }
  }
}

TEST(Network, RegistryShapesAndParameterCounts) {
  // Parameter counts from ../shared/data/models/*.json (num_params).
  const std::vector<std::tuple<std::string, size_t, size_t, size_t, int64_t>> expect = {
      {"resnet20", 20, 19, 19, 269722}, {"resnet56", 56, 55, 55, 853018},
      {"resnet8", 10, 7, 7, 78186},     {"mobilenet_v1_0.25", 28, 27, 27, 470072},
      // torchvision 0.14: sum(p.numel() for p in model.parameters())
      {"resnet18", 21, 20, 17, 11689512}, {"resnet50", 54, 53, 49, 25557032},
      {"mobilenet_v2", 53, 52, 35, 3504872},
      // inception_v3(aux_logits=True): 27161264 in torchvision, of which AuxLogits.* (unused in eval mode, not dsgq
      // parameters) hold 3326696; 94 BasicConv2d + fc in eval forward, 94 of the 96 BatchNorm2d (2 are in AuxLogits).
      {"inception_v3", 95, 94, 94, 27161264 - 3326696},
      {"shufflenet_v2_x0_5", 57, 56, 37, 1366792}, {"shufflenet_v2_x1_0", 57, 56, 37, 2278604}};
  for (const auto& [arch, layers, bns, acts, params] : expect) {
    auto net = models::build_network(arch, "arch");
    EXPECT_EQ(net->layers().size(), layers) << arch;
    EXPECT_EQ(net->bns().size(), bns) << arch;
    EXPECT_EQ(net->acts().size(), acts) << arch;
    EXPECT_EQ(net->num_params(), params) << arch;
  }
}

TEST(Network, NonSquareKernelMatchesConv2d) {
  models::InputSpec in;
  models::Network net("tiny", in);
  const int a = net.add_conv_hw("a", 3, 4, 1, 7, 1, 0, 3, false);
  const int b = net.add_conv_hw("b", 4, 5, 3, 1, 2, 1, 0, true);
  net.set_forward([a, b](const models::Ops& op, const at::Tensor& x) { return op.conv(b, op.conv(a, x)); });
  torch::manual_seed(3);
  models::Checkpoint ck;
  ck.tensors = {{"a.weight", torch::randn({4, 3, 1, 7})}, {"b.weight", torch::randn({5, 4, 3, 1})},
                {"b.bias", torch::randn({5})}};
  net.load(ck);
  const auto x = torch::randn({2, 3, 9, 11});
  const std::vector<int64_t> s1{1, 1}, p1{0, 3}, s2{2, 2}, p2{1, 0};
  const auto ref = torch::conv2d(torch::conv2d(x, ck.tensors[0].tensor, {}, s1, p1), ck.tensors[1].tensor,
                                 ck.tensors[2].tensor, s2, p2);
  const auto y = net.forward(x);
  ASSERT_EQ(y.sizes(), ref.sizes());
  const double err = (y - ref).abs().max().item<double>();
  EXPECT_LT(err, 1e-5);
}

TEST(Network, HooksSeeEveryBnInOrderAndCanSubstituteWeights) {
  auto net = models::build_network("resnet20", "arch");
  std::vector<int> order;
  models::ForwardHooks hooks;
  hooks.bn_input = [&](int i, const at::Tensor& x) {
    order.push_back(i);
    EXPECT_EQ(x.size(1), net->bns()[i].channels);
  };
  int acts = 0;
  hooks.activation = [&](int, const at::Tensor& x) {
    ++acts;
    return x;
  };
  const auto x = torch::randn({3, 3, 32, 32});
  net->forward(x, &hooks);
  ASSERT_EQ(order.size(), net->bns().size());
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], static_cast<int>(i));
  EXPECT_EQ(acts, 19);
  // Substituting the classifier's weight by zeros leaves only its bias (zero here) in the logits.
  models::ForwardHooks zero_fc;
  const int last = static_cast<int>(net->layers().size()) - 1;
  zero_fc.weight = [&](int layer, const at::Tensor& w) { return layer == last ? torch::zeros_like(w) : w; };
  EXPECT_EQ(net->forward(x, &zero_fc).abs().max().item<float>(), 0.0f);
}

TEST(Network, StrictLoadListsEveryOffenderTogether) {
  auto net = models::build_network("resnet8", "arch");
  models::Checkpoint ck;
  ck.path = "m.pt";
  for (const auto& [name, shape] : net->param_specs()) ck.tensors.push_back({name, torch::zeros(shape)});
  ck.tensors.erase(ck.tensors.begin());                                  // conv1.weight missing
  ck.tensors[0].tensor = torch::zeros({17});                             // conv1.bias wrong shape
  ck.tensors.push_back({"extra.weight", torch::zeros({2, 2})});          // unexpected
  ck.tensors.push_back({"bn1.num_batches_tracked", torch::tensor(int64_t(5))});  // tolerated
  try {
    net->load(ck);
    FAIL();
  } catch (const InputError& e) {
    EXPECT_EQ(std::string(e.what()),
              "m.pt: does not fit resnet8: 1 missing (conv1.weight); 1 unexpected (extra.weight [2,2]); 1 wrong "
              "(conv1.bias is [17], expected [16]); expected the resnet8 state_dict (48 tensors)");
  }
}

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
    ck.tensors.push_back({name, name.find("running_var") != std::string::npos ? torch::rand(shape) + 0.5
                                                                             : torch::randn(shape) * 0.1});
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

TEST(Network, FoldedInceptionAndShuffleNetMatch) {
  // Every BN folds into the conv right before it (ShuffleNet's depthwise convs and Inception's 1x7 / 7x1 ones too).
  for (const auto& [arch, size] : {std::pair<std::string, int64_t>{"inception_v3", 75}, {"shufflenet_v2_x0_5", 64}}) {
    auto net = models::build_network(arch, "arch");
    models::Checkpoint ck;
    torch::manual_seed(4);
    for (const auto* specs : {&net->param_specs(), &net->ignored_specs()})
      for (const auto& [name, shape] : *specs) {
        int64_t fan_in = 1;  // weights drawn with He's std sqrt(2 / fan_in), so the logits stay O(1)
        for (size_t k = 1; k < shape.size(); ++k) fan_in *= shape[k];
        ck.tensors.push_back({name, name.find("running_var") != std::string::npos ? torch::rand(shape) + 0.5
                                    : shape.size() > 1 ? torch::randn(shape) * std::sqrt(2.0 / fan_in)
                                                       : torch::randn(shape) * 0.1});
      }
    net->load(ck);
    const auto x = torch::randn({2, 3, size, size});
    const auto ref = net->forward(x), got = net->folded()->forward(x);
    const double err = (got - ref).abs().max().item<double>(), scale = ref.abs().max().item<double>();
    EXPECT_GT(scale, 1e-3) << arch;
    EXPECT_LT(err, 1e-4 * scale) << arch << " scale " << scale;
  }
}
