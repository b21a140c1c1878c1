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
