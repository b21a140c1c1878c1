#pragma once
// xsimd bodies of quantize (float -> integer grid) and dequantize (integer -> float). Numerics:
// kernels/reference.hpp. Integer outputs narrower than 32 bits go through an int32 lane buffer.

#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

namespace adaquant::detail::simd {

using ibatch = xsimd::batch<std::int32_t>;
static_assert(ibatch::size == lanes);

// Returns true if any input was NaN (its output is the zero point, as in the twin).
template <RoundingPolicy R, class Int>
bool quantize_block(const float* x, Int* q, std::size_t n, const quant_params& p) noexcept {
  const fbatch vs(p.scale), vinv(p.inv_scale()), vz(static_cast<float>(p.zero_point));
  const fbatch vlo(static_cast<float>(p.qmin)), vhi(static_cast<float>(p.qmax));
  const std::size_t vn = n - n % lanes;
  xsimd::batch_bool<float> nan_seen(false);
  for (std::size_t i = 0; i < vn; i += lanes) {
    fbatch g =
        clamp_nan_through(R::to_grid(fbatch::load_unaligned(x + i), vs, vinv) + vz, vlo, vhi);
    const auto is_nan = xsimd::isnan(g);  // not g != g: xsimd 8.1 compares ordered on AVX
    nan_seen = nan_seen || is_nan;
    g = xsimd::select(is_nan, vz, g);
    const ibatch qi = xsimd::batch_cast<std::int32_t>(g);  // exact: g is an integer in range
    if constexpr (std::is_same_v<Int, std::int32_t>) {
      qi.store_unaligned(q + i);
    } else {
      alignas(64) std::int32_t tmp[lanes];
      qi.store_aligned(tmp);
      for (std::size_t j = 0; j < lanes; ++j) q[i + j] = static_cast<Int>(tmp[j]);
    }
  }
  const bool tail_nan = quantize_per_tensor_ref<R>(x + vn, q + vn, n - vn, p);
  return xsimd::any(nan_seen) || tail_nan;
}

template <RoundingPolicy R, class Int>
bool quantize_per_channel(const float* x, Int* q, const channel_layout& l, const float* scale,
                          const std::int32_t* zero_point, std::int32_t qmin,
                          std::int32_t qmax) noexcept {
  if (l.inner < lanes) return quantize_per_channel_ref<R>(x, q, l, scale, zero_point, qmin, qmax);
  bool any_nan = false;
  std::size_t o = 0;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = 0; c < l.channels; ++c, o += l.inner)
      any_nan |= quantize_block<R>(x + o, q + o, l.inner,
                                   quant_params{scale[c], zero_point[c], qmin, qmax});
  return any_nan;
}

template <class Int>
void dequantize_block(const Int* q, float* y, std::size_t n, const quant_params& p) noexcept {
  const fbatch vs(p.scale), vz(static_cast<float>(p.zero_point));
  const std::size_t vn = n - n % lanes;
  for (std::size_t i = 0; i < vn; i += lanes) {
    fbatch v;
    if constexpr (std::is_same_v<Int, std::int32_t>) {
      v = xsimd::batch_cast<float>(ibatch::load_unaligned(q + i));
    } else {
      alignas(64) std::int32_t tmp[lanes];
      for (std::size_t j = 0; j < lanes; ++j) tmp[j] = q[i + j];
      v = xsimd::batch_cast<float>(ibatch::load_aligned(tmp));
    }
    ((v - vz) * vs).store_unaligned(y + i);
  }
  dequantize_per_tensor_ref(q + vn, y + vn, n - vn, p);
}

template <class Int>
void dequantize_per_channel(const Int* q, float* y, const channel_layout& l, const float* scale,
                            const std::int32_t* zero_point) noexcept {
  if (l.inner < lanes) return dequantize_per_channel_ref(q, y, l, scale, zero_point);
  std::size_t o = 0;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = 0; c < l.channels; ++c, o += l.inner)
      dequantize_block(q + o, y + o, l.inner, quant_params{scale[c], zero_point[c], 0, 1});
}

}  // namespace adaquant::detail::simd
