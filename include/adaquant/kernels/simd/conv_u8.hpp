#pragma once
// AVX-512 VNNI body of the integer gathered product (numerics: kernels/reference_conv.hpp's
// gather_product_u8_ref, the scalar twin). The register block is the float product's
// (kernels/simd/conv.hpp): output channels in the lanes, V <= 2 vectors of 16 channels times P
// output positions, P V 32-bit accumulators. Each group of 4 taps costs V loads of 64 weight bytes
// (16 channels x 4 taps), P broadcasts of 4 input bytes and P V vpdpbusd, each of which adds 4
// products per lane: 4 times the multiply-adds of a float FMA per instruction. The integer sums
// are exact, so the block computes the twin's values whatever the order; the epilogue converts
// them and applies the twin's one mul_add. Elsewhere (no AVX-512 VNNI) gather_u8_native is false
// and the dispatch (kernels/conv.hpp) runs the twin: callers choose the float path there.

#include <adaquant/kernels/reference_conv.hpp>
#include <adaquant/kernels/simd/conv.hpp>

#include <array>
#include <cstdint>
#include <cstring>

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#define ADAQUANT_GATHER_U8_VNNI 1
#endif

namespace adaquant::detail::simd {

#if defined(ADAQUANT_GATHER_U8_VNNI)
inline constexpr bool gather_u8_native = lanes == 16;
#else
inline constexpr bool gather_u8_native = false;
#endif

#if defined(ADAQUANT_GATHER_U8_VNNI)
// acc += the 4-byte dot products of a (unsigned) and b (signed) per 32-bit lane. GCC (12) copies
// the accumulator around its vpdpbusd builtin (a register move per instruction, and spills in a
// block of 28 accumulators), so on GCC and Clang the instruction is written out.
inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) noexcept {
#if defined(__GNUC__)
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
#else
  return _mm512_dpbusd_epi32(acc, a, b);
#endif
}

// P positions x V vectors of 16 channels; positions >= valid repeat the last one and are not
// stored, channels >= limit are not stored. init, scale, bias: V * 16 values each.
template <std::size_t V, std::size_t P>
inline void gather_u8_block(const std::uint8_t* x, const gather_index* base, std::size_t valid,
                            const gather_index* off, std::size_t groups, const std::int8_t* w,
                            std::size_t ldw, const std::int32_t* init, const float* scale,
                            const float* bias, float* out, std::size_t ldo,
                            std::size_t limit) noexcept {
  __m512i acc[V * P];
  for (std::size_t v = 0; v < V; ++v) {
    const __m512i iv = _mm512_loadu_si512(init + v * 16);
    for (std::size_t p = 0; p < P; ++p) acc[p * V + v] = iv;
  }
  std::array<const std::uint8_t*, P> xp;
  for (std::size_t p = 0; p < P; ++p) xp[p] = x + base[std::min(p, valid - 1)];
  for (std::size_t g = 0; g < groups; ++g) {
    __m512i wv[V];
    for (std::size_t v = 0; v < V; ++v) wv[v] = _mm512_loadu_si512(w + (g * ldw + v * 16) * 4);
    const gather_index o = off[g];
    for (std::size_t p = 0; p < P; ++p) {
      std::int32_t four;
      std::memcpy(&four, xp[p] + o, sizeof four);
      const __m512i xb = _mm512_set1_epi32(four);
      for (std::size_t v = 0; v < V; ++v) acc[p * V + v] = dpbusd(acc[p * V + v], xb, wv[v]);
    }
  }
  std::array<fbatch, V * P> f;
  for (std::size_t v = 0; v < V; ++v) {
    const fbatch sv = fbatch::load_unaligned(scale + v * 16),
                 bv = fbatch::load_unaligned(bias + v * 16);
    for (std::size_t p = 0; p < P; ++p)
      f[p * V + v] = mul_add(fbatch(_mm512_cvtepi32_ps(acc[p * V + v])), sv, bv);
  }
  store_block<V, P>(f, valid, out, ldo, limit);
}

template <std::size_t V, std::size_t P = gather_block_positions<2>>
inline void gather_u8_columns(const std::uint8_t* x, const gather_index* base,
                              std::size_t positions, const gather_index* off, std::size_t groups,
                              const std::int8_t* w, std::size_t ldw, const std::int32_t* init,
                              const float* scale, const float* bias, float* out, std::size_t ldo,
                              std::size_t limit) noexcept {
  alignas(64) std::array<std::int32_t, V * 16> iv{};
  alignas(64) std::array<float, V * 16> sv{}, bv{};
  const std::size_t n = std::min(V * 16, limit);
  std::copy_n(init, n, iv.begin());
  std::copy_n(scale, n, sv.begin());
  if (bias) std::copy_n(bias, n, bv.begin());
  const auto block = [&]<std::size_t Q>(std::size_t p, std::size_t valid) {
    gather_u8_block<V, Q>(x, base + p, valid, off, groups, w, ldw, iv.data(), sv.data(), bv.data(),
                          out + p, ldo, limit);
  };
  std::size_t p = 0;
  for (; p + P <= positions; p += P) block.template operator()<P>(p, P);
  const std::size_t left = positions - p;
  if (left == 0) return;
  if (left <= 4) return block.template operator()<4>(p, left);
  if (left <= 8) return block.template operator()<8>(p, left);
  block.template operator()<P>(p, left);
}
#endif

// quad_codes_ref's words a vector at a time (any target; the tail through the twin). The values
// are exact integers, so both forms give the same words and the same off-grid flag.
inline bool quad_codes(const std::array<const float*, 4>& rows, std::size_t n, float scale,
                       float inv, float lo, float hi, std::int32_t zero_code,
                       std::uint32_t* out) noexcept {
  using ibatch = xsimd::batch<std::int32_t>;
  static_assert(ibatch::size == lanes);
  const fbatch vs(scale), vi(inv), vlo(lo), vhi(hi);
  const ibatch vz(zero_code), mask(0xFF);
  auto bad = fbatch(0.0f) != fbatch(0.0f);
  std::size_t q = 0;
  for (; q + lanes <= n; q += lanes) {
    ibatch word(0);
    for (std::size_t j = 0; j < 4; ++j) {
      const fbatch v = fbatch::load_unaligned(rows[j] + q), t = xsimd::nearbyint(v * vi);
      // Ordered comparisons (false for NaN), negated: a NaN is off the grid.
      const auto on_grid = (t >= vlo) & (t <= vhi) & (t * vs == v);
      const auto b = !on_grid;
      bad = bad | b;
      const ibatch code = xsimd::batch_cast<std::int32_t>(xsimd::select(b, fbatch(0.0f), t)) + vz;
      word = word | ((code & mask) << static_cast<int>(8 * j));
    }
    word.store_unaligned(reinterpret_cast<std::int32_t*>(out + q));
  }
  bool off_grid = xsimd::any(bad);
  if (q < n) {
    const std::array<const float*, 4> tail = {rows[0] + q, rows[1] + q, rows[2] + q, rows[3] + q};
    off_grid |= quad_codes_ref(tail, n - q, scale, inv, lo, hi, zero_code, out + q);
  }
  return off_grid;
}

inline void gather_product_u8(const std::uint8_t* x, const gather_index* base,
                              std::size_t positions, const gather_index* off, std::size_t groups,
                              const std::int8_t* w, std::size_t ldw, const std::int32_t* init,
                              const float* scale, const float* bias, std::size_t channels,
                              float* out, std::size_t ldo) noexcept {
#if defined(ADAQUANT_GATHER_U8_VNNI)
  if constexpr (gather_u8_native) {
    const std::size_t vectors = (channels + 15) / 16;
    for (std::size_t v = 0; v < vectors;) {
      const std::size_t take = vectors - v >= 2 ? 2 : 1, c0 = v * 16;
      const float* b = bias ? bias + c0 : nullptr;
      if (take == 2)
        gather_u8_columns<2>(x, base, positions, off, groups, w + c0 * 4, ldw, init + c0,
                             scale + c0, b, out + c0 * ldo, ldo, channels - c0);
      else
        gather_u8_columns<1>(x, base, positions, off, groups, w + c0 * 4, ldw, init + c0,
                             scale + c0, b, out + c0 * ldo, ldo, channels - c0);
      v += take;
    }
    return;
  }
#endif
  gather_product_u8_ref(x, base, positions, off, groups, w, ldw, init, scale, bias, channels, out,
                        ldo);
}

}  // namespace adaquant::detail::simd
