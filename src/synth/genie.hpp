#pragma once
// Method genie (docs/method.md section 7.3): per batch of B images, a freshly initialised generator and one latent
// vector per image are optimised together so that the generated images match the network's BatchNorm statistics
// (Genie, Jeon et al., CVPR 2023; SamsungLabs/Genie distill.py). The batch is split over the ranks: each rank holds
// its images' latents, the generator is replicated (same initialisation, gradients all-reduced), and the generator's
// and the network's BatchNorm statistics are those of the global batch.
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mpi/comm.hpp"

namespace dsgq::models {
class Network;
}

namespace dsgq::synth {

inline constexpr int64_t kGenieLatent = 256;  // latent dimension
inline constexpr int64_t kGenieC1 = 128;      // channels after the linear layer
inline constexpr int64_t kGenieC2 = 64;       // channels after the first convolution

// The generator's parameters in module order: linear weight [C1*(H/4)*(W/4), 256] and bias, bn1 weight and bias [C1],
// conv1 weight [C2, C1, 3, 3] and bias, bn2 weight and bias [C2], conv2 weight [C, C2, 3, 3] and bias (the last
// BatchNorm has no affine parameters). PyTorch's default initialisation (weights and biases uniform on
// +-1/sqrt(fan_in), BatchNorm 1 and 0), drawn from (seed, batch): the same on every rank. H and W divisible by 4.
std::vector<at::Tensor> genie_init(uint64_t seed, int64_t batch, int64_t C, int64_t H, int64_t W);

// G(z) for this rank's latents z [n, 256] of a global batch of B images: linear, BN, 2x nearest upsampling, 3x3 conv,
// BN, LeakyReLU(0.2), 2x upsampling, 3x3 conv, tanh, BN without affine. Each BN normalises with the mean and biased
// variance of the global batch (all ranks' rows; eps 1e-5), as a BatchNorm in training mode on the whole batch would.
// Collective.
at::Tensor genie_generate(const std::vector<at::Tensor>& params, const at::Tensor& z, int64_t B, int64_t H, int64_t W,
                          const mpi::Comm& comm);

// Swing convolution of one step: for every convolution with stride > 1, the offsets (dy, dx), each uniform on
// {0..2j}, of the window cut from its input padded by j (reflect); {-1, -1} for the other layers. From (seed, batch,
// iteration) alone, the same for every image and rank. j = 0 gives no shift.
std::vector<std::pair<int64_t, int64_t>> draw_swing(uint64_t seed, int64_t batch, int64_t iteration,
                                                    const models::Network& net, int64_t jitter);

struct GenieLoss {
  at::Tensor surrogate;  // this rank's share; its gradient w.r.t. x is d(total)/d(x's rows)
  double total = 0, mean = 0, std = 0;
};
// Genie's loss of the global batch of B images (this rank's rows x): per image, the squared distance of its
// per-channel mean from 0 and of its per-channel (unbiased) std from 1, summed and divided by B; per BN layer, the
// squared distances of the batch's mean and unbiased std from running_mean and sqrt(running_var + 1e-6), divided by
// the channel count; the network run with the swing shifts. Collective.
GenieLoss genie_loss(const models::Network& net, const at::Tensor& x, int64_t B,
                     const std::vector<std::pair<int64_t, int64_t>>& swing, int64_t jitter, const mpi::Comm& comm);

struct GenieSettings {
  uint64_t seed = 0;
  int64_t iters = 0;
  double latent_lr = 0.1;  // Adam on the latents, with ReduceLROnPlateau (patience, min 1e-4) on the loss
  int64_t patience = 100;
  double generator_lr = 0.01;  // Adam on the generator, x0.95 every 100 iterations
  int64_t swing = 1;           // swing-convolution padding j (0 = off)
  double stop_rtol = 0;        // stop when converged (ConvergenceStop); 0 = run every iteration
  int64_t stop_window = 50;
  std::string label;  // progress lines
  int64_t n_batches = 1;
};
struct GenieBatch {
  at::Tensor images;  // this rank's rows: G(z) of the last iteration's forward pass
  double loss = 0;    // the loss of those images
  std::vector<float> loss_curve;
};
// Batch b: global images first..first+B-1, of which this rank holds rows [offset, offset + n). Collective.
GenieBatch genie_batch(const models::Network& net, const GenieSettings& s, int64_t b, int64_t first, int64_t B,
                       int64_t offset, int64_t n, const mpi::Comm& comm);

}  // namespace dsgq::synth
