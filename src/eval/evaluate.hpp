#pragma once
// Top-1 / top-5 accuracy over a labelled image set, split over ranks, counts all-reduced.
#include <ATen/core/Tensor.h>

#include <cstdint>

#include "mpi/comm.hpp"
#include "models/network.hpp"

namespace dsgq::eval {

struct Counts {
  int64_t n = 0, top1 = 0, top5 = 0;
  double top1_pct() const { return n ? 100.0 * static_cast<double>(top1) / static_cast<double>(n) : 0.0; }
  double top5_pct() const { return n ? 100.0 * static_cast<double>(top5) / static_cast<double>(n) : 0.0; }
};

// Local: counts on this rank's images. pixels uint8 [n,3,H,W] (CPU), labels int64 [n]; forward passes of `batch`
// images on the network's device, no autograd. `hooks` may substitute weights/activations (quantized eval).
// Progress lines (rank 0) extrapolate the global count as done * global_total / n.
Counts count_correct(const models::Network& net, const at::Tensor& pixels, const at::Tensor& labels, int64_t batch,
                     int64_t global_total, const models::ForwardHooks* hooks = nullptr);

// Collective: sums every rank's counts.
Counts allreduce(const Counts& local, const mpi::Comm& comm);

}  // namespace dsgq::eval
