#pragma once
// xsimd body of the gathered product (numerics: kernels/reference_conv.hpp, the scalar twin).
// Output channels are the vector lanes: a register block of V <= 3 weight vectors (V * lanes
// output channels) times P output positions (gather_block_positions) accumulates P V vectors,
// and each tap costs V weight loads, P broadcasts of input values and P V multiply-adds. Each lane
// performs exactly the twin's sequence of mul_adds for its channel, so the result does not depend
// on the vector width. Each 4 positions x lanes channels of a block are transposed in registers
// (SSE and AVX widths; other widths through a small buffer) and stored as 4 consecutive positions
// of each channel's row.

#include <adaquant/kernels/reference_conv.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

#include <algorithm>
#include <array>

namespace adaquant::detail::simd {

// Output positions per register block of V weight vectors: enough independent accumulators to
// hide the multiply-add latency, within the registers (AVX-512: 32, narrower targets 16; with 16
// a third weight vector stays a memory operand). Measured on AVX-512 (conv 64 -> 64 3x3): 4
// positions x 2 vectors (8 accumulators) ran at about a third of 12 x 2; 14 x 2 (28 accumulators,
// 2 weight vectors, a broadcast: 31 registers) divides 14 x 14, 28 x 28 and 56 x 56 outputs and
// took 1-5 % less time than 12 x 2 on ResNet-18's 3x3 layers (in-process A/B, minimum of 80).
template <std::size_t V>
inline constexpr std::size_t gather_block_positions =
#if defined(__AVX512F__)
    V == 2 ? 14 : 8;
#else
    V == 3   ? 4
    : V == 2 ? 6
             : 8;
#endif

// Pins a value in a register: GCC otherwise folds the weight loads into every multiply-add as
// memory operands, which makes the block load-bound (one load per multiply-add).
template <class B>
inline void keep_in_register(B& v) noexcept {
#if defined(__GNUC__) && defined(__SSE2__)
  if constexpr (sizeof(B) == 32 || sizeof(B) == 16) {
    typename B::register_type r = v;
    asm("" : "+x"(r));
    v = B(r);
  }
#else
  (void)v;
#endif
}

// Stores rows[p][l] (p < 4, l < lanes) to out[l * ldo + p] for l < limit.
template <class B>
inline void store_transposed_4(const std::array<B, 4>& rows, float* out, std::size_t ldo,
                               std::size_t limit) noexcept {
#if defined(__AVX__)
  if constexpr (B::size == 8) {
    const __m256 t0 = _mm256_unpacklo_ps(rows[0], rows[1]),
                 t1 = _mm256_unpackhi_ps(rows[0], rows[1]);
    const __m256 t2 = _mm256_unpacklo_ps(rows[2], rows[3]),
                 t3 = _mm256_unpackhi_ps(rows[2], rows[3]);
    // u_k = [channel k | channel k + 4], 4 positions each.
    const __m256 u[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                         _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
    for (std::size_t k = 0; k < 4; ++k) {
      if (k < limit) _mm_storeu_ps(out + k * ldo, _mm256_castps256_ps128(u[k]));
      if (k + 4 < limit) _mm_storeu_ps(out + (k + 4) * ldo, _mm256_extractf128_ps(u[k], 1));
    }
    return;
  }
#endif
#if defined(__SSE2__)
  if constexpr (B::size == 4) {
    __m128 r0 = rows[0], r1 = rows[1], r2 = rows[2], r3 = rows[3];
    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
    const __m128 c[4] = {r0, r1, r2, r3};
    for (std::size_t k = 0; k < std::min<std::size_t>(limit, 4); ++k)
      _mm_storeu_ps(out + k * ldo, c[k]);
    return;
  }
#endif
  alignas(64) std::array<float, 4 * B::size> buf;
  for (std::size_t p = 0; p < 4; ++p) rows[p].store_aligned(buf.data() + p * B::size);
  for (std::size_t l = 0; l < std::min<std::size_t>(limit, B::size); ++l)
    for (std::size_t p = 0; p < 4; ++p) out[l * ldo + p] = buf[p * B::size + l];
}

// Stores a register block acc[p * V + v] (P positions x V vectors of channels) channel-major:
// out[(v * lanes + l) * ldo + p] for channels v * lanes + l < limit and positions p < valid.
template <std::size_t V, std::size_t P>
inline void store_block(const std::array<fbatch, V * P>& acc, std::size_t valid, float* out,
                        std::size_t ldo, std::size_t limit) noexcept {
  for (std::size_t v = 0; v < V && v * lanes < limit; ++v) {
    const std::size_t n = std::min(lanes, limit - v * lanes);
    float* ov = out + v * lanes * ldo;
    for (std::size_t q = 0; q < valid; q += 4) {
      if (q + 4 <= valid) {
        store_transposed_4<fbatch>(
            {acc[q * V + v], acc[(q + 1) * V + v], acc[(q + 2) * V + v], acc[(q + 3) * V + v]},
            ov + q, ldo, n);
        continue;
      }
      alignas(64) std::array<float, 4 * lanes> buf;
      for (std::size_t p = q; p < valid; ++p)
        acc[p * V + v].store_aligned(buf.data() + (p - q) * lanes);
      for (std::size_t l = 0; l < n; ++l)
        for (std::size_t p = q; p < valid; ++p) ov[l * ldo + p] = buf[(p - q) * lanes + l];
    }
  }
}

// P positions x V weight vectors; channels >= limit and positions >= valid are not stored (a
// last, partial block repeats its last position in the missing slots).
template <std::size_t V, std::size_t P>
inline void gather_block(const float* x, const gather_index* base, std::size_t valid,
                         const gather_index* off, std::size_t depth, const float* w,
                         std::size_t ldw, const fbatch* init, float* out, std::size_t ldo,
                         std::size_t limit) noexcept {
  std::array<fbatch, V * P> acc;
  for (std::size_t p = 0; p < P; ++p)
    for (std::size_t v = 0; v < V; ++v) acc[p * V + v] = init[v];
  std::array<const float*, P> xp;
  for (std::size_t p = 0; p < P; ++p) xp[p] = x + base[std::min(p, valid - 1)];
  for (std::size_t k = 0; k < depth; ++k) {
    std::array<fbatch, V> wv;
    for (std::size_t v = 0; v < V; ++v) {
      wv[v] = fbatch::load_unaligned(w + k * ldw + v * lanes);
      if (v < 2) keep_in_register(wv[v]);  // with 16 registers a third stays a memory operand
    }
    const gather_index o = off[k];
    for (std::size_t p = 0; p < P; ++p) {
      const fbatch xb(xp[p][o]);
      for (std::size_t v = 0; v < V; ++v) acc[p * V + v] = mul_add(xb, wv[v], acc[p * V + v]);
    }
  }
  store_block<V, P>(acc, valid, out, ldo, limit);
}

// A second block size where it divides the positions and the first does not (0: none): a 3x3
// layer's dL/dW has 9 x channels positions (taps), a multiple of 12 but rarely of 14.
template <std::size_t V>
inline constexpr std::size_t gather_block_positions_alt =
#if defined(__AVX512F__)
    V == 2 ? 12 : 0;
#else
    0;
#endif

// bias: the V * lanes channels' starting values (0 when null; read up to `limit` channels).
template <std::size_t V, std::size_t P = gather_block_positions<V>>
inline void gather_columns(const float* x, const gather_index* base, std::size_t positions,
                           const gather_index* off, std::size_t depth, const float* w,
                           std::size_t ldw, const float* bias, float* out, std::size_t ldo,
                           std::size_t limit) noexcept {
  constexpr std::size_t alt = gather_block_positions_alt<V>;
  if constexpr (alt != 0 && P != alt)
    if (positions % P != 0 && positions % alt == 0)
      return gather_columns<V, alt>(x, base, positions, off, depth, w, ldw, bias, out, ldo, limit);
  alignas(64) std::array<float, V * lanes> b{};
  if (bias) std::copy_n(bias, std::min(V * lanes, limit), b.begin());
  std::array<fbatch, V> init;
  for (std::size_t v = 0; v < V; ++v) init[v] = fbatch::load_aligned(b.data() + v * lanes);
  std::size_t p = 0;
  for (; p + P <= positions; p += P)
    gather_block<V, P>(x, base + p, P, off, depth, w, ldw, init.data(), out + p, ldo, limit);
  // The last positions in a block of 4 or 8 where that is enough (7 x 7 outputs left 13 of 14
  // slots of their last block idle: ResNet-18's layer4 forward takes 7 % less time with it);
  // every lane's sequence is the same whatever the block.
  const std::size_t left = positions - p;
  if (left == 0) return;
  if constexpr (P > 4)
    if (left <= 4)
      return gather_block<V, 4>(x, base + p, left, off, depth, w, ldw, init.data(), out + p, ldo,
                                limit);
  if constexpr (P > 8)
    if (left <= 8)
      return gather_block<V, 8>(x, base + p, left, off, depth, w, ldw, init.data(), out + p, ldo,
                                limit);
  gather_block<V, P>(x, base + p, left, off, depth, w, ldw, init.data(), out + p, ldo, limit);
}

inline void gather_product(const float* x, const gather_index* base, std::size_t positions,
                           const gather_index* off, std::size_t depth, const float* w,
                           std::size_t ldw, const float* bias, std::size_t channels, float* out,
                           std::size_t ldo) noexcept {
  const std::size_t vectors = (channels + lanes - 1) / lanes;  // the last one may be partial
  for (std::size_t v = 0; v < vectors;) {
    // Blocks of 2 vectors, one of 3 first when the count is odd (3 fits the registers only
    // with 4 positions, and beats a 2 + 1 split).
    const std::size_t left = vectors - v;
    const std::size_t take = left == 1 ? 1 : left % 2 == 1 ? 3 : 2;
    const float* wv = w + v * lanes;
    const float* bv = bias ? bias + v * lanes : nullptr;
    float* ov = out + v * lanes * ldo;
    const std::size_t limit = channels - v * lanes;
    if (take == 3)
      gather_columns<3>(x, base, positions, off, depth, wv, ldw, bv, ov, ldo, limit);
    else if (take == 2)
      gather_columns<2>(x, base, positions, off, depth, wv, ldw, bv, ov, ldo, limit);
    else
      gather_columns<1>(x, base, positions, off, depth, wv, ldw, bv, ov, ldo, limit);
    v += take;
  }
}

// transpose_ref's copy in 8 x 8 tiles transposed in AVX registers (a scalar loop elsewhere and for
// the edges): the scalar copy took about 3 % of a conv step in dL/dW's packing of dY.
inline void transpose(const float* src, std::size_t lds, std::size_t rows, std::size_t cols,
                      float* out, std::size_t ldo) noexcept {
  std::size_t r = 0;
#if defined(__AVX__)
  for (; r + 8 <= rows; r += 8) {
    std::size_t p = 0;
    for (; p + 8 <= cols; p += 8) {
      __m256 a[8], t[8];
      for (std::size_t k = 0; k < 8; ++k) a[k] = _mm256_loadu_ps(src + (r + k) * lds + p);
      for (std::size_t k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(a[k], a[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(a[k], a[k + 1]);
      }
      for (std::size_t k = 0; k < 8; k += 4) {
        a[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        a[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        a[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        a[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
      }
      // a[0..3]: positions (0, 1, 2, 3) of rows 0-3 | 4-7 in each half, interleaved by half.
      for (std::size_t k = 0; k < 4; ++k) {
        _mm256_storeu_ps(out + (p + k) * ldo + r, _mm256_permute2f128_ps(a[k], a[k + 4], 0x20));
        _mm256_storeu_ps(out + (p + k + 4) * ldo + r, _mm256_permute2f128_ps(a[k], a[k + 4], 0x31));
      }
    }
    if (p < cols) transpose_ref(src + r * lds + p, lds, 8, cols - p, out + p * ldo + r, ldo);
  }
#endif
  if (r < rows) transpose_ref(src + r * lds, lds, rows - r, cols, out + r, ldo);
}

// Tap sum: 4 vectors of outputs stay in registers across the taps; the tail runs through the twin.
inline void tap_sum(const float* const* src, const float* w, std::size_t taps, float bias,
                    std::size_t n, float* out) noexcept {
  constexpr std::size_t B = 4 * lanes;
  std::size_t q = 0;
  for (; q + B <= n; q += B) {
    std::array<fbatch, 4> acc;
    acc.fill(fbatch(bias));
    for (std::size_t t = 0; t < taps; ++t) {
      const fbatch wv(w[t]);
      const float* s = src[t] + q;
      for (std::size_t v = 0; v < 4; ++v)
        acc[v] = mul_add(wv, fbatch::load_unaligned(s + v * lanes), acc[v]);
    }
    for (std::size_t v = 0; v < 4; ++v) acc[v].store_unaligned(out + q + v * lanes);
  }
  for (; q + lanes <= n; q += lanes) {
    fbatch acc(bias);
    for (std::size_t t = 0; t < taps; ++t)
      acc = mul_add(fbatch(w[t]), fbatch::load_unaligned(src[t] + q), acc);
    acc.store_unaligned(out + q);
  }
  if (q < n) {
    std::array<const float*, 64> shifted;  // taps beyond 64 take the twin's loop from the start
    if (taps <= shifted.size()) {
      for (std::size_t t = 0; t < taps; ++t) shifted[t] = src[t] + q;
      tap_sum_ref(shifted.data(), w, taps, bias, n - q, out + q);
    } else {
      tap_sum_ref(src, w, taps, bias, n, out);
    }
  }
}

}  // namespace adaquant::detail::simd
