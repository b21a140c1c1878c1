// libFuzzer target: the ONNX importer end to end. Any input must either be refused with
// adaquant::error or load, compile (which folds and probes the graph) and run one sample, within
// tight execution limits: no crash, no hang, no unbounded allocation.
#include <adaquant/onnx/onnx.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto m = adaquant::onnx::load_model_from_bytes(std::span(data, size), "fuzz.onnx");
    adaquant::onnx::compile_options co;
    co.limits.max_elements = std::size_t{1} << 14;
    co.limits.max_macs = 1e5;
    const auto g = adaquant::onnx::graph::compile(m, co);
    std::vector<adaquant::onnx::tensor> inputs;
    for (const int v : g.input_values()) {
      adaquant::onnx::shape_t s = g.probe_shape(v);
      if (!s.empty()) s[0] = 1;
      inputs.push_back(adaquant::onnx::tensor::zeros(adaquant::onnx::dtype::float32, s));
    }
    (void)g.forward(std::move(inputs));
  } catch (const adaquant::error&) {
  }
  return 0;
}
