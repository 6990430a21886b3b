// src/quant/recon_protocol.cpp: the protocol refuses a network without reconstruction units; a unit's objective
// starts at the FP weights (h(V0) = the fractional part), so with every activation dropped (drop 1) its loss is 0;
// the Fisher weights multiply each element's squared error, and for the classifier unit they are worked out by hand.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <memory>

#include "core/error.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "quant/adaround_protocol.hpp"
#include "quant/recon_protocol.hpp"

using namespace dsgq;

namespace {
constexpr double kSoftWeightTol = 1e-6;  // h(V0) reproduces W/scale's fractional part, clamped to [1e-4, 1 - 1e-4]
constexpr double kSumOrderTol = 1e-6;    // float sums of the same terms in another order

// resnet8 with seeded random weights (unit running variances), BN folded.
std::unique_ptr<models::Network> random_resnet8() {
  auto net = models::build_network("resnet8", "arch");
  torch::manual_seed(2);
  models::Checkpoint ck;
  for (const auto& [name, shape] : net->param_specs())
    ck.tensors.push_back(
        {name, name.find("running_var") != std::string::npos ? torch::ones(shape) : torch::randn(shape) * 0.1});
  net->load(ck);
  return net->folded();
}

// Grids with one spare level at each end, so that no weight is clipped and the soft weight at V0 is the weight.
std::vector<quant::WeightGrid> spare_grids(const models::Network& folded) {
  std::vector<quant::WeightGrid> grids;
  for (const auto& layer : folded.layers()) {
    const at::Tensor w = folded.param(layer.name + ".weight").reshape({layer.out, -1});
    quant::WeightGrid g;
    g.bits = 8;
    const at::Tensor mn = std::get<0>(w.min(1)), mx = std::get<0>(w.max(1));
    g.scale = (mx - mn) / 250.0;
    g.zero_point = (-mn / g.scale).round() + 2;
    grids.push_back(g);
  }
  return grids;
}
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
  const auto folded = random_resnet8();
  config::QuantConfig qc;
  qc.recon.drop = 1.0;  // every activation and the input in floating point
  const std::vector<quant::WeightGrid> grids = spare_grids(*folded);
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

TEST(ReconProtocol, FisherWeightsMultiplyEachSquaredError) {
  const auto folded = random_resnet8();
  config::QuantConfig qc;
  qc.recon.drop = 0.0;  // activations quantized, nothing mixed: a loss well above 0
  const std::vector<quant::WeightGrid> grids = spare_grids(*folded);
  std::vector<quant::ActGrid> acts;
  for (int b : quant::activation_bits(*folded, qc)) acts.push_back({0.05, 0, b});
  torch::manual_seed(3);
  const at::Tensor x = torch::randn({2, 16, 32, 32}), y = torch::randn({2, 16, 32, 32});
  quant::UnitObjective obj(*folded, 1, x, grids, acts, qc.recon, 2);
  const double plain = obj.loss(x, x, y, at::Tensor(), {}).item<double>();
  ASSERT_GT(plain, 0.1);
  // weight 1: the same terms, summed by the weighted path (float) instead of the plain one (float64 lanes)
  EXPECT_NEAR(obj.loss(x, x, y, at::Tensor(), {}, torch::ones_like(y)).item<double>(), plain, kSumOrderTol * plain);
  EXPECT_NEAR(obj.loss(x, x, y, at::Tensor(), {}, torch::full_like(y, 3.0)).item<double>(), 3 * plain,
              kSumOrderTol * plain);
  // Weight 1 on the first image and 0 on the second: the first image's own share of the loss.
  at::Tensor first_only = torch::zeros_like(y);
  first_only[0].fill_(1.0);
  const double row0 = obj.loss(x.slice(0, 0, 1), x.slice(0, 0, 1), y.slice(0, 0, 1), at::Tensor(), {}).item<double>();
  EXPECT_NEAR(obj.loss(x, x, y, at::Tensor(), {}, first_only).item<double>(), row0, kSumOrderTol * row0);
}

// The reconstruction loop hands the caches and the step's rows to the loss, which gathers them inside its fused
// passes: the same loss and exactly the same gradients as the rows gathered beforehand (drop 0.5, masks everywhere).
TEST(ReconProtocol, LossOnCachedRowsEqualsLossOnGatheredRows) {
  const auto folded = random_resnet8();
  config::QuantConfig qc;
  qc.recon.drop = 0.5;
  const std::vector<quant::WeightGrid> grids = spare_grids(*folded);
  std::vector<quant::ActGrid> acts;
  for (int b : quant::activation_bits(*folded, qc)) acts.push_back({0.05, 0, b});
  torch::manual_seed(4);
  const at::Tensor x_q = torch::randn({5, 16, 32, 32}), x_fp = torch::randn({5, 16, 32, 32});
  const at::Tensor y = torch::randn({5, 16, 32, 32});
  const at::Tensor rows = torch::tensor({3, 0, 3}, torch::kLong);
  const at::Tensor u_in = torch::rand({3, 16, 32, 32});
  const std::vector<at::Tensor> u_sites = {torch::rand({3, 16, 32, 32}), torch::rand({3, 16, 32, 32})};
  auto run = [&](bool cached) {
    quant::UnitObjective obj(*folded, 1, x_q, grids, acts, qc.recon, 3);
    const at::Tensor loss = cached ? obj.loss(x_q, x_fp, y, u_in, u_sites, at::Tensor(), rows)
                                   : obj.loss(x_q.index_select(0, rows), x_fp.index_select(0, rows),
                                              y.index_select(0, rows), u_in, u_sites);
    loss.backward();
    std::vector<at::Tensor> grads = {loss.detach()};
    for (const auto& v : obj.v()) grads.push_back(v.grad().clone());
    for (const auto& s : obj.steps()) grads.push_back(s.grad().clone());
    return grads;
  };
  const auto cached = run(true), gathered = run(false);
  ASSERT_EQ(cached.size(), gathered.size());
  ASSERT_EQ(cached.size(), 5u);  // the loss, two layers' V, two sites' steps
  for (size_t i = 0; i < cached.size(); ++i) EXPECT_TRUE(cached[i].equal(gathered[i])) << "entry " << i;
}

// For the classifier (the last unit) f is the identity, so dKL/dz = (softmax(z) - softmax(y_fp)) / batch.
TEST(ReconProtocol, FisherWeightsOfTheClassifierByHand) {
  const auto folded = random_resnet8();
  const int last = static_cast<int>(folded->units().size()) - 1;
  torch::NoGradGuard ng;
  torch::manual_seed(4);
  at::Tensor x = torch::randn({5, 3, 32, 32});
  for (int u = 0; u < last; ++u) x = folded->unit_forward(u, x);
  const at::Tensor x_fp = x + 0.3 * torch::randn_like(x);
  const at::Tensor y_fp = folded->unit_forward(last, x_fp), z = folded->unit_forward(last, x);
  const int64_t batch = 4;
  const models::ForwardHooks none;
  const at::Tensor w = quant::fisher_weights(*folded, last, x, y_fp, none, batch, /*chunk=*/2);
  const at::Tensor expected = (1.0 + (z.softmax(1) - y_fp.softmax(1)).abs() / double(batch)).square();
  ASSERT_EQ(w.sizes(), z.sizes());
  EXPECT_TRUE(torch::allclose(w, expected, 1e-6, 1e-7)) << (w - expected).abs().max().item<double>();
  EXPECT_GT((w - 1.0).abs().max().item<double>(), 1e-3) << "the weights differ from 1";
}
