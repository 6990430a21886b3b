// src/models/network.cpp: the layer ops (TF "same" padding, non-square kernels), forward hooks, the strict
// checkpoint import and BN folding.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"

using namespace dsgq;

namespace {
constexpr double kConvTol = 1e-5;        // float32 conv vs torch::conv2d: other summation order, outputs O(5)
constexpr double kMinLogitScale = 1e-3;  // the He-initialised logits are O(1); below this the comparison is vacuous
constexpr double kFoldRelTol = 1e-4;     // folded vs unfolded float32 forward through ~100 layers, relative to max|y|
}  // namespace

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
      const auto ref =
          torch::conv2d(torch::constant_pad_nd(x, {total / 2, total - total / 2, total / 2, total - total / 2}),
                        ck.tensors[0].tensor, ck.tensors[1].tensor, stride);
      const auto y = net.forward(x);
      ASSERT_EQ(y.sizes(), ref.sizes()) << "size " << size << " stride " << stride;
      EXPECT_TRUE(!((y - ref).abs().max().item<double>() > kConvTol)) << "size " << size << " stride " << stride;
    }
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
  ck.tensors = {{"a.weight", torch::randn({4, 3, 1, 7})},
                {"b.weight", torch::randn({5, 4, 3, 1})},
                {"b.bias", torch::randn({5})}};
  net.load(ck);
  const auto x = torch::randn({2, 3, 9, 11});
  const std::vector<int64_t> s1{1, 1}, p1{0, 3}, s2{2, 2}, p2{1, 0};
  const auto ref = torch::conv2d(torch::conv2d(x, ck.tensors[0].tensor, {}, s1, p1), ck.tensors[1].tensor,
                                 ck.tensors[2].tensor, s2, p2);
  const auto y = net.forward(x);
  ASSERT_EQ(y.sizes(), ref.sizes());
  const double err = (y - ref).abs().max().item<double>();
  EXPECT_LT(err, kConvTol);
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
  torch::manual_seed(2);
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
  ck.tensors.erase(ck.tensors.begin());                                          // conv1.weight missing
  ck.tensors[0].tensor = torch::zeros({17});                                     // conv1.bias wrong shape
  ck.tensors.push_back({"extra.weight", torch::zeros({2, 2})});                  // unexpected
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

// A NaN or Inf anywhere in a checkpoint is refused at load, naming the file, the tensor, the count and the first
// offender (a NaN weight used to evaluate to chance with exit 0).
TEST(Network, LoadRefusesNonFiniteWeightsNamingTheTensor) {
  auto net = models::build_network("resnet8", "arch");
  models::Checkpoint ck;
  ck.path = "m.pt";
  for (const auto& [name, shape] : net->param_specs()) ck.tensors.push_back({name, torch::ones(shape)});
  net->load(ck);  // finite: accepted
  for (const float bad : {NAN, INFINITY}) {
    models::Checkpoint broken = ck;
    broken.tensors[3].tensor = torch::ones(broken.tensors[3].tensor.sizes());
    broken.tensors[3].tensor.reshape({-1})[2] = bad;
    broken.tensors[3].tensor.reshape({-1})[5] = bad;
    try {
      net->load(broken);
      FAIL() << "accepted " << bad;
    } catch (const InputError& e) {
      EXPECT_EQ(std::string(e.what()), "m.pt: tensor '" + broken.tensors[3].name +
                                           "' holds 2 non-finite value(s) (the first, at flat index 2, is " +
                                           (std::isnan(bad) ? "nan" : "inf") + "); expected finite weights");
    }
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
    EXPECT_GT(scale, kMinLogitScale) << arch;
    EXPECT_LT(err, kFoldRelTol * scale) << arch << " scale " << scale;
  }
}

// Every architecture declares its reconstruction units (stem first, classifier last), and running them one after the
// other visits every weight layer and activation site exactly once, in registration order, for a small input.
TEST(Network, EveryArchitectureDeclaresUnitsCoveringEveryLayer) {
  torch::NoGradGuard ng;
  for (const auto& info : models::architectures()) {
    auto net = models::build_network(info.name, "test");
    ASSERT_GE(net->units().size(), 3u) << info.name;
    EXPECT_EQ(net->units().back().name, "classifier") << info.name;
    std::vector<int> layers, sites;
    models::ForwardHooks hooks;
    hooks.layer_io = [&](int l, const at::Tensor&, const at::Tensor&) { layers.push_back(l); };
    hooks.activation = [&](int s, const at::Tensor& x) {
      sites.push_back(s);
      return x;
    };
    const int64_t side = info.dataset == "cifar10" ? 32 : (info.name == "inception_v3" ? 299 : 224);
    at::Tensor x = torch::zeros({1, 3, side, side});
    for (size_t u = 0; u < net->units().size(); ++u) x = net->unit_forward(static_cast<int>(u), x, &hooks);
    EXPECT_EQ(x.sizes(), (std::vector<int64_t>{1, net->input().num_classes})) << info.name;
    std::vector<int> want_layers(net->layers().size()), want_sites(net->acts().size());
    for (size_t i = 0; i < want_layers.size(); ++i) want_layers[i] = static_cast<int>(i);
    for (size_t i = 0; i < want_sites.size(); ++i) want_sites[i] = static_cast<int>(i);
    std::vector<int> sorted_layers = layers;
    std::sort(sorted_layers.begin(), sorted_layers.end());
    EXPECT_EQ(sorted_layers, want_layers) << info.name << ": every layer exactly once";
    EXPECT_EQ(sites, want_sites) << info.name << ": every activation site once, in order";
  }
}
