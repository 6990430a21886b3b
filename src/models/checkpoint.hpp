#pragma once
// Native import of PyTorch checkpoints: a torch.save zip archive holding a state_dict, either a plain dict or the
// OrderedDict that model.state_dict() produces (LibTorch 1.13's torch::pickle_load aborts on the latter, so dsgq
// reads the pickle itself: models/pickle.cpp). Also accepted: a training checkpoint dict whose 'state_dict',
// 'model_state_dict', 'model' or 'net' entry is such a dict. A leading "module." (DataParallel) is stripped.
#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace dsgq::models {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;  // CPU, exactly the stored dtype/shape/values (contiguous copy)
};

struct Checkpoint {
  std::string path;
  std::vector<NamedTensor> tensors;  // in file order
  std::string container;             // "OrderedDict", "dict", "dict['state_dict'] (OrderedDict)", ...
  bool stripped_module_prefix = false;
};

// Throws InputError naming the file for: missing file, not a zip ("legacy pre-1.6 format" recognised), truncated
// or corrupt archive, unsupported pickle content, a top-level object that is not a state_dict, non-tensor values.
Checkpoint read_checkpoint(const std::string& path);

// Writes a plain-dict state_dict that torch.load reads (torch::pickle_save), atomically. Local.
void write_checkpoint(const std::string& path, const std::vector<NamedTensor>& tensors);

// "[16,3,3,3]"
std::string shape_string(const at::Tensor& t);

}  // namespace dsgq::models
