#include "synth/margins.hpp"

#include <torch/torch.h>

#include "models/network.hpp"
#include "synth/bn_stats.hpp"
#include "synth/sampling.hpp"

namespace dsgq::synth {
namespace {

double quantile_of(const std::vector<float>& values, double q) {
  const at::Tensor t =
      torch::from_blob(const_cast<float*>(values.data()), {static_cast<int64_t>(values.size())}, torch::kFloat);
  return torch::quantile(t.to(torch::kDouble), q).item<double>();
}

// Deviations of one chunk of images: per layer, flattened per-sample (or per-batch) |m - mu| and |s - sigma|.
void chunk_deviations(const models::Network& net, const at::Tensor& x, bool batch_stats,
                      std::vector<std::vector<float>>& dm, std::vector<std::vector<float>>& ds) {
  torch::NoGradGuard no_grad;
  const std::vector<Target> targets = bn_targets(net);
  models::ForwardHooks hooks;
  hooks.bn_input = [&](int l, const at::Tensor& f) {
    at::Tensor m, s;
    if (batch_stats) {
      m = f.mean({0, 2, 3}).unsqueeze(0);
      s = (f.transpose(0, 1).reshape({f.size(1), -1}).var(1, true) + kStatEps).sqrt().unsqueeze(0);
    } else {
      const Stats st = per_sample_stats(f);
      m = st.mean;
      s = st.std;
    }
    const at::Tensor a = (m - targets[l].mean.unsqueeze(0)).abs().reshape({-1}).to(at::kCPU).contiguous();
    const at::Tensor b = (s - targets[l].std.unsqueeze(0)).abs().reshape({-1}).to(at::kCPU).contiguous();
    dm[l].insert(dm[l].end(), a.data_ptr<float>(), a.data_ptr<float>() + a.numel());
    ds[l].insert(ds[l].end(), b.data_ptr<float>(), b.data_ptr<float>() + b.numel());
  };
  net.forward(x, &hooks);
}

}  // namespace

Margins gaussian_margins(const models::Network& net, int64_t n_samples, double quantile, uint64_t seed,
                         bool batch_stats, int64_t chunk, const mpi::Comm& comm) {
  const size_t L = net.bns().size();
  std::vector<std::vector<float>> dm(L), ds(L);
  const auto& in = net.input();
  const int64_t n_chunks = (n_samples + chunk - 1) / chunk;
  for (int64_t k = comm.rank(); k < n_chunks; k += comm.size()) {  // round-robin: chunk contents fixed
    const int64_t first = k * chunk, n = std::min(chunk, n_samples - first);
    const at::Tensor x =
        draw_images(Init::gaussian, seed, Stream::margin, first, n, in.channels, in.height, in.width).to(net.device());
    chunk_deviations(net, x, batch_stats, dm, ds);
  }
  Margins out;
  for (size_t l = 0; l < L; ++l) {
    out.delta.push_back(quantile_of(comm.allgatherv(dm[l]), quantile));
    out.gamma.push_back(quantile_of(comm.allgatherv(ds[l]), quantile));
  }
  return out;
}

Margins margins_of(const models::Network& net, const at::Tensor& images, double quantile) {
  const size_t L = net.bns().size();
  std::vector<std::vector<float>> dm(L), ds(L);
  chunk_deviations(net, images, false, dm, ds);
  Margins out;
  for (size_t l = 0; l < L; ++l) {
    out.delta.push_back(quantile_of(dm[l], quantile));
    out.gamma.push_back(quantile_of(ds[l], quantile));
  }
  return out;
}

}  // namespace dsgq::synth
