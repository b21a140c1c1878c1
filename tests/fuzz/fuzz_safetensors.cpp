// libFuzzer target: safetensors parsing. Any input must either parse into tensors whose sizes
// match their shapes or throw adaquant::error.
#include <adaquant_runtime/safetensors.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto f = adaquant::examples::parse_safetensors(std::span(data, size), "fuzz");
    for (const auto& [name, t] : f.tensors)
      if (t.size() != adaquant::examples::tensor::element_count(t.shape())) __builtin_trap();
  } catch (const adaquant::error&) {
  }
  return 0;
}
