// src/quant/recon_protocol.cpp: the protocol refuses a network without reconstruction units; a unit's objective
// starts at the FP weights (h(V0) = the fractional part), so with every activation dropped (drop 1) its loss is 0.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "quant/adaround_protocol.hpp"
#include "quant/recon_protocol.hpp"

using namespace dsgq;

namespace {
constexpr double kSoftWeightTol = 1e-6;  // h(V0) reproduces W/scale's fractional part, clamped to [1e-4, 1 - 1e-4]
}  // namespace

TEST(ReconProtocol, RefusesANetworkWithoutUnits) {
  models::InputSpec in;
  models::Network net("no_units", in);
  const int c = net.add_conv("c", 3, 4, 3, 1, 1, true);
  net.set_forward([c](const models::Ops& op, const at::Tensor& x) { return op.conv(c, x); });
  models::Checkpoint ck;
  ck.tensors = {{"c.weight", torch::zeros({4, 3, 3, 3})}, {"c.bias", torch::zeros({4})}};
  net.load(ck);
  config::QuantConfig qc;
  qc.protocol = config::Protocol::qdrop;
  try {
    quant::ReconQuantizer q(net, qc, 0);
    FAIL() << "expected InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("no_units declares no reconstruction units"), std::string::npos) << e.what();
  }
}

TEST(ReconProtocol, ObjectiveStartsAtTheFloatWeights) {
  auto net = models::build_network("resnet8", "arch");
  torch::manual_seed(2);
  models::Checkpoint ck;
  for (const auto& [name, shape] : net->param_specs())
    ck.tensors.push_back(
        {name, name.find("running_var") != std::string::npos ? torch::ones(shape) : torch::randn(shape) * 0.1});
  net->load(ck);
  const auto folded = net->folded();
  config::QuantConfig qc;
  qc.recon.drop = 1.0;  // every activation and the input in floating point
  // Grids with one spare level at each end, so that no weight is clipped and the soft weight at V0 is the weight.
  std::vector<quant::WeightGrid> grids;
  for (const auto& layer : folded->layers()) {
    const at::Tensor w = folded->param(layer.name + ".weight").reshape({layer.out, -1});
    quant::WeightGrid g;
    g.bits = 8;
    const at::Tensor mn = std::get<0>(w.min(1)), mx = std::get<0>(w.max(1));
    g.scale = (mx - mn) / 250.0;
    g.zero_point = (-mn / g.scale).round() + 2;
    grids.push_back(g);
  }
  std::vector<quant::ActGrid> acts;
  for (int b : quant::activation_bits(*folded, qc)) acts.push_back({0.1, 0, b});
  const at::Tensor x = torch::randn({2, 16, 32, 32});
  const int unit = 1;  // layer1: conv1, conv2 (no shortcut conv)
  quant::UnitObjective obj(*folded, unit, x, grids, acts, qc.recon, 2);
  ASSERT_EQ(obj.layers().size(), 2u);
  ASSERT_EQ(obj.sites().size(), 2u);
  const at::Tensor y = folded->unit_forward(unit, x);
  const double loss = obj.loss(x, x, y, at::Tensor(), {}).item<double>();
  EXPECT_LT(loss, kSoftWeightTol * y.square().sum().item<double>() / 2.0) << "soft weights = FP weights at V0";
}
