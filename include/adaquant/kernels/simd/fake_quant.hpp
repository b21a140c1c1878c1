#pragma once
// xsimd bodies of the fake-quant kernels. Numerics: kernels/reference.hpp (the scalar twins, which
// also process the tails).

#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

#include <vector>

namespace adaquant::detail::simd {

template <RoundingPolicy R, bool WithMask, bool Stream>
void fake_quant_block(const float* x, float* y, std::uint8_t* mask, std::size_t n, float s,
                      float inv, float zf, float lo, float hi) noexcept {
  const fbatch vs(s), vinv(inv), vz(zf), vlo(lo), vhi(hi);
  const std::size_t vn = n - n % lanes;
  for (std::size_t i = 0; i < vn; i += lanes) {
    const fbatch g = R::to_grid(fbatch::load_unaligned(x + i), vs, vinv) + vz;
    if constexpr (WithMask) store_mask((g >= vlo) && (g <= vhi), mask + i);
    const fbatch out = (clamp_nan_through(g, vlo, vhi) - vz) * vs;
    if constexpr (Stream)
      store_stream(y + i, out);
    else
      out.store_unaligned(y + i);
  }
  const quant_params p{s, static_cast<std::int32_t>(zf), static_cast<std::int32_t>(lo),
                       static_cast<std::int32_t>(hi)};
  fake_quant_per_tensor_ref<R>(x + vn, y + vn, WithMask ? mask + vn : nullptr, n - vn, p);
}

template <RoundingPolicy R>
void fake_quant_per_tensor(const float* x, float* y, std::uint8_t* mask, std::size_t n,
                           const quant_params& p) noexcept {
  const float s = p.scale, inv = p.inv_scale(), zf = static_cast<float>(p.zero_point);
  const float lo = static_cast<float>(p.qmin), hi = static_cast<float>(p.qmax);
  if (mask) return fake_quant_block<R, true, false>(x, y, mask, n, s, inv, zf, lo, hi);
  if (n * sizeof(float) < streaming_threshold_bytes || x == y)
    return fake_quant_block<R, false, false>(x, y, nullptr, n, s, inv, zf, lo, hi);
  // Peel to a lane-aligned destination, stream the body.
  const auto addr = reinterpret_cast<std::uintptr_t>(y);
  std::size_t head = (alignof(fbatch) - addr % alignof(fbatch)) % alignof(fbatch);
  if (head % sizeof(float) != 0)  // float-misaligned destination: no streaming
    return fake_quant_block<R, false, false>(x, y, nullptr, n, s, inv, zf, lo, hi);
  head /= sizeof(float);
  fake_quant_per_tensor_ref<R>(x, y, nullptr, head, p);
  fake_quant_block<R, false, true>(x + head, y + head, nullptr, n - head, s, inv, zf, lo, hi);
  stream_fence();
}

// Per channel. inner >= lanes: broadcast each channel's parameters over its run of `inner`
// elements. inner == 1 (channels innermost): load the parameters as vectors along the channels.
// Otherwise (short runs) the scalar twin is used.
template <RoundingPolicy R>
void fake_quant_per_channel(const float* x, float* y, std::uint8_t* mask, const channel_layout& l,
                            const float* scale, const std::int32_t* zero_point, std::int32_t qmin,
                            std::int32_t qmax) {
  const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  if (l.inner >= lanes) {
    std::size_t o = 0;
    for (std::size_t b = 0; b < l.outer; ++b)
      for (std::size_t c = 0; c < l.channels; ++c, o += l.inner) {
        const float s = scale[c], inv = 1.0f / s, zf = static_cast<float>(zero_point[c]);
        if (mask)
          fake_quant_block<R, true, false>(x + o, y + o, mask + o, l.inner, s, inv, zf, lo, hi);
        else
          fake_quant_block<R, false, false>(x + o, y + o, nullptr, l.inner, s, inv, zf, lo, hi);
      }
    return;
  }
  if (l.inner != 1 || l.channels < lanes)
    return fake_quant_per_channel_ref<R>(x, y, mask, l, scale, zero_point, qmin, qmax);
  std::vector<float> inv(l.channels), zf(l.channels);
  for (std::size_t c = 0; c < l.channels; ++c) {
    inv[c] = 1.0f / scale[c];
    zf[c] = static_cast<float>(zero_point[c]);
  }
  const fbatch vlo(lo), vhi(hi);
  const std::size_t vc = l.channels - l.channels % lanes;
  for (std::size_t b = 0; b < l.outer; ++b) {
    const std::size_t row = b * l.channels;
    for (std::size_t c = 0; c < vc; c += lanes) {
      const fbatch vs = fbatch::load_unaligned(scale + c), vinv = fbatch::load_unaligned(&inv[c]);
      const fbatch vz = fbatch::load_unaligned(&zf[c]);
      const fbatch g = R::to_grid(fbatch::load_unaligned(x + row + c), vs, vinv) + vz;
      if (mask) store_mask((g >= vlo) && (g <= vhi), mask + row + c);
      ((clamp_nan_through(g, vlo, vhi) - vz) * vs).store_unaligned(y + row + c);
    }
    for (std::size_t c = vc; c < l.channels; ++c) {
      const std::size_t o = row + c;
      if (mask) mask[o] = ste_mask_one<R>(x[o], scale[c], inv[c], zf[c], lo, hi);
      y[o] = fake_quant_one<R>(x[o], scale[c], inv[c], zf[c], lo, hi);
    }
  }
}

}  // namespace adaquant::detail::simd
