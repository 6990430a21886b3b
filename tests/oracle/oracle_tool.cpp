// Helper for the Python oracle tests (tests/oracle/test_oracle.py): runs dsgq's own code on files that
// Debian's python3-torch wrote, and writes the results back as torch.save-readable state_dicts.
//   oracle_tool roundtrip IN.pt OUT.pt              read IN with dsgq's checkpoint reader, write every tensor back
//   oracle_tool forward ARCH WEIGHTS IN.pt OUT.pt   IN holds 'x' (normalized input); OUT holds 'logits' and the
//                                                   BN taps 'bn.<i>' (input of BN i, layer order) and 'act.<i>'
#include <torch/torch.h>

#include <cstdio>
#include <string>

#include "core/error.hpp"
#include "models/checkpoint.hpp"
#include "models/registry.hpp"

using namespace dsgq;

int main(int argc, char** argv) {
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
    std::fprintf(stderr, "usage: oracle_tool roundtrip IN OUT | forward ARCH WEIGHTS IN OUT\n");
    return 2;
  } catch (const InputError& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
}
