#pragma once
// `dsgq quantize`: calibrate the quantized network on a calibration set (a dsgq-synth/1 file: synthetic or real
// images), export its encodings (AIMET layout), quantized weights and ONNX QDQ graph, evaluate FP32 and quantized
// top-1/top-5 over the ranks, and write the point's result record. `dsgq run` is synth (skipped when complete) then
// quantize.
#include <ATen/core/Tensor.h>
#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

#include "config/run_config.hpp"
#include "mpi/comm.hpp"
#include "pipeline/runtime.hpp"
#include "pipeline/stage.hpp"

namespace dsgq::models {
class Network;
struct ForwardHooks;
}  // namespace dsgq::models

namespace dsgq::pipeline {

// How `dsgq report` names a point's row (not part of the point's identity): the calibration data with what sets it
// apart from its method's defaults ("deepinversion (dsgq, lowres 400+100, ce_weight 10)", "dsg (no LSE)"), and the
// protocol/observer with its variants ("qdrop/mse (drop 0)"). Stored in every quantize record as "labels".
struct ReportLabels {
  std::string data, method;
};
ReportLabels report_labels(const config::RunConfig& cfg);

class QuantStage final : public Stage {
 public:
  // Local: validates config, weights, calibration file (unless `calib_will_exist`: dsgq run makes it first), eval
  // data and output. Throws InputError on bad input.
  static std::unique_ptr<QuantStage> prepare(const CommonArgs& args, const mpi::Comm& comm, bool calib_will_exist);
  // Same, for a config resolved elsewhere (a sweep point): `cfg` replaces the config file and --set overrides.
  static std::unique_ptr<QuantStage> prepare(config::RunConfig cfg, const CommonArgs& args, const mpi::Comm& comm,
                                             bool calib_will_exist);
  ~QuantStage() override;
  // The resolved config as TOML.
  std::string describe() const override;
  const std::string& key() const;
  const std::string& calib_path() const;  // the calibration set it reads (dsgq run / sweep: the synth output)
  const std::string& record_path() const;
  // Local: the record exists and --force was not given.
  bool complete() const;
  // Collective. Returns 0.
  int execute(const mpi::Comm& comm) override;

 private:
  QuantStage();
  struct Calibrated;
  Calibrated calibrate(const at::Tensor& calib_images, const mpi::Comm& comm) const;
  void export_onnx(const models::Network& net, const models::ForwardHooks& hooks, const nlohmann::json& enc) const;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsgq::pipeline
