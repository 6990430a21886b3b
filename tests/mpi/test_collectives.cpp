#include <gtest/gtest.h>
#include <torch/torch.h>

#include "mpi/mpi_world.hpp"

using namespace dsgq;

TEST(Collectives, SumsExtremaGatherBroadcast) {
  const auto& w = test::world();
  const int r = w.rank(), n = w.size();
  std::vector<int64_t> v = {1, r, int64_t(1) << 40};
  w.allreduce_sum(v);
  EXPECT_EQ(v[0], n);
  EXPECT_EQ(v[1], n * (n - 1) / 2);
  EXPECT_EQ(v[2], n * (int64_t(1) << 40));
  EXPECT_EQ(w.allreduce_max(int64_t(r)), n - 1);
  EXPECT_EQ(w.allreduce_min(double(r) + 0.5), 0.5);
  const auto all = w.allgather(std::string(r + 1, 'a' + r));  // uneven lengths
  ASSERT_EQ(static_cast<int>(all.size()), n);
  for (int k = 0; k < n; ++k) EXPECT_EQ(all[k], std::string(k + 1, 'a' + k));
  EXPECT_EQ(w.broadcast(r == 0 ? "root says hi" : "ignored"), "root says hi");
}

TEST(Collectives, TensorAllreduceMatchesSerialSum) {
  const auto& w = test::world();
  for (auto dtype : {torch::kFloat, torch::kDouble, torch::kLong}) {
    // Each rank's tensor is seeded by its rank; every rank recomputes the serial sum.
    auto make = [&](int rank) { return torch::arange(13 * 7, torch::kDouble).view({13, 7}).mul(rank + 1).to(dtype); };
    at::Tensor t = make(w.rank());
    w.allreduce_sum(t);
    at::Tensor ref = torch::zeros({13, 7}, dtype);
    for (int k = 0; k < w.size(); ++k) ref += make(k);
    EXPECT_TRUE(torch::equal(t, ref)) << "dtype " << dtype;
  }
}

TEST(Collectives, SharesOfUnevenSplitCoverTheSetOnce) {
  const auto& w = test::world();
  const auto s = mpi::share_of(10, w.rank(), w.size());
  std::vector<int64_t> hit(10, 0);
  for (int64_t i = s.begin; i < s.end; ++i) hit[i] += 1;
  w.allreduce_sum(hit);
  for (int64_t i = 0; i < 10; ++i) EXPECT_EQ(hit[i], 1) << "image " << i;
}
