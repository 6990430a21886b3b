// FP32 accuracy of the real models on the full CIFAR-10 test set must equal the published figures exactly.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "eval/evaluate.hpp"
#include "io/cifar10.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "test_util.hpp"

using namespace dsgq;

namespace {
const io::ImageSet& test_set() {
  static const io::ImageSet set = io::read_cifar10(test::data_path("cifar10/test_batch.bin"));
  return set;
}
}  // namespace

class PublishedAccuracy : public ::testing::TestWithParam<std::tuple<std::string, int64_t>> {};

TEST_P(PublishedAccuracy, Fp32Top1EqualsPublished) {
  const auto& [arch, correct] = GetParam();
  at::set_num_threads(2);
  auto net = models::build_network(arch, "arch");
  net->load(models::read_checkpoint(test::data_path("models/" + models::arch_info(arch, "arch").weights_file)));
  const auto& set = test_set();
  const eval::Counts c = eval::count_correct(*net, set.images, set.labels, 1000, set.images.size(0));
  EXPECT_EQ(c.n, 10000);
  EXPECT_EQ(c.top1, correct) << arch << " top-1 " << c.top1_pct();
}

INSTANTIATE_TEST_SUITE_P(Cifar10, PublishedAccuracy,
                         ::testing::Values(std::make_tuple("resnet20", 9173), std::make_tuple("resnet32", 9263),
                                           std::make_tuple("resnet44", 9310), std::make_tuple("resnet56", 9339),
                                           std::make_tuple("resnet8", 8719)),
                         [](const auto& info) { return std::get<0>(info.param); });
