#pragma once
// Scalar reference kernels (the "_ref" twins of kernels/simd/). They define the numerics; the SIMD
// kernels must match them bit for bit. Formulas: see quant/rounding.hpp.
//   fake quant:  q = clamp(to_grid(x) + z, qmin, qmax);  y = (q - z) * s
//   STE mask:    mask = qmin <= to_grid(x) + z <= qmax    (1 where the gradient passes)
// The clamp is written so that NaN passes through it unchanged (comparisons with NaN are false).
//   backward:    gx = gy * mask;  sums of gy * (y - mask * x) / s and of gy - gy * mask

#include <adaquant/core/numeric.hpp>
#include <adaquant/core/tensor_shape.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>
#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/rounding.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace adaquant::detail {

// Grid value before clamping, in float: exact for |value| < 2^24, beyond that far outside any grid.
template <RoundingPolicy R>
constexpr float grid_unclamped(float x, float s, float inv, float zf) noexcept {
  return R::to_grid(x, s, inv) + zf;
}

constexpr float clamp_nan_through(float q, float lo, float hi) noexcept {
  q = q < lo ? lo : q;
  return q > hi ? hi : q;
}

template <RoundingPolicy R>
constexpr float fake_quant_one(float x, float s, float inv, float zf, float lo, float hi) noexcept {
  return (clamp_nan_through(grid_unclamped<R>(x, s, inv, zf), lo, hi) - zf) * s;
}

template <RoundingPolicy R>
constexpr std::uint8_t ste_mask_one(float x, float s, float inv, float zf, float lo,
                                    float hi) noexcept {
  const float g = grid_unclamped<R>(x, s, inv, zf);
  return static_cast<std::uint8_t>(g >= lo && g <= hi);
}

template <RoundingPolicy R>
void fake_quant_per_tensor_ref(const float* x, float* y, std::uint8_t* mask, std::size_t n,
                               const quant_params& p) noexcept {
  const float s = p.scale, inv = p.inv_scale(), zf = static_cast<float>(p.zero_point);
  const float lo = static_cast<float>(p.qmin), hi = static_cast<float>(p.qmax);
  for (std::size_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (mask) mask[i] = ste_mask_one<R>(v, s, inv, zf, lo, hi);
    y[i] = fake_quant_one<R>(v, s, inv, zf, lo, hi);
  }
}

// Per channel: element at offset o uses channel (o / inner) % channels.
template <RoundingPolicy R>
void fake_quant_per_channel_ref(const float* x, float* y, std::uint8_t* mask,
                                const channel_layout& l, const float* scale,
                                const std::int32_t* zero_point, std::int32_t qmin,
                                std::int32_t qmax) noexcept {
  const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  std::size_t o = 0;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = 0; c < l.channels; ++c) {
      const float s = scale[c], inv = 1.0f / s, zf = static_cast<float>(zero_point[c]);
      for (std::size_t i = 0; i < l.inner; ++i, ++o) {
        if (mask) mask[o] = ste_mask_one<R>(x[o], s, inv, zf, lo, hi);
        y[o] = fake_quant_one<R>(x[o], s, inv, zf, lo, hi);
      }
    }
}

// Per block: each block's chunk is a per-channel problem (block_layout::for_each_chunk).
template <RoundingPolicy R>
void fake_quant_per_block_ref(const float* x, float* y, std::uint8_t* mask, const block_layout& l,
                              const float* scale, const std::int32_t* zero_point, std::int32_t qmin,
                              std::int32_t qmax) noexcept {
  l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t p) {
    fake_quant_per_channel_ref<R>(x + o, y + o, mask ? mask + o : nullptr, c, scale + p,
                                  zero_point + p, qmin, qmax);
  });
}

// Quantize to integers; returns true if any input was NaN (its output is the zero point).
template <RoundingPolicy R, class Int>
bool quantize_per_tensor_ref(const float* x, Int* q, std::size_t n,
                             const quant_params& p) noexcept {
  const float s = p.scale, inv = p.inv_scale(), zf = static_cast<float>(p.zero_point);
  const float lo = static_cast<float>(p.qmin), hi = static_cast<float>(p.qmax);
  bool any_nan = false;
  for (std::size_t i = 0; i < n; ++i) {
    const float g = clamp_nan_through(grid_unclamped<R>(x[i], s, inv, zf), lo, hi);
    const bool bad = g != g;
    any_nan |= bad;
    q[i] = static_cast<Int>(bad ? p.zero_point : static_cast<std::int32_t>(g));
  }
  return any_nan;
}

template <RoundingPolicy R, class Int>
bool quantize_per_channel_ref(const float* x, Int* q, const channel_layout& l, const float* scale,
                              const std::int32_t* zero_point, std::int32_t qmin,
                              std::int32_t qmax) noexcept {
  bool any_nan = false;
  std::size_t o = 0;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = 0; c < l.channels; ++c, o += l.inner)
      any_nan |= quantize_per_tensor_ref<R>(x + o, q + o, l.inner,
                                            quant_params{scale[c], zero_point[c], qmin, qmax});
  return any_nan;
}

template <class Int>
void dequantize_per_tensor_ref(const Int* q, float* y, std::size_t n,
                               const quant_params& p) noexcept {
  const float s = p.scale, zf = static_cast<float>(p.zero_point);
  for (std::size_t i = 0; i < n; ++i) y[i] = (static_cast<float>(q[i]) - zf) * s;
}

template <class Int>
void dequantize_per_channel_ref(const Int* q, float* y, const channel_layout& l, const float* scale,
                                const std::int32_t* zero_point) noexcept {
  std::size_t o = 0;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = 0; c < l.channels; ++c, o += l.inner)
      dequantize_per_tensor_ref(q + o, y + o, l.inner, quant_params{scale[c], zero_point[c], 0, 1});
}

// The sums of the fake-quant backward over a run sharing the scale s
// (kernels/fake_quant_backward.hpp turns them into dL/ds and dL/dz).
struct backward_sums {
  double scale = 0.0;    // sum gy * ((y - mask * x) * (1 / s))
  double outside = 0.0;  // sum gy - gy * mask
};

// Elements per float partial sum before it is flushed into the double sums.
inline constexpr std::size_t backward_flush = 512;

// Backward of one run; writes gx (if WithGx) and adds to acc. Order of summation: element i of
// [0, n - n % lanes) goes to float partial i % lanes; the partials are added to acc in lane order
// after every backward_flush elements and at the end of that range; the rest is added in double,
// in order. The SIMD kernel sums in exactly this order (it hands its tail to this twin).
template <bool WithGx>
void fake_quant_backward_ref(const float* x, const float* y, const std::uint8_t* mask,
                             const float* gy, std::size_t n, float s, float* gx,
                             backward_sums& acc) noexcept {
  constexpr std::size_t lanes = simd::lanes;
  const float inv = 1.0f / s;
  const std::size_t vn = n - n % lanes;
  for (std::size_t first = 0; first < vn; first += backward_flush) {
    float ls[lanes] = {}, lo[lanes] = {};
    const std::size_t end = std::min(vn, first + backward_flush);
    for (std::size_t i = first; i < end; ++i) {
      const float in = static_cast<float>(mask[i]), g = gy[i];
      const float gin = g * in;
      if constexpr (WithGx) gx[i] = gin;
      // Pinned multiply-add (core/numeric.hpp): both twins round it alike whatever the compiler
      // contracts. in is 0 or 1, so in * x, g * in and g - gin are exact.
      ls[i % lanes] = mul_add(g, (y[i] - in * x[i]) * inv, ls[i % lanes]);
      lo[i % lanes] += g - gin;
    }
    for (std::size_t j = 0; j < lanes; ++j) acc.scale += static_cast<double>(ls[j]);
    for (std::size_t j = 0; j < lanes; ++j) acc.outside += static_cast<double>(lo[j]);
  }
  for (std::size_t i = vn; i < n; ++i) {
    const float in = static_cast<float>(mask[i]);
    if constexpr (WithGx) gx[i] = gy[i] * in;
    acc.scale += static_cast<double>(gy[i] * ((y[i] - in * x[i]) * inv));
    acc.outside += static_cast<double>(gy[i] - gy[i] * in);
  }
}

}  // namespace adaquant::detail
