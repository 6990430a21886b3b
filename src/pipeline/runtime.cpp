#include "pipeline/runtime.hpp"

#include <thread>

#include "core/error.hpp"
#include "core/log.hpp"
#include "core/paths.hpp"
#include "core/threads.hpp"
#include "mpi/nccl.hpp"
#include "pipeline/device.hpp"
#include "models/bn_kernels.hpp"
#include "models/registry.hpp"

namespace dsgq::pipeline {

Runtime setup_runtime(const config::RunConfig& cfg, const CommonArgs& args, const mpi::Comm& comm) {
  Runtime rt;
  rt.device = resolve_device(cfg.runtime.device, comm.local_rank(), cfg.source + " [runtime]: device");
  const int cli = args.threads > 0 ? args.threads : static_cast<int>(cfg.runtime.threads);
  const ThreadChoice tc = choose_threads(cli, comm.local_size(), static_cast<int>(std::thread::hardware_concurrency()));
  rt.threads = tc.threads;
  rt.threads_source = args.threads > 0 ? "--threads" : cfg.runtime.threads > 0 ? "[runtime] threads" : tc.source;
  set_torch_threads(rt.threads);
  // dsgq's own CPU kernels share LibTorch's threads only in a build with OpenMP (CMakeLists.txt, docs/running.md).
  if (!rt.device.is_cuda() && rt.threads > 1 && models::kernel_threads(rt.threads) < 2)
    log_info0(
        "dsgq's own CPU kernels run on 1 thread per rank in this build (LibTorch carries its own OpenMP "
        "runtime); the convolutions use %d",
        rt.threads);
  // Device collectives (docs/gpu.md): NCCL when asked, or by default for a CUDA device in an NCCL build.
  const config::Collectives c = cfg.runtime.collectives;
  const std::string where = cfg.source + " [runtime]: collectives = '" + config::name(c) + "'";
  if (c == config::Collectives::nccl && !mpi::nccl_built())
    throw InputError(where +
                     ": this dsgq was built without NCCL; expected a build configured with "
                     "-DDSGQ_WITH_NCCL=ON, or collectives = \"mpi\"");
  if (c == config::Collectives::nccl && !rt.device.is_cuda())
    throw InputError(where + " needs a CUDA device; [runtime] device is '" + rt.device.str() +
                     "' (NCCL reduces device memory; expected device = \"cuda\")");
  bool nccl = rt.device.is_cuda() &&
              (c == config::Collectives::nccl || (c == config::Collectives::automatic && mpi::nccl_built()));
  // NCCL needs one GPU per rank (ncclCommInitRank fails on a GPU shared by two ranks of a node). Ranks share one when
  // all of a node's ranks were given "cuda:N", or when a node has more ranks than visible GPUs.
  const int gpus = rt.device.is_cuda() ? visible_cuda_devices() : 0;
  const bool shared = comm.local_size() > 1 && (cfg.runtime.device != "cuda" || comm.local_size() > gpus);
  if (nccl && shared) {
    if (c == config::Collectives::nccl)
      throw InputError(where + ": " + std::to_string(comm.local_size()) + " ranks on this node share " +
                       (cfg.runtime.device == "cuda" ? std::to_string(gpus) + " GPU(s)" : "device " + rt.device.str()) +
                       "; NCCL needs one GPU per rank: expected device = \"cuda\" with at most one rank per visible "
                       "GPU (Slurm: --gpus-per-task=1), or collectives = \"mpi\"");
    nccl = false;  // auto: ranks sharing a GPU reduce through host memory over MPI
  }
  if (nccl) comm.use_nccl(rt.device.index() >= 0 ? rt.device.index() : 0);
  rt.collectives = nccl ? "nccl" : "mpi";
  return rt;
}

config::RunConfig resolve_config(const CommonArgs& args) {
  return complete_config(config::load_run_config(args.config_path, args.overrides));
}

config::RunConfig complete_config(config::RunConfig cfg) {
  const models::ArchInfo& arch = models::arch_info(cfg.model.arch, cfg.source + " [model]: arch");
  const auto own = config::parse_choice<config::Dataset>(arch.dataset);
  DSGQ_CHECK(own.has_value(), "architecture " + arch.name + " has an unknown dataset " + arch.dataset);
  if (cfg.model.dataset == config::Dataset::from_arch) cfg.model.dataset = *own;
  if (cfg.model.dataset != *own)
    throw InputError(cfg.source + " [model]: dataset = " + quote_value(config::name(cfg.model.dataset)) +
                     " does not match arch " + arch.name + "; expected " + quote_value(arch.dataset));
  if (cfg.model.weights.empty() && arch.weights_file.empty() && !arch.torchvision_file.empty()) {
    cfg.model.weights = models::torchvision_checkpoint_dir() + "/" + arch.torchvision_file;
  } else if (cfg.model.weights.empty()) {
    if (arch.weights_file.empty())
      throw InputError(cfg.source + " [model]: weights is not set and dsgq ships no weights for " + arch.name +
                       "; expected a path to a torch.save state_dict");
    cfg.model.weights = expand_env("${DSGQ_DATA}/models/" + arch.weights_file, cfg.source + " [model]: weights");
  }
  return cfg;
}

Span span_over_ranks(double seconds, const mpi::Comm& comm) {
  Span s;
  s.min = comm.allreduce_min(seconds);
  s.max = comm.allreduce_max(seconds);
  s.mean = comm.allreduce_sum(seconds) / comm.size();
  return s;
}

}  // namespace dsgq::pipeline
