#pragma once
// xsimd bodies of the min/max kernels. Numerics: kernels/reference_range.hpp (the scalar twins,
// which also process the tails).

#include <adaquant/core/numeric.hpp>
#include <adaquant/kernels/reference_range.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

namespace adaquant::detail::simd {

// Two accumulator pairs for latency hiding; `z` sums v - v, which stays 0 unless some v is
// non-finite (inf - inf and NaN - NaN are NaN).
inline min_max_acc min_max(const float* x, std::size_t n) noexcept {
  const std::size_t vn = n - n % lanes, pairs_end = n - n % (2 * lanes);
  constexpr float inf = std::numeric_limits<float>::infinity();
  fbatch lo0(inf), hi0(-inf), lo1(inf), hi1(-inf), z0(0.0f), z1(0.0f);
  for (std::size_t i = 0; i < pairs_end; i += 2 * lanes) {
    const fbatch a = fbatch::load_unaligned(x + i);
    const fbatch b = fbatch::load_unaligned(x + i + lanes);
    lo0 = xsimd::min(lo0, a);
    hi0 = xsimd::max(hi0, a);
    z0 += a - a;
    lo1 = xsimd::min(lo1, b);
    hi1 = xsimd::max(hi1, b);
    z1 += b - b;
  }
  if (pairs_end < vn) {
    const fbatch a = fbatch::load_unaligned(x + pairs_end);
    lo0 = xsimd::min(lo0, a);
    hi0 = xsimd::max(hi0, a);
    z0 += a - a;
  }
  alignas(64) float lo_l[lanes], hi_l[lanes], z_l[lanes];
  xsimd::min(lo0, lo1).store_aligned(lo_l);
  xsimd::max(hi0, hi1).store_aligned(hi_l);
  (z0 + z1).store_aligned(z_l);
  min_max_acc a = min_max_ref(x + vn, n - vn);
  for (std::size_t j = 0; j < lanes; ++j) {
    a.finite = a.finite && z_l[j] == 0.0f;
    a.lo = lo_l[j] < a.lo ? lo_l[j] : a.lo;
    a.hi = hi_l[j] > a.hi ? hi_l[j] : a.hi;
  }
  a.lo += 0.0f;
  a.hi += 0.0f;
  return a;
}

// inner >= lanes: reduce each run of `inner` with the vector kernel. inner == 1 (channels
// innermost, e.g. column-major [rows, cols] along axis 0 ... or NHWC along C): vectors run along
// the channels. Otherwise the scalar twin.
inline bool min_max_per_channel(const float* x, const channel_layout& l, float* lo,
                                float* hi) noexcept {
  if (l.inner >= lanes)
    return min_max_runs(x, l, lo, hi, [](const float* p, std::size_t n) { return min_max(p, n); });
  if (l.inner != 1 || l.channels < lanes) return min_max_per_channel_ref(x, l, lo, hi);
  const std::size_t vc = l.channels - l.channels % lanes;
  fbatch z(0.0f);
  for (std::size_t c = 0; c < vc; c += lanes) {
    fbatch vlo = fbatch::load_unaligned(lo + c), vhi = fbatch::load_unaligned(hi + c);
    for (std::size_t b = 0; b < l.outer; ++b) {
      const fbatch v = fbatch::load_unaligned(x + b * l.channels + c);
      vlo = xsimd::min(vlo, v);
      vhi = xsimd::max(vhi, v);
      z += v - v;
    }
    (vlo + fbatch(0.0f)).store_unaligned(lo + c);
    (vhi + fbatch(0.0f)).store_unaligned(hi + c);
  }
  alignas(64) float z_l[lanes];
  z.store_aligned(z_l);
  bool finite = true;
  for (std::size_t j = 0; j < lanes; ++j) finite = finite && z_l[j] == 0.0f;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = vc; c < l.channels; ++c) {
      const float v = x[b * l.channels + c];
      finite = finite && is_finite(v);
      lo[c] = v < lo[c] ? v : lo[c];
      hi[c] = v > hi[c] ? v : hi[c];
    }
  for (std::size_t c = vc; c < l.channels; ++c) {
    lo[c] += 0.0f;
    hi[c] += 0.0f;
  }
  return finite;
}

}  // namespace adaquant::detail::simd
