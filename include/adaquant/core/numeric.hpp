#pragma once
// Numeric predicates shared by every layer.

#include <limits>

namespace adaquant::detail {

// A constexpr std::isfinite (which is constexpr only from C++23).
constexpr bool is_finite(float x) noexcept {
  return x == x && x <= std::numeric_limits<float>::max() &&
         x >= -std::numeric_limits<float>::max();
}

}  // namespace adaquant::detail
