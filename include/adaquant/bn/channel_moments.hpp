#pragma once
// Exact per-channel mean and variance over any number of batches (the statistics BN tuning
// re-estimates). Each batch is reduced in double and merged with Chan's parallel update, so the
// result is the plain average over all observed elements, not a momentum blend, and does not
// depend on how the data was split into batches beyond floating-point rounding.
//
//   mean_c = (1/N_c) sum x,   var_c = (1/N_c) sum (x - mean_c)^2   (biased, as BN normalises)
//
// Complexity: O(n) per observe(), O(channels) memory.

#include <adaquant/core/concepts.hpp>

#include <cmath>
#include <string>
#include <vector>

namespace adaquant {

class channel_moments {
 public:
  channel_moments() = default;
  channel_moments(std::size_t channels, std::size_t axis)
      : axis_(axis), count_(channels, 0.0), mean_(channels, 0.0), m2_(channels, 0.0) {}

  // Adds a batch whose channel axis is `axis()` (e.g. NCHW activations with axis 1).
  void observe(const FloatTensor auto& x) { observe_view(view(x)); }

  void observe_view(tensor_view<const float> x) {
    constexpr const char* fn = "channel_moments::observe";
    if (!(axis_ < x.rank()))
      detail::fail(
          errc::invalid_argument, std::string(fn) + ": x",
          "axis " + std::to_string(axis_) + " out of range for rank " + std::to_string(x.rank()));
    if (!(x.extent(axis_) == mean_.size()))
      detail::fail(errc::shape_mismatch, std::string(fn) + ": x",
                   "channel axis has extent " + std::to_string(x.extent(axis_)) + ", expected " +
                       std::to_string(mean_.size()));
    const channel_layout l = channel_layout::of(x.shape(), axis_);
    const float* p = x.data();
    for (std::size_t c = 0; c < l.channels; ++c) {
      double s = 0.0, n = 0.0;
      for (std::size_t b = 0; b < l.outer; ++b) {
        const float* run = p + (b * l.channels + c) * l.inner;
        for (std::size_t i = 0; i < l.inner; ++i) s += run[i];
        n += static_cast<double>(l.inner);
      }
      if (n == 0.0) continue;
      if (!std::isfinite(s))
        detail::fail(errc::non_finite, std::string(fn) + ": x",
                     "channel " + std::to_string(c) + " contains NaN or inf");
      const double m = s / n;
      double q = 0.0;
      for (std::size_t b = 0; b < l.outer; ++b) {
        const float* run = p + (b * l.channels + c) * l.inner;
        for (std::size_t i = 0; i < l.inner; ++i) {
          const double d = run[i] - m;
          q += d * d;
        }
      }
      merge(c, n, m, q);
    }
  }

  [[nodiscard]] std::size_t channels() const noexcept { return mean_.size(); }
  [[nodiscard]] std::size_t axis() const noexcept { return axis_; }
  [[nodiscard]] double count(std::size_t c) const { return count_[c]; }
  [[nodiscard]] double mean(std::size_t c) const { return mean_[c]; }
  // Biased variance (divides by N), as batch norm uses to normalise.
  [[nodiscard]] double variance(std::size_t c) const {
    return count_[c] > 0.0 ? m2_[c] / count_[c] : 0.0;
  }
  // Throws errc::empty_input when a channel has seen no data.
  void require_data(const char* where) const {
    for (std::size_t c = 0; c < count_.size(); ++c)
      if (!(count_[c] > 0.0))
        detail::fail(errc::empty_input, where, "no data observed for channel " + std::to_string(c));
  }

 private:
  void merge(std::size_t c, double n, double m, double q) {
    const double n0 = count_[c], n1 = n0 + n;
    const double d = m - mean_[c];
    mean_[c] += d * n / n1;
    m2_[c] += q + d * d * n0 * n / n1;
    count_[c] = n1;
  }

  std::size_t axis_ = 0;
  std::vector<double> count_, mean_, m2_;
};

}  // namespace adaquant
