#pragma once
// Exact minimum and maximum of a run of floats, and per channel of a dense layout, with a flag
// for non-finite elements: the kernels of the min/max range estimators (range/min_max.hpp, which
// owns the public API, its checks and its result types). Simd = false runs the scalar twin; both
// give the same results bit for bit.

#include <adaquant/kernels/reference_range.hpp>
#include <adaquant/kernels/simd/min_max.hpp>

namespace adaquant::detail {

template <bool Simd>
min_max_acc min_max_run(const float* x, std::size_t n) noexcept {
  if constexpr (Simd)
    return simd::min_max(x, n);
  else
    return min_max_ref(x, n);
}

// lo/hi (size l.channels) are folded into, not overwritten; returns finiteness.
template <bool Simd>
bool min_max_per_channel_run(const float* x, const channel_layout& l, float* lo,
                             float* hi) noexcept {
  if constexpr (Simd)
    return simd::min_max_per_channel(x, l, lo, hi);
  else
    return min_max_per_channel_ref(x, l, lo, hi);
}

}  // namespace adaquant::detail
