#pragma once
// Protocol "adaround" (docs/method.md section 12): BatchNorm folded into the preceding convs; per-channel asymmetric
// weight grids with MSE-searched ranges; the first and last layers' weights (and the classifier's input
// activation) at first_last_bits; AdaRound layer by layer in forward order, each layer fed by the outputs of the
// already-rounded layers before it (activations in floating point while rounding) and matched to the FP layer's
// outputs; then per-tensor activation quantizers after every ReLU/ReLU6 calibrated on the rounded network.
#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/network.hpp"
#include "quant/adaround.hpp"
#include "quant/observer.hpp"

namespace dsgq::mpi {
class Comm;
}

namespace dsgq::quant {

// Where a run of the protocol keeps its work: one layer's inputs + targets for the whole calibration set stay in
// memory up to [quant] cache_mib; above it both go to temporary HDF5 files named <spill_prefix>.{in,out}.h5
// (deleted after the layer). `seed` seeds the mini-batch draws.
struct AdaRoundRun {
  uint64_t seed = 0;
  std::string spill_prefix = "dsgq-adaround-cache";
};

struct LayerReport {
  std::string name;
  int bits = 0;
  double mse_nearest = 0, mse_adaround = 0, flipped = 0, undecided = 0, seconds = 0;
  int64_t cache_bytes = 0;  // inputs + targets of this layer over the calibration set
  bool spilled = false;
};

// What both BN-folded protocols (adaround, qdrop) quantize at which width: a_bits at every activation site but the
// last, which feeds the classifier and keeps first_last_bits (as the first and last layers' weights do).
std::vector<int> activation_bits(const models::Network& net, const config::QuantConfig& cfg);
// Per layer of the folded network: its MSE-searched grid at w_bits (first and last layer at first_last_bits).
std::vector<WeightGrid> weight_grids(const models::Network& folded, const config::QuantConfig& cfg);

class AdaRoundQuantizer {
 public:
  // cfg: [quant] (w_bits, a_bits, first_last_bits, act_observer, cache_mib and [quant.adaround]).
  AdaRoundQuantizer(const models::Network& fp, const config::QuantConfig& cfg, AdaRoundRun run);

  // Collective over `comm`: rounds every layer on `calib` (normalized images on the device, the same on every
  // rank), then calibrates activations; afterwards every rank holds the same weights and ranges. Rank r caches and
  // forwards only its contiguous share of the images (mpi::share_of), each AdaRound step's mini-batch is split by
  // that ownership and the gradients summed (adaround_layer), and the activation observers combine the ranks'
  // shares (observe(..., comm)): one rank's result up to floating-point summation order. `chunk` images per
  // forward pass when capturing layer inputs.
  void run(const at::Tensor& calib, const mpi::Comm& comm, int64_t chunk = 256);

  const models::Network& folded() const { return *folded_; }
  const models::ForwardHooks& hooks() const { return hooks_; }
  const std::vector<at::Tensor>& weights() const { return weights_; }
  const std::vector<WeightGrid>& grids() const { return grids_; }
  const ActQuantizers& acts() const { return acts_; }
  const std::vector<LayerReport>& reports() const { return reports_; }
  const config::QuantConfig& config() const { return cfg_; }

 private:
  // The layer's inputs from the network with the earlier layers rounded, and its FP outputs for FP inputs.
  // `calib`: this rank's share of the images.
  std::pair<RowCache, RowCache> capture(int layer, const at::Tensor& calib, int64_t chunk, LayerReport& rep) const;

  std::unique_ptr<models::Network> folded_;
  config::QuantConfig cfg_;
  AdaRoundRun run_;
  std::vector<WeightGrid> grids_;
  std::vector<at::Tensor> weights_;  // current weight per layer (FP until rounded)
  ActQuantizers acts_;
  std::vector<LayerReport> reports_;
  models::ForwardHooks hooks_;
};

}  // namespace dsgq::quant
