#include <torch/torch.h>

#include "core/error.hpp"
#include "models/architectures.hpp"

namespace dsgq::models {

// torchvision.models.inception_v3 (Szegedy et al. 2016) in eval mode with its state_dict keys. Every conv is a
// BasicConv2d "<name>.conv" (no bias) + "<name>.bn" (eps 0.001) + ReLU (activation site "<name>.relu"). Stem
// Conv2d_1a_3x3 .. Conv2d_4a_3x3 with two 3x3 s2 max pools, Mixed_5b..5d (InceptionA), Mixed_6a (InceptionB),
// Mixed_6b..6e (InceptionC), Mixed_7a (InceptionD), Mixed_7b..7c (InceptionE), adaptive average pool to 1x1, fc
// (dropout is the identity in eval mode). Each block concatenates its branches along channels in torchvision's order;
// a pooling branch starts with avg_pool2d 3x3 s1 p1 (count_include_pad, F.avg_pool2d's default) or max_pool2d 3x3 s2.
// The auxiliary classifier AuxLogits.* runs in training only: its keys (aux_logits=True is torchvision's default and
// the pretrained checkpoint's) are required with their shapes by the strict import, then ignored (ignored_specs).
//
// Input: torchvision's IMAGENET1K_V1 weights come with transform_input=True, which maps the ImageNet-normalized
// input (p - m) / s back to (p - 0.5) / 0.5 before the first conv. dsgq's forward does no transform; instead the
// InputSpec says mean = std = 0.5, so dsgq's pixels -> input is exactly what the first conv sees in torchvision
// (and a forward on a given input equals torchvision's with transform_input=False). 299x299, 1000 classes.
std::unique_ptr<Network> build_inception_v3(const std::string& arch) {
  InputSpec input = imagenet_input(299);
  input.mean = {0.5, 0.5, 0.5};
  input.std = {0.5, 0.5, 0.5};
  auto net = std::make_unique<Network>(arch, input);
  const double eps = 1e-3;

  struct Unit {  // BasicConv2d: conv + BN + ReLU
    int conv, bn, act;
  };
  enum class Pool { none, avg, max };
  struct Branch {            // pool (optional), then a chain of units, then (InceptionE) a fork of two units on the
    Pool pool = Pool::none;  // chain's output whose outputs are concatenated
    std::vector<Unit> chain, fork;
  };
  using Block = std::vector<Branch>;

  // kernel kh x kw, symmetric padding (ph, pw); torchvision's kernel_size=(1, 7), padding=(0, 3) etc.
  auto basic = [&](const std::string& name, int64_t cin, int64_t cout, int64_t kh, int64_t kw, int64_t stride,
                   int64_t ph, int64_t pw) {
    Unit u;
    u.conv = net->add_conv_hw(name + ".conv", cin, cout, kh, kw, stride, ph, pw, false);
    u.bn = net->add_bn(name + ".bn", cout, eps);
    u.act = net->add_act(name + ".relu", ActKind::relu);
    return u;
  };
  auto square = [&](const std::string& name, int64_t cin, int64_t cout, int64_t k, int64_t stride = 1,
                    int64_t pad = 0) { return basic(name, cin, cout, k, k, stride, pad, pad); };

  const std::vector<Unit> stem1 = {square("Conv2d_1a_3x3", 3, 32, 3, 2), square("Conv2d_2a_3x3", 32, 32, 3),
                                   square("Conv2d_2b_3x3", 32, 64, 3, 1, 1)};
  // maxpool1
  const std::vector<Unit> stem2 = {square("Conv2d_3b_1x1", 64, 80, 1), square("Conv2d_4a_3x3", 80, 192, 3)};
  // maxpool2

  auto inception_a = [&](const std::string& p, int64_t in, int64_t pool_features) {
    Block b(4);
    b[0].chain = {square(p + "branch1x1", in, 64, 1)};
    b[1].chain = {square(p + "branch5x5_1", in, 48, 1), square(p + "branch5x5_2", 48, 64, 5, 1, 2)};
    b[2].chain = {square(p + "branch3x3dbl_1", in, 64, 1), square(p + "branch3x3dbl_2", 64, 96, 3, 1, 1),
                  square(p + "branch3x3dbl_3", 96, 96, 3, 1, 1)};
    b[3].pool = Pool::avg;
    b[3].chain = {square(p + "branch_pool", in, pool_features, 1)};
    return b;
  };
  auto inception_b = [&](const std::string& p, int64_t in) {
    Block b(3);
    b[0].chain = {square(p + "branch3x3", in, 384, 3, 2)};
    b[1].chain = {square(p + "branch3x3dbl_1", in, 64, 1), square(p + "branch3x3dbl_2", 64, 96, 3, 1, 1),
                  square(p + "branch3x3dbl_3", 96, 96, 3, 2)};
    b[2].pool = Pool::max;
    return b;
  };
  auto inception_c = [&](const std::string& p, int64_t in, int64_t c7) {
    Block b(4);
    b[0].chain = {square(p + "branch1x1", in, 192, 1)};
    b[1].chain = {square(p + "branch7x7_1", in, c7, 1), basic(p + "branch7x7_2", c7, c7, 1, 7, 1, 0, 3),
                  basic(p + "branch7x7_3", c7, 192, 7, 1, 1, 3, 0)};
    b[2].chain = {square(p + "branch7x7dbl_1", in, c7, 1), basic(p + "branch7x7dbl_2", c7, c7, 7, 1, 1, 3, 0),
                  basic(p + "branch7x7dbl_3", c7, c7, 1, 7, 1, 0, 3),
                  basic(p + "branch7x7dbl_4", c7, c7, 7, 1, 1, 3, 0),
                  basic(p + "branch7x7dbl_5", c7, 192, 1, 7, 1, 0, 3)};
    b[3].pool = Pool::avg;
    b[3].chain = {square(p + "branch_pool", in, 192, 1)};
    return b;
  };
  auto inception_d = [&](const std::string& p, int64_t in) {
    Block b(3);
    b[0].chain = {square(p + "branch3x3_1", in, 192, 1), square(p + "branch3x3_2", 192, 320, 3, 2)};
    b[1].chain = {square(p + "branch7x7x3_1", in, 192, 1), basic(p + "branch7x7x3_2", 192, 192, 1, 7, 1, 0, 3),
                  basic(p + "branch7x7x3_3", 192, 192, 7, 1, 1, 3, 0), square(p + "branch7x7x3_4", 192, 192, 3, 2)};
    b[2].pool = Pool::max;
    return b;
  };
  auto inception_e = [&](const std::string& p, int64_t in) {
    Block b(4);
    b[0].chain = {square(p + "branch1x1", in, 320, 1)};
    b[1].chain = {square(p + "branch3x3_1", in, 384, 1)};
    b[1].fork = {basic(p + "branch3x3_2a", 384, 384, 1, 3, 1, 0, 1),
                 basic(p + "branch3x3_2b", 384, 384, 3, 1, 1, 1, 0)};
    b[2].chain = {square(p + "branch3x3dbl_1", in, 448, 1), square(p + "branch3x3dbl_2", 448, 384, 3, 1, 1)};
    b[2].fork = {basic(p + "branch3x3dbl_3a", 384, 384, 1, 3, 1, 0, 1),
                 basic(p + "branch3x3dbl_3b", 384, 384, 3, 1, 1, 1, 0)};
    b[3].pool = Pool::avg;
    b[3].chain = {square(p + "branch_pool", in, 192, 1)};
    return b;
  };

  static const char* const kModuleNames[] = {"Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                                             "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"};
  std::vector<Block> blocks;
  blocks.push_back(inception_a("Mixed_5b.", 192, 32));
  blocks.push_back(inception_a("Mixed_5c.", 256, 64));
  blocks.push_back(inception_a("Mixed_5d.", 288, 64));
  blocks.push_back(inception_b("Mixed_6a.", 288));
  blocks.push_back(inception_c("Mixed_6b.", 768, 128));
  blocks.push_back(inception_c("Mixed_6c.", 768, 160));
  blocks.push_back(inception_c("Mixed_6d.", 768, 160));
  blocks.push_back(inception_c("Mixed_6e.", 768, 192));
  blocks.push_back(inception_d("Mixed_7a.", 768));
  blocks.push_back(inception_e("Mixed_7b.", 1280));
  blocks.push_back(inception_e("Mixed_7c.", 2048));
  const int fc = net->add_linear("fc", 2048, 1000, true);

  // InceptionAux(768, 1000): conv0 (BasicConv2d 768 -> 128, 1x1), conv1 (BasicConv2d 128 -> 768, 5x5), fc. Unused.
  auto aux_basic = [&](const std::string& name, const std::vector<int64_t>& conv_shape) {
    net->add_ignored(name + ".conv.weight", conv_shape);
    for (const char* p : {".bn.weight", ".bn.bias", ".bn.running_mean", ".bn.running_var"})
      net->add_ignored(name + p, {conv_shape[0]});
  };
  aux_basic("AuxLogits.conv0", {128, 768, 1, 1});
  aux_basic("AuxLogits.conv1", {768, 128, 5, 5});
  net->add_ignored("AuxLogits.fc.weight", {1000, 768});
  net->add_ignored("AuxLogits.fc.bias", {1000});

  auto apply = [](const Ops& op, const Unit& u, const at::Tensor& x) {
    return op.act(u.act, op.bn(u.bn, op.conv(u.conv, x)));
  };
  auto max_pool = [](const at::Tensor& x) { return at::max_pool2d(x, {3, 3}, {2, 2}); };
  // Units: the two stem halves (each ending in its max pool), each Inception module, the classifier.
  net->add_unit("stem1", [=](const Ops& op, const at::Tensor& x0) {
    at::Tensor x = x0;
    for (const Unit& u : stem1) x = apply(op, u, x);
    return max_pool(x);
  });
  net->add_unit("stem2", [=](const Ops& op, const at::Tensor& x0) {
    at::Tensor x = x0;
    for (const Unit& u : stem2) x = apply(op, u, x);
    return max_pool(x);
  });
  for (size_t i = 0; i < blocks.size(); ++i) {
    const Block b = blocks[i];
    net->add_unit(kModuleNames[i], [=](const Ops& op, const at::Tensor& x) {
      std::vector<at::Tensor> outs;
      for (const Branch& br : b) {
        at::Tensor y = br.pool == Pool::avg
                           ? at::avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}, false, /*count_include_pad=*/true)
                       : br.pool == Pool::max ? max_pool(x)
                                              : x;
        for (const Unit& u : br.chain) y = apply(op, u, y);
        if (!br.fork.empty()) y = at::cat({apply(op, br.fork[0], y), apply(op, br.fork[1], y)}, 1);
        outs.push_back(y);
      }
      return at::cat(outs, 1);
    });
  }
  net->add_unit("classifier", [=](const Ops& op, const at::Tensor& x) {
    return op.linear(fc, at::adaptive_avg_pool2d(x, {1, 1}).flatten(1));
  });
  return net;
}

}  // namespace dsgq::models
