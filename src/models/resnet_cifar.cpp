#include <torch/torch.h>

#include "core/error.hpp"
#include "models/architectures.hpp"

namespace dsgq::models {

std::unique_ptr<Network> build_resnet_cifar(const std::string& arch, int depth) {
  DSGQ_CHECK((depth - 2) % 6 == 0, "CIFAR ResNet depth must be 6n+2");
  const int n = (depth - 2) / 6;
  InputSpec in;
  in.dataset = "cifar10";
  in.mean = {0.485, 0.456, 0.406};
  in.std = {0.229, 0.224, 0.225};
  auto net = std::make_unique<Network>(arch, in);
  const double eps = 1e-5;

  struct Block {
    int conv1, bn1, relu1, conv2, bn2, relu2;
    bool shortcut_a;
    int64_t pad_channels;
  };
  const int stem_conv = net->add_conv("conv1", 3, 16, 3, 1, 1, false);
  const int stem_bn = net->add_bn("bn1", 16, eps);
  const int stem_relu = net->add_act("relu", ActKind::relu);
  std::vector<Block> blocks;
  std::vector<std::string> block_names;
  int64_t in_planes = 16;
  for (int stage = 1; stage <= 3; ++stage) {
    const int64_t planes = 16 << (stage - 1);
    for (int i = 0; i < n; ++i) {
      const int64_t stride = (stage > 1 && i == 0) ? 2 : 1;
      const std::string p = "layer" + std::to_string(stage) + "." + std::to_string(i) + ".";
      Block b;
      b.conv1 = net->add_conv(p + "conv1", in_planes, planes, 3, stride, 1, false);
      b.bn1 = net->add_bn(p + "bn1", planes, eps);
      b.relu1 = net->add_act(p + "relu1", ActKind::relu);
      b.conv2 = net->add_conv(p + "conv2", planes, planes, 3, 1, 1, false);
      b.bn2 = net->add_bn(p + "bn2", planes, eps);
      b.relu2 = net->add_act(p + "relu2", ActKind::relu);
      b.shortcut_a = stride != 1 || in_planes != planes;
      b.pad_channels = planes / 4;
      blocks.push_back(b);
      block_names.push_back(p.substr(0, p.size() - 1));
      in_planes = planes;
    }
  }
  const int fc = net->add_linear("linear", 64, 10, true);

  // Units: the stem, each basic block with its shortcut and final ReLU, the classifier (pooling + linear).
  net->add_unit("stem", [=](const Ops& op, const at::Tensor& x0) {
    return op.act(stem_relu, op.bn(stem_bn, op.conv(stem_conv, x0)));
  });
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block b = blocks[i];
    net->add_unit(block_names[i], [=](const Ops& op, const at::Tensor& x) {
      at::Tensor out = op.act(b.relu1, op.bn(b.bn1, op.conv(b.conv1, x)));
      out = op.bn(b.bn2, op.conv(b.conv2, out));
      // Option A: subsample by 2 and zero-pad planes/4 channels on each side.
      const at::Tensor sc = b.shortcut_a ? at::constant_pad_nd(x.slice(2, 0, x.size(2), 2).slice(3, 0, x.size(3), 2),
                                                               {0, 0, 0, 0, b.pad_channels, b.pad_channels}, 0.0)
                                         : x;
      return op.act(b.relu2, out + sc);
    });
  }
  net->add_unit("classifier", [=](const Ops& op, const at::Tensor& x) { return op.linear(fc, x.mean({2, 3})); });
  return net;
}

}  // namespace dsgq::models
