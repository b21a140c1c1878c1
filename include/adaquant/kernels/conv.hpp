#pragma once
// The gathered product behind direct convolutions (see kernels/reference_conv.hpp for the
// equation): out[p, c] = sum_k x[base[p] + off[k]] * w[k, c]. Simd = false runs the scalar twin;
// both give the same results bit for bit. tap_sum_run is the depthwise counterpart:
// out[q] = bias + sum_t w[t] src[t][q]. transpose_run: out[p * ldo + r] = src[r * lds + p].

#include <adaquant/kernels/reference_conv.hpp>
#include <adaquant/kernels/simd/conv.hpp>

namespace adaquant::detail {

template <bool Simd = true>
void gather_product_run(const float* x, const gather_index* base, std::size_t positions,
                        const gather_index* off, std::size_t depth, const float* w, std::size_t ldw,
                        const float* bias, std::size_t channels, float* out,
                        std::size_t ldo) noexcept {
  if constexpr (Simd)
    simd::gather_product(x, base, positions, off, depth, w, ldw, bias, channels, out, ldo);
  else
    gather_product_ref(x, base, positions, off, depth, w, ldw, bias, channels, out, ldo);
}

template <bool Simd = true>
void tap_sum_run(const float* const* src, const float* w, std::size_t taps, float bias,
                 std::size_t n, float* out) noexcept {
  if constexpr (Simd)
    simd::tap_sum(src, w, taps, bias, n, out);
  else
    tap_sum_ref(src, w, taps, bias, n, out);
}

template <bool Simd = true>
void transpose_run(const float* src, std::size_t lds, std::size_t rows, std::size_t cols,
                   float* out, std::size_t ldo) noexcept {
  if constexpr (Simd)
    simd::transpose(src, lds, rows, cols, out, ldo);
  else
    transpose_ref(src, lds, rows, cols, out, ldo);
}

}  // namespace adaquant::detail
