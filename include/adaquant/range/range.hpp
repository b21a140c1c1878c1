#pragma once
// Ranges produced by the range estimators (min_max.hpp, percentile.hpp, mse_search.hpp) and the
// argument checks they share.
//
//   range           [lo, hi] for a whole tensor; lo <= hi once an estimator returns it.
//   channel_ranges  lo[c], hi[c] for every index c along `axis`.
//   block_ranges    lo[j], hi[j] for every block of block_size indices along `axis`, in the
//                   order of block_params (quant/quant_params.hpp, granularity::per_block).
//
// A range is what params_from_range (quant/quant_params.hpp) consumes: it widens [lo, hi] to
// contain 0 and derives scale and zero point with PyTorch's observer formulas.
//
// Error contract shared by every estimator: an empty tensor is errc::empty_input; a NaN or +-inf
// element is errc::non_finite, and the message names the argument, the offset of the first bad
// element (in memory order) and what it is ("element 17 is NaN"). The checks are those of the
// kernels (kernels/validate.hpp).

#include <adaquant/core/error.hpp>
#include <adaquant/core/tensor_view.hpp>
#include <adaquant/kernels/validate.hpp>
#include <adaquant/quant/quant_params.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

struct range {
  float lo = 0.0f;
  float hi = 0.0f;

  [[nodiscard]] constexpr float width() const noexcept { return hi - lo; }
  // max(|lo|, |hi|): the half-width of the symmetric range that covers this one.
  [[nodiscard]] constexpr float abs_max() const noexcept {
    const float a = lo < 0.0f ? -lo : lo;
    const float b = hi < 0.0f ? -hi : hi;
    return a > b ? a : b;
  }
  [[nodiscard]] constexpr range symmetric() const noexcept { return {-abs_max(), abs_max()}; }
  [[nodiscard]] constexpr range scaled(float alpha) const noexcept {
    return {lo * alpha, hi * alpha};
  }
  [[nodiscard]] constexpr bool contains(float v) const noexcept { return v >= lo && v <= hi; }
  // The smallest range covering both.
  [[nodiscard]] constexpr range merged(const range& o) const noexcept {
    return {o.lo < lo ? o.lo : lo, o.hi > hi ? o.hi : hi};
  }
  friend constexpr bool operator==(const range&, const range&) = default;
};

// Per-channel ranges along `axis`; lo.size() == hi.size() == extent of the axis.
struct channel_ranges {
  std::vector<float> lo;
  std::vector<float> hi;
  std::size_t axis = 0;

  [[nodiscard]] std::size_t channels() const noexcept { return lo.size(); }
  [[nodiscard]] range channel(std::size_t c) const { return {lo[c], hi[c]}; }
  friend bool operator==(const channel_ranges&, const channel_ranges&) = default;
};

// Per-block ranges: one per block of block_size indices along `axis` (block_layout order).
struct block_ranges {
  std::vector<float> lo;
  std::vector<float> hi;
  std::size_t axis = 1;
  std::size_t block_size = 32;

  [[nodiscard]] std::size_t blocks() const noexcept { return lo.size(); }
  [[nodiscard]] range block(std::size_t j) const { return {lo[j], hi[j]}; }
  friend bool operator==(const block_ranges&, const block_ranges&) = default;
};

// quant_params for a range (params_from_range with the range's ends).
[[nodiscard]] constexpr quant_params params_for(const quant_scheme& scheme, const range& r,
                                                zero_range on_zero = zero_range::reject) {
  return params_from_range(scheme, r.lo, r.hi, on_zero);
}

[[nodiscard]] inline channel_params params_for(const quant_scheme& scheme, const channel_ranges& r,
                                               zero_range on_zero = zero_range::reject) {
  return channel_params_from_ranges(scheme, r.lo, r.hi, r.axis, on_zero);
}

[[nodiscard]] inline block_params params_for(const quant_scheme& scheme, const block_ranges& r,
                                             zero_range on_zero = zero_range::reject) {
  return block_params_from_ranges(scheme, r.lo, r.hi, r.axis, r.block_size, on_zero);
}

namespace detail {

// Throws errc::invalid_argument unless `axis` is an axis of `s`.
inline void check_axis(const tensor_shape& s, std::size_t axis, std::string_view where) {
  if (!(axis < s.rank))
    fail(errc::invalid_argument, where,
         "axis " + std::to_string(axis) + " is out of range for a tensor of rank " +
             std::to_string(s.rank) + " (shape " + to_string(s) + ")");
}

// Throws errc::invalid_argument unless `block_size` >= 1.
inline void check_block_size(std::size_t block_size, std::string_view where) {
  if (!(block_size >= 1)) fail(errc::invalid_argument, where, "block size must be >= 1, got 0");
}

// The block layout of a per-block estimator's input (axis and block size checked).
inline block_layout checked_blocks(const tensor_shape& s, std::size_t axis, std::size_t block_size,
                                   const std::string& fn) {
  check_axis(s, axis, fn + ": axis");
  check_block_size(block_size, fn + ": block_size");
  return block_layout::of(s, axis, block_size);
}

// Copies channel k of a per-channel layout (its runs in memory order) to out, l.outer * l.inner
// floats: a per-channel or per-block estimator's view of one channel or block as one tensor.
inline void gather_channel(const float* x, const channel_layout& l, std::size_t k,
                           float* out) noexcept {
  for (std::size_t r = 0; r < l.outer; ++r)
    std::copy_n(x + (r * l.channels + k) * l.inner, l.inner, out + r * l.inner);
}

}  // namespace detail
}  // namespace adaquant
