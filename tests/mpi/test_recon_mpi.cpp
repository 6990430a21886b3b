// The adaround and qdrop protocols split over ranks against the same point computed by one rank alone (Comm::self
// in the same job): the first layer's/unit's error and the activation ranges or learned steps agree to float
// summation order, the rounding decisions almost all (hard rounding amplifies summation-order differences for V near
// 0, more so in later layers).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "io/cifar10.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "mpi/mpi_world.hpp"
#include "quant/adaround_protocol.hpp"
#include "quant/recon_protocol.hpp"
#include "test_util.hpp"

using namespace dsgq;

namespace {
constexpr double kFirstUnitRelTol = 1e-4;  // the stem's error: only gradient summation order differs
constexpr double kStepRelTol = 1e-2;       // learned steps after every unit (differences accumulate over units)
constexpr double kMaxFlippedFraction = 0.05;

std::unique_ptr<models::Network> resnet20() {
  auto net = models::build_network("resnet20", "arch");
  net->load(models::read_checkpoint(test::data_path("models/cifar10_resnet20.pt")));
  return net;
}

// The first 96 training images, normalized: the calibration set of both cases.
at::Tensor calibration_images(const models::Network& net) {
  return net.normalize(io::read_cifar10(test::data_path("cifar10/data_batch_1.bin"), 0, 96).images, at::kCPU);
}

// Prints `summary` and the rounding comparison on rank 0, and checks that at most kMaxFlippedFraction of the weights
// round differently from one rank alone, and none on one rank (the same computation).
void expect_rounding_agrees(const std::string& summary, const std::vector<at::Tensor>& coop,
                            const std::vector<at::Tensor>& alone) {
  const auto& w = test::world();
  int64_t differ = 0, total = 0;
  for (size_t l = 0; l < coop.size(); ++l) {
    differ += coop[l].ne(alone[l]).sum().item<int64_t>();
    total += coop[l].numel();
  }
  const double frac = double(differ) / double(total);
  if (w.is_root())
    std::printf("%s, rounding differs for %lld weights (%.3f%%)\n", summary.c_str(), static_cast<long long>(differ),
                100 * frac);
  EXPECT_LE(frac, kMaxFlippedFraction) << differ << " weights, world " << w.size();
  if (w.size() == 1) EXPECT_EQ(differ, 0) << "one rank: the same computation";
}
}  // namespace

// gram: quant.adaround.gram (the second-moment sums all-reduced once per layer instead of each step's gradient).
static void adaround_point_matches_one_rank(bool gram) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  const at::Tensor calib = calibration_images(*net);
  config::QuantConfig qc;
  qc.act_observer = config::Observer::mse;
  qc.adaround.iters = 40;
  qc.adaround.batch = 12;
  qc.adaround.gram = gram;
  quant::AdaRoundRun run;
  run.seed = 5;
  quant::AdaRoundQuantizer coop(*net, qc, run), alone(*net, qc, run);
  coop.run(calib, w);
  alone.run(calib, mpi::Comm::self());
  const double e_coop = coop.reports()[0].mse_adaround, e_alone = alone.reports()[0].mse_adaround;
  EXPECT_NEAR(e_coop, e_alone, kFirstUnitRelTol * e_alone) << "world " << w.size();
  // The caches are sharded: this rank holds its share of the 96 images' rows, not a copy of all of them.
  const int64_t per_image = alone.reports()[0].cache_bytes / calib.size(0);
  EXPECT_EQ(coop.reports()[0].cache_bytes, per_image * mpi::share_of(calib.size(0), w.rank(), w.size()).size());
  double worst_range = 0;
  for (size_t k = 0; k < coop.acts().ranges().size(); ++k) {
    const quant::Range a = coop.acts().ranges()[k], b = alone.acts().ranges()[k];
    EXPECT_NEAR(a.b, b.b, kStepRelTol * b.b) << "site " << k << ", world " << w.size();
    EXPECT_NEAR(a.a, b.a, kStepRelTol * std::max(1e-6, std::abs(b.a))) << "site " << k;
    worst_range = std::max(worst_range, std::abs(a.b - b.b) / b.b);
  }
  char summary[160];
  std::snprintf(summary, sizeof summary,
                "adaround%s world %d: first layer error %.9g vs %.9g alone, worst range difference %.2e",
                gram ? " (gram)" : "", w.size(), e_coop, e_alone, worst_range);
  expect_rounding_agrees(summary, coop.weights(), alone.weights());
}

TEST(AdaRoundMpi, CooperativePointMatchesOneRank) { adaround_point_matches_one_rank(false); }

TEST(AdaRoundMpi, CooperativeGramPointMatchesOneRank) { adaround_point_matches_one_rank(true); }

TEST(ReconMpi, CooperativePointMatchesOneRank) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = resnet20();
  const at::Tensor calib = calibration_images(*net);
  config::QuantConfig qc;
  qc.protocol = config::Protocol::qdrop;
  qc.act_observer = config::Observer::mse;
  qc.adaround.iters = 30;
  qc.adaround.batch = 12;
  qc.recon.observer_images = 32;
  quant::ReconQuantizer coop(*net, qc, 7), alone(*net, qc, 7);
  coop.run(calib, w);
  alone.run(calib, mpi::Comm::self());
  const double e_coop = coop.reports()[0].mse_adaround, e_alone = alone.reports()[0].mse_adaround;
  EXPECT_NEAR(e_coop, e_alone, kFirstUnitRelTol * e_alone) << "world " << w.size();
  double worst_step = 0;
  for (size_t k = 0; k < coop.act_grids().size(); ++k) {
    const double a = coop.act_grids()[k].scale, b = alone.act_grids()[k].scale;
    EXPECT_NEAR(a, b, kStepRelTol * b) << "site " << k << ", world " << w.size();
    worst_step = std::max(worst_step, std::abs(a - b) / b);
  }
  char summary[160];
  std::snprintf(summary, sizeof summary, "qdrop world %d: stem error %.9g vs %.9g alone, worst step difference %.2e",
                w.size(), e_coop, e_alone, worst_step);
  expect_rounding_agrees(summary, coop.weights(), alone.weights());
}
