#include <gtest/gtest.h>
#include <torch/torch.h>

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
      {"mobilenet_v2", 53, 52, 35, 3504872}};
  for (const auto& [arch, layers, bns, acts, params] : expect) {
    auto net = models::build_network(arch, "arch");
    EXPECT_EQ(net->layers().size(), layers) << arch;
    EXPECT_EQ(net->bns().size(), bns) << arch;
    EXPECT_EQ(net->acts().size(), acts) << arch;
    EXPECT_EQ(net->num_params(), params) << arch;
  }
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
