#pragma once
// A Fashion-MNIST reference model's sidecar, <dir>/<name>.json (written by
// tools/train_reference.py): the input normalisation the model's files expect (models/<name>.onnx
// takes images already normalised this way), its architecture config and what the training
// script measured. Loading fails (errc::corrupt_data) on a missing file or field.

#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/tensor.hpp>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

namespace adaquant::examples {

struct reference_sidecar {
  std::string name, arch;
  normalisation norm;
  std::size_t parameters = 0, macs_per_image = 0;
  std::size_t test_images = 0, test_correct = 0;
  double test_mean_cross_entropy = 0.0;
  std::vector<std::size_t> reference_images;  // test-set indices of the reference logits
  tensor reference_logits;                    // [len(reference_images), classes]
  nlohmann::json json;                        // everything else (config, training recipe, ...)
};

// Reads <dir>/<name>.json, e.g. load_reference_sidecar(dir, "resnet_fm").
[[nodiscard]] reference_sidecar load_reference_sidecar(const std::filesystem::path& dir,
                                                       const std::string& name);

}  // namespace adaquant::examples
