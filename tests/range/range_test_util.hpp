#pragma once
// Helpers shared by the range tests.

#include <adaquant/core/error.hpp>
#include <adaquant/quant/quant_params.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace range_test {

inline std::vector<float> gaussian(std::size_t n, std::uint32_t seed, float sigma = 1.0f,
                                   float mean = 0.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> d(mean, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

inline std::vector<float> uniform(std::size_t n, std::uint32_t seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

inline bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }
inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// channel_params has no operator== (quant_params does).
inline bool same(const adaquant::channel_params& a, const adaquant::channel_params& b) {
  return a.scale == b.scale && a.zero_point == b.zero_point && a.qmin == b.qmin &&
         a.qmax == b.qmax && a.axis == b.axis;
}

// Runs f, requires an adaquant::error with `code` whose message contains every fragment.
template <class F>
void require_error(F&& f, adaquant::errc code, std::initializer_list<std::string> fragments) {
  try {
    f();
  } catch (const adaquant::error& e) {
    INFO("message: " << e.what());
    CHECK(e.code() == code);
    for (const auto& s : fragments) CHECK(std::string(e.what()).find(s) != std::string::npos);
    return;
  }
  FAIL("no adaquant::error thrown");
}

}  // namespace range_test
