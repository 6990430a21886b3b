// Evaluation split over ranks gives the same counts as one rank: the published 9173/10000 for resnet20.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "eval/evaluate.hpp"
#include "io/cifar10.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "mpi/mpi_world.hpp"
#include "test_util.hpp"

using namespace dsgq;

TEST(EvalMpi, Resnet20CountsIndependentOfWorldSize) {
  const auto& w = test::world();
  at::set_num_threads(1);
  auto net = models::build_network("resnet20", "arch");
  net->load(models::read_checkpoint(test::data_path("models/cifar10_resnet20.pt")));
  const std::string data = test::data_path("cifar10/test_batch.bin");
  const int64_t n = io::cifar10_count(data);
  const auto share = mpi::share_of(n, w.rank(), w.size());
  const auto set = io::read_cifar10(data, share.begin, share.size());
  const auto global = eval::allreduce(eval::count_correct(*net, set.images, set.labels, 333, n), w);
  EXPECT_EQ(global.n, 10000);
  EXPECT_EQ(global.top1, 9173) << "world " << w.size();
  EXPECT_EQ(global.top5, 9966) << "world " << w.size();
}
