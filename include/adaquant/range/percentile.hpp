#pragma once
// Percentile clipping from a streaming histogram, per tensor and per channel; per block from exact
// order statistics.
//
// histogram: `bins` equal bins whose edges lie on the global grid g * w (g an integer, w > 0):
// bin i covers [(base + i) * w, (base + i + 1) * w). The first batch sets
// w = (max - min) / (bins - 1). When a later batch falls outside the window, the window moves
// and/or w doubles m times (w' = 2^m w, the smallest m that fits every value); old bin g then
// lies wholly inside new bin floor(g / 2^m), so counts move exactly and re-binning is
// deterministic: the same batches in the same order give the same histogram. The exact minimum
// and maximum are kept beside the counts.
//
// Queries interpolate linearly within a bin (values assumed uniform inside it):
//   quantile(q)      the value v with q * total elements below it          q in [0, 1]
//   abs_quantile(q)  the t with q * total elements in [-t, t]; the grid is symmetric about 0
//                    (edges at multiples of w), so this needs no second histogram.
// Both land in the bin that holds the exact order statistic, so the error against the sorted
// data is at most one bin width: |estimate - exact| <= w <= 2 (max - min) / (bins - 1) for the
// observed max and min (the factor 2 is the worst case after doublings; w stays at least
// max|x| * 2^-40 so that grid indices fit in 64 bits).
//
// percentile_range(h, p, clipping::asymmetric) = [quantile(1 - p/100), quantile(p/100)],
//                                                p in [50, 100]
// percentile_range(h, p, clipping::symmetric)  = [-t, t], t = abs_quantile(p/100), p in (0, 100]
// p = 100 gives the exact min/max. PyTorch's HistogramObserver instead searches for the MSE
// optimum on its histogram (mse_search.hpp offers that on our histogram).
//
// Per block (percentile_range_per_block, granularity::per_block): a block holds a few dozen to a
// few hundred values, too few for a histogram and cheap to sort, so each block's range comes from
// its exact order statistics: with v_0 <= ... <= v_{m-1} the block's sorted values and
// Q(q) = v at position q (m - 1), linear between neighbours (NumPy's default percentile),
//   asymmetric: [Q(1 - p/100), Q(p/100)]     symmetric: [-t, t], t = Q(p/100) of the |v|
// p = 100 gives the exact min/max here too. O(n log block_size), O(block_size) scratch.
//
// Complexity: observe O(n) (one min/max pass + one binning pass) plus O(bins) when the window
// has to move; O(bins) memory (O(channels * bins) per channel); each query O(bins).
// Errors: empty batch (empty_input), non-finite element (non_finite), bins < 2 or a
// percentile outside its domain (invalid_argument), axis >= rank or block_size 0
// (invalid_argument), channel count changing between batches (shape_mismatch), result() before any
// batch (empty_input).

#include <adaquant/core/concepts.hpp>
#include <adaquant/range/min_max.hpp>
#include <adaquant/range/range.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

enum class clipping { asymmetric, symmetric };

struct percentile_options {
  std::size_t bins = 2048;  // resolution: error <= one bin width
};

namespace detail {
inline void check_bins(std::size_t bins, std::string_view where) {
  if (!(bins >= 2 && bins <= (std::size_t{1} << 24)))
    fail(errc::invalid_argument, where, "bins must be in [2, 2^24], got " + std::to_string(bins));
}

inline void check_percentile(double p, clipping c, std::string_view where) {
  if (c == clipping::asymmetric && !(p >= 50.0 && p <= 100.0))
    fail(errc::invalid_argument, where,
         "percentile must be in [50, 100] for asymmetric clipping, got " + std::to_string(p));
  if (!(p > 0.0 && p <= 100.0))
    fail(errc::invalid_argument, where, "percentile must be in (0, 100], got " + std::to_string(p));
}

// floor(g / 2^m) for any int64 g and m >= 0 (C++20: >> on negatives is arithmetic).
constexpr std::int64_t floor_shift(std::int64_t g, int m) noexcept {
  return m >= 63 ? (g < 0 ? -1 : 0) : (g >> m);
}
}  // namespace detail

class histogram {
 public:
  explicit histogram(std::size_t bins = 2048) : counts_(bins, 0) {
    detail::check_bins(bins, "histogram: bins");
  }

  // Adds a batch. Validates it (non-empty, finite) before changing anything.
  template <FloatTensor T>
  void add(const T& x) {
    const auto v = view(x);
    const range r = detail::min_max_impl<true>(v, "histogram::add: x");
    cover(r.lo, r.hi);
    add_covered(v.data(), v.size());
  }

  [[nodiscard]] std::size_t bins() const noexcept { return counts_.size(); }
  [[nodiscard]] std::uint64_t total() const noexcept { return total_; }
  [[nodiscard]] bool empty() const noexcept { return total_ == 0; }
  [[nodiscard]] double bin_width() const noexcept { return width_; }
  // Left edge of bin i (i may be bins() for the right edge of the window).
  [[nodiscard]] double edge(std::size_t i) const noexcept {
    return static_cast<double>(base_ + static_cast<std::int64_t>(i)) * width_;
  }
  [[nodiscard]] std::span<const std::uint64_t> counts() const noexcept { return counts_; }
  // Exact extremes of everything added (meaningful when !empty()).
  [[nodiscard]] float min() const noexcept { return min_; }
  [[nodiscard]] float max() const noexcept { return max_; }

  // The value with q * total() elements below it, linear within a bin; q in [0, 1].
  [[nodiscard]] double quantile(double q) const {
    check_query(q, "histogram::quantile: q");
    if (q <= 0.0) return min_;
    if (q >= 1.0) return max_;
    const double target = q * static_cast<double>(total_);
    double cum = 0.0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      const double c = static_cast<double>(counts_[i]);
      if (c > 0.0 && cum + c >= target) return clamp_seen(edge(i) + (target - cum) / c * width_);
      cum += c;
    }
    return max_;
  }

  // The t >= 0 with q * total() elements in [-t, t] (linear within bins); q in [0, 1].
  [[nodiscard]] double abs_quantile(double q) const {
    check_query(q, "histogram::abs_quantile: q");
    const double amax = std::max(std::fabs(double{min_}), std::fabs(double{max_}));
    if (q >= 1.0) return amax;
    std::vector<double> prefix(counts_.size() + 1, 0.0);
    for (std::size_t i = 0; i < counts_.size(); ++i)
      prefix[i + 1] = prefix[i] + static_cast<double>(counts_[i]);
    const double target = q * static_cast<double>(total_);
    // F(t) = C(t) - C(-t) is non-decreasing in t; bisect for the smallest t with F(t) >= target.
    double a = 0.0, b = amax;
    if (mass_within(prefix, a) >= target) return 0.0;
    for (int it = 0; it < 200 && b - a > width_ * 1e-6; ++it) {
      const double mid = 0.5 * (a + b);
      (mass_within(prefix, mid) >= target ? b : a) = mid;
    }
    return b;
  }

  // Makes the window cover [lo, hi] (re-binning if needed); then add_covered() may add values
  // in [lo, hi]. Throws unless lo <= hi are finite. O(1), or O(bins) when the window moves.
  void cover(float lo, float hi) {
    if (!(detail::is_finite(lo) && detail::is_finite(hi) && lo <= hi))
      detail::fail(errc::invalid_argument, "histogram::cover: [lo, hi]",
                   "must be a finite range with lo <= hi, got [" + detail::fmt_float(lo) + ", " +
                       detail::fmt_float(hi) + "]");
    if (total_ == 0) {
      const double span = double{hi} - double{lo};
      const double amax = std::max(std::fabs(double{lo}), std::fabs(double{hi}));
      width_ = std::max({span / static_cast<double>(bins() - 1), amax * 0x1p-40, 0x1p-100});
      base_ = static_cast<std::int64_t>(std::floor(double{lo} / width_));
      min_ = lo;
      max_ = hi;
      refit(lo, hi);
      return;
    }
    const float nlo = std::min(lo, min_), nhi = std::max(hi, max_);
    if (index_of(nlo) >= base_ && index_of(nhi) < base_ + static_cast<std::int64_t>(bins())) {
      min_ = nlo;
      max_ = nhi;
      return;
    }
    refit(nlo, nhi);
    min_ = nlo;
    max_ = nhi;
  }

  // Adds values inside the window (see cover()); values outside it land in the end bins.
  void add_covered(const float* x, std::size_t n) noexcept {
    const std::int64_t last = static_cast<std::int64_t>(bins()) - 1;
    for (std::size_t i = 0; i < n; ++i) {
      std::int64_t k = index_of(x[i]) - base_;
      k = k < 0 ? 0 : (k > last ? last : k);  // guards rounding at the window's ends
      ++counts_[static_cast<std::size_t>(k)];
    }
    total_ += n;
  }

  void reset() noexcept {
    std::fill(counts_.begin(), counts_.end(), 0);
    total_ = 0;
    width_ = 0.0;
    base_ = 0;
  }

 private:
  [[nodiscard]] std::int64_t index_of(float v) const noexcept {
    return static_cast<std::int64_t>(std::floor(double{v} / width_));
  }
  [[nodiscard]] double clamp_seen(double v) const noexcept {
    return v < min_ ? double{min_} : (v > max_ ? double{max_} : v);
  }
  void check_query(double q, std::string_view where) const {
    if (!(q >= 0.0 && q <= 1.0))
      detail::fail(errc::invalid_argument, where, "must be in [0, 1], got " + std::to_string(q));
    if (total_ == 0) detail::fail(errc::empty_input, where, "histogram is empty");
  }
  // Interpolated count of elements <= v.
  [[nodiscard]] double cdf(const std::vector<double>& prefix, double v) const noexcept {
    const double pos = v / width_ - static_cast<double>(base_);
    if (pos <= 0.0) return 0.0;
    const double nb = static_cast<double>(bins());
    if (pos >= nb) return prefix.back();
    const auto i = static_cast<std::size_t>(pos);
    return prefix[i] + (pos - static_cast<double>(i)) * static_cast<double>(counts_[i]);
  }
  [[nodiscard]] double mass_within(const std::vector<double>& prefix, double t) const noexcept {
    return cdf(prefix, t) - cdf(prefix, -t);
  }

  // Smallest doubling m (and the window base) that fits [lo, hi]; moves the counts.
  void refit(float lo, float hi) {
    const double amax = std::max(std::fabs(double{lo}), std::fabs(double{hi}));
    const auto nb = static_cast<std::int64_t>(bins());
    int m = 0;
    double w = width_;
    std::int64_t a = 0;
    for (;; ++m, w = std::ldexp(width_, m)) {
      if (w < amax * 0x1p-40) continue;
      a = static_cast<std::int64_t>(std::floor(double{lo} / w));
      const auto b = static_cast<std::int64_t>(std::floor(double{hi} / w));
      if (b - a < nb) break;
    }
    if (total_ > 0) {
      std::vector<std::uint64_t> moved(counts_.size(), 0);
      for (std::size_t i = 0; i < counts_.size(); ++i) {
        if (counts_[i] == 0) continue;
        std::int64_t k = detail::floor_shift(base_ + static_cast<std::int64_t>(i), m) - a;
        k = k < 0 ? 0 : (k > nb - 1 ? nb - 1 : k);
        moved[static_cast<std::size_t>(k)] += counts_[i];
      }
      counts_.swap(moved);
    }
    width_ = w;
    base_ = a;
  }

  std::vector<std::uint64_t> counts_;
  std::uint64_t total_ = 0;
  double width_ = 0.0;
  std::int64_t base_ = 0;
  float min_ = 0.0f;
  float max_ = 0.0f;
};

// Clipping range at `percentile` (see the file comment). Complexity O(bins).
[[nodiscard]] inline range percentile_range(const histogram& h, double percentile,
                                            clipping c = clipping::asymmetric) {
  detail::check_percentile(percentile, c, "percentile_range: percentile");
  if (h.empty()) detail::fail(errc::empty_input, "percentile_range: h", "histogram is empty");
  if (c == clipping::symmetric) {
    const auto t = static_cast<float>(h.abs_quantile(percentile / 100.0));
    return {-t, t};
  }
  if (percentile == 100.0) return {h.min(), h.max()};
  return {static_cast<float>(h.quantile(1.0 - percentile / 100.0)),
          static_cast<float>(h.quantile(percentile / 100.0))};
}

// Streaming percentile observer for one tensor. Complexity: O(n) per batch (+ O(bins) when
// the window moves), O(bins) per result().
class percentile_observer {
 public:
  percentile_observer() = default;
  explicit percentile_observer(const percentile_options& options) : h_(check(options).bins) {}

  template <FloatTensor T>
  void observe(const T& x) {
    const auto v = view(x);
    const range r = detail::min_max_impl<true>(v, "percentile_observer::observe: x");
    h_.cover(r.lo, r.hi);
    h_.add_covered(v.data(), v.size());
  }

  [[nodiscard]] range result(double percentile = 99.99, clipping c = clipping::asymmetric) const {
    detail::check_percentile(percentile, c, "percentile_observer::result: percentile");
    if (h_.empty())
      detail::fail(errc::empty_input, "percentile_observer::result", "no batch has been observed");
    return percentile_range(h_, percentile, c);
  }
  [[nodiscard]] const histogram& hist() const noexcept { return h_; }
  void reset() noexcept { h_.reset(); }

 private:
  static const percentile_options& check(const percentile_options& o) {
    detail::check_bins(o.bins, "percentile_observer: options.bins");
    return o;
  }
  histogram h_{};
};

// Streaming percentile observer with one histogram per index along `axis`.
// Complexity: O(n) per batch (+ O(bins) per channel whose window moves), O(channels * bins)
// memory, O(channels * bins) per result().
class percentile_channel_observer {
 public:
  explicit percentile_channel_observer(std::size_t axis, const percentile_options& options = {})
      : options_(options), axis_(axis) {
    detail::check_bins(options.bins, "percentile_channel_observer: options.bins");
  }

  template <FloatTensor T>
  void observe(const T& x) {
    constexpr const char* fn = "percentile_channel_observer::observe";
    const auto v = view(x);
    detail::check_axis(v.shape(), axis_, std::string(fn) + ": axis");
    if (!h_.empty() && v.extent(axis_) != h_.size())
      detail::fail(errc::shape_mismatch, std::string(fn) + ": x",
                   "batch has " + std::to_string(v.extent(axis_)) + " channels along axis " +
                       std::to_string(axis_) + ", earlier batches had " +
                       std::to_string(h_.size()));
    const channel_ranges r = detail::min_max_per_channel_impl<true>(v, axis_, fn);
    if (h_.empty()) h_.assign(r.lo.size(), histogram(options_.bins));
    const channel_layout l = channel_layout::of(v.shape(), axis_);
    for (std::size_t c = 0; c < l.channels; ++c) h_[c].cover(r.lo[c], r.hi[c]);
    std::size_t o = 0;
    for (std::size_t b = 0; b < l.outer; ++b)
      for (std::size_t c = 0; c < l.channels; ++c, o += l.inner)
        h_[c].add_covered(v.data() + o, l.inner);
  }

  [[nodiscard]] channel_ranges result(double percentile = 99.99,
                                      clipping c = clipping::asymmetric) const {
    detail::check_percentile(percentile, c, "percentile_channel_observer::result: percentile");
    if (h_.empty())
      detail::fail(errc::empty_input, "percentile_channel_observer::result",
                   "no batch has been observed");
    channel_ranges out;
    out.axis = axis_;
    out.lo.resize(h_.size());
    out.hi.resize(h_.size());
    for (std::size_t k = 0; k < h_.size(); ++k) {
      const range r = percentile_range(h_[k], percentile, c);
      out.lo[k] = r.lo;
      out.hi[k] = r.hi;
    }
    return out;
  }
  [[nodiscard]] std::size_t channels() const noexcept { return h_.size(); }
  [[nodiscard]] const histogram& hist(std::size_t c) const { return h_.at(c); }
  [[nodiscard]] std::size_t axis() const noexcept { return axis_; }
  void reset() noexcept { h_.clear(); }

 private:
  percentile_options options_{};
  std::size_t axis_ = 0;
  std::vector<histogram> h_;
};

namespace detail {
// Q(q) of sorted values v (m >= 1): position q (m - 1), linear between neighbours, in double.
inline float sorted_quantile(std::span<const float> v, double q) noexcept {
  const double pos = q * static_cast<double>(v.size() - 1);
  const auto i = static_cast<std::size_t>(pos);
  if (i + 1 >= v.size()) return v.back();
  const double f = pos - static_cast<double>(i);
  return static_cast<float>(double{v[i]} + f * (double{v[i + 1]} - double{v[i]}));
}

// The percentile range of m values (sorted in place).
inline range exact_percentile_range(std::span<float> v, double percentile, clipping c) {
  const double q = percentile / 100.0;
  if (c == clipping::symmetric) {
    for (float& a : v) a = std::fabs(a);
    std::sort(v.begin(), v.end());
    const float t = sorted_quantile(v, q);
    return {-t, t};
  }
  std::sort(v.begin(), v.end());
  return {sorted_quantile(v, 1.0 - q), sorted_quantile(v, q)};
}
}  // namespace detail

// One-shot percentile clipping of a tensor (a percentile_observer fed one batch).
template <FloatTensor T>
[[nodiscard]] range percentile_range(const T& x, double percentile,
                                     clipping c = clipping::asymmetric,
                                     const percentile_options& options = {}) {
  detail::check_percentile(percentile, c, "percentile_range: percentile");
  percentile_observer o(options);
  o.observe(x);
  return o.result(percentile, c);
}

template <FloatTensor T>
[[nodiscard]] channel_ranges percentile_range_per_channel(const T& x, std::size_t axis,
                                                          double percentile,
                                                          clipping c = clipping::asymmetric,
                                                          const percentile_options& options = {}) {
  detail::check_percentile(percentile, c, "percentile_range_per_channel: percentile");
  percentile_channel_observer o(axis, options);
  o.observe(x);
  return o.result(percentile, c);
}

// Per-block percentile clipping along `axis` from each block's exact order statistics (see the
// file comment). Complexity: O(n log block_size); O(blocks) memory for the result.
template <FloatTensor T>
[[nodiscard]] block_ranges percentile_range_per_block(const T& x, std::size_t axis,
                                                      std::size_t block_size, double percentile,
                                                      clipping c = clipping::asymmetric) {
  constexpr const char* fn = "percentile_range_per_block";
  detail::check_percentile(percentile, c, "percentile_range_per_block: percentile");
  const auto v = view(x);
  block_ranges r = detail::min_max_per_block_impl<true>(v, axis, block_size, fn);  // validates x
  const block_layout l = block_layout::of(v.shape(), axis, block_size);
  std::vector<float> buf(std::min(block_size, l.extent));
  l.for_each_chunk([&](std::size_t o, const channel_layout& chunk, std::size_t first) {
    for (std::size_t k = 0; k < chunk.channels; ++k) {
      const std::span<float> values(buf.data(), chunk.outer * chunk.inner);
      detail::gather_channel(v.data() + o, chunk, k, values.data());
      const range b = detail::exact_percentile_range(values, percentile, c);
      r.lo[first + k] = b.lo;
      r.hi[first + k] = b.hi;
    }
  });
  return r;
}

}  // namespace adaquant
