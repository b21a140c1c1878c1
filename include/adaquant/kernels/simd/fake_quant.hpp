#pragma once
// xsimd bodies of the fake-quant kernels. Numerics: kernels/reference.hpp (the scalar twins, which
// also process the tails).

#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

#include <algorithm>
#include <vector>

namespace adaquant::detail::simd {

// One vector at offset i (Stream: y + i lane-aligned).
template <RoundingPolicy R, bool WithMask, bool Stream>
void fake_quant_vector(const float* x, float* y, std::uint8_t* mask, std::size_t i,
                       const fbatch& vs, const fbatch& vinv, const fbatch& vz, const fbatch& vlo,
                       const fbatch& vhi) noexcept {
  const fbatch g = R::to_grid(fbatch::load_unaligned(x + i), vs, vinv) + vz;
  if constexpr (WithMask) store_mask((g >= vlo) && (g <= vhi), mask + i);
  const fbatch out = (clamp_nan_through(g, vlo, vhi) - vz) * vs;
  if constexpr (Stream)
    store_stream(y + i, out);
  else
    out.store_unaligned(y + i);
}

template <RoundingPolicy R, bool WithMask, bool Stream>
void fake_quant_block(const float* x, float* y, std::uint8_t* mask, std::size_t n, float s,
                      float inv, float zf, float lo, float hi) noexcept {
  const fbatch vs(s), vinv(inv), vz(zf), vlo(lo), vhi(hi);
  const std::size_t vn = n - n % lanes;
  for (std::size_t i = 0; i < vn; i += lanes)
    fake_quant_vector<R, WithMask, Stream>(x, y, mask, i, vs, vinv, vz, vlo, vhi);
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

// inv[k] = 1 / scale[k] and zf[k] = zero_point[k] as float for k < n: the scalar formulas (IEEE
// division and int -> float conversion are exact operations), vectorised.
inline void block_constants(const float* scale, const std::int32_t* zero_point, std::size_t n,
                            float* inv, float* zf) noexcept {
  using ibatch = xsimd::batch<std::int32_t>;
  const std::size_t vn = n - n % lanes;
  for (std::size_t k = 0; k < vn; k += lanes) {
    (fbatch(1.0f) / fbatch::load_unaligned(scale + k)).store_unaligned(inv + k);
    xsimd::batch_cast<float>(ibatch::load_unaligned(zero_point + k)).store_unaligned(zf + k);
  }
  for (std::size_t k = vn; k < n; ++k) {
    inv[k] = 1.0f / scale[k];
    zf[k] = static_cast<float>(zero_point[k]);
  }
}

// Blocks along the innermost axis: block j of row b is the run of rows(j) elements at
// b * extent + j * block sharing parameter b * blocks + j. One loop without a call per block (a
// block of 32 is two AVX-512 vectors), the blocks' reciprocals and zero points computed
// `batch` at a time; each run's tail goes element by element as in the twin.
template <RoundingPolicy R, bool WithMask>
void fake_quant_runs(const float* x, float* y, std::uint8_t* mask, const block_layout& l,
                     const float* scale, const std::int32_t* zero_point, float lo,
                     float hi) noexcept {
  constexpr std::size_t batch = 256;
  alignas(64) float inv[batch], zf[batch];
  const fbatch vlo(lo), vhi(hi);
  const std::size_t nb = l.blocks(), np = l.params();
  std::size_t o = 0, j = 0;
  for (std::size_t first = 0; first < np; first += batch) {
    const std::size_t m = std::min(batch, np - first);
    block_constants(scale + first, zero_point + first, m, inv, zf);
    for (std::size_t k = 0; k < m; ++k, j = j + 1 == nb ? 0 : j + 1) {
      const std::size_t n = l.rows(j), end = o + n, vend = end - n % lanes;
      const float s = scale[first + k];
      const fbatch vs(s), vinv(inv[k]), vz(zf[k]);
      for (std::size_t i = o; i < vend; i += lanes)
        fake_quant_vector<R, WithMask, false>(x, y, mask, i, vs, vinv, vz, vlo, vhi);
      for (std::size_t i = vend; i < end; ++i) {
        if constexpr (WithMask) mask[i] = ste_mask_one<R>(x[i], s, inv[k], zf[k], lo, hi);
        y[i] = fake_quant_one<R>(x[i], s, inv[k], zf[k], lo, hi);
      }
      o = end;
    }
  }
}

// fake_quant_runs with non-temporal stores, for blocks that are all a multiple of lanes long
// (block and extent multiples of lanes) at any alignment of y: the vectors are lane-aligned in y,
// so each lies in one block or across the boundary of two consecutive ones, whose parameters are
// then blended lane-wise (lanes are computed independently: the twin's numbers); the elements
// before the first aligned address and after the last one go element by element.
template <RoundingPolicy R>
void fake_quant_runs_stream(const float* x, float* y, const block_layout& l, const float* scale,
                            const std::int32_t* zero_point, float lo, float hi) noexcept {
  const std::size_t n = l.size(), nb = l.blocks(), np = l.params();
  const auto addr = reinterpret_cast<std::uintptr_t>(y);
  const std::size_t head =
      std::min(n, (alignof(fbatch) - addr % alignof(fbatch)) % alignof(fbatch) / sizeof(float));
  const std::size_t vend = n - (n - head) % lanes;
  alignas(64) float lane_index[lanes];
  for (std::size_t j = 0; j < lanes; ++j) lane_index[j] = static_cast<float>(j);
  const fbatch iota = fbatch::load_aligned(lane_index), vlo(lo), vhi(hi);
  struct broadcast {
    fbatch s, inv, z;
  };
  constexpr std::size_t batch = 256;  // blocks whose constants block_constants holds
  alignas(64) float inv[batch], zf[batch];
  std::size_t base = 0, held = 0;
  const auto params = [&](std::size_t q) {                                    // q only grows
    if (q >= np) return broadcast{fbatch(1.0f), fbatch(1.0f), fbatch(0.0f)};  // unused
    if (q >= base + held) {
      base = q;
      held = std::min(batch, np - q);
      block_constants(scale + base, zero_point + base, held, inv, zf);
    }
    return broadcast{fbatch(scale[q]), fbatch(inv[q - base]), fbatch(zf[q - base])};
  };
  // Block p (index j in its row) is [end - rows(j), end).
  std::size_t p = 0, j = 0, end = l.rows(0);
  const auto advance = [&] {
    ++p;
    j = j + 1 == nb ? 0 : j + 1;
    end += l.rows(j);
  };
  std::size_t e = 0;
  for (; e < head; ++e) {
    while (e >= end) advance();
    const float s = scale[p], z = static_cast<float>(zero_point[p]);
    y[e] = fake_quant_one<R>(x[e], s, 1.0f / s, z, lo, hi);
  }
  broadcast cur = params(p), next = params(p + 1);
  for (; e < vend; e += lanes) {
    if (e >= end) {  // blocks are at least lanes long: one step
      advance();
      cur = next;
      next = params(p + 1);
    }
    if (e + lanes <= end) {
      fake_quant_vector<R, false, true>(x, y, nullptr, e, cur.s, cur.inv, cur.z, vlo, vhi);
    } else {  // lanes from end - e on belong to block p + 1
      const auto first = iota < fbatch(static_cast<float>(end - e));
      fake_quant_vector<R, false, true>(x, y, nullptr, e, xsimd::select(first, cur.s, next.s),
                                        xsimd::select(first, cur.inv, next.inv),
                                        xsimd::select(first, cur.z, next.z), vlo, vhi);
    }
  }
  for (; e < n; ++e) {
    while (e >= end) advance();
    const float s = scale[p], z = static_cast<float>(zero_point[p]);
    y[e] = fake_quant_one<R>(x[e], s, 1.0f / s, z, lo, hi);
  }
}

// Per block. inner == 1 (blocks along the innermost axis): fake_quant_runs, with non-temporal
// stores for large outputs when every block is a multiple of lanes long. Otherwise each block's
// chunk goes through the per-channel kernel (vectors along the `inner` channels when
// inner >= lanes).
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
  if (mask) return fake_quant_runs<R, true>(x, y, mask, l, scale, zero_point, lo, hi);
  if (!(l.block % lanes == 0 && l.extent % lanes == 0 && use_streaming(x, y, l.size())))
    return fake_quant_runs<R, false>(x, y, nullptr, l, scale, zero_point, lo, hi);
  fake_quant_runs_stream<R>(x, y, l, scale, zero_point, lo, hi);
  stream_fence();
}

}  // namespace adaquant::detail::simd
