#pragma once
// The gathered product behind direct convolutions (see kernels/reference_conv.hpp for the
// equation): out[p, c] = sum_k x[base[p] + off[k]] * w[k, c]. Simd = false runs the scalar twin;
// both give the same results bit for bit. gather_product_u8_run is its integer counterpart on 8-bit
// codes (a quantized forward: reference_conv.hpp); its SIMD body needs AVX-512 VNNI
// (gather_product_u8_native), elsewhere both forms run the twin. tap_sum_run is the depthwise
// counterpart: out[q] = bias + sum_t w[t] src[t][q]. transpose_run: out[p * ldo + r] = src[r * lds
// + p].

#include <adaquant/kernels/reference_conv.hpp>
#include <adaquant/kernels/simd/conv.hpp>
#include <adaquant/kernels/simd/conv_u8.hpp>

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

// Whether gather_product_u8_run<true> has a SIMD body on this target (else it is the twin, slower
// than the float product: callers keep the float path).
inline constexpr bool gather_product_u8_native = simd::gather_u8_native;

template <bool Simd = true>
void gather_product_u8_run(const std::uint8_t* x, const gather_index* base, std::size_t positions,
                           const gather_index* off, std::size_t groups, const std::int8_t* w,
                           std::size_t ldw, const std::int32_t* init, const float* scale,
                           const float* bias, std::size_t channels, float* out,
                           std::size_t ldo) noexcept {
  if constexpr (Simd)
    simd::gather_product_u8(x, base, positions, off, groups, w, ldw, init, scale, bias, channels,
                            out, ldo);
  else
    gather_product_u8_ref(x, base, positions, off, groups, w, ldw, init, scale, bias, channels, out,
                          ldo);
}

template <bool Simd = true>
bool quad_codes_run(const std::array<const float*, 4>& rows, std::size_t n, float scale, float inv,
                    float lo, float hi, std::int32_t zero_code, std::uint32_t* out) noexcept {
  if constexpr (Simd)
    return simd::quad_codes(rows, n, scale, inv, lo, hi, zero_code, out);
  else
    return quad_codes_ref(rows, n, scale, inv, lo, hi, zero_code, out);
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
