#pragma once
// xsimd bodies of the loss kernels. Numerics and order of summation: kernels/reference_loss.hpp
// (the scalar twins, which also process the tails).

#include <adaquant/kernels/reference_loss.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

#include <algorithm>

namespace adaquant::detail::simd {

template <class Act, bool WithDy>
double squared_error(const float* t, const float* q, float* dy, float dscale,
                     std::size_t n) noexcept {
  const std::size_t vn = n - n % lanes;
  const fbatch vscale(dscale);
  alignas(64) float lane[lanes];
  double total = 0.0;
  for (std::size_t first = 0; first < vn; first += squared_error_flush) {
    fbatch part(0.0f);
    const std::size_t end = std::min(vn, first + squared_error_flush);
    for (std::size_t i = first; i < end; i += lanes) {
      const fbatch qv = fbatch::load_unaligned(q + i);
      const fbatch d = Act::value(qv) - Act::value(fbatch::load_unaligned(t + i));
      part = mul_add(d, d, part);
      if constexpr (WithDy) ((d * Act::slope(qv)) * vscale).store_unaligned(dy + i);
    }
    part.store_aligned(lane);
    for (std::size_t j = 0; j < lanes; ++j) total += static_cast<double>(lane[j]);
  }
  return squared_error_ref<Act>(t + vn, q + vn, WithDy ? dy + vn : nullptr, dscale, n - vn, total);
}

// The float lanes of a vector as two vectors of doubles: lanes [0, lanes / 2) and the rest.
struct widened {
  using dbatch = xsimd::batch<double>;
  static_assert(2 * dbatch::size == lanes, "a double vector holds half the float lanes");
  dbatch lo, hi;
  explicit widened(const fbatch& v) noexcept {
    alignas(64) float f[lanes];
    v.store_aligned(f);
    lo = dbatch::load_aligned(f);  // converting loads
    hi = dbatch::load_aligned(f + dbatch::size);
  }
};

// Adds the double partials p (lanes of lo, then of hi) to total in lane order.
inline void add_lanes(const widened::dbatch& lo, const widened::dbatch& hi,
                      double& total) noexcept {
  constexpr std::size_t dl = widened::dbatch::size;
  alignas(64) double d[2 * dl];
  lo.store_aligned(d);
  hi.store_aligned(d + dl);
  for (std::size_t j = 0; j < 2 * dl; ++j) total += d[j];
}

template <class Act>
void bias_slope_sums(const float* u, const float* y, std::size_t n, float b,
                     bias_run_sums& acc) noexcept {
  using dbatch = widened::dbatch;
  const std::size_t vn = n - n % lanes;
  if (vn > 0) {
    const fbatch vb(b);
    dbatch s_lo(0.0), s_hi(0.0), c_lo(0.0), c_hi(0.0);
    for (std::size_t i = 0; i < vn; i += lanes) {
      const fbatch z = fbatch::load_unaligned(u + i) + vb;
      const widened wz(z), wt(Act::value(fbatch::load_unaligned(y + i))), ww(Act::slope(z));
      s_lo = mul_add(wz.lo - wt.lo, ww.lo, s_lo);
      s_hi = mul_add(wz.hi - wt.hi, ww.hi, s_hi);
      c_lo += ww.lo;
      c_hi += ww.hi;
    }
    add_lanes(s_lo, s_hi, acc.slope);
    add_lanes(c_lo, c_hi, acc.linear);
  }
  bias_slope_sums_ref<Act>(u + vn, y + vn, n - vn, b, acc);
}

template <class Act>
double bias_loss(const float* u, const float* y, std::size_t n, float b, double total) noexcept {
  using dbatch = widened::dbatch;
  const std::size_t vn = n - n % lanes;
  if (vn > 0) {
    const fbatch vb(b);
    dbatch p_lo(0.0), p_hi(0.0);
    for (std::size_t i = 0; i < vn; i += lanes) {
      const widened wz(Act::value(fbatch::load_unaligned(u + i) + vb)),
          wt(Act::value(fbatch::load_unaligned(y + i)));
      const dbatch d_lo = wz.lo - wt.lo, d_hi = wz.hi - wt.hi;
      p_lo = mul_add(d_lo, d_lo, p_lo);
      p_hi = mul_add(d_hi, d_hi, p_hi);
    }
    add_lanes(p_lo, p_hi, total);
  }
  return bias_loss_ref<Act>(u + vn, y + vn, n - vn, b, total);
}

}  // namespace adaquant::detail::simd
