#pragma once
// Min/max range estimation, per tensor, per channel and per block, one-shot or running over
// batches.
//
//   min_max(x)                   -> range{min x, max x}        O(n), one pass, no allocation
//   min_max_per_channel(x, axis) -> channel_ranges (min, max per index along axis)
//                                                              O(n) one pass + O(channels)
//   min_max_per_block(x, axis, block_size) -> block_ranges (min, max per block of block_size
//                                   indices along axis, granularity::per_block)
//                                                              O(n) one pass + O(blocks)
//   min_max_observer             running min/max over batches (PyTorch MinMaxObserver), or an
//                                exponential moving average of each batch's min and max
//                                (MovingAverageMinMaxObserver):
//                                  first batch:  lo = min x, hi = max x
//                                  later:        lo += c * (min x - lo), hi += c * (max x - hi)
//                                O(n) per batch, O(1) state (O(channels) per channel).
//
// Results are exact (min and max do not round), so the SIMD kernels and their scalar twins
// (*_ref) agree bit for bit; a -0.0 result is returned as +0.0 so that the order in which lanes
// meet signed zeros cannot show. Errors: empty x (errc::empty_input), a NaN or +-inf element
// (errc::non_finite, naming its offset), axis >= rank or block_size 0 (errc::invalid_argument);
// observers also reject a batch whose channel count differs from the first
// (errc::shape_mismatch), averaging constants outside (0, 1] (errc::invalid_argument) and
// result() before any batch (errc::empty_input). A rejected batch leaves an observer unchanged.

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/min_max.hpp>
#include <adaquant/range/range.hpp>

#include <algorithm>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace adaquant {
namespace detail {

template <bool Simd>
range min_max_impl(tensor_view<const float> x, std::string_view where) {
  check_not_empty(x.size(), where);
  const min_max_acc a = min_max_run<Simd>(x.data(), x.size());
  if (!a.finite) check_finite(x.data(), x.size(), where);
  return {a.lo, a.hi};
}

template <bool Simd>
channel_ranges min_max_per_channel_impl(tensor_view<const float> x, std::size_t axis,
                                        std::string_view fn) {
  check_axis(x.shape(), axis, std::string(fn) + ": axis");
  const std::string where_x = std::string(fn) + ": x";
  check_not_empty(x.size(), where_x);
  const channel_layout l = channel_layout::of(x.shape(), axis);
  channel_ranges r;
  r.axis = axis;
  r.lo.assign(l.channels, std::numeric_limits<float>::infinity());
  r.hi.assign(l.channels, -std::numeric_limits<float>::infinity());
  const bool finite = min_max_per_channel_run<Simd>(x.data(), l, r.lo.data(), r.hi.data());
  if (!finite) check_finite(x.data(), x.size(), where_x);
  return r;
}

template <bool Simd>
block_ranges min_max_per_block_impl(tensor_view<const float> x, std::size_t axis,
                                    std::size_t block_size, std::string_view fn) {
  const std::string f(fn);
  const block_layout l = checked_blocks(x.shape(), axis, block_size, f);
  check_not_empty(x.size(), f + ": x");
  block_ranges r;
  r.axis = axis;
  r.block_size = block_size;
  r.lo.assign(l.params(), std::numeric_limits<float>::infinity());
  r.hi.assign(l.params(), -std::numeric_limits<float>::infinity());
  bool finite = true;
  l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t first) {
    finite &=
        min_max_per_channel_run<Simd>(x.data() + o, c, r.lo.data() + first, r.hi.data() + first);
  });
  if (!finite) check_finite(x.data(), x.size(), f + ": x");
  return r;
}

inline void check_averaging_constant(float c, std::string_view where) {
  if (!(c > 0.0f && c <= 1.0f))
    fail(errc::invalid_argument, where,
         "averaging_constant must be in (0, 1], got " + fmt_float(c));
}

// lo += c * (new - lo), the moving-average update of PyTorch's MovingAverage*MinMaxObserver.
inline float moving_average(float old, float now, float c) noexcept {
  return old + c * (now - old);
}

}  // namespace detail

// Exact minimum and maximum of x (SIMD). Complexity: O(n), one pass, no allocation.
template <FloatTensor T>
[[nodiscard]] range min_max(const T& x) {
  return detail::min_max_impl<true>(view(x), "min_max: x");
}

// Scalar twin of min_max; equal bit for bit.
template <FloatTensor T>
[[nodiscard]] range min_max_ref(const T& x) {
  return detail::min_max_impl<false>(view(x), "min_max_ref: x");
}

// Exact per-channel minimum and maximum along `axis` (any dense layout).
// Complexity: O(n), one pass; O(channels) memory for the result.
template <FloatTensor T>
[[nodiscard]] channel_ranges min_max_per_channel(const T& x, std::size_t axis) {
  return detail::min_max_per_channel_impl<true>(view(x), axis, "min_max_per_channel");
}

template <FloatTensor T>
[[nodiscard]] channel_ranges min_max_per_channel_ref(const T& x, std::size_t axis) {
  return detail::min_max_per_channel_impl<false>(view(x), axis, "min_max_per_channel_ref");
}

// Exact per-block minimum and maximum: blocks of block_size indices along `axis` (any dense
// layout; fastest when axis is the innermost). Complexity: O(n), one pass; O(blocks) memory.
template <FloatTensor T>
[[nodiscard]] block_ranges min_max_per_block(const T& x, std::size_t axis, std::size_t block_size) {
  return detail::min_max_per_block_impl<true>(view(x), axis, block_size, "min_max_per_block");
}

template <FloatTensor T>
[[nodiscard]] block_ranges min_max_per_block_ref(const T& x, std::size_t axis,
                                                 std::size_t block_size) {
  return detail::min_max_per_block_impl<false>(view(x), axis, block_size, "min_max_per_block_ref");
}

struct min_max_observer_options {
  // false: running min/max over every batch (PyTorch MinMaxObserver).
  // true: exponential moving average of each batch's min and max with weight
  // averaging_constant on the new batch (PyTorch MovingAverageMinMaxObserver, default 0.01).
  bool moving_average = false;
  float averaging_constant = 0.01f;
};

// Running range over batches: observe(batch) any number of times, then result().
// Without moving_average, the result equals min_max over the concatenation of the batches.
// Complexity: O(n) per batch, O(1) state.
class min_max_observer {
 public:
  min_max_observer() = default;
  explicit min_max_observer(const min_max_observer_options& options) : options_(options) {
    detail::check_averaging_constant(options.averaging_constant,
                                     "min_max_observer: options.averaging_constant");
  }

  template <FloatTensor T>
  void observe(const T& x) {
    const range b = detail::min_max_impl<true>(view(x), "min_max_observer::observe: x");
    if (batches_ == 0)
      r_ = b;
    else if (options_.moving_average)
      r_ = {detail::moving_average(r_.lo, b.lo, options_.averaging_constant),
            detail::moving_average(r_.hi, b.hi, options_.averaging_constant)};
    else
      r_ = r_.merged(b);
    ++batches_;
  }

  [[nodiscard]] range result() const {
    if (batches_ == 0)
      detail::fail(errc::empty_input, "min_max_observer::result", "no batch has been observed");
    return r_;
  }
  [[nodiscard]] std::size_t batches() const noexcept { return batches_; }
  [[nodiscard]] const min_max_observer_options& options() const noexcept { return options_; }
  void reset() noexcept {
    batches_ = 0;
    r_ = {};
  }

 private:
  min_max_observer_options options_{};
  range r_{};
  std::size_t batches_ = 0;
};

// Running per-channel range along `axis` (PyTorch PerChannelMinMaxObserver and its moving
// average variant). Every batch must have the same extent along `axis`; other extents may vary.
// Complexity: O(n) per batch, O(channels) state.
class min_max_channel_observer {
 public:
  explicit min_max_channel_observer(std::size_t axis, const min_max_observer_options& options = {})
      : options_(options), axis_(axis) {
    detail::check_averaging_constant(options.averaging_constant,
                                     "min_max_channel_observer: options.averaging_constant");
  }

  template <FloatTensor T>
  void observe(const T& x) {
    constexpr const char* fn = "min_max_channel_observer::observe";
    const auto v = view(x);
    detail::check_axis(v.shape(), axis_, std::string(fn) + ": axis");
    if (batches_ > 0 && v.extent(axis_) != r_.lo.size())
      detail::fail(errc::shape_mismatch, std::string(fn) + ": x",
                   "batch has " + std::to_string(v.extent(axis_)) + " channels along axis " +
                       std::to_string(axis_) + ", earlier batches had " +
                       std::to_string(r_.lo.size()));
    channel_ranges b = detail::min_max_per_channel_impl<true>(v, axis_, fn);
    if (batches_ == 0) {
      r_ = std::move(b);
    } else {
      for (std::size_t c = 0; c < r_.lo.size(); ++c) {
        if (options_.moving_average) {
          r_.lo[c] = detail::moving_average(r_.lo[c], b.lo[c], options_.averaging_constant);
          r_.hi[c] = detail::moving_average(r_.hi[c], b.hi[c], options_.averaging_constant);
        } else {
          r_.lo[c] = std::min(r_.lo[c], b.lo[c]);
          r_.hi[c] = std::max(r_.hi[c], b.hi[c]);
        }
      }
    }
    ++batches_;
  }

  [[nodiscard]] const channel_ranges& result() const {
    if (batches_ == 0)
      detail::fail(errc::empty_input, "min_max_channel_observer::result",
                   "no batch has been observed");
    return r_;
  }
  [[nodiscard]] std::size_t axis() const noexcept { return axis_; }
  [[nodiscard]] std::size_t batches() const noexcept { return batches_; }
  void reset() noexcept {
    batches_ = 0;
    r_ = {};
    r_.axis = axis_;
  }

 private:
  min_max_observer_options options_{};
  std::size_t axis_ = 0;
  channel_ranges r_{};
  std::size_t batches_ = 0;
};

}  // namespace adaquant
