#include <torch/torch.h>

#include "core/error.hpp"
#include "models/architectures.hpp"

namespace dsgq::models {

// torchvision.models.mobilenet_v2 (width 1.0) with its state_dict keys: features.0 (conv 3x3 s2 + BN + ReLU6),
// 17 inverted residual blocks features.1..17 (expand 1x1 + BN + ReLU6 unless t = 1, depthwise 3x3 + BN + ReLU6,
// linear 1x1 projection + BN; residual when stride 1 and channels match), features.18 (1x1 to 1280 + BN + ReLU6),
// global average pool, classifier.1 (dropout is the identity in eval mode).
std::unique_ptr<Network> build_mobilenet_v2(const std::string& arch) {
  auto net = std::make_unique<Network>(arch, imagenet_input(224));
  const double eps = 1e-5;

  struct Unit {  // conv + BN (+ ReLU6 when act >= 0)
    int conv, bn, act;
  };
  struct Block {
    std::vector<Unit> units;
    bool residual;
  };
  auto unit = [&](const std::string& conv, const std::string& bn, const std::string& act, int64_t cin, int64_t cout,
                  int64_t k, int64_t stride, int64_t groups) {
    Unit u;
    u.conv = net->add_conv(conv, cin, cout, k, stride, k / 2, false, groups);
    u.bn = net->add_bn(bn, cout, eps);
    u.act = act.empty() ? -1 : net->add_act(act, ActKind::relu6);
    return u;
  };
  const Unit stem = unit("features.0.0", "features.0.1", "features.0.relu", 3, 32, 3, 2, 1);
  // (expansion t, output channels c, repeats n, first stride s), torchvision's inverted_residual_setting.
  const int64_t setting[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                 {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
  std::vector<Block> blocks;
  int64_t cin = 32;
  int index = 1;
  for (const auto& st : setting) {
    for (int64_t i = 0; i < st[2]; ++i, ++index) {
      const int64_t stride = i == 0 ? st[3] : 1, hidden = cin * st[0], cout = st[1];
      const std::string p = "features." + std::to_string(index) + ".conv.";
      Block b;
      int pos = 0;
      if (st[0] != 1) {
        b.units.push_back(unit(p + "0.0", p + "0.1", p + "relu0", cin, hidden, 1, 1, 1));
        pos = 1;
      }
      const std::string d = p + std::to_string(pos);
      b.units.push_back(unit(d + ".0", d + ".1", p + "relu" + std::to_string(pos), hidden, hidden, 3, stride, hidden));
      b.units.push_back(unit(p + std::to_string(pos + 1), p + std::to_string(pos + 2), "", hidden, cout, 1, 1, 1));
      b.residual = stride == 1 && cin == cout;
      blocks.push_back(b);
      cin = cout;
    }
  }
  const Unit head = unit("features.18.0", "features.18.1", "features.18.relu", cin, 1280, 1, 1, 1);
  const int fc = net->add_linear("classifier.1", 1280, 1000, true);

  auto apply = [](const Ops& op, const Unit& u, const at::Tensor& x) {
    at::Tensor y = op.bn(u.bn, op.conv(u.conv, x));
    return u.act >= 0 ? op.act(u.act, y) : y;
  };
  // Units: the stem, each inverted residual block, the head conv, the classifier.
  net->add_unit("features.0", [=](const Ops& op, const at::Tensor& x0) { return apply(op, stem, x0); });
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block b = blocks[i];
    net->add_unit("features." + std::to_string(i + 1), [=](const Ops& op, const at::Tensor& x) {
      at::Tensor y = x;
      for (const Unit& u : b.units) y = apply(op, u, y);
      return b.residual ? x + y : y;
    });
  }
  net->add_unit("features.18", [=](const Ops& op, const at::Tensor& x) { return apply(op, head, x); });
  net->add_unit("classifier", [=](const Ops& op, const at::Tensor& x) { return op.linear(fc, x.mean({2, 3})); });
  return net;
}

}  // namespace dsgq::models
