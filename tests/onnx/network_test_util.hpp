#pragma once
// Helpers shared by the onnx_network tests: deterministic pseudo-random values and an
// error-code-and-message check.

#include <adaquant/core/error.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <initializer_list>
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

}  // namespace onnx_test
