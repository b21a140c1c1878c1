#pragma once
// Scalar twins of the loss kernels (kernels/loss.hpp, which documents the maths: the squared error
// of AdaQuant's objectives and the sums of bias tuning) and the output activations they apply, as
// policies with float and xsimd batch overloads. Internal: namespace adaquant::detail.

#include <adaquant/core/numeric.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

#include <algorithm>
#include <cstddef>

namespace adaquant::detail {

// f and f' (0 at and beyond the kinks, like PyTorch's ReLU backward); NaN maps to 0.
struct act_none {
  template <class T>
  static T value(const T& v) noexcept {
    return v;
  }
  template <class T>
  static T slope(const T&) noexcept {
    return T(1.0f);
  }
};
struct act_relu {
  static float value(float v) noexcept { return v > 0.0f ? v : 0.0f; }
  static float slope(float v) noexcept { return v > 0.0f ? 1.0f : 0.0f; }
  template <class A>
  static xsimd::batch<float, A> value(const xsimd::batch<float, A>& v) noexcept {
    using B = xsimd::batch<float, A>;
    return xsimd::select(v > B(0.0f), v, B(0.0f));
  }
  template <class A>
  static xsimd::batch<float, A> slope(const xsimd::batch<float, A>& v) noexcept {
    using B = xsimd::batch<float, A>;
    return xsimd::select(v > B(0.0f), B(1.0f), B(0.0f));
  }
};
struct act_relu6 {
  static float value(float v) noexcept { return v > 0.0f ? (v < 6.0f ? v : 6.0f) : 0.0f; }
  static float slope(float v) noexcept { return (v > 0.0f && v < 6.0f) ? 1.0f : 0.0f; }
  template <class A>
  static xsimd::batch<float, A> value(const xsimd::batch<float, A>& v) noexcept {
    using B = xsimd::batch<float, A>;
    return xsimd::select(v > B(0.0f), xsimd::select(v < B(6.0f), v, B(6.0f)), B(0.0f));
  }
  template <class A>
  static xsimd::batch<float, A> slope(const xsimd::batch<float, A>& v) noexcept {
    using B = xsimd::batch<float, A>;
    return xsimd::select((v > B(0.0f)) && (v < B(6.0f)), B(1.0f), B(0.0f));
  }
};

// Elements per float partial sum of the squared error before it is flushed into double.
inline constexpr std::size_t squared_error_flush = 512;

// Order of summation: element i of [0, n - n % lanes) goes to float partial i % lanes (a pinned
// multiply-add, core/numeric.hpp); the partials are added to the double total in lane order after
// every squared_error_flush elements and at the end of that range; the rest is added in double,
// in order. Returns `total` plus the sum. The SIMD kernel sums in exactly this order (it hands its
// tail and its total so far to this twin).
template <class Act>
double squared_error_ref(const float* t, const float* q, float* dy, float dscale, std::size_t n,
                         double total = 0.0) noexcept {
  constexpr std::size_t lanes = simd::lanes;
  const std::size_t vn = n - n % lanes;
  for (std::size_t first = 0; first < vn; first += squared_error_flush) {
    float part[lanes] = {};
    const std::size_t end = std::min(vn, first + squared_error_flush);
    for (std::size_t i = first; i < end; ++i) {
      const float d = Act::value(q[i]) - Act::value(t[i]);
      part[i % lanes] = mul_add(d, d, part[i % lanes]);
      if (dy) dy[i] = (d * Act::slope(q[i])) * dscale;
    }
    for (std::size_t j = 0; j < lanes; ++j) total += static_cast<double>(part[j]);
  }
  for (std::size_t i = vn; i < n; ++i) {
    const float d = Act::value(q[i]) - Act::value(t[i]);
    total += static_cast<double>(d * d);
    if (dy) dy[i] = (d * Act::slope(q[i])) * dscale;
  }
  return total;
}

// The squared error with a weight per element (block_objective's weighted loss): returns
// sum_i w_i (q_i - t_i)^2 in double (each term widened from float, added in order) and writes
// dy_i = w_i (q_i - t_i) dscale when dy is not null. Scalar only: no SIMD kernel stands for it.
inline double weighted_squared_error_ref(const float* t, const float* q, const float* w, float* dy,
                                         float dscale, std::size_t n) noexcept {
  double total = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const float d = q[i] - t[i];
    total += static_cast<double>(w[i]) * static_cast<double>(d) * static_cast<double>(d);
    if (dy) dy[i] = (w[i] * d) * dscale;
  }
  return total;
}

// Bias tuning's sums over a run at bias b (kernels/loss.hpp).
struct bias_run_sums {
  double slope = 0.0;   // sum of (z - t) f'(z)
  double linear = 0.0;  // sum of f'(z): the outputs in the activation's linear range
};

// Order of summation of both bias sums: element i of [0, n - n % lanes) goes to double partial
// i % lanes, the partials are added to the running totals in lane order after that range, and
// the rest is added in order. The SIMD kernels sum in exactly this order (they hand their tail and
// totals to these twins).
template <class Act>
void bias_slope_sums_ref(const float* u, const float* y, std::size_t n, float b,
                         bias_run_sums& acc) noexcept {
  constexpr std::size_t lanes = simd::lanes;
  const std::size_t vn = n - n % lanes;
  if (vn > 0) {
    double slope[lanes] = {}, linear[lanes] = {};
    for (std::size_t i = 0; i < vn; ++i) {
      const float z = u[i] + b, w = Act::slope(z);
      slope[i % lanes] = mul_add(static_cast<double>(z) - static_cast<double>(Act::value(y[i])),
                                 static_cast<double>(w), slope[i % lanes]);
      linear[i % lanes] += static_cast<double>(w);
    }
    for (std::size_t j = 0; j < lanes; ++j) acc.slope += slope[j];
    for (std::size_t j = 0; j < lanes; ++j) acc.linear += linear[j];
  }
  for (std::size_t i = vn; i < n; ++i) {
    const float z = u[i] + b, w = Act::slope(z);
    acc.slope = mul_add(static_cast<double>(z) - static_cast<double>(Act::value(y[i])),
                        static_cast<double>(w), acc.slope);
    acc.linear += static_cast<double>(w);
  }
}
template <class Act>
double bias_loss_ref(const float* u, const float* y, std::size_t n, float b,
                     double total = 0.0) noexcept {
  constexpr std::size_t lanes = simd::lanes;
  const std::size_t vn = n - n % lanes;
  if (vn > 0) {
    double part[lanes] = {};
    for (std::size_t i = 0; i < vn; ++i) {
      const double d =
          static_cast<double>(Act::value(u[i] + b)) - static_cast<double>(Act::value(y[i]));
      part[i % lanes] = mul_add(d, d, part[i % lanes]);
    }
    for (std::size_t j = 0; j < lanes; ++j) total += part[j];
  }
  for (std::size_t i = vn; i < n; ++i) {
    const double d =
        static_cast<double>(Act::value(u[i] + b)) - static_cast<double>(Act::value(y[i]));
    total = mul_add(d, d, total);
  }
  return total;
}

}  // namespace adaquant::detail
