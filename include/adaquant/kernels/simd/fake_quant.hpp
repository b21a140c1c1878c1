#pragma once
// xsimd bodies of the fake-quant kernels. Numerics: kernels/reference.hpp (the scalar twins, which
// also process the tails).

#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

#include <algorithm>
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

// One run of elements sharing parameters. `stream`: write with non-temporal stores (the caller
// decides from the total output size and issues the fence).
template <RoundingPolicy R>
void fake_quant_run(const float* x, float* y, std::uint8_t* mask, std::size_t n, float s, float inv,
                    float zf, float lo, float hi, bool stream) noexcept {
  if (mask) return fake_quant_block<R, true, false>(x, y, mask, n, s, inv, zf, lo, hi);
  const auto addr = reinterpret_cast<std::uintptr_t>(y);
  const std::size_t head_bytes = (alignof(fbatch) - addr % alignof(fbatch)) % alignof(fbatch);
  if (!stream || x == y || head_bytes % sizeof(float) != 0)
    return fake_quant_block<R, false, false>(x, y, nullptr, n, s, inv, zf, lo, hi);
  // Peel to a lane-aligned destination, stream the body.
  const std::size_t head = std::min(n, head_bytes / sizeof(float));
  fake_quant_block<R, false, false>(x, y, nullptr, head, s, inv, zf, lo, hi);
  fake_quant_block<R, false, true>(x + head, y + head, nullptr, n - head, s, inv, zf, lo, hi);
}

inline bool use_streaming(const float* x, const float* y, std::size_t n) noexcept {
  return x != y && n * sizeof(float) >= streaming_threshold_bytes;
}

template <RoundingPolicy R>
void fake_quant_per_tensor(const float* x, float* y, std::uint8_t* mask, std::size_t n,
                           const quant_params& p) noexcept {
  const bool stream = use_streaming(x, y, n);
  fake_quant_run<R>(x, y, mask, n, p.scale, p.inv_scale(), static_cast<float>(p.zero_point),
                    static_cast<float>(p.qmin), static_cast<float>(p.qmax), stream);
  if (stream) stream_fence();
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
    const bool stream = use_streaming(x, y, l.size());
    std::size_t o = 0;
    for (std::size_t b = 0; b < l.outer; ++b)
      for (std::size_t c = 0; c < l.channels; ++c, o += l.inner) {
        const float s = scale[c], inv = 1.0f / s, zf = static_cast<float>(zero_point[c]);
        fake_quant_run<R>(x + o, y + o, mask ? mask + o : nullptr, l.inner, s, inv, zf, lo, hi,
                          stream);
      }
    if (stream) stream_fence();
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

// Per block. inner == 1 (blocks along the innermost axis): each block is a run sharing its
// parameters, streamed like per tensor when the output is large. Otherwise each block's chunk
// goes through the per-channel kernel (vectors along the `inner` channels when inner >= lanes).
template <RoundingPolicy R>
void fake_quant_per_block(const float* x, float* y, std::uint8_t* mask, const block_layout& l,
                          const float* scale, const std::int32_t* zero_point, std::int32_t qmin,
                          std::int32_t qmax) {
  const float lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  if (l.inner != 1) {
    l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t p) {
      fake_quant_per_channel<R>(x + o, y + o, mask ? mask + o : nullptr, c, scale + p,
                                zero_point + p, qmin, qmax);
    });
    return;
  }
  const bool stream = use_streaming(x, y, l.size());
  l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t p) {
    const float s = scale[p];
    fake_quant_run<R>(x + o, y + o, mask ? mask + o : nullptr, c.inner, s, 1.0f / s,
                      static_cast<float>(zero_point[p]), lo, hi, stream);
  });
  if (stream) stream_fence();
}

}  // namespace adaquant::detail::simd
