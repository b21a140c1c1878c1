#pragma once
// The reference models' ONNX files next to the same models built in code with the example
// runtime (support/code_built_models.hpp).

#include "support/code_built_models.hpp"

#include <adaquant/onnx/onnx.hpp>
#include <adaquant_runtime/calibration.hpp>
#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/sidecar.hpp>

#include <string>
#include <vector>

namespace onnx_ref {

namespace aq = adaquant::onnx;
namespace ex = adaquant::examples;

inline aq::model load_onnx(const std::string& name) {
  return aq::load_model(std::string(ADAQUANT_MODELS_DIR) + "/" + name + ".onnx");
}

// Test images [begin, begin + n) normalised as the model was trained, as an ONNX tensor.
inline aq::tensor test_images(const ex::image_dataset& test, const ex::reference_sidecar& m,
                              std::size_t begin, std::size_t n) {
  const ex::tensor x = ex::make_batch(test, begin, n, m.norm);
  return aq::tensor({static_cast<std::int64_t>(n), 1, 28, 28}, x.values());
}

inline std::vector<std::int64_t> labels(const ex::image_dataset& test) {
  return {test.labels.begin(), test.labels.end()};
}

}  // namespace onnx_ref
