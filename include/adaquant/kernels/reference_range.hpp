#pragma once
// Scalar twins of the kernels behind the range estimators (kernels/simd/min_max.hpp,
// kernels/simd/quant_error.hpp). They define the numerics, including the order of every sum; the
// SIMD kernels match them bit for bit.
//   min/max:      exact; a -0.0 result is returned as +0.0 (lanes may meet signed zeros in any
//   order) quant error:  sum_i |fq(x_i) - x_i|^p in double, fq as in kernels/reference.hpp

#include <adaquant/core/tensor_shape.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>
#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/rounding.hpp>

#include <cmath>
#include <cstddef>
#include <limits>

namespace adaquant::detail {

struct min_max_acc {
  float lo = std::numeric_limits<float>::infinity();
  float hi = -std::numeric_limits<float>::infinity();
  bool finite = true;  // lo/hi are meaningful only when finite
};

inline min_max_acc min_max_ref(const float* x, std::size_t n) noexcept {
  min_max_acc a;
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i];
    // v - v is 0 unless v is +-inf or NaN: the SIMD body's test, and no branch in the loop.
    a.finite = a.finite & (v - v == 0.0f);
    a.lo = v < a.lo ? v : a.lo;
    a.hi = v > a.hi ? v : a.hi;
  }
  a.lo += 0.0f;  // -0 -> +0
  a.hi += 0.0f;
  return a;
}

// Per channel, run by run: folds run_min_max(x + o, l.inner) of every run of `inner` elements into
// its channel's lo[c], hi[c] (folded into, not overwritten); returns finiteness.
template <class RunMinMax>
bool min_max_runs(const float* x, const channel_layout& l, float* lo, float* hi,
                  RunMinMax run_min_max) noexcept {
  bool finite = true;
  std::size_t o = 0;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = 0; c < l.channels; ++c, o += l.inner) {
      const min_max_acc a = run_min_max(x + o, l.inner);
      finite = finite && a.finite;
      lo[c] = a.lo < lo[c] ? a.lo : lo[c];
      hi[c] = a.hi > hi[c] ? a.hi : hi[c];
    }
  return finite;
}

inline bool min_max_per_channel_ref(const float* x, const channel_layout& l, float* lo,
                                    float* hi) noexcept {
  return min_max_runs(x, l, lo, hi,
                      [](const float* p, std::size_t n) { return min_max_ref(p, n); });
}

// |d|^p in double; d*d is exact for float d, so contraction into FMA cannot change it.
inline double error_term(float d, double p) noexcept {
  const double a = std::fabs(static_cast<double>(d));
  if (p == 2.0) return a * a;
  if (p == 1.0) return a;
  return std::pow(a, p);
}

// The error of one element, d = fake_quant(x) - x in float. The dequantized value is formed as
// y = clamp(t * s, (qmin - z) * s, (qmax - z) * s), t = to_grid(x): the same float as the
// kernels' (clamp(t + z) - z) * s (rounding is monotone), but the subtraction then consumes a
// min/max, never a product, so -mfma cannot fuse y - x into an FMA in one path and not another.
struct dequant_bounds {
  float ylo, yhi;  // (qmin - z) * s and (qmax - z) * s, as the kernels compute them
  explicit dequant_bounds(const quant_params& q) noexcept
      : ylo((static_cast<float>(q.qmin) - static_cast<float>(q.zero_point)) * q.scale),
        yhi((static_cast<float>(q.qmax) - static_cast<float>(q.zero_point)) * q.scale) {}
};

template <RoundingPolicy R>
float error_of(float x, float s, float inv, float ylo, float yhi) noexcept {
  float y = R::to_grid(x, s, inv) * s;
  y = y < ylo ? ylo : y;
  y = y > yhi ? yhi : y;
  return y - x;
}

// Number of partial sums of the error kernel: element i of [0, n - n % error_partials) goes to
// partial i % error_partials (the SIMD kernel consumes two batches per step).
inline constexpr std::size_t error_partials = 2 * simd::lanes;

// Returns total + sum_i |fq(x_i) - x_i|^p: the partial sums added to total in index order, then
// the rest in order. The SIMD kernel sums in exactly this order (it hands its tail, fewer than
// error_partials elements, to this twin with its total).
template <RoundingPolicy R>
double quant_error_ref(const float* x, std::size_t n, const quant_params& q, double p,
                       double total = 0.0) noexcept {
  constexpr std::size_t parts = error_partials;
  const float s = q.scale, inv = q.inv_scale();
  const auto [ylo, yhi] = dequant_bounds(q);
  const std::size_t vn = n - n % parts;
  if (vn > 0) {
    double acc[parts] = {};
    for (std::size_t i = 0; i < vn; ++i)
      acc[i % parts] += error_term(error_of<R>(x[i], s, inv, ylo, yhi), p);
    for (std::size_t j = 0; j < parts; ++j) total += acc[j];
  }
  for (std::size_t i = vn; i < n; ++i) total += error_term(error_of<R>(x[i], s, inv, ylo, yhi), p);
  return total;
}

}  // namespace adaquant::detail
