#pragma once
// The architecture registry: names of docs/running.md section 2, each with its dataset and (where the project ships
// real weights) the weight file under ${DSGQ_DATA}/models.
#include <memory>
#include <string>
#include <vector>

#include "models/network.hpp"

namespace dsgq::models {

struct ArchInfo {
  std::string name;
  std::string dataset;           // "cifar10" | "imagenet"
  std::string weights_file;      // file name in ${DSGQ_DATA}/models, "" when none is shipped
  double published_top1 = -1;    // on the full evaluation set, -1 when unknown
  std::string torchvision_file;  // the IMAGENET1K_V1 checkpoint's file name as torchvision downloads it, "" if none
};

// Where torchvision keeps downloaded checkpoints: $DSGQ_TORCHVISION_MODELS, else $TORCH_HOME/hub/checkpoints, else
// $HOME/.cache/torch/hub/checkpoints (torch.hub's default). Local.
std::string torchvision_checkpoint_dir();

const std::vector<ArchInfo>& architectures();
// Throws InputError "<where> = 'x' is unknown; expected one of resnet20, ..." for an unknown name.
const ArchInfo& arch_info(const std::string& name, const std::string& where);
// A fresh network with zero weights (load a checkpoint next).
std::unique_ptr<Network> build_network(const std::string& name, const std::string& where);

}  // namespace dsgq::models
