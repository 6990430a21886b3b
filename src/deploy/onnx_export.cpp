#include "deploy/onnx_export.hpp"

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>
#include <torch/csrc/jit/frontend/tracer.h>
#include <torch/csrc/jit/ir/constants.h>
#include <torch/csrc/jit/ir/ir.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "core/error.hpp"
#include "core/fs.hpp"
#include "models/network.hpp"

namespace dsgq::deploy {
namespace {

namespace jit = torch::jit;

// The batch size of the trace: an unusual number, so that a reshape's batch dimension is recognisable (it becomes
// ONNX's "copy from the input" 0) and never confused with a channel or spatial size of the zoo.
constexpr int64_t kTraceBatch = 7;
constexpr int kOpset = 13;
constexpr int64_t kIrVersion = 8;  // the newest that ONNX 1.12's checker accepts

std::string what(const models::Network& net) { return "ONNX export of " + net.arch(); }

class Emitter {
 public:
  Emitter(const models::Network& net, onnx::GraphProto* g) : net_(net), g_(g) {}

  onnx::NodeProto* node(const std::string& op, const std::vector<std::string>& in,
                        const std::vector<std::string>& out) {
    onnx::NodeProto* n = g_->add_node();
    n->set_op_type(op);
    n->set_name(out.empty() ? op + std::to_string(g_->node_size()) : out[0] + "/" + op);
    for (const auto& s : in) n->add_input(s);
    for (const auto& s : out) n->add_output(s);
    return n;
  }
  static onnx::AttributeProto* attr(onnx::NodeProto* n, const std::string& name,
                                    onnx::AttributeProto::AttributeType type) {
    onnx::AttributeProto* a = n->add_attribute();
    a->set_name(name);
    a->set_type(type);
    return a;
  }
  static void attr_int(onnx::NodeProto* n, const std::string& name, int64_t v) {
    attr(n, name, onnx::AttributeProto::INT)->set_i(v);
  }
  static void attr_float(onnx::NodeProto* n, const std::string& name, float v) {
    attr(n, name, onnx::AttributeProto::FLOAT)->set_f(v);
  }
  static void attr_ints(onnx::NodeProto* n, const std::string& name, const std::vector<int64_t>& v) {
    onnx::AttributeProto* a = attr(n, name, onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }

  // Initializers. `t` is copied as contiguous CPU data of its own dtype (float32, int8, uint8, int64).
  std::string init(const std::string& name, const at::Tensor& t_in) {
    const at::Tensor t = t_in.detach().to(at::kCPU).contiguous();
    onnx::TensorProto* p = g_->add_initializer();
    p->set_name(name);
    for (int64_t d : t.sizes()) p->add_dims(d);
    switch (t.scalar_type()) {
      case at::kFloat:
        p->set_data_type(onnx::TensorProto::FLOAT);
        break;
      case at::kChar:
        p->set_data_type(onnx::TensorProto::INT8);
        break;
      case at::kByte:
        p->set_data_type(onnx::TensorProto::UINT8);
        break;
      case at::kLong:
        p->set_data_type(onnx::TensorProto::INT64);
        break;
      case at::kInt:
        p->set_data_type(onnx::TensorProto::INT32);
        break;
      default:
        DSGQ_CHECK(false, "ONNX initializer " + name + ": unsupported dtype");
    }
    p->set_raw_data(std::string(static_cast<const char*>(t.data_ptr()), t.numel() * t.element_size()));
    return name;
  }
  std::string init_ints(const std::string& name, const std::vector<int64_t>& v) {
    return init(name, at::tensor(v, at::kLong));
  }
  std::string init_scalar(const std::string& name, float v) { return init(name, at::scalar_tensor(v, at::kFloat)); }

  std::string fresh(const std::string& base) { return base + "_" + std::to_string(counter_++); }

  // The ONNX name of a traced tensor value (a constant tensor becomes an initializer on first use).
  std::string name(const jit::Value* v) {
    auto it = names_.find(v);
    if (it != names_.end()) return it->second;
    if (v->node()->kind() == c10::prim::Constant) {
      const auto iv = jit::toIValue(v);
      if (iv && iv->isTensor()) {
        const std::string n = init(fresh("const"), iv->toTensor().to(at::kFloat));
        names_[v] = n;
        return n;
      }
    }
    throw InternalError(what(net_) + ": value %" + v->debugName() + " (from " + v->node()->kind().toQualString() +
                        ") has no ONNX name");
  }
  void set_name(const jit::Value* v, const std::string& n) { names_[v] = n; }
  bool is_none(const jit::Value* v) const {
    const auto iv = jit::toIValue(v);
    return iv && iv->isNone();
  }
  at::Tensor const_tensor(const jit::Value* v) const {
    const c10::IValue iv = scalar(v);
    if (!iv.isTensor()) throw InternalError(what(net_) + ": expected a constant tensor at %" + v->debugName());
    return iv.toTensor();
  }
  c10::IValue scalar(const jit::Value* v) const {
    const auto iv = jit::toIValue(v);
    if (!iv)
      throw InternalError(what(net_) + ": expected a constant at %" + v->debugName() + " (" +
                          v->node()->kind().toQualString() + ")");
    return *iv;
  }
  int64_t int_of(const jit::Value* v) const { return scalar(v).toInt(); }
  double double_of(const jit::Value* v) const {
    const c10::IValue iv = scalar(v);
    return iv.isDouble() ? iv.toDouble() : static_cast<double>(iv.toInt());
  }
  std::vector<int64_t> ints(const jit::Value* v) const {
    if (v->node()->kind() == c10::prim::ListConstruct) {
      std::vector<int64_t> out;
      for (const jit::Value* e : v->node()->inputs()) out.push_back(int_of(e));
      return out;
    }
    const c10::IValue iv = scalar(v);
    if (iv.isIntList()) return iv.toIntVector();
    if (iv.isInt()) return {iv.toInt()};
    throw InternalError(what(net_) + ": expected an int list at %" + v->debugName());
  }

 private:
  const models::Network& net_;
  onnx::GraphProto* g_;
  std::unordered_map<const jit::Value*, std::string> names_;
  int64_t counter_ = 0;
};

// A 2-D pooling/conv parameter as ATen allows it: one value for both dimensions, or two.
std::vector<int64_t> pair(std::vector<int64_t> v) {
  if (v.size() == 1) v.push_back(v[0]);
  return v;
}

int64_t rank_of(const jit::Value* v) {
  const auto t = v->type()->cast<c10::TensorType>();
  const auto r = t ? t->dim() : c10::nullopt;
  DSGQ_CHECK(r.has_value(), "traced value %" + v->debugName() + " has no rank");
  return static_cast<int64_t>(*r);
}

struct Grid {  // one AIMET entry: x^ = (q + offset) * scale, q in 0..2^bits - 1
  double scale = 0;
  int64_t offset = 0, bits = 8;
};

Grid grid_of(const nlohmann::json& e, const std::string& where) {
  Grid g;
  if (!e.is_object() || !e.contains("scale") || !e.contains("offset") || !e.contains("bitwidth"))
    throw InputError(where + ": expected an AIMET entry with scale, offset and bitwidth");
  g.scale = e.at("scale").get<double>();
  g.offset = e.at("offset").get<int64_t>();
  g.bits = e.at("bitwidth").get<int64_t>();
  if (!(g.scale > 0) || !std::isfinite(g.scale) || g.bits < 2 || g.bits > 8)
    throw InputError(where + ": scale " + std::to_string(g.scale) + ", bitwidth " + std::to_string(g.bits) +
                     "; expected a positive finite scale and 2..8 bits");
  return g;
}

// Layer `l`'s weight as integer codes on its encoding's per-channel grid, DequantizeLinear'd. Returns the name of
// the float weight the conv/gemm reads.
std::string quantized_weight(Emitter& em, const models::Network& net, const std::string& lname, const at::Tensor& w_in,
                             const nlohmann::json& entries, OnnxSummary& sum) {
  const std::string where = what(net) + ": param_encodings '" + lname + ".weight'";
  const at::Tensor w = w_in.detach().to(at::kCPU, at::kDouble).contiguous();
  const int64_t c = w.size(0);
  if (!entries.is_array() || (static_cast<int64_t>(entries.size()) != c && entries.size() != 1))
    throw InputError(where + ": " + std::to_string(entries.is_array() ? entries.size() : 0) +
                     " entries; expected one per output channel (" + std::to_string(c) + ") or one");
  const bool per_channel = static_cast<int64_t>(entries.size()) == c && c > 1;
  std::vector<Grid> grids;
  for (const auto& e : entries) grids.push_back(grid_of(e, where));
  at::Tensor codes = at::empty_like(w, at::kLong);
  const int64_t per = w.numel() / c;
  const double* wp = w.data_ptr<double>();
  int64_t* cp = codes.data_ptr<int64_t>();
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
  for (int64_t ch = 0; ch < c; ++ch) {
    const Grid& g = grids[per_channel ? static_cast<size_t>(ch) : 0];
    const int64_t qmin = g.offset, qmax = g.offset + (int64_t{1} << g.bits) - 1;
    for (int64_t i = 0; i < per; ++i) {
      const double x = wp[ch * per + i] / g.scale;
      const double r = std::nearbyint(x);
      // The exported weight lies on the grid: x is an integer up to float rounding.
      if (std::abs(x - r) > 1e-3 || r < static_cast<double>(qmin) || r > static_cast<double>(qmax))
        throw InternalError(where + ": channel " + std::to_string(ch) + " element " + std::to_string(i) + " = " +
                            std::to_string(wp[ch * per + i]) + " is not on its grid (scale " + std::to_string(g.scale) +
                            ", codes " + std::to_string(qmin) + ".." + std::to_string(qmax) + ")");
      cp[ch * per + i] = static_cast<int64_t>(r);
      lo = std::min(lo, static_cast<int64_t>(r));
      hi = std::max(hi, static_cast<int64_t>(r));
    }
  }
  std::vector<float> scales;
  std::vector<int64_t> zps;
  for (const Grid& g : grids) {
    scales.push_back(static_cast<float>(g.scale));
    zps.push_back(-g.offset);
  }
  const at::Tensor scale_t = per_channel ? at::tensor(scales) : at::scalar_tensor(scales[0], at::kFloat);
  std::string q_name, zp_name;
  const auto zero_points = [&](at::ScalarType t) { return per_channel ? at::zeros({c}, t) : at::zeros({}, t); };
  if (lo >= -128 && hi <= 127) {  // absolute codes in int8, zero point 0: every grid of up to 7 bits containing 0
    q_name = em.init(lname + ".weight_quantized", codes.to(at::kChar));
    zp_name = em.init(lname + ".weight_zero_point", zero_points(at::kChar));
  } else {
    bool fits_uint8 = true;  // every channel's zero point -offset in 0..255: the range contains zero
    for (const Grid& g : grids) fits_uint8 = fits_uint8 && -g.offset >= 0 && -g.offset <= 255;
    if (fits_uint8) {  // uint8 codes q - offset with zero point -offset (8-bit grids)
      at::Tensor zp = at::tensor(zps, at::kLong);
      const at::Tensor shifted =
          per_channel ? codes + zp.view({c, 1}).expand({c, per}).reshape(codes.sizes()) : codes + zps[0];
      q_name = em.init(lname + ".weight_quantized", shifted.to(at::kByte));
      zp_name = em.init(lname + ".weight_zero_point", per_channel ? zp.to(at::kByte) : zp[0].to(at::kByte));
    } else {  // a channel whose range lies on one side of zero (zeroq's per-channel min/max at 8 bits): int32 codes,
              // zero point 0 (exact; no 8-bit type holds them)
      q_name = em.init(lname + ".weight_quantized", codes.to(at::kInt));
      zp_name = em.init(lname + ".weight_zero_point", zero_points(at::kInt));
      ++sum.int32_weights;
    }
  }
  const std::string s_name = em.init(lname + ".weight_scale", scale_t);
  const std::string out = lname + ".weight";
  onnx::NodeProto* dq = em.node("DequantizeLinear", {q_name, s_name, zp_name}, {out});
  if (per_channel) Emitter::attr_int(dq, "axis", 0);
  ++sum.quantized_weights;
  return out;
}

}  // namespace

OnnxSummary write_onnx(const std::string& path, const models::Network& net, const std::vector<at::Tensor>& weights,
                       const nlohmann::json& encodings, const std::map<std::string, std::string>& metadata) {
  const std::string where = what(net);
  const auto& layers = net.layers();
  const auto& acts = net.acts();
  DSGQ_CHECK(weights.size() == layers.size(), where + ": one weight per layer expected");
  const nlohmann::json empty = nlohmann::json::object();
  const nlohmann::json& penc = encodings.contains("param_encodings") ? encodings.at("param_encodings") : empty;
  const nlohmann::json& aenc =
      encodings.contains("activation_encodings") ? encodings.at("activation_encodings") : empty;
  for (auto it = aenc.begin(); it != aenc.end(); ++it) {
    bool known = false;
    for (const auto& a : acts) known = known || a.name == it.key();
    if (!known) throw InputError(where + ": activation_encodings '" + it.key() + "' is not an activation site");
  }

  // 1. Trace the forward pass with the quantized weights as constants, recording which conv/linear call is which
  // layer and which traced value each activation site produced.
  std::vector<int> layer_calls;
  std::unordered_map<const jit::Value*, int> site_of;
  models::ForwardHooks hooks;
  hooks.weight = [&](int l, const at::Tensor& w) {
    const at::Tensor& q = weights[static_cast<size_t>(l)];
    return q.defined() ? q : w;
  };
  hooks.layer_io = [&](int l, const at::Tensor&, const at::Tensor&) { layer_calls.push_back(l); };
  hooks.activation = [&](int a, const at::Tensor& y) {
    site_of[jit::tracer::getValueTrace(y)] = a;
    return y;
  };
  const models::InputSpec& in = net.input();
  const at::Tensor x0 = at::zeros({kTraceBatch, in.channels, in.height, in.width},
                                  at::TensorOptions().dtype(at::kFloat).device(net.device()));
  models::Network plain(net);  // the trace in the default layout (channels-last adds layout copies, not ONNX ops)
  plain.set_channels_last(false);
  plain.set_conv_bf16(false);
  std::shared_ptr<jit::Graph> graph;
  {
    at::NoGradGuard no_grad;
    auto traced = jit::tracer::trace(
        {x0}, [&](jit::Stack s) { return jit::Stack{plain.forward(s[0].toTensor(), &hooks)}; },
        [](const at::Tensor&) { return std::string(); }, /*strict=*/false, /*force_outplace=*/false);
    graph = traced.first->graph;
  }

  // 2. Translate node by node.
  onnx::ModelProto model;
  model.set_ir_version(kIrVersion);
  model.set_producer_name("dsgq");
  model.set_model_version(1);
  auto* opset = model.add_opset_import();
  opset->set_domain("");
  opset->set_version(kOpset);
  for (const auto& kv : metadata) {
    auto* p = model.add_metadata_props();
    p->set_key(kv.first);
    p->set_value(kv.second);
  }
  onnx::GraphProto* g = model.mutable_graph();
  g->set_name(net.arch() + "_qdq");
  Emitter em(net, g);
  OnnxSummary sum;

  auto add_io = [](google::protobuf::RepeatedPtrField<onnx::ValueInfoProto>* list, const std::string& n,
                   const std::vector<int64_t>& dims) {
    onnx::ValueInfoProto* vi = list->Add();
    vi->set_name(n);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = tt->mutable_shape();
    for (size_t i = 0; i < dims.size(); ++i) {
      auto* d = shape->add_dim();
      if (i == 0)
        d->set_dim_param("batch");
      else
        d->set_dim_value(dims[i]);
    }
  };
  add_io(g->mutable_input(), "input", {0, in.channels, in.height, in.width});
  em.set_name(graph->inputs()[0], "input");

  size_t call = 0;  // next entry of layer_calls
  std::unordered_map<const jit::Value*, std::vector<std::string>> chunk_outputs;
  for (const jit::Node* n : graph->nodes()) {
    const c10::Symbol k = n->kind();
    const auto& I = n->inputs();
    auto out_name = [&](const jit::Value* v, const std::string& hint) {
      const std::string nm = em.fresh(hint);
      em.set_name(v, nm);
      return nm;
    };
    if (k == c10::prim::Constant || k == c10::prim::ListConstruct) continue;  // read where used
    const std::string ks = k.toQualString();
    if (ks == "aten::_convolution" || ks == "aten::conv2d" || ks == "aten::linear") {
      DSGQ_CHECK(call < layer_calls.size(), where + ": more traced convolutions than layer calls");
      const int l = layer_calls[call++];
      const models::LayerSpec& spec = layers[static_cast<size_t>(l)];
      const at::Tensor w = em.const_tensor(I[1]);
      DSGQ_CHECK(w.sizes() == weights[static_cast<size_t>(l)].sizes() || !weights[static_cast<size_t>(l)].defined(),
                 where + ": traced weight of " + spec.name + " has an unexpected shape");
      const std::string key = spec.name + ".weight";
      std::string w_name;
      if (penc.contains(key)) {
        w_name = quantized_weight(em, net, spec.name, w, penc.at(key), sum);
      } else {
        w_name = em.init(key, w.to(at::kFloat));
      }
      std::vector<std::string> ins{em.name(I[0]), w_name};
      if (!em.is_none(I[2])) ins.push_back(em.init(spec.name + ".bias", em.const_tensor(I[2]).to(at::kFloat)));
      const std::string out = spec.name;
      em.set_name(n->output(), out);
      if (ks == "aten::linear") {
        if (rank_of(I[0]) != 2) throw InternalError(where + ": linear layer " + spec.name + " on a non-2-D input");
        onnx::NodeProto* gm = em.node("Gemm", ins, {out});
        Emitter::attr_int(gm, "transB", 1);
      } else {
        const std::vector<int64_t> stride = pair(em.ints(I[3])), pad = pair(em.ints(I[4])), dil = pair(em.ints(I[5]));
        const int64_t groups = em.int_of(I[ks == "aten::conv2d" ? 6 : 8]);
        if (ks == "aten::_convolution" && em.scalar(I[6]).toBool())
          throw InternalError(where + ": transposed convolution in " + spec.name);
        onnx::NodeProto* cv = em.node("Conv", ins, {out});
        Emitter::attr_ints(cv, "kernel_shape", {w.size(2), w.size(3)});
        Emitter::attr_ints(cv, "strides", stride);
        Emitter::attr_ints(cv, "pads", {pad[0], pad[1], pad[0], pad[1]});
        Emitter::attr_ints(cv, "dilations", dil);
        Emitter::attr_int(cv, "group", groups);
      }
    } else if (ks == "aten::batch_norm") {
      std::vector<std::string> ins{em.name(I[0])};
      for (int i = 1; i <= 4; ++i) {
        if (em.is_none(I[static_cast<size_t>(i)])) throw InternalError(where + ": BatchNorm without affine/statistics");
        ins.push_back(em.name(I[static_cast<size_t>(i)]));
      }
      onnx::NodeProto* bn = em.node("BatchNormalization", ins, {out_name(n->output(), "bn")});
      Emitter::attr_float(bn, "epsilon", static_cast<float>(em.double_of(I[7])));
    } else if (ks == "aten::relu") {
      em.node("Relu", {em.name(I[0])}, {out_name(n->output(), "relu")});
    } else if (ks == "aten::hardtanh") {
      const std::string lo = em.init_scalar(em.fresh("clip_min"), static_cast<float>(em.double_of(I[1])));
      const std::string hi = em.init_scalar(em.fresh("clip_max"), static_cast<float>(em.double_of(I[2])));
      em.node("Clip", {em.name(I[0]), lo, hi}, {out_name(n->output(), "relu6")});
    } else if (ks == "aten::add" || ks == "aten::add_") {
      if (I.size() > 2 && em.double_of(I[2]) != 1.0) throw InternalError(where + ": add with alpha != 1");
      em.node("Add", {em.name(I[0]), em.name(I[1])}, {out_name(n->output(), "add")});
    } else if (ks == "aten::mean") {
      onnx::NodeProto* m = em.node("ReduceMean", {em.name(I[0])}, {out_name(n->output(), "mean")});
      Emitter::attr_ints(m, "axes", em.ints(I[1]));
      Emitter::attr_int(m, "keepdims", em.scalar(I[2]).toBool() ? 1 : 0);
    } else if (ks == "aten::constant_pad_nd") {
      const std::vector<int64_t> p = em.ints(I[1]);
      const int64_t r = rank_of(I[0]);
      std::vector<int64_t> pads(static_cast<size_t>(2 * r), 0);
      for (size_t i = 0; 2 * i + 1 < p.size(); ++i) {
        const int64_t dim = r - 1 - static_cast<int64_t>(i);
        pads[static_cast<size_t>(dim)] = p[2 * i];
        pads[static_cast<size_t>(dim + r)] = p[2 * i + 1];
      }
      const std::string pn = em.init_ints(em.fresh("pads"), pads);
      const std::string val = em.init_scalar(em.fresh("pad_value"), static_cast<float>(em.double_of(I[2])));
      onnx::NodeProto* pd = em.node("Pad", {em.name(I[0]), pn, val}, {out_name(n->output(), "pad")});
      (void)pd;
    } else if (ks == "aten::slice") {
      const int64_t dim = em.int_of(I[1]);
      const int64_t start = em.is_none(I[2]) ? 0 : em.int_of(I[2]);
      const int64_t end = em.is_none(I[3]) ? std::numeric_limits<int64_t>::max() : em.int_of(I[3]);
      const int64_t step = em.int_of(I[4]);
      em.node("Slice",
              {em.name(I[0]), em.init_ints(em.fresh("starts"), {start}), em.init_ints(em.fresh("ends"), {end}),
               em.init_ints(em.fresh("axes"), {dim}), em.init_ints(em.fresh("steps"), {step})},
              {out_name(n->output(), "slice")});
    } else if (ks == "aten::cat") {
      const jit::Node* list = I[0]->node();
      if (list->kind() != c10::prim::ListConstruct) throw InternalError(where + ": cat of a non-literal list");
      std::vector<std::string> ins;
      for (const jit::Value* v : list->inputs()) ins.push_back(em.name(v));
      onnx::NodeProto* c = em.node("Concat", ins, {out_name(n->output(), "concat")});
      Emitter::attr_int(c, "axis", em.int_of(I[1]));
    } else if (ks == "aten::max_pool2d" || ks == "aten::avg_pool2d") {
      const bool mx = ks == "aten::max_pool2d";
      const std::vector<int64_t> kernel = pair(em.ints(I[1]));
      std::vector<int64_t> stride = pair(em.ints(I[2]));
      if (stride.empty()) stride = kernel;
      const std::vector<int64_t> pad = pair(em.ints(I[3]));
      onnx::NodeProto* p =
          em.node(mx ? "MaxPool" : "AveragePool", {em.name(I[0])}, {out_name(n->output(), mx ? "maxpool" : "avgpool")});
      Emitter::attr_ints(p, "kernel_shape", kernel);
      Emitter::attr_ints(p, "strides", stride);
      Emitter::attr_ints(p, "pads", {pad[0], pad[1], pad[0], pad[1]});
      if (mx) {
        const std::vector<int64_t> dil = pair(em.ints(I[4]));
        if (dil != std::vector<int64_t>{1, 1}) Emitter::attr_ints(p, "dilations", dil);
        Emitter::attr_int(p, "ceil_mode", em.scalar(I[5]).toBool() ? 1 : 0);
      } else {
        Emitter::attr_int(p, "ceil_mode", em.scalar(I[4]).toBool() ? 1 : 0);
        Emitter::attr_int(p, "count_include_pad", em.scalar(I[5]).toBool() ? 1 : 0);
        if (!em.is_none(I[6])) throw InternalError(where + ": avg_pool2d with divisor_override");
      }
    } else if (ks == "aten::adaptive_avg_pool2d") {
      if (em.ints(I[1]) != std::vector<int64_t>{1, 1})
        throw InternalError(where + ": adaptive_avg_pool2d to a size other than 1x1");
      em.node("GlobalAveragePool", {em.name(I[0])}, {out_name(n->output(), "gap")});
    } else if (ks == "aten::flatten") {
      const int64_t r = rank_of(I[0]);
      const int64_t s = em.int_of(I[1]), e = em.int_of(I[2]);
      if (s != 1 || (e != -1 && e != r - 1)) throw InternalError(where + ": flatten other than (1, -1)");
      onnx::NodeProto* f = em.node("Flatten", {em.name(I[0])}, {out_name(n->output(), "flatten")});
      Emitter::attr_int(f, "axis", 1);
    } else if (ks == "aten::view" || ks == "aten::reshape") {
      std::vector<int64_t> shape = em.ints(I[1]);
      if (!shape.empty() && shape[0] == kTraceBatch) shape[0] = 0;  // the batch: copied from the input
      em.node("Reshape", {em.name(I[0]), em.init_ints(em.fresh("shape"), shape)}, {out_name(n->output(), "reshape")});
    } else if (ks == "aten::transpose") {
      const int64_t r = rank_of(I[0]);
      int64_t d0 = em.int_of(I[1]), d1 = em.int_of(I[2]);
      if (d0 < 0) d0 += r;
      if (d1 < 0) d1 += r;
      std::vector<int64_t> perm(static_cast<size_t>(r));
      for (int64_t i = 0; i < r; ++i) perm[static_cast<size_t>(i)] = i;
      std::swap(perm[static_cast<size_t>(d0)], perm[static_cast<size_t>(d1)]);
      onnx::NodeProto* t = em.node("Transpose", {em.name(I[0])}, {out_name(n->output(), "transpose")});
      Emitter::attr_ints(t, "perm", perm);
    } else if (ks == "aten::contiguous" || ks == "aten::detach" || ks == "aten::clone") {
      em.set_name(n->output(), em.name(I[0]));
    } else if (ks == "aten::chunk") {
      const int64_t chunks = em.int_of(I[1]);
      const int64_t dim = em.int_of(I[2]);
      const auto t = I[0]->type()->cast<c10::TensorType>();
      const auto sizes = t->sizes().concrete_sizes();
      DSGQ_CHECK(sizes.has_value(), where + ": chunk of a tensor without a static shape");
      const int64_t r = static_cast<int64_t>(sizes->size());
      const int64_t total = (*sizes)[static_cast<size_t>(dim < 0 ? dim + r : dim)];
      const int64_t each = (total + chunks - 1) / chunks;
      std::vector<int64_t> split;
      for (int64_t done = 0; done < total; done += each) split.push_back(std::min(each, total - done));
      std::vector<std::string> outs;
      for (size_t i = 0; i < split.size(); ++i) outs.push_back(em.fresh("chunk"));
      onnx::NodeProto* sp = em.node("Split", {em.name(I[0]), em.init_ints(em.fresh("split"), split)}, outs);
      Emitter::attr_int(sp, "axis", dim);
      chunk_outputs[n->output()] = outs;
    } else if (k == c10::prim::ListUnpack) {
      auto it = chunk_outputs.find(I[0]);
      if (it == chunk_outputs.end() || it->second.size() != n->outputs().size())
        throw InternalError(where + ": ListUnpack of something other than a chunk");
      for (size_t i = 0; i < n->outputs().size(); ++i) em.set_name(n->outputs()[i], it->second[i]);
    } else {
      throw InternalError(where + ": the traced op " + ks + " has no ONNX mapping");
    }

    // An activation site with an encoding: Clip to the k-bit range (below 8 bits), then an 8-bit QDQ pair, same grid.
    for (const jit::Value* o : n->outputs()) {
      auto site = site_of.find(o);
      if (site == site_of.end()) continue;
      const std::string& sname = acts[static_cast<size_t>(site->second)].name;
      if (!aenc.contains(sname)) continue;
      const std::string ewhere = where + ": activation_encodings '" + sname + "'";
      const nlohmann::json& e = aenc.at(sname);
      if (!e.contains("output") || !e.at("output").contains("0"))
        throw InputError(ewhere + ": expected {\"output\": {\"0\": entry}}");
      const Grid gr = grid_of(e.at("output").at("0"), ewhere);
      if (-gr.offset < 0 || -gr.offset > 255)
        throw InputError(ewhere + ": offset " + std::to_string(gr.offset) +
                         " puts the zero point outside uint8 (the range does not contain zero); expected -255..0 (or "
                         "set quant.onnx = false)");
      const float s = static_cast<float>(gr.scale);
      const float lo = static_cast<float>(static_cast<double>(gr.offset) * gr.scale);
      const float hi = static_cast<float>(static_cast<double>(gr.offset + (int64_t{1} << gr.bits) - 1) * gr.scale);
      const std::string x = em.name(o);
      const std::string q = sname + "_quantized", dq = sname + "_dq";
      // At 8 bits QuantizeLinear's own saturation to 0..255 is the clip: the plain QDQ pair that runtimes fuse.
      std::string clip = x;
      if (gr.bits < 8) {
        clip = sname + "_clip";
        em.node("Clip", {x, em.init_scalar(sname + "_min", lo), em.init_scalar(sname + "_max", hi)}, {clip});
      }
      const std::string sc = em.init_scalar(sname + "_scale", s);
      const std::string zp = em.init(sname + "_zero_point", at::scalar_tensor(-gr.offset, at::kByte));
      em.node("QuantizeLinear", {clip, sc, zp}, {q});
      em.node("DequantizeLinear", {q, sc, zp}, {dq});
      em.set_name(o, dq);
      ++sum.quantized_activations;
    }
  }
  DSGQ_CHECK(call == layer_calls.size(), where + ": fewer traced convolutions than layer calls");
  const std::string last = em.name(graph->outputs()[0]);
  em.node("Identity", {last}, {"logits"});
  add_io(g->mutable_output(), "logits", {0, in.num_classes});

  // 3. Check (ONNX's checker and strict shape inference), then write atomically.
  try {
    onnx::checker::check_model(model);
    onnx::ModelProto inferred = model;
    onnx::shape_inference::InferShapes(inferred, onnx::OpSchemaRegistry::Instance(),
                                       onnx::ShapeInferenceOptions(/*check_type=*/true, /*strict=*/1));
  } catch (const std::exception& e) {
    throw InternalError(where + ": the ONNX checker rejected the graph: " + e.what());
  }
  std::string bytes;
  DSGQ_CHECK(model.SerializeToString(&bytes), where + ": serialization failed");
  atomic_write_file(path, bytes);
  sum.nodes = g->node_size();
  sum.initializers = g->initializer_size();
  sum.bytes = static_cast<int64_t>(bytes.size());
  return sum;
}

}  // namespace dsgq::deploy
