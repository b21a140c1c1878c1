#pragma once
// Per-layer bias tuning with frozen weights and quantizers. With the quantized weights and input
// grid fixed, a layer's output before its bias, u = Q(W) Q(x), does not change while the bias
// does, so fitting only the bias to the full-precision output after the activation is one 1-D
// problem per output channel c:
//
//   f_c(b) = sum over samples n and positions p of (act(u[n,c,p] + b) - act(y_fp[n,c,p]))^2
//   f_c'(b) = 2 * sum of (act(u + b) - act(y_fp)) * act'(u + b)
//
// act is the identity, ReLU or ReLU6 (act' = 1 inside the linear range, 0 outside; at a kink the
// one-sided value of the region the point belongs to: 0 < z for ReLU, 0 < z < 6 for ReLU6).
//   identity:   b = mean(act(y_fp) - u), exactly (the minimiser of a quadratic).
//   ReLU/ReLU6: f_c is piecewise quadratic and continuous (f_c' may jump at the kinks). From
//               the current bias, steps of doubling length downhill bracket a sign change of
//               f_c' (from - to +), then safeguarded Newton steps (f_c'' = 2 * samples in the
//               linear range, exact on each piece; bisection when the Newton point leaves the
//               bracket) shrink it to float resolution: a local minimum on the downhill side of
//               the current bias. The result is kept only if f_c decreased.
// This is AdaQuant's layer objective (calibrate/adaquant.hpp) restricted to the bias, solved to
// convergence on all samples instead of by Adam on mini-batches. Sums are in double, in a fixed
// order: results are deterministic. Complexity O(N * P) per channel and step.
// Errors: shapes of u and y_fp differ, or their channel count (axis 1 of [N, C, P]) differs from
// the bias size (errc::shape_mismatch); no samples (errc::empty_input); NaN or inf in u, y_fp or
// the bias (errc::non_finite).

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/loss.hpp>
#include <adaquant/objectives/activation.hpp>

#include <cmath>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

struct bias_tuning_result {
  std::vector<float> bias;
  double loss_before = 0.0, loss_after = 0.0;  // sum over channels of f_c
};

namespace detail {
// One channel: the values u and full-precision outputs y over samples, `count` runs of `inner`
// consecutive floats starting every `stride` floats. The targets act(y) are formed on each
// visit, not stored: a stored copy would be a third array the size of the layer's outputs. The
// sums over a run are the loss kernels' (kernels/loss.hpp), added run after run.
struct bias_channel {
  const float* u;
  const float* y;
  std::size_t count, inner, stride;
  output_activation act;

  [[nodiscard]] double loss(float b) const {
    return with_activation(act, [&](auto a) {
      double s = 0.0;
      for (std::size_t n = 0; n < count; ++n)
        s = bias_loss_run(a, u + n * stride, y + n * stride, inner, b, s);
      return s;
    });
  }
  // f'(b) and f''(b) on the piece containing b.
  void derivatives(float b, double& d1, double& d2) const {
    bias_run_sums acc;
    with_activation(act, [&](auto a) {
      for (std::size_t n = 0; n < count; ++n)
        bias_slope_sums_run(a, u + n * stride, y + n * stride, inner, b, acc);
    });
    d1 = 2.0 * acc.slope;
    d2 = 2.0 * acc.linear;
  }
};

inline float tune_channel(const bias_channel& ch, float b0, double& before, double& after) {
  before = after = ch.loss(b0);
  float best = b0;
  const auto consider = [&](float b) {
    const double f = ch.loss(b);
    if (f < after) {
      after = f;
      best = b;
    }
  };
  if (ch.act == output_activation::none) {
    double s = 0.0, m = 0.0;  // act(y) = y
    for (std::size_t n = 0; n < ch.count; ++n)
      for (std::size_t i = 0; i < ch.inner; ++i) {
        s += static_cast<double>(ch.y[n * ch.stride + i]) - ch.u[n * ch.stride + i];
        m += 1.0;
      }
    consider(static_cast<float>(s / m));
    return best;
  }
  double g = 0.0, h = 0.0;
  ch.derivatives(b0, g, h);
  if (g == 0.0) return best;
  // Bracket [lo, hi] with f'(lo) <= 0 <= f'(hi), stepping away from b0 downhill with doubling
  // steps. One exists: f' > 0 far right for ReLU (and f' = 0 on the flat pieces far left, and
  // far right for ReLU6).
  const bool left = g > 0.0;
  float lo = b0, hi = b0;
  float step =
      std::max(h > 0.0 ? static_cast<float>(std::abs(g / h)) : 0.0f, 1e-6f * (1.0f + std::abs(b0)));
  bool bracketed = false;
  for (int k = 0; k < 64 && !bracketed; ++k, step *= 2.0f) {
    const float probe = left ? b0 - step : b0 + step;
    double pg = 0.0, ph = 0.0;
    ch.derivatives(probe, pg, ph);
    bracketed = left ? pg <= 0.0 : pg >= 0.0;
    (left == bracketed ? lo : hi) = probe;
  }
  if (!bracketed) {
    consider(left ? lo : hi);
    return best;
  }
  // Safeguarded Newton inside the bracket: the Newton point when it lies strictly inside, the
  // midpoint otherwise; stops when the bracket cannot shrink in float.
  float x = left ? hi : lo;
  for (int it = 0; it < 200; ++it) {
    ch.derivatives(x, g, h);
    if (g == 0.0) break;
    (g < 0.0 ? lo : hi) = x;
    float next = h > 0.0 ? static_cast<float>(x - g / h) : lo;
    if (!(next > lo && next < hi)) next = lo + (hi - lo) * 0.5f;
    if (next <= lo || next >= hi) break;
    x = next;
  }
  consider(x);
  consider(lo);
  consider(hi);
  return best;
}
}  // namespace detail

// Channels [first, first + C) of a layer, given as u, y_fp: [N, C, P] and their current biases:
// their tuned biases go to r.bias[first ...] and their losses are added to r's sums in channel
// order, so a layer tuned in consecutive groups of channels gets the bits of one tune_bias call
// while holding one group's outputs. Errors: as tune_bias, and r.bias shorter than first + C
// (errc::shape_mismatch).
inline void tune_bias_channels(tensor_view<const float> u, tensor_view<const float> y_fp,
                               std::span<const float> bias, output_activation act,
                               std::size_t first, bias_tuning_result& r) {
  constexpr const char* fn = "tune_bias";
  if (!(u.shape() == y_fp.shape()))
    detail::fail(errc::shape_mismatch, std::string(fn) + ": y_fp",
                 "shape " + to_string(y_fp.shape()) + " differs from u " + to_string(u.shape()));
  if (!(u.rank() == 3 && u.extent(1) == bias.size()))
    detail::fail(
        errc::shape_mismatch, std::string(fn) + ": u",
        "expected [N, " + std::to_string(bias.size()) + ", P], got " + to_string(u.shape()));
  const std::size_t n = u.extent(0), c = u.extent(1), p = u.extent(2);
  if (!(n > 0 && p > 0)) detail::fail(errc::empty_input, std::string(fn) + ": u", "no samples");
  for (std::size_t i = 0; i < n * c * p; ++i)
    if (!(std::isfinite(u.data()[i]) && std::isfinite(y_fp.data()[i])))
      detail::fail(errc::non_finite, std::string(fn) + ": u, y_fp",
                   "NaN or inf at element " + std::to_string(i));
  for (std::size_t k = 0; k < c; ++k)
    if (!std::isfinite(bias[k]))
      detail::fail(errc::non_finite, std::string(fn) + ": bias",
                   "NaN or inf in channel " + std::to_string(k));
  if (!(first + c <= r.bias.size()))
    detail::fail(errc::shape_mismatch, std::string(fn) + ": r.bias",
                 "has " + std::to_string(r.bias.size()) + " channels, not " +
                     std::to_string(first) + " + " + std::to_string(c));
  // Runs shorter than a vector (linear layers: one output per sample) are gathered into one run
  // per channel first, so that the sums run on whole vectors.
  const bool gather = p < detail::simd::lanes && n > 1;
  std::vector<float> gu(gather ? n * p : 0), gy(gu.size());
  for (std::size_t k = 0; k < c; ++k) {
    detail::bias_channel ch{u.data() + k * p, y_fp.data() + k * p, n, p, c * p, act};
    if (gather) {
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t j = 0; j < p; ++j) {
          gu[i * p + j] = ch.u[i * ch.stride + j];
          gy[i * p + j] = ch.y[i * ch.stride + j];
        }
      ch = {gu.data(), gy.data(), 1, n * p, n * p, act};
    }
    double before = 0.0, after = 0.0;
    r.bias[first + k] = detail::tune_channel(ch, bias[k], before, after);
    r.loss_before += before;
    r.loss_after += after;
  }
}

// u, y_fp: [N, C, P] (P = output positions; 1 for a linear layer); bias: the current C biases.
[[nodiscard]] inline bias_tuning_result tune_bias(tensor_view<const float> u,
                                                  tensor_view<const float> y_fp,
                                                  std::span<const float> bias,
                                                  output_activation act) {
  bias_tuning_result r;
  r.bias.assign(bias.begin(), bias.end());
  tune_bias_channels(u, y_fp, bias, act, 0, r);
  return r;
}

}  // namespace adaquant
