#pragma once
// Numeric helpers shared by every layer.

#include <cmath>
#include <limits>

namespace adaquant::detail {

// A constexpr std::isfinite (which is constexpr only from C++23).
constexpr bool is_finite(float x) noexcept {
  return x == x && x <= std::numeric_limits<float>::max() &&
         x >= -std::numeric_limits<float>::max();
}

// a * b + c, fused (one rounding) exactly where the target has FMA instructions, for floats and
// xsimd batches alike (found by ADL). Kernels whose scalar and SIMD twins must round alike write
// their multiply-adds with it: left to -ffp-contract, GCC fuses the two forms differently.
template <class T>
T mul_add(const T& a, const T& b, const T& c) noexcept {
#if defined(__FMA__)
  using std::fma;
  return fma(a, b, c);
#else
  return a * b + c;
#endif
}

}  // namespace adaquant::detail
