// The qdrop protocol split over ranks against the same point computed by one rank alone (Comm::self in the same
// job): the first unit's error and the learned steps agree to float summation order, the rounding decisions almost
// all (hard rounding amplifies summation-order differences for V near 0, more so in later units).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>

#include "io/cifar10.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "mpi/mpi_world.hpp"
#include "quant/recon_protocol.hpp"
#include "test_util.hpp"

using namespace dsgq;

namespace {
constexpr double kFirstUnitRelTol = 1e-4;  // the stem's error: only gradient summation order differs
constexpr double kStepRelTol = 1e-2;       // learned steps after every unit (differences accumulate over units)
constexpr double kMaxFlippedFraction = 0.05;
}  // namespace

TEST(ReconMpi, CooperativePointMatchesOneRank) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = models::build_network("resnet20", "arch");
  net->load(models::read_checkpoint(test::data_path("models/cifar10_resnet20.pt")));
  const at::Tensor calib =
      net->normalize(io::read_cifar10(test::data_path("cifar10/data_batch_1.bin"), 0, 96).images, at::kCPU);
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
  int64_t differ = 0, total = 0;
  for (size_t l = 0; l < coop.weights().size(); ++l) {
    differ += coop.weights()[l].ne(alone.weights()[l]).sum().item<int64_t>();
    total += coop.weights()[l].numel();
  }
  if (w.is_root())
    std::printf(
        "world %d: stem error %.9g vs %.9g alone, worst step difference %.2e, rounding differs for %lld of %lld "
        "weights\n",
        w.size(), e_coop, e_alone, worst_step, static_cast<long long>(differ), static_cast<long long>(total));
  EXPECT_LE(double(differ) / double(total), kMaxFlippedFraction) << differ << " of " << total << ", world " << w.size();
  if (w.size() == 1) EXPECT_EQ(differ, 0) << "one rank: the same computation";
}
