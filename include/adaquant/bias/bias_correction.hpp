#pragma once
// Empirical bias correction: quantization shifts a layer's output mean per channel (clipping and
// rounding errors are not zero-mean). Over the calibration set, with inputs from the quantized
// network for y_q and from the full-precision network for y_fp,
//
//   delta_c = E[y_fp - y_q]  (per output channel, exact average over all batches)
//   b_c    += delta_c
//
// makes the quantized layer's output mean match the full-precision one. Accumulated in double.
// Errors: mismatched shapes, wrong channel count, NaN/inf in either output, no data.

#include <adaquant/core/concepts.hpp>

#include <cmath>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

class bias_correction {
 public:
  bias_correction(std::size_t channels, std::size_t axis)
      : axis_(axis), sum_(channels, 0.0), count_(channels, 0.0) {}

  void observe(const FloatTensor auto& y_fp, const FloatTensor auto& y_q) {
    observe_views(view(y_fp), view(y_q));
  }

  void observe_views(tensor_view<const float> fp, tensor_view<const float> q) {
    if (!(fp.shape() == q.shape()))
      detail::fail(errc::shape_mismatch, "bias_correction::observe: y_q",
                   "shape " + to_string(q.shape()) + " differs from y_fp " + to_string(fp.shape()));
    if (!(axis_ < fp.rank() && fp.extent(axis_) == sum_.size()))
      detail::fail(errc::shape_mismatch, "bias_correction::observe: y_fp",
                   "expected " + std::to_string(sum_.size()) + " channels along axis " +
                       std::to_string(axis_) + ", got shape " + to_string(fp.shape()));
    const channel_layout l = channel_layout::of(fp.shape(), axis_);
    for (std::size_t b = 0; b < l.outer; ++b)
      for (std::size_t c = 0; c < l.channels; ++c) {
        const std::size_t o = (b * l.channels + c) * l.inner;
        double s = 0.0;
        for (std::size_t i = 0; i < l.inner; ++i)
          s += static_cast<double>(fp.data()[o + i]) - static_cast<double>(q.data()[o + i]);
        if (!std::isfinite(s))
          detail::fail(errc::non_finite, "bias_correction::observe: y_fp/y_q",
                       "channel " + std::to_string(c) + " contains NaN or inf");
        sum_[c] += s;
        count_[c] += static_cast<double>(l.inner);
      }
  }

  [[nodiscard]] std::vector<float> correction() const {
    std::vector<float> d(sum_.size());
    for (std::size_t c = 0; c < d.size(); ++c) {
      if (!(count_[c] > 0.0))
        detail::fail(errc::empty_input, "bias_correction::correction",
                     "no data observed for channel " + std::to_string(c));
      d[c] = static_cast<float>(sum_[c] / count_[c]);
    }
    return d;
  }

  // bias += correction(); bias must have one entry per channel.
  void apply(std::span<float> bias) const {
    if (!(bias.size() == sum_.size()))
      detail::fail(errc::shape_mismatch, "bias_correction::apply: bias",
                   std::to_string(bias.size()) + " entries for " + std::to_string(sum_.size()) +
                       " channels");
    const auto d = correction();
    for (std::size_t c = 0; c < d.size(); ++c) bias[c] += d[c];
  }

 private:
  std::size_t axis_;
  std::vector<double> sum_, count_;
};

}  // namespace adaquant
