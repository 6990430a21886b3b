// Helper for the Python oracle tests (tests/oracle/test_oracle.py): runs dsgq's own code on files that
// Debian's python3-torch wrote, and writes the results back as torch.save-readable state_dicts.
//   oracle_tool roundtrip IN.pt OUT.pt              read IN with dsgq's checkpoint reader, write every tensor back
//   oracle_tool forward ARCH WEIGHTS IN.pt OUT.pt   IN holds 'x' (normalized input); OUT holds 'logits' and the
//                                                   BN taps 'bn.<i>' (input of BN i, layer order) and 'act.<i>'
//   oracle_tool synth-margins ARCH WEIGHTS IN.pt OUT.pt   IN {x, q}: SDA margins of the images x -> {delta, gamma}
//   oracle_tool synth-loss ARCH WEIGHTS IN.pt OUT.pt      IN {x, delta, gamma, labels, roll, method, preset, lse,
//                                                   first_index; deepinversion also jitter [2], flip, weights [6]
//                                                   (ce, bn, first_bn, tv_l2, tv_l1, l2); dsg optionally sci_weight,
//                                                   sci_gauss [B,C,H,W]}: synthesis loss and
//                                                   d loss/d x -> {loss, grad}
//   (interface of tests/oracle/test_synth_oracle.py)
//   oracle_tool fake-quant IN.pt OUT.pt             IN {x, scale, zero_point, qmin, qmax, axis} -> {y}
//   oracle_tool genie-step ARCH WEIGHTS IN.pt OUT.pt IN {z [B,256], p0..p9 (generator parameters), swing i64
//                                                   [layers,2] (dy,dx; -1 = none), jitter}: G(z), Genie's loss
//                                                   and its gradients -> {x, loss, grad_z, grad_p0..grad_p9}
//   oracle_tool genie-init SEED BATCH C H W OUT.pt  the generator's initial parameters -> {p0..p9}
//   oracle_tool onnx-zoo ARCH W_BITS A_BITS OUT     ARCH with seeded random weights (He-initialised convs, BN near
//                                                   identity), the zeroq protocol calibrated on 8 N(0,1) images:
//                                                   OUT.onnx (the QDQ export) and OUT.pt {x [4,C,H,W], logits}
//                                                   (dsgq's own quantized forward of x)
#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "core/error.hpp"
#include "models/checkpoint.hpp"
#include "mpi/comm.hpp"
#include "models/registry.hpp"
#include "io/cifar10.hpp"
#include "deploy/onnx_export.hpp"
#include "quant/adaround_protocol.hpp"
#include "quant/encodings.hpp"
#include "quant/zeroq_protocol.hpp"
#include "quant/quantizer.hpp"
#include "quant/recon_protocol.hpp"
#include "synth/margins.hpp"
#include "synth/genie.hpp"
#include "synth/objective.hpp"

using namespace dsgq;

namespace {

std::map<std::string, at::Tensor> read_dict(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  for (const auto& nt : models::read_checkpoint(path).tensors) out[nt.name] = nt.tensor;
  return out;
}

at::Tensor need(const std::map<std::string, at::Tensor>& d, const std::string& key) {
  auto it = d.find(key);
  if (it == d.end()) throw InputError("oracle input has no tensor '" + key + "'");
  return it->second;
}

std::string ascii(const at::Tensor& t) {
  std::string s;
  for (int64_t i = 0; i < t.numel(); ++i) s += static_cast<char>(t[i].item<int64_t>());
  return s;
}

std::vector<double> to_vec(const at::Tensor& t) {
  const at::Tensor d = t.to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}

}  // namespace

// The ONNX export of any zoo architecture, without its real weights: seeded random weights, zeroq-quantized.
int onnx_zoo(const std::string& arch, int64_t w_bits, int64_t a_bits, const std::string& out) {
  auto net = models::build_network(arch, "arch");
  at::manual_seed(0);
  models::Checkpoint ck;
  for (const auto& [name, shape] : net->param_specs()) {
    at::Tensor t;
    const auto ends = [&](const char* suf) {
      const std::string s(suf);
      return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0;
    };
    if (shape.size() >= 2) {  // conv / linear weight: He initialisation over the fan-in
      int64_t fan_in = 1;
      for (size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
      t = at::randn(shape) * std::sqrt(2.0 / static_cast<double>(fan_in));
    } else if (ends("running_var")) {
      t = at::rand(shape) + 0.5;
    } else if (ends("running_mean")) {
      t = at::randn(shape) * 0.1;
    } else if (ends("weight")) {
      t = at::rand(shape) * 0.5 + 0.75;
    } else {
      t = at::randn(shape) * 0.1;
    }
    ck.tensors.push_back({name, t});
  }
  for (const auto& [name, shape] : net->ignored_specs()) ck.tensors.push_back({name, at::zeros(shape)});
  net->load(ck);
  const models::InputSpec& in = net->input();
  config::QuantConfig cfg;
  cfg.protocol = config::Protocol::zeroq;
  cfg.w_bits = w_bits;
  cfg.a_bits = a_bits;
  cfg.act_observer = config::Observer::minmax;
  torch::NoGradGuard ng;
  quant::ZeroqQuantizer zq(*net, cfg);
  zq.calibrate(at::randn({8, in.channels, in.height, in.width}));
  std::vector<at::Tensor> weights = zq.weights();
  deploy::write_onnx(out + ".onnx", *net, weights, quant::encodings_json(*net, zq), {{"arch", arch}});
  const at::Tensor x = at::randn({4, in.channels, in.height, in.width});
  models::write_checkpoint(out + ".pt", {{"x", x}, {"logits", net->forward(x, &zq.hooks())}});
  return 0;
}

// One reconstruction step of the qdrop protocol on the real resnet20's block layer2.0 (stride 2, option-A
// shortcut), W4 weights, A4 activations, drop 0.5, regulariser on: inputs and the C++ loss and gradients, for
// test_recon_oracle.py (tests/oracle/recon_ref.py recomputes them from the inputs alone).
int recon_case(const std::string& data_dir, const std::string& out) {
  auto net = models::build_network("resnet20", "arch");
  net->load(models::read_checkpoint(data_dir + "/models/cifar10_resnet20.pt"));
  const auto folded = net->folded();
  const int64_t B = 4;
  const at::Tensor images =
      folded->normalize(io::read_cifar10(data_dir + "/cifar10/data_batch_1.bin", 0, B).images, at::kCPU);
  config::QuantConfig qc;
  qc.w_bits = 4;
  qc.a_bits = 4;
  qc.first_last_bits = 8;
  qc.recon.drop = 0.5;
  const std::vector<quant::WeightGrid> grids = quant::weight_grids(*folded, qc);
  std::vector<quant::ActGrid> acts;
  for (int b : quant::activation_bits(*folded, qc)) acts.push_back({0.0, 0, b});
  int unit = -1;
  for (size_t u = 0; u < folded->units().size(); ++u)
    if (folded->units()[u].name == "layer2.0") unit = static_cast<int>(u);
  // The unit's FP input and output; the quantized network's input is the FP input on a 4-bit grid.
  torch::NoGradGuard ng_setup;
  at::Tensor x_fp = images;
  for (int u = 0; u < unit; ++u) x_fp = folded->unit_forward(u, x_fp);
  const at::Tensor y_fp = folded->unit_forward(unit, x_fp);
  const double in_step = x_fp.max().item<double>() / 15.0;
  const at::Tensor x_q = at::fake_quantize_per_tensor_affine(x_fp, in_step, 0, 0, 15);
  torch::manual_seed(11);
  for (auto& g : acts) g.scale = 0.05 + 0.1 * torch::rand({1}).item<double>();
  quant::UnitObjective obj(*folded, unit, x_fp, grids, acts, qc.recon, B);
  for (auto& v : obj.v()) v.data().add_(torch::randn(v.sizes()) * 0.5);
  const at::Tensor u_in = torch::rand(x_fp.sizes());
  std::vector<at::Tensor> u_sites;
  for (const auto& shape : obj.site_shapes()) {
    std::vector<int64_t> full = {B};
    full.insert(full.end(), shape.begin(), shape.end());
    u_sites.push_back(torch::rand(full));
  }
  const double lambda = 0.01, beta = 10.0;
  at::Tensor rec, loss;
  {
    torch::AutoGradMode grad_on(true);
    rec = obj.loss(x_q, x_fp, y_fp, u_in, u_sites);
    loss = rec + lambda * obj.regularizer(beta);
    loss.backward();
  }
  auto scalar = [](double v) { return torch::tensor({v}, torch::kFloat); };
  std::vector<models::NamedTensor> d = {{"x_q", x_q}, {"x_fp", x_fp}, {"y_fp", y_fp}, {"u_in", u_in}};
  for (size_t i = 0; i < u_sites.size(); ++i)
    d.push_back({"site" + std::to_string(i) + ".step", obj.steps()[i].detach()});
  for (size_t i = 0; i < u_sites.size(); ++i) {
    const std::string p = "site" + std::to_string(i);
    const quant::ActGrid& g = acts[static_cast<size_t>(obj.sites()[i])];
    d.push_back({"u_" + p, u_sites[i]});
    d.push_back({p + ".zero_point", scalar(double(g.zero_point))});
    d.push_back({p + ".bits", scalar(g.bits)});
    d.push_back({"grad." + p + ".step", obj.steps()[i].grad()});
  }
  for (size_t i = 0; i < obj.layers().size(); ++i) {
    const std::string p = "conv" + std::to_string(i + 1);
    const int l = obj.layers()[i];
    const std::string& name = folded->layers()[static_cast<size_t>(l)].name;
    d.push_back({p + ".weight", folded->param(name + ".weight")});
    d.push_back({p + ".bias", folded->param(name + ".bias")});
    d.push_back({p + ".scale", grids[static_cast<size_t>(l)].scale});
    d.push_back({p + ".zero_point", grids[static_cast<size_t>(l)].zero_point});
    d.push_back({p + ".v", obj.v()[i].detach()});
    d.push_back({p + ".bits", scalar(grids[static_cast<size_t>(l)].bits)});
    d.push_back({"grad." + p + ".v", obj.v()[i].grad()});
  }
  d.insert(d.end(), {{"drop", scalar(qc.recon.drop)},
                     {"lambda", scalar(lambda)},
                     {"beta", scalar(beta)},
                     {"reg_on", scalar(1.0)},
                     {"out.loss", scalar(loss.item<double>())},
                     {"out.rec", scalar(rec.item<double>())}});
  models::write_checkpoint(out, d);
  std::printf("recon-case: unit %d (layer2.0), %zu layers, %zu sites, loss %.6g -> %s\n", unit, obj.layers().size(),
              obj.sites().size(), loss.item<double>(), out.c_str());
  return 0;
}

int main(int argc, char** argv) {
  mpi::MpiEnv mpi(argc, argv);
  try {
    at::set_num_threads(1);
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "roundtrip" && argc == 4) {
      const models::Checkpoint ck = models::read_checkpoint(argv[2]);
      std::printf("container %s, %zu tensors, stripped module. prefix: %d\n", ck.container.c_str(), ck.tensors.size(),
                  int(ck.stripped_module_prefix));
      models::write_checkpoint(argv[3], ck.tensors);
      return 0;
    }
    if (cmd == "forward" && argc == 6) {
      auto net = models::build_network(argv[2], "arch");
      net->load(models::read_checkpoint(argv[3]));
      const models::Checkpoint in = models::read_checkpoint(argv[4]);
      at::Tensor x;
      for (const auto& nt : in.tensors)
        if (nt.name == "x") x = nt.tensor;
      if (!x.defined()) throw InputError(std::string(argv[4]) + ": no tensor 'x'");
      std::vector<models::NamedTensor> out;
      models::ForwardHooks hooks;
      hooks.bn_input = [&](int i, const at::Tensor& t) { out.push_back({"bn." + std::to_string(i), t.clone()}); };
      hooks.activation = [&](int i, const at::Tensor& t) {
        out.push_back({"act." + std::to_string(i), t.clone()});
        return t;
      };
      torch::NoGradGuard ng;
      out.push_back({"logits", net->forward(x, &hooks)});
      models::write_checkpoint(argv[5], out);
      return 0;
    }
    if (cmd == "fake-quant" && argc == 4) {
      const auto in = read_dict(argv[2]);
      const at::Tensor y = quant::fake_quant_affine(need(in, "x"), need(in, "scale"), need(in, "zero_point"),
                                                    need(in, "qmin").item<int64_t>(), need(in, "qmax").item<int64_t>(),
                                                    need(in, "axis").item<int64_t>());
      models::write_checkpoint(argv[3], {{"y", y}});
      return 0;
    }
    if ((cmd == "synth-margins" || cmd == "synth-loss") && argc == 6) {
      auto net = models::build_network(argv[2], "arch");
      net->load(models::read_checkpoint(argv[3]));
      const auto in = read_dict(argv[4]);
      if (cmd == "synth-margins") {
        const synth::Margins m = synth::margins_of(*net, need(in, "x"), need(in, "q").item<double>());
        models::write_checkpoint(argv[5], {{"delta", torch::tensor(m.delta).to(torch::kFloat)},
                                           {"gamma", torch::tensor(m.gamma).to(torch::kFloat)}});
        return 0;
      }
      const std::string method = ascii(need(in, "method")), preset = ascii(need(in, "preset"));
      synth::ObjectiveConfig oc;
      oc.sda = method == "dsg";
      oc.lse = oc.sda && need(in, "lse").item<int64_t>() != 0;
      oc.official = oc.sda && preset == "official";
      if (oc.sda) {
        oc.delta = to_vec(need(in, "delta"));
        oc.gamma = to_vec(need(in, "gamma"));
      }
      if (oc.sda && in.count("sci_weight")) oc.sci_weight = need(in, "sci_weight").item<double>();
      oc.deepinversion = method == "deepinversion";
      if (oc.deepinversion) {
        const std::vector<double> w = to_vec(need(in, "weights"));
        if (w.size() != 6) throw InputError("oracle input 'weights': expected 6 values");
        oc.ce_weight = w[0];
        oc.bn_weight = w[1];
        oc.first_bn_weight = w[2];
        oc.tv_l2 = w[3];
        oc.tv_l1 = w[4];
        oc.l2 = w[5];
        if (in.count("stem_l1")) oc.stem_l1 = need(in, "stem_l1").item<double>();
      }
      const synth::Objective objective(*net, oc, mpi.world());
      at::Tensor x = need(in, "x").clone().requires_grad_(true);
      synth::BatchSlice slice;
      slice.global_batch = x.size(0);
      slice.batch_offset = 0;
      slice.first_global = need(in, "first_index").item<int64_t>();
      slice.labels = need(in, "labels");
      slice.roll = need(in, "roll").item<int64_t>();
      if (oc.sci_weight > 0) slice.sci_gauss = need(in, "sci_gauss");
      if (oc.deepinversion) {
        const at::Tensor j = need(in, "jitter");
        slice.jitter_h = j[0].item<int64_t>();
        slice.jitter_w = j[1].item<int64_t>();
        slice.flip = need(in, "flip").item<int64_t>() != 0;
        if (in.count("mix_other")) {  // mix > 0: the second class and the weight of the first
          slice.mix_other = need(in, "mix_other");
          slice.mix_weight = need(in, "mix_weight");
        }
        if (in.count("soft_target")) slice.soft_target = need(in, "soft_target");  // soft_target > 0: t per image
        if (in.count("crop_index")) {  // crop > 0: the per-image crop positions in the padded plane, and the pad
          slice.crop_index = need(in, "crop_index");
          slice.crop_pad = need(in, "crop_pad").item<int64_t>();
        }
      }
      synth::LossValue value;
      objective.evaluate(x, slice, &value).backward();
      models::write_checkpoint(argv[5], {{"loss", torch::tensor(value.total, torch::kDouble)}, {"grad", x.grad()}});
      return 0;
    }
    if (cmd == "genie-step" && argc == 6) {  // method genie (docs/method.md section 7.3): G(z), loss, gradients
      auto net = models::build_network(argv[2], "arch");
      net->load(models::read_checkpoint(argv[3]));
      const auto in = read_dict(argv[4]);
      std::vector<at::Tensor> params;
      for (int k = 0; k < 10; ++k) params.push_back(need(in, "p" + std::to_string(k)).clone().requires_grad_(true));
      const at::Tensor z = need(in, "z").clone().requires_grad_(true);
      const at::Tensor sw = need(in, "swing");  // int64 [layers, 2]: (dy, dx), -1 for an unchanged layer
      std::vector<std::pair<int64_t, int64_t>> swing;
      for (int64_t l = 0; l < sw.size(0); ++l) swing.push_back({sw[l][0].item<int64_t>(), sw[l][1].item<int64_t>()});
      if (swing.size() != net->layers().size())
        throw InputError("oracle input 'swing': expected one row per layer (" + std::to_string(net->layers().size()) +
                         ")");
      const int64_t jitter = need(in, "jitter").item<int64_t>();
      const auto& shape = net->input();
      const at::Tensor x = synth::genie_generate(params, z, z.size(0), shape.height, shape.width, mpi.world());
      const synth::GenieLoss loss = synth::genie_loss(*net, x, x.size(0), swing, jitter, mpi.world());
      loss.surrogate.backward();
      std::vector<models::NamedTensor> out = {
          {"x", x.detach()}, {"loss", torch::tensor(loss.total, torch::kDouble)}, {"grad_z", z.grad()}};
      for (int k = 0; k < 10; ++k) out.push_back({"grad_p" + std::to_string(k), params[k].grad()});
      models::write_checkpoint(argv[5], out);
      return 0;
    }
    if (cmd == "genie-init" && argc == 8) {  // genie_init(seed, batch, C, H, W) -> p0..p9
      const auto p = synth::genie_init(std::stoull(argv[2]), std::stoll(argv[3]), std::stoll(argv[4]),
                                       std::stoll(argv[5]), std::stoll(argv[6]));
      std::vector<models::NamedTensor> out;
      for (size_t k = 0; k < p.size(); ++k) out.push_back({"p" + std::to_string(k), p[k]});
      models::write_checkpoint(argv[7], out);
      return 0;
    }
    if (cmd == "recon-case" && argc == 4) return recon_case(argv[2], argv[3]);
    if (cmd == "onnx-zoo" && argc == 6) return onnx_zoo(argv[2], std::stoll(argv[3]), std::stoll(argv[4]), argv[5]);
    std::fprintf(stderr,
                 "usage: oracle_tool recon-case DATA_DIR OUT | onnx-zoo ARCH W_BITS A_BITS OUT | roundtrip IN OUT | "
                 "forward ARCH WEIGHTS IN OUT | "
                 "synth-margins|synth-loss ARCH "
                 "WEIGHTS IN OUT\n");
    return 2;
  } catch (const InputError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
