#pragma once
// xsimd body of the quantization-error kernel. Numerics and order of summation:
// kernels/reference_range.hpp (the scalar twin, which also sums the tail).

#include <adaquant/kernels/reference_range.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

namespace adaquant::detail::simd {

using dbatch = xsimd::batch<double>;
static_assert(2 * dbatch::size == lanes, "float and double batches of the same width");

// Lanes [0, lanes/2) and [lanes/2, lanes) of v, converted to double (exact).
// A template in both types so that the branches for other ISAs are never checked.
template <class F, class D>
void widen(const F& v, D& lo, D& hi) noexcept {
  using reg = typename F::register_type;
#if defined(__AVX512F__)
  if constexpr (sizeof(reg) == 64 && F::size == 16) {
    const __m512 f = v;
    lo = _mm512_cvtps_pd(_mm512_castps512_ps256(f));
    hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
    return;
  }
#endif
#if defined(__AVX__)
  if constexpr (sizeof(reg) == 32 && F::size == 8) {
    const __m256 f = v;
    lo = _mm256_cvtps_pd(_mm256_castps256_ps128(f));
    hi = _mm256_cvtps_pd(_mm256_extractf128_ps(f, 1));
    return;
  }
#endif
#if defined(__SSE2__)
  if constexpr (sizeof(reg) == 16 && F::size == 4) {
    const __m128 f = v;
    lo = _mm_cvtps_pd(f);
    hi = _mm_cvtps_pd(_mm_movehl_ps(f, f));
    return;
  }
#endif
  alignas(64) float t[lanes];
  alignas(64) double d[lanes];
  v.store_aligned(t);
  for (std::size_t j = 0; j < lanes; ++j) d[j] = t[j];
  lo = D::load_aligned(d);
  hi = D::load_aligned(d + D::size);
}

// error_of lane-wise.
template <RoundingPolicy R>
fbatch fake_quant_error(const fbatch& v, const fbatch& vs, const fbatch& vinv, const fbatch& vylo,
                        const fbatch& vyhi) noexcept {
  const fbatch y = xsimd::min(xsimd::max(R::to_grid(v, vs, vinv) * vs, vylo), vyhi);
  return y - v;
}

// Adds the errors of x[0, n) to the partial sums acc[error_partials] (element i to
// acc[i % error_partials]); n must be a multiple of error_partials. Continuing from acc, the sums
// are those of one call over the concatenated arrays.
template <RoundingPolicy R>
void quant_error_partials(const float* x, std::size_t n, const quant_params& q, double p,
                          double* acc) noexcept {
  constexpr std::size_t parts = error_partials, h = dbatch::size;
  if (n == 0) return;
  const auto [ylo, yhi] = dequant_bounds(q);
  const fbatch vs(q.scale), vinv(q.inv_scale()), vylo(ylo), vyhi(yhi);
  if (p == 2.0 || p == 1.0) {
    // Four accumulators: partials [0, h), [h, 2h), ... of each step. Products of widened
    // floats are exact, so FMA contraction cannot change a bit.
    dbatch a0 = dbatch::load_unaligned(acc), a1 = dbatch::load_unaligned(acc + h),
           a2 = dbatch::load_unaligned(acc + 2 * h), a3 = dbatch::load_unaligned(acc + 3 * h);
    for (std::size_t i = 0; i < n; i += parts) {
      const fbatch d0 = fake_quant_error<R>(fbatch::load_unaligned(x + i), vs, vinv, vylo, vyhi);
      const fbatch d1 =
          fake_quant_error<R>(fbatch::load_unaligned(x + i + lanes), vs, vinv, vylo, vyhi);
      dbatch w0, w1, w2, w3;
      widen(d0, w0, w1);
      widen(d1, w2, w3);
      if (p == 2.0) {
        a0 += w0 * w0;
        a1 += w1 * w1;
        a2 += w2 * w2;
        a3 += w3 * w3;
      } else {
        a0 += xsimd::abs(w0);
        a1 += xsimd::abs(w1);
        a2 += xsimd::abs(w2);
        a3 += xsimd::abs(w3);
      }
    }
    a0.store_unaligned(acc);
    a1.store_unaligned(acc + h);
    a2.store_unaligned(acc + 2 * h);
    a3.store_unaligned(acc + 3 * h);
  } else {
    alignas(64) float d[parts];
    for (std::size_t i = 0; i < n; i += parts) {
      fake_quant_error<R>(fbatch::load_unaligned(x + i), vs, vinv, vylo, vyhi).store_aligned(d);
      fake_quant_error<R>(fbatch::load_unaligned(x + i + lanes), vs, vinv, vylo, vyhi)
          .store_aligned(d + lanes);
      for (std::size_t j = 0; j < parts; ++j) acc[j] += error_term(d[j], p);
    }
  }
}

// Returns sum_i |fq(x_i) - x_i|^p. Two batches per step, one partial sum per lane of each, so the
// vector part ends at n - n % error_partials.
template <RoundingPolicy R>
double quant_error(const float* x, std::size_t n, const quant_params& q, double p) noexcept {
  constexpr std::size_t parts = error_partials;
  const std::size_t vn = n - n % parts;
  alignas(64) double acc[parts] = {};
  quant_error_partials<R>(x, vn, q, p, acc);
  double total = 0.0;
  for (std::size_t j = 0; j < parts; ++j) total += acc[j];
  return quant_error_ref<R>(x + vn, n - vn, q, p, total);
}

}  // namespace adaquant::detail::simd
