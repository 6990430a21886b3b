#pragma once
// Internal to src/models: the architecture builders the registry lists.
#include <memory>
#include <vector>

#include "models/network.hpp"

namespace dsgq::models {

// CIFAR ResNet (He et al. 2016 sec. 4.2, akamaster layout): depth = 6n + 2, option-A shortcuts.
std::unique_ptr<Network> build_resnet_cifar(const std::string& arch, int depth);
// MLPerf Tiny ResNet-8 (Keras resnet_v1_eembc): conv bias, TF SAME padding, BN eps 1e-3, raw 0..255 input.
std::unique_ptr<Network> build_resnet8();
// Keras-applications MobileNet v1 (alpha 0.25 here): ReLU6, TF SAME padding, BN eps 1e-3, input in [-1, 1].
std::unique_ptr<Network> build_mobilenet_v1(const std::string& arch, double alpha, int64_t size);

// torchvision's ImageNet input: 3 x size x size, 1000 classes, ImageNet mean/std.
InputSpec imagenet_input(int64_t size);

// torchvision ResNet (v1.5) with torchvision's state_dict keys: resnet18 (basic, 2-2-2-2), resnet50 (bottleneck,
// 3-4-6-3); 224x224 ImageNet input.
std::unique_ptr<Network> build_resnet_torchvision(const std::string& arch, bool bottleneck,
                                                  const std::vector<int>& blocks_per_stage);

// torchvision MobileNetV2 (width 1.0) with torchvision's state_dict keys; 224x224 ImageNet input.
std::unique_ptr<Network> build_mobilenet_v2(const std::string& arch);

// torchvision Inception v3 (eval mode, BN eps 1e-3) with torchvision's state_dict keys, AuxLogits.* required but
// unused; 299x299 input with mean = std = 0.5 (what transform_input=True feeds the first conv).
std::unique_ptr<Network> build_inception_v3(const std::string& arch);

// torchvision ShuffleNetV2 with torchvision's state_dict keys: stages_repeats {4, 8, 4}, stages_out_channels
// {24, 48, 96, 192, 1024} (x0.5) or {24, 116, 232, 464, 1024} (x1.0); 224x224 ImageNet input.
std::unique_ptr<Network> build_shufflenet_v2(const std::string& arch, const std::vector<int64_t>& stages_repeats,
                                             const std::vector<int64_t>& stages_out_channels);

}  // namespace dsgq::models
