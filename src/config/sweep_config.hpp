#pragma once
// A sweep file (docs/running.md section 6): a run file in which any [model], [synth], [quant] (and
// [quant.adaround]) or [eval] key may hold a list; the file expands to the cartesian product of its lists. An
// optional [sweep] section names the sweep and may add grids: each [[sweep.grid]] table maps keys
// ("quant.bits" = [...] or quant.bits = [...]) to lists that replace the base lists for that grid; the points are
// the union of the grids' products (without [[sweep.grid]], one grid: the base lists). `quant.bits = "w4a8"` sets
// w_bits and a_bits together ("w4a32": activations in floating point).
//
//   [sweep]
//   name = "cifar10-paper"
//   [[sweep.grid]]                 # W8A8 and W6A6: one seed
//   "quant.bits" = ["w8a8", "w6a6"]
//   [[sweep.grid]]                 # W5A5 and below: three seeds
//   "quant.bits" = ["w5a5", "w4a4", "w3a3"]
//   "synth.seed" = [0, 1, 2]
//   [model]
//   arch = ["resnet20", "resnet56"]
//   [synth]
//   method = ["real", "gaussian", "zeroq", "dsg"]
//
// Every point is validated like a run file; a list in [output] or [runtime], an empty list, or a grid key that is
// not a config key is an InputError naming the file and key.
#include <string>
#include <vector>

#include "config/run_config.hpp"

namespace dsgq::config {

struct SweepPoint {
  RunConfig cfg;
  std::string label;  // the varied keys of this point, e.g. "model.arch=resnet20 quant.bits=w4a4 synth.seed=1"
};

struct SweepSpec {
  std::string source, name;
  std::vector<std::string> axes;   // every key that takes more than one value over the points, sorted
  std::vector<SweepPoint> points;  // grid by grid; within a grid the last axis varies fastest
};

SweepSpec load_sweep(const std::string& path, const std::vector<std::string>& overrides);
SweepSpec parse_sweep(const std::string& toml_text, const std::string& source,
                      const std::vector<std::string>& overrides);

}  // namespace dsgq::config
