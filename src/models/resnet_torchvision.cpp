#include <torch/torch.h>

#include "core/error.hpp"
#include "models/architectures.hpp"

namespace dsgq::models {

InputSpec imagenet_input(int64_t size) {
  InputSpec in;
  in.dataset = "imagenet";
  in.height = in.width = size;
  in.num_classes = 1000;
  in.mean = {0.485, 0.456, 0.406};
  in.std = {0.229, 0.224, 0.225};
  return in;
}

// torchvision.models.resnet (v1.5: the stride sits on the 3x3 conv of a bottleneck) with its state_dict keys, so a
// torchvision .pth loads unchanged. Modules are registered in forward order (a block's downsample after its last
// conv, as torchvision's forward calls it), so layers, BN taps and activation sites follow the computation.
std::unique_ptr<Network> build_resnet_torchvision(const std::string& arch, bool bottleneck,
                                                  const std::vector<int>& blocks_per_stage) {
  auto net = std::make_unique<Network>(arch, imagenet_input(224));
  const double eps = 1e-5;
  const int64_t expansion = bottleneck ? 4 : 1;

  struct Block {
    std::vector<int> convs, bns, relus;  // 2 (basic) or 3 (bottleneck) of each; the last relu follows the add
    int down_conv = -1, down_bn = -1;
  };
  const int stem_conv = net->add_conv("conv1", 3, 64, 7, 2, 3, false);
  const int stem_bn = net->add_bn("bn1", 64, eps);
  const int stem_relu = net->add_act("relu", ActKind::relu);
  std::vector<Block> blocks;
  std::vector<std::string> block_names;
  int64_t in_planes = 64;
  for (size_t stage = 0; stage < blocks_per_stage.size(); ++stage) {
    const int64_t planes = int64_t(64) << stage;
    for (int i = 0; i < blocks_per_stage[stage]; ++i) {
      const int64_t stride = (stage > 0 && i == 0) ? 2 : 1;
      const std::string p = "layer" + std::to_string(stage + 1) + "." + std::to_string(i) + ".";
      Block b;
      if (bottleneck) {
        b.convs.push_back(net->add_conv(p + "conv1", in_planes, planes, 1, 1, 0, false));
        b.bns.push_back(net->add_bn(p + "bn1", planes, eps));
        b.relus.push_back(net->add_act(p + "relu1", ActKind::relu));
        b.convs.push_back(net->add_conv(p + "conv2", planes, planes, 3, stride, 1, false));
        b.bns.push_back(net->add_bn(p + "bn2", planes, eps));
        b.relus.push_back(net->add_act(p + "relu2", ActKind::relu));
        b.convs.push_back(net->add_conv(p + "conv3", planes, planes * expansion, 1, 1, 0, false));
        b.bns.push_back(net->add_bn(p + "bn3", planes * expansion, eps));
      } else {
        b.convs.push_back(net->add_conv(p + "conv1", in_planes, planes, 3, stride, 1, false));
        b.bns.push_back(net->add_bn(p + "bn1", planes, eps));
        b.relus.push_back(net->add_act(p + "relu1", ActKind::relu));
        b.convs.push_back(net->add_conv(p + "conv2", planes, planes, 3, 1, 1, false));
        b.bns.push_back(net->add_bn(p + "bn2", planes, eps));
      }
      if (stride != 1 || in_planes != planes * expansion) {
        b.down_conv = net->add_conv(p + "downsample.0", in_planes, planes * expansion, 1, stride, 0, false);
        b.down_bn = net->add_bn(p + "downsample.1", planes * expansion, eps);
      }
      b.relus.push_back(net->add_act(p + "relu" + std::to_string(b.convs.size()), ActKind::relu));
      blocks.push_back(b);
      block_names.push_back(p.substr(0, p.size() - 1));
      in_planes = planes * expansion;
    }
  }
  const int fc = net->add_linear("fc", in_planes, 1000, true);

  // Units: the stem (with its max pool), each basic/bottleneck block with its downsample and final ReLU, the
  // classifier.
  net->add_unit("stem", [=](const Ops& op, const at::Tensor& x0) {
    const at::Tensor x = op.act(stem_relu, op.bn(stem_bn, op.conv(stem_conv, x0)));
    return at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
  });
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block b = blocks[i];
    net->add_unit(block_names[i], [=](const Ops& op, const at::Tensor& x) {
      at::Tensor out = x;
      const size_t k = b.convs.size();
      for (size_t j = 0; j < k; ++j) {
        out = op.bn(b.bns[j], op.conv(b.convs[j], out));
        if (j + 1 < k) out = op.act(b.relus[j], out);
      }
      const at::Tensor identity = b.down_conv >= 0 ? op.bn(b.down_bn, op.conv(b.down_conv, x)) : x;
      return op.act(b.relus.back(), out + identity);
    });
  }
  net->add_unit("classifier", [=](const Ops& op, const at::Tensor& x) { return op.linear(fc, x.mean({2, 3})); });
  return net;
}

}  // namespace dsgq::models
