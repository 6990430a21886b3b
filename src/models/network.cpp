#include "models/network.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "core/error.hpp"
#include "models/bn_kernels.hpp"
#include "models/checkpoint.hpp"

namespace dsgq::models {
namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t k = 0; k < s.size(); ++k) out += (k ? "," : "") + std::to_string(s[k]);
  return out + "]";
}

std::string list_some(const std::vector<std::string>& items, size_t max_items = 6) {
  std::string out;
  for (size_t k = 0; k < items.size() && k < max_items; ++k) out += (k ? ", " : "") + items[k];
  if (items.size() > max_items) out += ", ... " + std::to_string(items.size() - max_items) + " more";
  return out;
}

bool tolerated(const std::string& key) {
  const std::string suffix = "num_batches_tracked";
  return key.size() >= suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// ---- Ops ----

at::Tensor Ops::conv(int layer, const at::Tensor& x) const {
  const auto& p = net_.layer_params_[layer];
  const at::Tensor w = hooks_ && hooks_->weight ? hooks_->weight(layer, p[0]) : p[0];
  const at::Tensor in = hooks_ && hooks_->conv_input ? hooks_->conv_input(layer, x) : x;
  at::Tensor y = net_.layer_forward(layer, in, w, p[1]);
  if (hooks_ && hooks_->layer_io) hooks_->layer_io(layer, in, y);
  return y;
}

at::Tensor Network::layout(const at::Tensor& x) const {
  return channels_last_ && x.dim() == 4 ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

at::Tensor Network::layer_forward(int layer, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) const {
  if (!conv_bf16_ || x.scalar_type() != at::kFloat) return layer_compute(layer, x, w, bias);
  // set_conv_bf16: the layer's arithmetic in bfloat16, its output (and so every gradient outside it) in float32.
  const auto bf = [](const at::Tensor& t) { return t.defined() ? t.to(at::kBFloat16) : t; };
  return layer_compute(layer, bf(x), bf(w), bf(bias)).to(at::kFloat);
}

Network::Padded Network::pad_input(int layer, const at::Tensor& x) const {
  const LayerSpec& s = layers_[static_cast<size_t>(layer)];
  Padded p{x, s.pad, s.pad_w};
  if (!s.tf_same) return p;
  // TensorFlow SAME: out = ceil(in / stride); total = max((out-1)*stride + k - in, 0); extra pixel bottom/right.
  auto same = [&](int64_t size, int64_t* sym, int64_t* before, int64_t* after) {
    const int64_t out = (size + s.stride - 1) / s.stride;
    const int64_t total = std::max<int64_t>((out - 1) * s.stride + s.kernel - size, 0);
    *before = total / 2;
    *after = total - *before;
    *sym = *before;
  };
  int64_t top, bottom, left, right;
  same(x.size(2), &p.pad_h, &top, &bottom);
  same(x.size(3), &p.pad_w, &left, &right);
  if (top != bottom || left != right) {
    p.x = at::constant_pad_nd(x, {left, right, top, bottom}, 0.0);
    p.pad_h = p.pad_w = 0;
  }
  return p;
}

at::Tensor Network::layer_compute(int layer, const at::Tensor& x, const at::Tensor& w, const at::Tensor& bias) const {
  const LayerSpec& s = layers_[static_cast<size_t>(layer)];
  if (s.kind == LayerSpec::Kind::linear) return at::linear(x, w, bias);
  const Padded p = pad_input(layer, layout(x));
  return at::conv2d(p.x, w, bias, {s.stride, s.stride}, {p.pad_h, p.pad_w}, {1, 1}, s.groups);
}

at::Tensor Network::layer_columns(int layer, const at::Tensor& x) const {
  const LayerSpec& s = layers_[static_cast<size_t>(layer)];
  if (s.kind == LayerSpec::Kind::linear) return x.reshape({x.size(0), -1, 1});
  const Padded p = pad_input(layer, x);
  return at::im2col(p.x, {s.kernel, s.kernel_w}, {1, 1}, {p.pad_h, p.pad_w}, {s.stride, s.stride});
}

at::Tensor Ops::linear(int layer, const at::Tensor& x) const {
  const auto& p = net_.layer_params_[layer];
  const at::Tensor w = hooks_ && hooks_->weight ? hooks_->weight(layer, p[0]) : p[0];
  const at::Tensor in = hooks_ && hooks_->conv_input ? hooks_->conv_input(layer, x) : x;
  at::Tensor y = net_.layer_forward(layer, in, w, p[1]);
  if (hooks_ && hooks_->layer_io) hooks_->layer_io(layer, in, y);
  return y;
}

at::Tensor Ops::bn(int bn, const at::Tensor& x) const {
  if (net_.bn_folded_) return x;
  if (hooks_ && hooks_->bn_input) hooks_->bn_input(bn, x);
  const auto& p = net_.bn_params_[bn];
  if (hooks_ && hooks_->bn_moments) {
    auto [y, mean, var] = bn_eval_with_moments(x, p[0], p[1], p[2], p[3], net_.bns_[bn].eps);
    if (hooks_->bn_sums) hooks_->bn_sums(bn, channel_sums(x));
    hooks_->bn_moments(bn, mean, var);
    return y;
  }
  if (hooks_ && hooks_->bn_sums) {
    auto [y, sums] = bn_eval_with_sums(x, p[0], p[1], p[2], p[3], net_.bns_[bn].eps);
    hooks_->bn_sums(bn, sums);
    return y;
  }
  return at::batch_norm(x, p[0], p[1], p[2], p[3], /*training=*/false, /*momentum=*/0.1, net_.bns_[bn].eps,
                        /*cudnn_enabled=*/true);
}

at::Tensor Ops::act(int act, const at::Tensor& x) const {
  if (hooks_ && hooks_->act_input)
    return hooks_->act_input(act, x,
                             net_.acts_[act].kind == ActKind::relu ? std::numeric_limits<double>::infinity() : 6.0);
  at::Tensor y = net_.acts_[act].kind == ActKind::relu ? at::relu(x) : at::hardtanh(x, 0.0, 6.0);
  if (hooks_ && hooks_->activation) y = hooks_->activation(act, y);
  return y;
}

// ---- Network ----

Network::Network(std::string arch, InputSpec input) : arch_(std::move(arch)), input_(std::move(input)) {}

void Network::add_param(const std::string& name, std::vector<int64_t> shape) {
  DSGQ_CHECK(!params_.count(name), "duplicate parameter " + name);
  params_[name] = at::zeros(shape, at::TensorOptions().dtype(at::kFloat).device(device_));
  param_specs_.emplace_back(name, std::move(shape));
}

int Network::add_conv(const std::string& name, int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                      bool bias, int64_t groups, bool tf_same) {
  const int l = add_conv_hw(name, in, out, kernel, kernel, stride, pad, pad, bias, groups);
  layers_[static_cast<size_t>(l)].tf_same = tf_same;
  return l;
}

int Network::add_conv_hw(const std::string& name, int64_t in, int64_t out, int64_t kernel_h, int64_t kernel_w,
                         int64_t stride, int64_t pad_h, int64_t pad_w, bool bias, int64_t groups) {
  LayerSpec s;
  s.kind = LayerSpec::Kind::conv;
  s.name = name;
  s.in = in;
  s.out = out;
  s.kernel = kernel_h;
  s.kernel_w = kernel_w;
  s.stride = stride;
  s.pad = pad_h;
  s.pad_w = pad_w;
  s.bias = bias;
  s.groups = groups;
  add_param(name + ".weight", {out, in / groups, kernel_h, kernel_w});
  if (bias) add_param(name + ".bias", {out});
  layers_.push_back(s);
  layer_params_.push_back({params_[name + ".weight"], bias ? params_[name + ".bias"] : at::Tensor()});
  return static_cast<int>(layers_.size()) - 1;
}

int Network::add_linear(const std::string& name, int64_t in, int64_t out, bool bias) {
  LayerSpec s;
  s.kind = LayerSpec::Kind::linear;
  s.name = name;
  s.in = in;
  s.out = out;
  s.bias = bias;
  add_param(name + ".weight", {out, in});
  if (bias) add_param(name + ".bias", {out});
  layers_.push_back(s);
  layer_params_.push_back({params_[name + ".weight"], bias ? params_[name + ".bias"] : at::Tensor()});
  return static_cast<int>(layers_.size()) - 1;
}

int Network::add_bn(const std::string& name, int64_t channels, double eps) {
  bns_.push_back({name, channels, eps});
  int source = -1;
  for (int i = static_cast<int>(layers_.size()) - 1; i >= 0 && source < 0; --i)
    if (layers_[static_cast<size_t>(i)].kind == LayerSpec::Kind::conv &&
        layers_[static_cast<size_t>(i)].out == channels)
      source = i;
  DSGQ_CHECK(source >= 0, "BN " + name + " follows no conv with " + std::to_string(channels) + " channels");
  bn_source_.push_back(source);
  for (const char* p : {".weight", ".bias", ".running_mean", ".running_var"}) add_param(name + p, {channels});
  params_[name + ".weight"].fill_(1.0);
  params_[name + ".running_var"].fill_(1.0);
  bn_params_.push_back({params_[name + ".weight"], params_[name + ".bias"], params_[name + ".running_mean"],
                        params_[name + ".running_var"]});
  return static_cast<int>(bns_.size()) - 1;
}

int Network::add_act(const std::string& name, ActKind kind) {
  acts_.push_back({name, kind});
  return static_cast<int>(acts_.size()) - 1;
}

void Network::add_ignored(const std::string& name, std::vector<int64_t> shape) {
  for (const auto& [n, s] : ignored_specs_) DSGQ_CHECK(n != name, "duplicate ignored parameter " + name);
  DSGQ_CHECK(!params_.count(name), "ignored parameter " + name + " is also a used one");
  ignored_specs_.emplace_back(name, std::move(shape));
}

int64_t Network::num_params() const {
  int64_t n = 0;
  for (const auto& [name, shape] : param_specs_) {
    if (name.find("running_") != std::string::npos) continue;
    int64_t k = 1;
    for (auto d : shape) k *= d;
    n += k;
  }
  return n;
}

at::Tensor Network::forward(const at::Tensor& x, const ForwardHooks* hooks) const {
  DSGQ_CHECK(forward_ != nullptr || !units_.empty(), "network " + arch_ + " has no forward function");
  DSGQ_CHECK(x.dim() == 4 && x.size(1) == input_.channels,
             "forward: input must be [N," + std::to_string(input_.channels) + ",H,W]");
  Ops ops(*this, hooks);
  const at::Tensor in = layout(x);
  if (units_.empty()) return forward_(ops, in);
  at::Tensor y = in;
  for (const Unit& u : units_) y = u.fn(ops, y);
  return y;
}

at::Tensor Network::unit_forward(int unit, const at::Tensor& x, const ForwardHooks* hooks) const {
  DSGQ_CHECK(unit >= 0 && static_cast<size_t>(unit) < units_.size(), "unit index out of range");
  Ops ops(*this, hooks);
  return units_[static_cast<size_t>(unit)].fn(ops, layout(x));
}

int Network::add_unit(const std::string& name, ForwardFn fn) {
  units_.push_back({name, std::move(fn)});
  return static_cast<int>(units_.size()) - 1;
}

at::Tensor Network::normalize(const at::Tensor& pixels, c10::Device device) const {
  const auto opts = at::TensorOptions().dtype(at::kFloat).device(device);
  const at::Tensor mean = at::tensor({input_.mean[0], input_.mean[1], input_.mean[2]}, opts.dtype(at::kDouble))
                              .to(at::kFloat)
                              .view({1, 3, 1, 1});
  const at::Tensor stdv = at::tensor({input_.std[0], input_.std[1], input_.std[2]}, opts.dtype(at::kDouble))
                              .to(at::kFloat)
                              .view({1, 3, 1, 1});
  return (pixels.to(device).to(at::kFloat).div(255.0f) - mean) / stdv;
}

std::string Network::mismatch(const Checkpoint& ck) const {
  std::map<std::string, const at::Tensor*> have;
  for (const auto& nt : ck.tensors) have[nt.name] = &nt.tensor;
  std::vector<std::string> missing, unexpected, wrong;
  std::set<std::string> expected;
  for (const auto* specs : {&param_specs_, &ignored_specs_})
    for (const auto& [name, shape] : *specs) {
      expected.insert(name);
      auto it = have.find(name);
      if (it == have.end()) {
        missing.push_back(name);
        continue;
      }
      const at::Tensor& t = *it->second;
      if (t.sizes().vec() != shape)
        wrong.push_back(name + " is " + shape_string(t) + ", expected " + shape_str(shape));
      else if (!at::isFloatingType(t.scalar_type()))
        wrong.push_back(name + " has dtype " + std::string(c10::toString(t.scalar_type())) + ", expected a float type");
    }
  for (const auto& nt : ck.tensors)
    if (!expected.count(nt.name) && !tolerated(nt.name)) unexpected.push_back(nt.name + " " + shape_string(nt.tensor));
  std::string out;
  if (!missing.empty()) out += std::to_string(missing.size()) + " missing (" + list_some(missing) + ")";
  if (!unexpected.empty())
    out +=
        (out.empty() ? "" : "; ") + std::to_string(unexpected.size()) + " unexpected (" + list_some(unexpected) + ")";
  if (!wrong.empty())
    out += (out.empty() ? "" : "; ") + std::to_string(wrong.size()) + " wrong (" + list_some(wrong) + ")";
  return out;
}

void Network::load(const Checkpoint& ck) {
  const std::string bad = mismatch(ck);
  if (!bad.empty())
    throw InputError(ck.path + ": does not fit " + arch_ + ": " + bad + "; expected the " + arch_ + " state_dict (" +
                     std::to_string(param_specs_.size() + ignored_specs_.size()) + " tensors)");
  for (const auto& nt : ck.tensors) {
    auto it = params_.find(nt.name);
    if (it == params_.end()) continue;  // tolerated extra (num_batches_tracked) or an ignored key (ignored_specs)
    const at::Tensor value = nt.tensor.to(at::kFloat);
    const at::Tensor bad = value.isfinite().logical_not();
    if (bad.any().item<bool>()) {  // a NaN/Inf weight would evaluate to chance without a word
      const int64_t first = bad.reshape({-1}).nonzero()[0][0].item<int64_t>();
      const float v = value.reshape({-1})[first].item<float>();
      throw InputError(ck.path + ": tensor '" + nt.name + "' holds " + std::to_string(bad.sum().item<int64_t>()) +
                       " non-finite value(s) (the first, at flat index " + std::to_string(first) + ", is " +
                       (std::isnan(v) ? "nan"
                        : v > 0       ? "inf"
                                      : "-inf") +
                       "); expected finite weights");
    }
    it->second.copy_(value);
  }
}

void Network::to(c10::Device device) {
  device_ = device;
  for (auto& [name, t] : params_) t = t.to(device);
  if (bn_folded_) {
    for (size_t i = 0; i < layers_.size(); ++i) {
      const auto& n = layers_[i].name;
      layer_params_[i] = {params_[n + ".weight"], layers_[i].bias ? params_[n + ".bias"] : at::Tensor()};
    }
    return;
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    const auto& n = layers_[i].name;
    layer_params_[i] = {params_[n + ".weight"], layers_[i].bias ? params_[n + ".bias"] : at::Tensor()};
  }
  for (size_t i = 0; i < bns_.size(); ++i) {
    const auto& n = bns_[i].name;
    bn_params_[i] = {params_[n + ".weight"], params_[n + ".bias"], params_[n + ".running_mean"],
                     params_[n + ".running_var"]};
  }
}

std::unique_ptr<Network> Network::folded() const {
  auto f = std::make_unique<Network>(*this);
  for (auto& [name, t] : f->params_) t = t.clone();
  for (size_t b = 0; b < bns_.size(); ++b) {
    const int l = bn_source_[b];
    LayerSpec& spec = f->layers_[static_cast<size_t>(l)];
    const auto& bp = bn_params_[b];  // weight, bias, mean, var
    const at::Tensor k = bp[0] / (bp[3] + bns_[b].eps).sqrt();
    at::Tensor& w = f->params_[spec.name + ".weight"];
    w = w * k.view({-1, 1, 1, 1});
    const at::Tensor old_bias = spec.bias ? f->params_[spec.name + ".bias"] : at::zeros_like(k);
    if (!spec.bias) {
      spec.bias = true;
      auto it = std::find_if(f->param_specs_.begin(), f->param_specs_.end(),
                             [&](const auto& p) { return p.first == spec.name + ".weight"; });
      f->param_specs_.insert(it + 1, {spec.name + ".bias", {spec.out}});
    }
    f->params_[spec.name + ".bias"] = (old_bias - bp[2]) * k + bp[1];
  }
  // BN parameters are no longer used; drop them from the state_dict of the folded network.
  for (const auto& bn : bns_)
    for (const char* p : {".weight", ".bias", ".running_mean", ".running_var"}) {
      f->params_.erase(bn.name + p);
      f->param_specs_.erase(std::remove_if(f->param_specs_.begin(), f->param_specs_.end(),
                                           [&](const auto& ps) { return ps.first == bn.name + p; }),
                            f->param_specs_.end());
    }
  f->bn_folded_ = true;
  for (size_t i = 0; i < f->layers_.size(); ++i) {
    const auto& n = f->layers_[i].name;
    f->layer_params_[i] = {f->params_[n + ".weight"], f->layers_[i].bias ? f->params_[n + ".bias"] : at::Tensor()};
  }
  return f;
}

const at::Tensor& Network::param(const std::string& name) const {
  auto it = params_.find(name);
  DSGQ_CHECK(it != params_.end(), "no parameter " + name + " in " + arch_);
  return it->second;
}

}  // namespace dsgq::models
