#include "pipeline/device.hpp"

#include <torch/torch.h>

#include <cstdlib>

#include "core/error.hpp"

namespace dsgq::pipeline {

c10::Device resolve_device(const std::string& setting, int local_rank, const std::string& where) {
  if (setting == "cpu") return c10::Device(c10::kCPU);
#ifndef DSGQ_WITH_CUDA
  throw InputError(where + " = " + quote_value(setting) +
                   ": this dsgq build is CPU-only (built against a LibTorch without CUDA); expected cpu, or rebuild "
                   "with -DDSGQ_WITH_CUDA=ON against a CUDA LibTorch");
#else
  if (!torch::cuda::is_available())
    throw InputError(where + " = " + quote_value(setting) + ": no CUDA device is visible on this node; expected cpu");
  const int n = static_cast<int>(torch::cuda::device_count());
  int index = local_rank % n;
  if (setting.rfind("cuda:", 0) == 0) {
    index = std::stoi(setting.substr(5));
    if (index >= n)
      throw InputError(where + " = " + quote_value(setting) + ": this node has " + std::to_string(n) +
                       " visible CUDA devices; expected cuda:0..cuda:" + std::to_string(n - 1));
  }
  // The same seed and world size give the same bytes on a GPU too: cuDNN and the other CUDA kernels use their
  // deterministic algorithms (measured on an H200: without this, two 2-rank syntheses differed by up to 1.7 in a
  // pixel). cuBLAS needs its workspace fixed before its first handle is made.
  setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", /*overwrite=*/0);
  at::globalContext().setBenchmarkCuDNN(false);
  at::globalContext().setDeterministicCuDNN(true);
  at::globalContext().setDeterministicAlgorithms(true, /*warn_only=*/true);
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
#endif
}

int visible_cuda_devices() {
#ifdef DSGQ_WITH_CUDA
  return torch::cuda::is_available() ? static_cast<int>(torch::cuda::device_count()) : 0;
#else
  return 0;
#endif
}

void set_torch_threads(int threads) { at::set_num_threads(threads); }
int torch_threads() { return at::get_num_threads(); }

}  // namespace dsgq::pipeline
