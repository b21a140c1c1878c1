#pragma once
// Helpers shared by the onnx_network tests: deterministic pseudo-random values, an
// error-code-and-message check and (in targets that define ADAQUANT_MODELS_DIR) the reference
// models as networks.

#include <adaquant/core/error.hpp>
#include <adaquant/onnx/load.hpp>
#include <adaquant/onnx/network.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

namespace onnx_test {

// Values in [-scale, scale) from a linear congruential generator (the same on every platform).
inline std::vector<float> pseudo_random(std::size_t n, std::uint32_t seed, float scale = 0.5f) {
  std::vector<float> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = scale * (static_cast<float>(seed >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f);
  }
  return v;
}

// f() throws adaquant::error with `code` and a message containing every part.
template <class F>
void expect_error(F&& f, adaquant::errc code, std::initializer_list<const char*> parts) {
  try {
    f();
    FAIL("no error");
  } catch (const adaquant::error& e) {
    CHECK(e.code() == code);
    for (const char* s : parts) CHECK_THAT(e.what(), Catch::Contains(s));
  }
}

#ifdef ADAQUANT_MODELS_DIR
// The reference model models/<name>.onnx over n calibration images of pseudo-random pixels,
// 2 threads.
inline adaquant::onnx::onnx_network reference_network(const std::string& name, std::size_t n) {
  adaquant::onnx::tensor x;
  x.shape = {static_cast<std::int64_t>(n), 1, 28, 28};
  x.f = pseudo_random(n * 28 * 28, 7, 1.5f);
  adaquant::onnx::network_options o;
  o.threads = 2;
  return adaquant::onnx::onnx_network(
      adaquant::onnx::load_model(std::string(ADAQUANT_MODELS_DIR) + "/" + name + ".onnx"), {x}, o);
}
#endif

}  // namespace onnx_test
