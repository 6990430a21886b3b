#include <torch/torch.h>

#include <cmath>

#include "models/architectures.hpp"

namespace dsgq::models {

std::unique_ptr<Network> build_mobilenet_v1(const std::string& arch, double alpha, int64_t size) {
  InputSpec in;
  in.dataset = "imagenet";
  in.height = in.width = size;
  in.num_classes = 1000;
  in.mean = {0.5, 0.5, 0.5};
  in.std = {0.5, 0.5, 0.5};  // x/127.5 - 1
  auto net = std::make_unique<Network>(arch, in);
  const double eps = 1e-3;
  auto ch = [&](int64_t c) { return static_cast<int64_t>(c * alpha); };

  const int64_t kStrides[13] = {1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1};
  const int64_t kChannels[13] = {64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024};
  struct Block {
    int dw, dw_bn, dw_relu, pw, pw_bn, pw_relu;
  };
  const int stem_conv = net->add_conv("conv1", 3, ch(32), 3, 2, 1, false, 1, true);
  const int stem_bn = net->add_bn("conv1_bn", ch(32), eps);
  const int stem_relu = net->add_act("conv1_relu", ActKind::relu6);
  std::vector<Block> blocks;
  int64_t c_in = ch(32);
  for (int i = 0; i < 13; ++i) {
    const std::string k = std::to_string(i + 1);
    const int64_t c_out = ch(kChannels[i]);
    Block b;
    b.dw = net->add_conv("conv_dw_" + k, c_in, c_in, 3, kStrides[i], 1, false, c_in, true);
    b.dw_bn = net->add_bn("conv_dw_" + k + "_bn", c_in, eps);
    b.dw_relu = net->add_act("conv_dw_" + k + "_relu", ActKind::relu6);
    b.pw = net->add_conv("conv_pw_" + k, c_in, c_out, 1, 1, 0, false);
    b.pw_bn = net->add_bn("conv_pw_" + k + "_bn", c_out, eps);
    b.pw_relu = net->add_act("conv_pw_" + k + "_relu", ActKind::relu6);
    blocks.push_back(b);
    c_in = c_out;
  }
  const int fc = net->add_linear("conv_preds", c_in, 1000, true);

  // Units: the stem, each depthwise-separable block (dw + pw), the classifier.
  net->add_unit("stem", [=](const Ops& op, const at::Tensor& x0) {
    return op.act(stem_relu, op.bn(stem_bn, op.conv(stem_conv, x0)));
  });
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block b = blocks[i];
    net->add_unit("block" + std::to_string(i + 1), [=](const Ops& op, const at::Tensor& x) {
      const at::Tensor y = op.act(b.dw_relu, op.bn(b.dw_bn, op.conv(b.dw, x)));
      return op.act(b.pw_relu, op.bn(b.pw_bn, op.conv(b.pw, y)));
    });
  }
  // Global average pool; Keras dropout is an inference no-op.
  net->add_unit("classifier", [=](const Ops& op, const at::Tensor& x) { return op.linear(fc, x.mean({2, 3})); });
  return net;
}

}  // namespace dsgq::models
