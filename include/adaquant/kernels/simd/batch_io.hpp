#pragma once
// Loads and stores shared by the SIMD kernels.

#include <adaquant/core/numeric.hpp>

#include <xsimd/xsimd.hpp>

#include <cstddef>
#include <cstdint>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace adaquant::detail::simd {

using fbatch = xsimd::batch<float>;
inline constexpr std::size_t lanes = fbatch::size;

// a * b + c rounded once, as the scalar twins' mul_add (std::fma where the target has FMA).
// xsimd 8.1 has no fused multiply-add for AVX-512: its fma there is x * y + z, fused or not as
// the compiler contracts the expression around it, so a kernel could round differently from its
// twin (found by the Adam twin test on an AVX-512 machine). The kernels call this overload.
using detail::mul_add;
#if defined(__AVX512F__) && defined(__FMA__)
template <class A>
requires(xsimd::batch<float, A>::size ==
         16) xsimd::batch<float, A> mul_add(const xsimd::batch<float, A>& a,
                                            const xsimd::batch<float, A>& b,
                                            const xsimd::batch<float, A>& c)
noexcept { return _mm512_fmadd_ps(a, b, c); }
template <class A>
requires(xsimd::batch<double, A>::size ==
         8) xsimd::batch<double, A> mul_add(const xsimd::batch<double, A>& a,
                                            const xsimd::batch<double, A>& b,
                                            const xsimd::batch<double, A>& c)
noexcept { return _mm512_fmadd_pd(a, b, c); }
#endif

// Outputs at least this large are written with non-temporal stores: they do not fit in cache, so
// bypassing it avoids reading every destination line before writing it (as memcpy does).
inline constexpr std::size_t streaming_threshold_bytes = std::size_t{8} << 20;

// Non-temporal store of a batch to a lane-aligned address (plain aligned store where the ISA or
// xsimd arch has no streaming store we know of).
template <class B>  // a template so that only the branch for B's width is instantiated
void store_stream(float* p, const B& v) noexcept {
#if defined(__AVX512F__)
  if constexpr (B::size == 16) {
    _mm512_stream_ps(p, v);
    return;
  }
#endif
#if defined(__AVX__)
  if constexpr (B::size == 8) {
    _mm256_stream_ps(p, v);
    return;
  }
#endif
#if defined(__SSE2__)
  if constexpr (B::size == 4) {
    _mm_stream_ps(p, v);
    return;
  }
#endif
  v.store_aligned(p);
}

inline void stream_fence() noexcept {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// Writes the lanes of a comparison result as 0/1 bytes.
inline void store_mask(const xsimd::batch_bool<float>& m, std::uint8_t* out) noexcept {
  alignas(64) float tmp[lanes];
  xsimd::select(m, fbatch(1.0f), fbatch(0.0f)).store_aligned(tmp);
  for (std::size_t j = 0; j < lanes; ++j) out[j] = static_cast<std::uint8_t>(tmp[j] != 0.0f);
}

// Reads the lanes of a byte mask as floats (each byte's value, 0 or 1 for an STE mask).
inline fbatch load_mask(const std::uint8_t* m) noexcept {
  alignas(64) float tmp[lanes];
  for (std::size_t j = 0; j < lanes; ++j) tmp[j] = static_cast<float>(m[j]);
  return fbatch::load_aligned(tmp);
}

// The clamp of reference.hpp, lane-wise: NaN passes through.
inline fbatch clamp_nan_through(const fbatch& q, const fbatch& lo, const fbatch& hi) noexcept {
  const fbatch a = xsimd::select(q < lo, lo, q);
  return xsimd::select(a > hi, hi, a);
}

}  // namespace adaquant::detail::simd
