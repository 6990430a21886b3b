#include <torch/torch.h>

#include "core/error.hpp"
#include "models/architectures.hpp"

namespace dsgq::models {

// torchvision.models.shufflenet_v2_x* (Ma et al. 2018) with its state_dict keys: conv1 (conv1.0 3x3 s2 + conv1.1 BN
// + conv1.2 ReLU), max pool 3x3 s2 p1, stage2..stage4 of InvertedResidual blocks, conv5 (conv5.0 1x1 + conv5.1 BN +
// conv5.2 ReLU), mean over H, W, fc. A block's first unit has stride 2 and two branches on the whole input:
// branch1 = depthwise 3x3 (.0) + BN (.1) + 1x1 (.2) + BN (.3) + ReLU (.4), branch2 = 1x1 (.0) + BN (.1) + ReLU (.2) +
// depthwise 3x3 (.3) + BN (.4) + 1x1 (.5) + BN (.6) + ReLU (.7); the other units (stride 1) split the channels in
// two halves (chunk), keep the first and run branch2 on the second. Either way the two halves are concatenated
// (branch1 or identity first) and channel_shuffle(groups 2) interleaves them. Activation sites carry the ReLU
// modules' names. 224x224 ImageNet input.
std::unique_ptr<Network> build_shufflenet_v2(const std::string& arch, const std::vector<int64_t>& stages_repeats,
                                             const std::vector<int64_t>& stages_out_channels) {
  DSGQ_CHECK(stages_repeats.size() == 3 && stages_out_channels.size() == 5, "shufflenet_v2: bad stage setting");
  auto net = std::make_unique<Network>(arch, imagenet_input(224));
  const double eps = 1e-5;

  struct Unit {  // conv + BN (+ ReLU when act >= 0)
    int conv, bn, act;
  };
  struct Block {
    std::vector<Unit> branch1, branch2;  // branch1 empty: stride 1, identity on the first half of the channels
  };
  auto unit = [&](const std::string& p, int conv_index, bool relu, int64_t cin, int64_t cout, int64_t k, int64_t stride,
                  int64_t groups) {
    Unit u;
    u.conv = net->add_conv(p + std::to_string(conv_index), cin, cout, k, stride, k / 2, false, groups);
    u.bn = net->add_bn(p + std::to_string(conv_index + 1), cout, eps);
    u.act = relu ? net->add_act(p + std::to_string(conv_index + 2), ActKind::relu) : -1;
    return u;
  };

  int64_t cin = stages_out_channels[0];
  const Unit conv1 = unit("conv1.", 0, true, 3, cin, 3, 2, 1);
  std::vector<Block> blocks;
  std::vector<std::string> block_names;
  for (size_t stage = 0; stage < 3; ++stage) {
    const int64_t cout = stages_out_channels[stage + 1], half = cout / 2;
    for (int64_t i = 0; i < stages_repeats[stage]; ++i) {
      const std::string p = "stage" + std::to_string(stage + 2) + "." + std::to_string(i) + ".";
      const int64_t stride = i == 0 ? 2 : 1;
      Block b;
      if (stride > 1) {
        b.branch1.push_back(unit(p + "branch1.", 0, false, cin, cin, 3, stride, cin));
        b.branch1.push_back(unit(p + "branch1.", 2, true, cin, half, 1, 1, 1));
      }
      b.branch2.push_back(unit(p + "branch2.", 0, true, stride > 1 ? cin : half, half, 1, 1, 1));
      b.branch2.push_back(unit(p + "branch2.", 3, false, half, half, 3, stride, half));
      b.branch2.push_back(unit(p + "branch2.", 5, true, half, half, 1, 1, 1));
      blocks.push_back(b);
      block_names.push_back(p.substr(0, p.size() - 1));
      cin = cout;
    }
  }
  const Unit conv5 = unit("conv5.", 0, true, cin, stages_out_channels[4], 1, 1, 1);
  const int fc = net->add_linear("fc", stages_out_channels[4], 1000, true);

  auto apply = [](const Ops& op, const Unit& u, const at::Tensor& x) {
    at::Tensor y = op.bn(u.bn, op.conv(u.conv, x));
    return u.act >= 0 ? op.act(u.act, y) : y;
  };
  auto chain = [apply](const Ops& op, const std::vector<Unit>& units, at::Tensor x) {
    for (const Unit& u : units) x = apply(op, u, x);
    return x;
  };
  // torchvision's channel_shuffle(x, 2): [N, 2, C/2, H, W] -> transpose(1, 2) -> [N, C, H, W].
  auto channel_shuffle = [](const at::Tensor& x) {
    const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    const at::Tensor dense = x.is_contiguous() ? x : x.contiguous();  // a channels-last x ([runtime] channels_last)
    return dense.view({n, 2, c / 2, h, w}).transpose(1, 2).contiguous().view({n, c, h, w});
  };
  // Units: the stem (conv1 and its max pool), each shuffle unit, conv5, the classifier.
  net->add_unit("conv1", [=](const Ops& op, const at::Tensor& x0) {
    return at::max_pool2d(apply(op, conv1, x0), {3, 3}, {2, 2}, {1, 1});
  });
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block b = blocks[i];
    net->add_unit(block_names[i], [=](const Ops& op, const at::Tensor& x) {
      if (b.branch1.empty()) {
        const auto halves = x.chunk(2, 1);
        return channel_shuffle(at::cat({halves[0], chain(op, b.branch2, halves[1])}, 1));
      }
      return channel_shuffle(at::cat({chain(op, b.branch1, x), chain(op, b.branch2, x)}, 1));
    });
  }
  net->add_unit("conv5", [=](const Ops& op, const at::Tensor& x) { return apply(op, conv5, x); });
  net->add_unit("classifier", [=](const Ops& op, const at::Tensor& x) { return op.linear(fc, x.mean({2, 3})); });
  return net;
}

}  // namespace dsgq::models
