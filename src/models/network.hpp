#pragma once
// A pretrained network as dsgq sees it: named parameters, an ordered list of weight layers (conv/linear: the
// weight quantization points), BatchNorm layers (the BN taps) and activation sites (after every ReLU/ReLU6: the
// activation quantization points), plus a forward function written with the Ops below so that hooks see every
// one of them. Functional ATen ops, eval-mode semantics, parameters never require grad (synthesis takes the
// gradient w.r.t. the input only). Device-agnostic: to(device) moves every parameter; forward runs where x is.
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace dsgq::models {

struct Checkpoint;

struct LayerSpec {  // a conv or linear layer
  enum class Kind { conv, linear } kind = Kind::conv;
  std::string name;                                             // parameter prefix: "<name>.weight", "<name>.bias"
  int64_t in = 0, out = 0, kernel = 1, stride = 1, groups = 1;  // kernel: height (and width, when square)
  int64_t kernel_w = 1;  // kernel width: differs from kernel only for Inception's 1x7, 7x1, 1x3, 3x1 convs
  int64_t pad = 0;       // symmetric padding, top and bottom (ignored when tf_same)
  int64_t pad_w = 0;     // symmetric padding, left and right (equals pad unless the kernel is not square)
  bool tf_same = false;  // TensorFlow SAME padding: extra pixel at bottom/right when the total is odd
  bool bias = false;
};

struct BnSpec {
  std::string name;  // "<name>.weight|bias|running_mean|running_var"
  int64_t channels = 0;
  double eps = 1e-5;
};

enum class ActKind { relu, relu6 };
struct ActSpec {
  std::string name;  // stable site name, e.g. "layer1.0.relu2"
  ActKind kind = ActKind::relu;
};

struct InputSpec {
  std::string dataset;  // "cifar10" | "imagenet"
  int64_t channels = 3, height = 32, width = 32, num_classes = 10;
  std::array<double, 3> mean{0, 0, 0}, std{1, 1, 1};  // on [0,1] pixels; network input = (x/255 - mean) / std
};

// Observers and substitutions during one forward pass; every member optional. Indices are positions in
// layers() / bns() / acts(), which follow the forward (registration) order.
struct ForwardHooks {
  std::function<void(int bn, const at::Tensor& input)> bn_input;  // BN taps
  // BN taps for batch statistics: channel_sums (models/bn_kernels.hpp) of the BN input, differentiable, computed in
  // the BN's own pass (bn_eval_with_sums). Called after bn_input when both are set.
  std::function<void(int bn, const at::Tensor& sums)> bn_sums;
  // BN taps for per-sample statistics: the BN input's mean and unbiased variance over H x W, [n, C] each,
  // differentiable, computed in the BN's own pass (bn_eval_with_moments). Called after bn_input and bn_sums.
  std::function<void(int bn, const at::Tensor& mean, const at::Tensor& var)> bn_moments;
  std::function<at::Tensor(int act, const at::Tensor& x)> activation;  // after ReLU/ReLU6
  // Replaces the ReLU/ReLU6 and `activation` when set: called with the activation's input and its upper bound (+inf
  // for ReLU, 6 for ReLU6), returns the site's output (the qdrop protocol fuses the activation into its quantizer).
  std::function<at::Tensor(int act, const at::Tensor& x, double hi)> act_input;
  std::function<at::Tensor(int layer, const at::Tensor& weight)> weight;  // effective weight
  std::function<void(int layer, const at::Tensor& in, const at::Tensor& out)> layer_io;
  std::function<at::Tensor(int layer, const at::Tensor& x)> conv_input;  // replaces a conv's input (Genie's swing)
};

class Network;

// What architecture code calls inside forward; applies the hooks.
class Ops {
 public:
  Ops(const Network& net, const ForwardHooks* hooks) : net_(net), hooks_(hooks) {}
  at::Tensor conv(int layer, const at::Tensor& x) const;
  at::Tensor linear(int layer, const at::Tensor& x) const;
  at::Tensor bn(int bn, const at::Tensor& x) const;
  at::Tensor act(int act, const at::Tensor& x) const;

 private:
  const Network& net_;
  const ForwardHooks* hooks_;
};

class Network {
 public:
  using ForwardFn = std::function<at::Tensor(const Ops&, const at::Tensor&)>;
  // A reconstruction unit (docs/method.md section 13): one piece of the forward pass, fed by the previous unit's
  // output (the first by the network input; the last returns the logits). ResNet blocks with their shortcut and
  // final ReLU, MobileNet/ShuffleNet blocks, Inception modules; the stem and the classifier are units of their own.
  struct Unit {
    std::string name;
    ForwardFn fn;
  };

  Network(std::string arch, InputSpec input);

  const std::string& arch() const { return arch_; }
  const InputSpec& input() const { return input_; }
  const std::vector<LayerSpec>& layers() const { return layers_; }
  const std::vector<BnSpec>& bns() const { return bns_; }
  const std::vector<ActSpec>& acts() const { return acts_; }
  // Parameter names in state_dict order, with expected shapes.
  const std::vector<std::pair<std::string, std::vector<int64_t>>>& param_specs() const { return param_specs_; }
  // Checkpoint keys that the strict import requires (with these shapes) but the eval-mode forward never reads, e.g.
  // torchvision Inception v3's AuxLogits.* (the auxiliary classifier runs in training only). Not in param_specs(),
  // num_params(), layers() or bns(); load() checks and then drops them.
  const std::vector<std::pair<std::string, std::vector<int64_t>>>& ignored_specs() const { return ignored_specs_; }
  int64_t num_params() const;  // learnable scalars (BN running statistics excluded)

  // x: float [N, C, H, W] in the normalized input space, on this network's device. Returns logits [N, classes].
  // Runs the units in order when the architecture declares them, else its forward function.
  at::Tensor forward(const at::Tensor& x, const ForwardHooks* hooks = nullptr) const;

  // The units in forward order (empty for a network built with set_forward alone), and one unit applied to its
  // input (the previous unit's output).
  const std::vector<Unit>& units() const { return units_; }
  at::Tensor unit_forward(int unit, const at::Tensor& x, const ForwardHooks* hooks = nullptr) const;

  // uint8 [N,3,H,W] pixels -> float normalized input on `device`.
  at::Tensor normalize(const at::Tensor& pixels, c10::Device device) const;

  // Strict import: every expected key (param_specs() and ignored_specs()) present with its shape, no unexpected key
  // (num_batches_tracked tolerated).
  // Float tensors are converted to float32. Throws InputError listing all offenders together.
  void load(const Checkpoint& ck);
  // Names of the keys that do not fit (empty when the checkpoint fits exactly); used by load() and inspect.
  std::string mismatch(const Checkpoint& ck) const;

  void to(c10::Device device);

  // A deep copy with every BatchNorm folded into the conv that feeds it: W' = W * g/sqrt(v + eps) per output
  // channel, b' = (b - mu) * g/sqrt(v + eps) + beta (a bias is added where the conv had none). The folded network's
  // bn() is the identity (and calls no BN tap). FP32 logits equal the original's within float rounding.
  std::unique_ptr<Network> folded() const;
  bool bn_folded() const { return bn_folded_; }
  // The conv/linear layer whose output BN `bn` normalizes.
  int bn_source(int bn) const { return bn_source_[static_cast<size_t>(bn)]; }

  // Layer `layer` applied to its input x (before any padding) with the given weight and bias (bias may be
  // undefined): what Ops::conv / Ops::linear compute, for layer-wise reconstruction (AdaRound).
  at::Tensor layer_forward(int layer, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias) const;
  // The patches layer `layer` multiplies its weight with, for x as layer_forward takes it: [N, in/groups * kh * kw
  // * groups, L] (im2col; rows in the weight's (in, kh, kw) order, group after group; L output positions) for a
  // conv, [N, in, 1] for a linear layer. layer_forward(x, w, 0) equals w.view(groups, out/groups, -1) times these
  // rows group by group, so a layer's squared output error is a quadratic form in the weight (quant/adaround.hpp).
  at::Tensor layer_columns(int layer, const at::Tensor& x) const;
  const at::Tensor& layer_bias(int layer) const { return layer_params_[static_cast<size_t>(layer)][1]; }
  c10::Device device() const { return device_; }
  // [runtime] channels_last: forward, unit_forward and layer_forward hand 4-D inputs to the convolutions in
  // channels-last layout (oneDNN's native NHWC; no reorder per call), so every activation after them is channels-last
  // too. The same arithmetic in another summation order: results agree to float rounding, not bit for bit.
  void set_channels_last(bool on) { channels_last_ = on; }
  bool channels_last() const { return channels_last_; }
  // [synth] bf16 / [quant.recon] bf16: every conv and linear layer computes in bfloat16 (inputs, weights and bias
  // rounded to it; oneDNN's AVX512-BF16 kernels on CPUs that have them) and hands its output back in float32, so
  // the activations, BN statistics, losses and every gradient outside the layers stay float32.
  void set_conv_bf16(bool on) { conv_bf16_ = on; }
  bool conv_bf16() const { return conv_bf16_; }
  const at::Tensor& param(const std::string& name) const;

  // Builder API, used by the architecture definitions (models/*.cpp). Returns the new item's index.
  int add_conv(const std::string& name, int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad, bool bias,
               int64_t groups = 1, bool tf_same = false);
  // A conv with a kernel_h x kernel_w kernel and (pad_h, pad_w) symmetric padding (torchvision Inception's 1x7 etc).
  int add_conv_hw(const std::string& name, int64_t in, int64_t out, int64_t kernel_h, int64_t kernel_w, int64_t stride,
                  int64_t pad_h, int64_t pad_w, bool bias, int64_t groups = 1);
  int add_linear(const std::string& name, int64_t in, int64_t out, bool bias = true);
  int add_bn(const std::string& name, int64_t channels, double eps);
  int add_act(const std::string& name, ActKind kind);
  // A checkpoint key the forward does not use (see ignored_specs()).
  void add_ignored(const std::string& name, std::vector<int64_t> shape);
  void set_forward(ForwardFn fn) { forward_ = std::move(fn); }
  // Appends a unit; the forward pass is then the chain of units (declare them instead of set_forward).
  int add_unit(const std::string& name, ForwardFn fn);

 private:
  friend class Ops;
  at::Tensor layout(const at::Tensor& x) const;  // x in the layout the convolutions take (set_channels_last)
  struct Padded {
    at::Tensor x;                  // x, padded explicitly where the padding is asymmetric (TensorFlow SAME)
    int64_t pad_h = 0, pad_w = 0;  // the symmetric padding left for the convolution
  };
  Padded pad_input(int layer, const at::Tensor& x) const;
  at::Tensor layer_compute(int layer, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) const;
  void add_param(const std::string& name, std::vector<int64_t> shape);

  std::string arch_;
  InputSpec input_;
  std::vector<LayerSpec> layers_;
  std::vector<BnSpec> bns_;
  std::vector<ActSpec> acts_;
  std::vector<std::pair<std::string, std::vector<int64_t>>> param_specs_;
  std::vector<std::pair<std::string, std::vector<int64_t>>> ignored_specs_;
  std::map<std::string, at::Tensor> params_;
  // Per layer/BN: parameter tensors resolved once (weight, bias or undefined).
  std::vector<std::array<at::Tensor, 2>> layer_params_;
  std::vector<std::array<at::Tensor, 4>> bn_params_;
  ForwardFn forward_;
  std::vector<Unit> units_;
  c10::Device device_{c10::kCPU};
  bool bn_folded_ = false;
  bool channels_last_ = false;
  bool conv_bf16_ = false;
  std::vector<int> bn_source_;  // per BN: the most recent conv added before it
};

}  // namespace dsgq::models
