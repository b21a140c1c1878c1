#pragma once
// Scalar twin of the gathered product kernel (kernels/simd/conv.hpp); the SIMD kernel matches it
// bit for bit. A direct convolution is one such product per sample: with the input zero-padded
// so that every tap of every output position is in bounds,
//   out[c * ldo + p] = bias[c] + sum_{k < depth} x[base[p] + off[k]] * w[k * ldw + c]
// for p < positions and c < channels (channel-major output, as NCHW wants it), where base[p] is
// output position p's window origin in the padded input and off[k] is tap k's offset from it
// (input channel, row, column). The SIMD kernel reads whole vectors of w: ldw must be at least
// `channels` rounded up to a multiple of simd::lanes (the columns past `channels` are read, with
// any finite values, and never affect an output). The sum starts
// from bias[c] (0 when bias is null) and adds the taps in k order, each product fused into the sum
// where the target has FMA (mul_add). An output therefore depends only on its own inputs and
// weights: not on the number of positions or channels computed beside it, the vector width or the
// thread.

#include <adaquant/core/numeric.hpp>

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>

namespace adaquant::detail {

using gather_index = std::uint32_t;  // offsets into one sample's padded input

inline void gather_product_ref(const float* x, const gather_index* base, std::size_t positions,
                               const gather_index* off, std::size_t depth, const float* w,
                               std::size_t ldw, const float* bias, std::size_t channels, float* out,
                               std::size_t ldo) noexcept {
  for (std::size_t p = 0; p < positions; ++p) {
    const float* xp = x + base[p];
    for (std::size_t c = 0; c < channels; ++c) {
      float acc = bias ? bias[c] : 0.0f;
      for (std::size_t k = 0; k < depth; ++k) acc = mul_add(xp[off[k]], w[k * ldw + c], acc);
      out[c * ldo + p] = acc;
    }
  }
}

// The integer gathered product behind a quantized layer's forward on integer codes
// (objectives/integer_conv.hpp): x holds unsigned 8-bit input codes, w signed 8-bit weight codes
// in groups of 4 consecutive taps, and each output is
//   acc = init[c] + sum_{g < groups} sum_{j < 4} x[base[p] + off[g] + j] * w[(g * ldw + c) * 4 + j]
//   out[c * ldo + p] = mul_add(float(acc), scale[c], bias[c])    (bias 0 when null)
// for p < positions, c < channels. acc is an exact 32-bit integer (the caller bounds the depth so
// that it cannot overflow), so the order of the sum does not matter; the float conversion rounds
// to nearest (exact below 2^24) and the one mul_add rounds once more. ldw: at least `channels`
// rounded up to a multiple of 16 (the SIMD body reads whole 64-byte rows of w).
inline void gather_product_u8_ref(const std::uint8_t* x, const gather_index* base,
                                  std::size_t positions, const gather_index* off,
                                  std::size_t groups, const std::int8_t* w, std::size_t ldw,
                                  const std::int32_t* init, const float* scale, const float* bias,
                                  std::size_t channels, float* out, std::size_t ldo) noexcept {
  for (std::size_t p = 0; p < positions; ++p) {
    const std::uint8_t* xp = x + base[p];
    for (std::size_t c = 0; c < channels; ++c) {
      std::int32_t acc = init[c];
      for (std::size_t g = 0; g < groups; ++g)
        for (std::size_t j = 0; j < 4; ++j)
          acc += static_cast<std::int32_t>(xp[off[g] + j]) *
                 static_cast<std::int32_t>(w[(g * ldw + c) * 4 + j]);
      out[c * ldo + p] = mul_add(static_cast<float>(acc), scale[c], bias ? bias[c] : 0.0f);
    }
  }
}

// The input side of the integer product: 4 channels' codes per 32-bit word (byte j from rows[j]),
//   t = nearbyint(rows[j][q] * inv),  out[q] |= (clamp(t, lo, hi) + zero_code) << 8 j
// for q < n, where lo = -zero_code and hi = levels - 1 - zero_code; returns whether any value is
// off its grid: t outside [lo, hi] or t * scale != the value (NaN included), i.e. the value is not
// the dequantized code (t) * scale, for inv = 1 / scale.
inline bool quad_codes_ref(const std::array<const float*, 4>& rows, std::size_t n, float scale,
                           float inv, float lo, float hi, std::int32_t zero_code,
                           std::uint32_t* out) noexcept {
  bool off_grid = false;
  for (std::size_t q = 0; q < n; ++q) {
    std::uint32_t word = 0;
    for (std::size_t j = 0; j < 4; ++j) {
      const float v = rows[j][q], t = std::nearbyint(v * inv);
      const bool bad = !(t >= lo && t <= hi) || t * scale != v;
      off_grid |= bad;
      const auto code =
          static_cast<std::uint32_t>(static_cast<std::int32_t>(bad ? 0.0f : t) + zero_code);
      word |= (code & 0xFFu) << (8 * j);
    }
    out[q] = word;
  }
  return off_grid;
}

// The weighted tap sum behind depthwise convs (one channel at a time):
//   out[q] = bias + sum_{t < taps} w[t] * src[t][q]   for q < n,
// summed from `bias` in t order, each product fused where the target has FMA (mul_add).
inline void tap_sum_ref(const float* const* src, const float* w, std::size_t taps, float bias,
                        std::size_t n, float* out) noexcept {
  for (std::size_t q = 0; q < n; ++q) {
    float acc = bias;
    for (std::size_t t = 0; t < taps; ++t) acc = mul_add(w[t], src[t][q], acc);
    out[q] = acc;
  }
}

// out[p * ldo + r] = src[r * lds + p] for r < rows, p < cols (dL/dW packs dY position-major).
inline void transpose_ref(const float* src, std::size_t lds, std::size_t rows, std::size_t cols,
                          float* out, std::size_t ldo) noexcept {
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t p = 0; p < cols; ++p) out[p * ldo + r] = src[r * lds + p];
}

}  // namespace adaquant::detail
