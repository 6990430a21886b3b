// Helper for the Python oracle tests (tests/oracle/test_oracle.py): runs dsgq's own code on files that
// Debian's python3-torch wrote, and writes the results back as torch.save-readable state_dicts.
//   oracle_tool roundtrip IN.pt OUT.pt              read IN with dsgq's checkpoint reader, write every tensor back
//   oracle_tool forward ARCH WEIGHTS IN.pt OUT.pt   IN holds 'x' (normalized input); OUT holds 'logits' and the
//                                                   BN taps 'bn.<i>' (input of BN i, layer order) and 'act.<i>'
//   oracle_tool synth-margins ARCH WEIGHTS IN.pt OUT.pt   IN {x, q}: SDA margins of the images x -> {delta, gamma}
//   oracle_tool synth-loss ARCH WEIGHTS IN.pt OUT.pt      IN {x, delta, gamma, labels, roll, method, preset, lse,
//                                                   first_index}: synthesis loss and d loss/d x -> {loss, grad}
//   (interface of tests/oracle/test_synth_oracle.py)
//   oracle_tool fake-quant IN.pt OUT.pt             IN {x, scale, zero_point, qmin, qmax, axis} -> {y}
#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <string>

#include "core/error.hpp"
#include "models/checkpoint.hpp"
#include "mpi/comm.hpp"
#include "models/registry.hpp"
#include "quant/quantizer.hpp"
#include "synth/margins.hpp"
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
      const synth::Objective objective(*net, oc, mpi.world());
      at::Tensor x = need(in, "x").clone().requires_grad_(true);
      synth::BatchSlice slice;
      slice.global_batch = x.size(0);
      slice.batch_offset = 0;
      slice.first_global = need(in, "first_index").item<int64_t>();
      slice.labels = need(in, "labels");
      slice.roll = need(in, "roll").item<int64_t>();
      synth::LossValue value;
      objective.evaluate(x, slice, &value).backward();
      models::write_checkpoint(argv[5], {{"loss", torch::tensor(value.total, torch::kDouble)}, {"grad", x.grad()}});
      return 0;
    }
    std::fprintf(stderr,
                 "usage: oracle_tool roundtrip IN OUT | forward ARCH WEIGHTS IN OUT | synth-margins|synth-loss ARCH "
                 "WEIGHTS IN OUT\n");
    return 2;
  } catch (const InputError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
