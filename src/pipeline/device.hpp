#pragma once
// The compute device of this rank, from the [runtime] device setting. Every tensor dsgq creates goes there.
#include <c10/core/Device.h>

#include <string>

namespace dsgq::pipeline {

// "cpu" -> CPU. "cuda" -> GPU number (local_rank % visible GPUs); "cuda:N" -> GPU N. Throws InputError naming
// `where` and the value when this build or machine has no CUDA ("this dsgq build is CPU-only ...").
// Choosing a CUDA device also switches this process to deterministic cuDNN/CUDA algorithms (and a fixed cuBLAS
// workspace) so the same seed and world size give the same bytes; a CPU device changes no global state.
c10::Device resolve_device(const std::string& setting, int local_rank, const std::string& where);

// CUDA devices this process sees (0 in a CPU-only build or on a node without GPUs).
int visible_cuda_devices();

// Sets the torch intra-op thread count (local).
void set_torch_threads(int threads);
int torch_threads();

}  // namespace dsgq::pipeline
