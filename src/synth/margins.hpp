#pragma once
// SDA margins (docs/method.md section 2, "recommended reconstruction"): per BN layer, the q-quantile of the absolute
// deviations of Gaussian N(0,1) images' statistics from the BN statistics. The Gaussian images are spread over
// ranks in fixed chunks and the deviations gathered, so the quantiles are identical for any rank count.
#include <cstdint>
#include <vector>

#include "mpi/comm.hpp"

namespace dsgq::models {
class Network;
}

namespace dsgq::synth {

struct Margins {
  std::vector<double> delta;  // mean margins, per BN layer
  std::vector<double> gamma;  // std margins
};

// Collective. per_sample: quantile over all (sample, channel) deviations; batch_stats: the deviations of each
// chunk's batch statistics (chunk = `chunk` images), quantile over (chunk, channel).
Margins gaussian_margins(const models::Network& net, int64_t n_samples, double quantile, uint64_t seed,
                         bool batch_stats, int64_t chunk, const mpi::Comm& comm);

// Local: the q-quantile of the per-sample deviations of `images` (the oracle's entry point).
Margins margins_of(const models::Network& net, const at::Tensor& images, double quantile);

}  // namespace dsgq::synth
