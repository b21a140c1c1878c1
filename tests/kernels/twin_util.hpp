#pragma once
// Inputs and bit comparisons shared by the twin tests (SIMD kernel == scalar twin).
#include <adaquant/kernels/simd/batch_io.hpp>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

using adaquant::detail::simd::lanes;

inline constexpr float sentinel = 12345.678f;

// Gaussian values with ties on the grid of `scale`, values next to ties, +-inf, -1e30, NaN and -0.
inline std::vector<float> test_data(std::size_t n, float scale, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 6.0f * scale);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    switch (i % 11) {
      case 3:
        x[i] = (static_cast<float>(static_cast<int>(i % 17) - 8) + 0.5f) * scale;
        break;  // ties
      case 5:
        x[i] = std::nextafter((2.5f) * scale, 0.0f);
        break;
      case 7:
        x[i] = i % 2 ? std::numeric_limits<float>::infinity() : -1e30f;
        break;
      case 9:
        x[i] = i % 4 == 1 ? std::numeric_limits<float>::quiet_NaN() : -0.0f;
        break;
      default:
        x[i] = normal(rng);
    }
  }
  return x;
}

// test_data with every non-finite value replaced by a finite one (for kernels that require it).
inline std::vector<float> finite_test_data(std::size_t n, float scale, std::uint32_t seed) {
  auto x = test_data(n, scale, seed);
  for (std::size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) x[i] = (i % 2 ? 9.0f : -7.0f) * scale;
  return x;
}

// (outer, channels, inner) shapes covering every per-channel code path: inner >= lanes,
// inner == 1 with many channels, inner == 1 with few channels and short inner runs, each with
// tails.
inline std::vector<std::array<std::size_t, 3>> per_channel_shapes() {
  return {{2, 3, lanes + 3},
          {1, 5, 2 * lanes},
          {3, 2 * lanes + 1, 1},
          {4, lanes - 1, 1},
          {2, 3, lanes > 2 ? lanes - 2 : 1},
          {1, 1, 7},
          {5, 4, 3}};
}

inline bool same_bits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}
inline bool same_bits(double a, double b) {
  return std::bit_cast<std::uint64_t>(a) == std::bit_cast<std::uint64_t>(b);
}

// Lengths in [0, 3 * lanes + 3) and around the flushes of a kernel's float partial sums (one
// every `flush` elements).
inline std::vector<std::size_t> lengths_around_flushes(std::size_t flush) {
  std::vector<std::size_t> ns;
  for (std::size_t n = 0; n < 3 * lanes + 3; ++n) ns.push_back(n);
  for (std::size_t n : {flush - 1, flush, flush + 1, flush + lanes + 1, 2 * flush + 3 * lanes + 2})
    ns.push_back(n);
  return ns;
}
