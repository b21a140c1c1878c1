#pragma once
// Loss kernels over runs of outputs, each a SIMD kernel with a scalar twin (the same bits).
//
// The reconstruction error of AdaQuant's objectives over a run of n outputs, and its gradient:
//
//   E = sum_i (f(q_i) - f(t_i))^2            dy_i = (f(q_i) - f(t_i)) f'(q_i) * dscale
//
// with q the quantized layer's (or block's) outputs, t the full-precision targets, f the output
// activation (Act: act_none, act_relu, act_relu6 of kernels/reference_loss.hpp; f' is 0 at and
// beyond the kinks) and dscale the caller's factor (2 / outputs for a mean). Each d * d is a fused
// multiply-add into a float partial sum per lane, flushed into a double total every
// squared_error_flush elements (order: kernels/reference_loss.hpp), so E does not depend on the
// compiler's contraction choices; dy is written when non-null. Internal: namespace
// adaquant::detail.
//
// squared_error_run<Simd>(Act{}, t, q, dy, dscale, n): the SIMD kernel or its scalar twin.
//
// Bias tuning's sums (bias/bias_tuning.hpp) over a run of n outputs u before the bias and
// full-precision outputs y, at bias b, with z = u + b (float) and t = f(y):
//
//   bias_slope_sums_run:  acc.slope += sum (z - t) f'(z),  acc.linear += sum f'(z)
//   bias_loss_run:        returns total + sum (f(z) - t)^2
//
// in double (each term widened from float), per-lane double partial sums added in a fixed order
// (kernels/reference_loss.hpp); f' is 0 or 1, so multiplying by it is exact.

#include <adaquant/kernels/reference_loss.hpp>
#include <adaquant/kernels/simd/loss.hpp>

#include <cstddef>

namespace adaquant::detail {

template <bool Simd = true, class Act>
double squared_error_run(Act, const float* t, const float* q, float* dy, float dscale,
                         std::size_t n) noexcept {
  if constexpr (Simd)
    return dy ? simd::squared_error<Act, true>(t, q, dy, dscale, n)
              : simd::squared_error<Act, false>(t, q, dy, dscale, n);
  else
    return squared_error_ref<Act>(t, q, dy, dscale, n);
}

template <bool Simd = true, class Act>
void bias_slope_sums_run(Act, const float* u, const float* y, std::size_t n, float b,
                         bias_run_sums& acc) noexcept {
  if constexpr (Simd)
    simd::bias_slope_sums<Act>(u, y, n, b, acc);
  else
    bias_slope_sums_ref<Act>(u, y, n, b, acc);
}
template <bool Simd = true, class Act>
double bias_loss_run(Act, const float* u, const float* y, std::size_t n, float b,
                     double total = 0.0) noexcept {
  if constexpr (Simd)
    return simd::bias_loss<Act>(u, y, n, b, total);
  else
    return bias_loss_ref<Act>(u, y, n, b, total);
}

}  // namespace adaquant::detail
