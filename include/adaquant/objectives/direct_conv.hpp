#pragma once
// Direct 2-D convolution for the forward passes (objectives/forward.hpp): no im2col matrix, one
// gathered product per sample and group (kernels/conv.hpp) over the zero-padded input. Each output
//   y[n, o, p] = b[o] + sum over taps k in (input channel, row, column) order of x_pad * w,
// every product fused into the sum (mul_add), so an output depends only on its own inputs and
// weights: not on the batch, the samples beside it, the vector width or the thread. Used where a
// group has at least direct_conv_min_channels output channels (fewer fill too few vector lanes)
// and its padded input is indexable by 32 bits; elsewhere the forward keeps im2col + GEMM.

#include <adaquant/kernels/conv.hpp>
#include <adaquant/objectives/geometry.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace adaquant::detail {

inline constexpr std::size_t direct_conv_min_channels = 8;

[[nodiscard]] inline bool direct_conv_applies(const conv2d_geometry& g) noexcept {
  const std::size_t hp = g.in_h + 2 * g.pad_h, wp = g.in_w + 2 * g.pad_w;
  const double plane = static_cast<double>(g.in_channels / g.groups) * static_cast<double>(hp) *
                       static_cast<double>(wp);
  return g.out_channels / g.groups >= direct_conv_min_channels &&
         plane < static_cast<double>(std::numeric_limits<gather_index>::max());
}

// y [batch, out_c, P] = conv(x, w) + b (b may be null); ws: scratch, resized as needed.
inline void direct_conv2d(const conv2d_geometry& g, std::size_t batch, const float* x,
                          const float* w, const float* b, float* y, std::vector<float>& ws) {
  constexpr std::size_t lanes = simd::lanes;
  const std::size_t cg = g.in_channels / g.groups, og = g.out_channels / g.groups;
  const std::size_t hp = g.in_h + 2 * g.pad_h, wp = g.in_w + 2 * g.pad_w;
  const std::size_t k = cg * g.kernel_h * g.kernel_w, oh = g.out_h(), ow = g.out_w(), P = oh * ow;
  const std::size_t ldw = (og + lanes - 1) / lanes * lanes;  // zero weights pad the last vector
  std::vector<gather_index> base(P), off(k);
  for (std::size_t y0 = 0; y0 < oh; ++y0)
    for (std::size_t x0 = 0; x0 < ow; ++x0)
      base[y0 * ow + x0] = static_cast<gather_index>(y0 * g.stride_h * wp + x0 * g.stride_w);
  for (std::size_t c = 0; c < cg; ++c)
    for (std::size_t i = 0; i < g.kernel_h; ++i)
      for (std::size_t j = 0; j < g.kernel_w; ++j)
        off[(c * g.kernel_h + i) * g.kernel_w + j] =
            static_cast<gather_index>(c * hp * wp + i * g.dilation_h * wp + j * g.dilation_w);
  // Channel blocks of 1 to 3 vectors as the kernel splits them, each packed [k][block width] so
  // that a block streams its taps from consecutive memory.
  std::vector<std::pair<std::size_t, std::size_t>> blocks;  // (first vector, vectors)
  for (std::size_t v = 0, vectors = ldw / lanes; v < vectors;) {
    const std::size_t left = vectors - v, take = left == 1 ? 1 : left % 2 == 1 ? 3 : 2;
    blocks.emplace_back(v, take);
    v += take;
  }
  const bool unpadded = g.pad_h == 0 && g.pad_w == 0;  // read x in place
  const std::size_t plane = unpadded ? 0 : cg * hp * wp;
  ws.resize(k * ldw + plane);
  float* packed = ws.data();
  float* padded = ws.data() + k * ldw;
  std::fill(padded, padded + plane, 0.0f);  // the borders stay 0
  const std::size_t in_n = g.in_channels * g.in_h * g.in_w;
  for (std::size_t gr = 0; gr < g.groups; ++gr) {
    std::fill(packed, packed + k * ldw, 0.0f);
    for (const auto& [v0, take] : blocks) {
      float* pb = packed + k * v0 * lanes;
      const std::size_t width = take * lanes, c0 = v0 * lanes, cn = std::min(width, og - c0);
      for (std::size_t j = 0; j < cn; ++j) {
        const float* wr = w + (gr * og + c0 + j) * k;
        for (std::size_t r = 0; r < k; ++r) pb[r * width + j] = wr[r];
      }
    }
    for (std::size_t n = 0; n < batch; ++n) {
      const float* xs = x + n * in_n + gr * cg * g.in_h * g.in_w;
      if (!unpadded)
        for (std::size_t c = 0; c < cg; ++c)
          for (std::size_t r = 0; r < g.in_h; ++r)
            std::memcpy(padded + (c * hp + r + g.pad_h) * wp + g.pad_w,
                        xs + (c * g.in_h + r) * g.in_w, g.in_w * sizeof(float));
      float* ys = y + (n * g.out_channels + gr * og) * P;
      for (const auto& [v0, take] : blocks) {
        const std::size_t c0 = v0 * lanes, cn = std::min(take * lanes, og - c0);
        gather_product_run(unpadded ? xs : padded, base.data(), P, off.data(), k, packed + k * c0,
                           take * lanes, b ? b + gr * og + c0 : nullptr, cn, ys + c0 * P, P);
      }
    }
  }
}

}  // namespace adaquant::detail
