#pragma once
// The two Fashion-MNIST reference models, built from the same description as
// tools/train_reference.py: node names equal the PyTorch module names ("blocks.3.conv1",
// "blocks.3.bn1", ...), so every tensor of the safetensors file maps to one node. Loading fails
// (errc::corrupt_data) on a missing, mis-shaped or unused tensor.

#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/network.hpp>
#include <adaquant_runtime/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace adaquant::examples {

// ResNet-style: 3x3 stem, stages of basic blocks (3x3-BN-ReLU-3x3-BN + shortcut, ReLU; first
// block of each stage has stride 2 and a 1x1-BN projection), global average pool, linear.
// config: {"stem": 16, "widths": [16, 32, 64], "blocks": 2, "classes": 10}
[[nodiscard]] network build_resnet_fm(const nlohmann::json& config, const safetensors_file& w);

// MobileNetV2-style: 3x3 stem-BN-ReLU6, inverted residual blocks (1x1 expand-BN-ReLU6 when t>1,
// 3x3 depthwise-BN-ReLU6, 1x1 project-BN, + input when stride 1 and widths match), 1x1 head
// conv-BN-ReLU6, global average pool, linear.
// config: {"stem": 16, "cfg": [[t, c, n, s], ...], "head": 128, "classes": 10}
[[nodiscard]] network build_mobilenetv2_fm(const nlohmann::json& config, const safetensors_file& w);

// A model with the facts its training script recorded in the JSON sidecar.
struct reference_model {
  std::string name, arch;
  network net;
  normalisation norm;
  std::size_t parameters = 0, macs_per_image = 0;
  std::size_t test_images = 0, test_correct = 0;
  double test_mean_cross_entropy = 0.0;
  std::vector<std::size_t> reference_images;  // test-set indices of the reference logits
  tensor reference_logits;                    // [len(reference_images), classes]
  nlohmann::json sidecar;                     // everything else (training recipe, ...)
};

// Reads <dir>/<name>.json and <dir>/<name>.safetensors, e.g. load_reference_model(dir,
// "resnet_fm").
[[nodiscard]] reference_model load_reference_model(const std::filesystem::path& dir,
                                                   const std::string& name);

}  // namespace adaquant::examples
