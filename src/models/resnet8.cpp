#include <torch/torch.h>

#include "models/architectures.hpp"

namespace dsgq::models {

std::unique_ptr<Network> build_resnet8() {
  InputSpec in;
  in.dataset = "cifar10";
  in.mean = {0.0, 0.0, 0.0};
  in.std = {1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0};  // raw 0..255 pixel values
  auto net = std::make_unique<Network>("resnet8", in);
  const double eps = 1e-3;

  struct Stage {
    int conv1, bn1, relu1, conv2, bn2, shortcut, relu2;
  };
  const int stem_conv = net->add_conv("conv1", 3, 16, 3, 1, 1, true, 1, true);
  const int stem_bn = net->add_bn("bn1", 16, eps);
  const int stem_relu = net->add_act("relu", ActKind::relu);
  std::vector<Stage> stages;
  int64_t in_ch = 16;
  for (int s = 1; s <= 3; ++s) {
    const int64_t ch = 16 << (s - 1);
    const int64_t stride = s == 1 ? 1 : 2;
    const std::string p = "layer" + std::to_string(s) + ".";
    Stage st;
    st.conv1 = net->add_conv(p + "conv1", in_ch, ch, 3, stride, 1, true, 1, true);
    st.bn1 = net->add_bn(p + "bn1", ch, eps);
    st.relu1 = net->add_act(p + "relu1", ActKind::relu);
    st.conv2 = net->add_conv(p + "conv2", ch, ch, 3, 1, 1, true, 1, true);
    st.bn2 = net->add_bn(p + "bn2", ch, eps);
    st.shortcut = s == 1 ? -1 : net->add_conv(p + "shortcut", in_ch, ch, 1, stride, 0, true, 1, true);
    st.relu2 = net->add_act(p + "relu2", ActKind::relu);
    stages.push_back(st);
    in_ch = ch;
  }
  const int fc = net->add_linear("fc", 64, 10, true);

  net->add_unit("stem", [=](const Ops& op, const at::Tensor& x0) {
    return op.act(stem_relu, op.bn(stem_bn, op.conv(stem_conv, x0)));
  });
  for (size_t i = 0; i < stages.size(); ++i) {
    const Stage st = stages[i];
    net->add_unit("layer" + std::to_string(i + 1), [=](const Ops& op, const at::Tensor& x) {
      at::Tensor y = op.act(st.relu1, op.bn(st.bn1, op.conv(st.conv1, x)));
      y = op.bn(st.bn2, op.conv(st.conv2, y));
      const at::Tensor sc = st.shortcut < 0 ? x : op.conv(st.shortcut, x);
      return op.act(st.relu2, y + sc);
    });
  }
  // 8x8 average pool over the whole 8x8 map, then flatten.
  net->add_unit("classifier", [=](const Ops& op, const at::Tensor& x) { return op.linear(fc, x.mean({2, 3})); });
  return net;
}

}  // namespace dsgq::models
