// The "zeroq" protocol (the released DSG/ZeroQ quantizer) on the real resnet20, calibrated with ema on the first 40
// images of data_batch_1, against the reference figures measured with an independent Python implementation of
// docs/method.md section 11 (reference figures: docs/campaigns.md section 5): W8A8 91.85, W5A5 91.03, W4A4 88.75, each
// within 0.15.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "eval/evaluate.hpp"
#include "io/cifar10.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "quant/zeroq_protocol.hpp"
#include "test_util.hpp"

using namespace dsgq;

class ZeroqProtocol : public ::testing::TestWithParam<std::tuple<int, double>> {};

TEST_P(ZeroqProtocol, ReproducesReferenceOnFortyRealImages) {
  const auto& [bits, expected] = GetParam();
  at::set_num_threads(2);
  auto net = models::build_network("resnet20", "arch");
  net->load(models::read_checkpoint(test::data_path("models/cifar10_resnet20.pt")));
  const io::ImageSet calib = io::read_cifar10(test::data_path("cifar10/data_batch_1.bin"), 0, 40);
  config::QuantConfig spec;
  spec.w_bits = spec.a_bits = bits;
  spec.act_observer = config::Observer::ema;
  quant::ZeroqQuantizer q(*net, spec);
  q.calibrate(net->normalize(calib.images, net->device()));
  const io::ImageSet test = io::read_cifar10(test::data_path("cifar10/test_batch.bin"));
  const eval::Counts c = eval::count_correct(*net, test.images, test.labels, 1000, 10000, &q.hooks());
  std::printf("[ info     ] resnet20 zeroq protocol W%dA%d ema, 40 real images: top-1 %.2f (reference %.2f)\n", bits,
              bits, c.top1_pct(), expected);
  EXPECT_NEAR(c.top1_pct(), expected, 0.15) << "W" << bits << "A" << bits;
}

INSTANTIATE_TEST_SUITE_P(Resnet20, ZeroqProtocol,
                         ::testing::Values(std::make_tuple(8, 91.85), std::make_tuple(5, 91.03),
                                           std::make_tuple(4, 88.75)),
                         [](const auto& info) { return "W" + std::to_string(std::get<0>(info.param)); });
