// AdaRound on a real layer, BN folding on real weights, and the adaround protocol end to end on resnet20.
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "eval/evaluate.hpp"
#include "io/cifar10.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"
#include "quant/adaround.hpp"
#include "quant/adaround_protocol.hpp"
#include "test_util.hpp"

using namespace dsgq;

namespace {
std::unique_ptr<models::Network> resnet20() {
  auto net = models::build_network("resnet20", "arch");
  net->load(models::read_checkpoint(test::data_path("models/cifar10_resnet20.pt")));
  return net;
}
}  // namespace

TEST(BnFolding, LeavesFp32LogitsUnchanged) {
  at::set_num_threads(2);
  for (const std::string arch : {"resnet20", "resnet8", "mobilenet_v1_0.25"}) {
    auto net = models::build_network(arch, "arch");
    net->load(models::read_checkpoint(test::data_path("models/" + models::arch_info(arch, "arch").weights_file)));
    auto folded = net->folded();
    const auto& in = net->input();
    torch::manual_seed(1);
    const at::Tensor x = torch::randn({4, 3, in.height, in.width}) * (arch == "resnet8" ? 60.0 : 1.0);
    torch::NoGradGuard ng;
    const at::Tensor a = net->forward(x), b = folded->forward(x);
    const double err = (a - b).abs().max().item<double>(), scale = a.abs().max().item<double>();
    std::printf("[ info     ] %s folded: max abs logit diff %.3g (max |logit| %.3g)\n", arch.c_str(), err, scale);
    EXPECT_TRUE(!(err > 1e-5 * std::max(1.0, scale))) << arch << " err " << err;
  }
}

TEST(AdaRound, RealLayerBeatsNearestAndEndsBinary) {
  at::set_num_threads(2);
  auto net = resnet20();
  auto folded = net->folded();
  const io::ImageSet set = io::read_cifar10(test::data_path("cifar10/data_batch_1.bin"), 0, 256);
  const at::Tensor x = folded->normalize(set.images, folded->device());
  int layer = -1;
  for (size_t l = 0; l < folded->layers().size(); ++l)
    if (folded->layers()[l].name == "layer2.0.conv1") layer = static_cast<int>(l);
  ASSERT_GE(layer, 0);
  at::Tensor x_in;
  models::ForwardHooks h;
  h.layer_io = [&](int l, const at::Tensor& in, const at::Tensor&) {
    if (l == layer) x_in = in.clone();
  };
  torch::NoGradGuard ng0;
  folded->forward(x, &h);
  const at::Tensor w = folded->param("layer2.0.conv1.weight");
  const at::Tensor& b = folded->layer_bias(layer);
  const at::Tensor y = folded->layer_forward(layer, x_in, w, b);
  for (int bits : {4, 3}) {
    config::AdaRoundConfig cfg;
    cfg.iters = 2000;
    cfg.lr = 1e-2;  // the reference 1e-3 needs ~10x more iterations to move V far enough on a 2-core budget
    const quant::WeightGrid g = quant::mse_weight_grid(w, bits);
    at::AutoGradMode grad(true);
    const quant::AdaRoundResult r =
        quant::adaround_layer(*folded, layer, w, b, g, quant::RowCache(x_in), quant::RowCache(y), cfg,
                              /*seed=*/0);
    std::printf(
        "[ info     ] layer2.0.conv1 W%d: output mse nearest %.4e, adaround %.4e (%.1f%% lower), %.2f%% of "
        "weights flipped from nearest, %.4f%% undecided before hardening\n",
        bits, r.mse_nearest, r.mse_adaround, 100 * (1 - r.mse_adaround / r.mse_nearest), 100 * r.flipped,
        100 * r.undecided);
    EXPECT_LT(r.mse_adaround, r.mse_nearest) << "W" << bits;
    // With 2000 iterations the regulariser has not yet pushed every h(V) to 0 or 1 (BRECQ runs 20000); the final
    // hard rounding (V >= 0) puts every weight on the grid, checked next.
    // Every weight is on the grid: floor or floor + 1 of w/scale.
    const at::Tensor s = g.scale.view({-1, 1, 1, 1});
    const at::Tensor k = r.weight / s, fl = (w / s).floor();
    const at::Tensor on_grid = ((k - fl).round() - (k - fl)).abs().lt(1e-3);
    EXPECT_TRUE(on_grid.all().item<bool>()) << "W" << bits;
  }
}

// The spilled cache (temporary HDF5 files) hands AdaRound the same rows as the in-memory one: same rounding, bit
// for bit, and the files are gone afterwards.
TEST(AdaRound, SpilledCacheGivesTheSameRounding) {
  at::set_num_threads(2);
  auto net = resnet20();
  auto folded = net->folded();
  const io::ImageSet set = io::read_cifar10(test::data_path("cifar10/data_batch_1.bin"), 0, 96);
  const at::Tensor x = folded->normalize(set.images, folded->device());
  const int layer = 3;
  at::Tensor x_in;
  models::ForwardHooks h;
  h.layer_io = [&](int l, const at::Tensor& in, const at::Tensor&) {
    if (l == layer) x_in = in.clone();
  };
  at::Tensor w, y;
  {
    torch::NoGradGuard ng0;
    folded->forward(x, &h);
    w = folded->param(folded->layers()[layer].name + ".weight");
    y = folded->layer_forward(layer, x_in, w, folded->layer_bias(layer));
  }
  const auto dir = std::filesystem::temp_directory_path() / ("dsgq_spill_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string in_path = (dir / "in.h5").string(), out_path = (dir / "out.h5").string();
  config::AdaRoundConfig cfg;
  cfg.iters = 60;
  cfg.batch = 16;
  const quant::WeightGrid g = quant::mse_weight_grid(w, 3);
  at::AutoGradMode grad(true);
  const quant::AdaRoundResult mem =
      quant::adaround_layer(*folded, layer, w, folded->layer_bias(layer), g, quant::RowCache(x_in), quant::RowCache(y),
                            cfg, /*seed=*/0, {}, 40);
  {
    const std::vector<int64_t> xs(x_in.sizes().begin() + 1, x_in.sizes().end()),
        ys(y.sizes().begin() + 1, y.sizes().end());
    quant::RowCache xc(x_in.size(0), xs, x_in.device(), in_path), yc(y.size(0), ys, y.device(), out_path);
    ASSERT_TRUE(xc.spilled());
    for (int64_t b = 0; b < x_in.size(0); b += 40) {  // written in chunks, as the protocol does
      xc.write(b, x_in.slice(0, b, std::min<int64_t>(x_in.size(0), b + 40)));
      yc.write(b, y.slice(0, b, std::min<int64_t>(y.size(0), b + 40)));
    }
    EXPECT_TRUE(std::filesystem::exists(in_path));
    const quant::AdaRoundResult spilled =
        quant::adaround_layer(*folded, layer, w, folded->layer_bias(layer), g, xc, yc, cfg, /*seed=*/0, {}, 40);
    EXPECT_TRUE(spilled.weight.equal(mem.weight));
    EXPECT_EQ(spilled.mse_nearest, mem.mse_nearest);
    EXPECT_EQ(spilled.mse_adaround, mem.mse_adaround);
  }
  EXPECT_FALSE(std::filesystem::exists(in_path));
  EXPECT_FALSE(std::filesystem::exists(out_path));
  std::filesystem::remove_all(dir);
}

// quant.adaround.gram: the quadratic form (LayerGram) against the plain sum of squared output errors computed with
// the layer's own convolution, in float64, for a weight off the FP one, and its gradient against autograd's of that
// sum; on real layers of every kind it must handle: resnet20's stem, a stride-2 conv and the classifier, and
// mobilenet_v1_0.25's stem (TensorFlow SAME padding, stride 2), a depthwise conv (groups = channels) and a pointwise
// one.
TEST(AdaRound, GramFormIsTheLayersSquaredErrorAndItsGradient) {
  at::set_num_threads(2);
  for (const std::string arch : {"resnet20", "mobilenet_v1_0.25"}) {
    auto net = models::build_network(arch, "arch");
    net->load(models::read_checkpoint(test::data_path("models/" + models::arch_info(arch, "arch").weights_file)));
    auto folded = net->folded();
    const auto& in = folded->input();
    torch::manual_seed(3);
    const at::Tensor x =
        arch == "resnet20"
            ? folded->normalize(io::read_cifar10(test::data_path("cifar10/data_batch_1.bin"), 0, 40).images,
                                folded->device())
            : torch::randn({6, 3, in.height, in.width});
    const std::vector<std::string> names =
        arch == "resnet20" ? std::vector<std::string>{"conv1", "layer2.0.conv1", "linear"}
                           : std::vector<std::string>{"conv1", "conv_dw_2", "conv_pw_2", "conv_preds"};
    std::map<int, at::Tensor> inputs;
    std::vector<int> layers;
    for (const auto& name : names)
      for (size_t l = 0; l < folded->layers().size(); ++l)
        if (folded->layers()[l].name == name) layers.push_back(static_cast<int>(l));
    ASSERT_EQ(layers.size(), names.size()) << arch;
    models::ForwardHooks h;
    h.layer_io = [&](int l, const at::Tensor& x_in, const at::Tensor&) { inputs[l] = x_in.clone(); };
    {
      torch::NoGradGuard ng;
      folded->forward(x, &h);
    }
    for (const int layer : layers) {
      const std::string& name = folded->layers()[static_cast<size_t>(layer)].name;
      const at::Tensor w = folded->param(name + ".weight"), &b = folded->layer_bias(layer);
      const at::Tensor x_in = inputs.at(layer);
      // Targets off the layer's own output (as from the FP network when the inputs come from a quantized one), and
      // a weight off the FP one by about a 4-bit grid step.
      at::Tensor y, w_off;
      {
        torch::NoGradGuard ng;
        const at::Tensor out = folded->layer_forward(layer, x_in, w, b);
        y = out + 0.05 * out.std() * torch::randn_like(out);
        w_off = w + 0.1 * w.abs().max() * torch::randn_like(w) / 8;
      }
      const quant::LayerGram f = quant::layer_gram(*folded, layer, quant::RowCache(x_in), w, b, quant::RowCache(y));
      // the reference: the summed squared error with the layer's conv, and autograd's gradient of it
      const at::Tensor wr = w_off.clone().requires_grad_(true);
      const at::Tensor direct = (folded->layer_forward(layer, x_in, wr, b) - y).to(at::kDouble).square().sum();
      direct.backward();
      const double ref = direct.item<double>(), got = f.error(w_off);
      const at::Tensor g_ref = wr.grad(), g_got = f.change_error_grad(w_off);
      const double g_err = (g_got - g_ref).abs().max().item<double>() / g_ref.abs().max().item<double>();
      const double change = f.change_error(w_off).item<double>() + f.r0;
      std::printf(
          "[ info     ] %s %s: squared error %.9g (form) vs %.9g (conv), rel %.2e; float32 form %.2e; "
          "gradient rel %.2e\n",
          arch.c_str(), name.c_str(), got, ref, std::abs(got - ref) / ref, std::abs(change - ref) / ref, g_err);
      EXPECT_NEAR(got, ref, 1e-5 * ref) << arch << " " << name;
      EXPECT_NEAR(change, ref, 1e-4 * ref) << arch << " " << name;
      EXPECT_LT(g_err, 1e-4) << arch << " " << name;
      // A share of the output channels alone (what one of several cooperating ranks steps): the same rows.
      const int64_t first = w.size(0) / 3, n = std::max<int64_t>(1, w.size(0) / 2);
      const at::Tensor g_rows = f.change_error_grad(w_off.slice(0, first, first + n).clone(), first);
      EXPECT_LT((g_rows - g_got.slice(0, first, first + n)).abs().max().item<double>(),
                1e-5 * g_got.abs().max().item<double>())
          << arch << " " << name << " rows " << first << ".." << first + n - 1;
      EXPECT_EQ(f.images, static_cast<double>(x_in.size(0)));
      EXPECT_EQ(f.outputs, static_cast<double>(y.numel()));
    }
  }
}
