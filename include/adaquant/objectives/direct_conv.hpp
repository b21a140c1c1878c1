#pragma once
// Direct 2-D convolution for the forward passes (objectives/forward.hpp): no im2col matrix, one
// gathered product per sample and group (kernels/conv.hpp) over the zero-padded input. Each output
//   y[n, o, p] = b[o] + sum over taps k in (input channel, row, column) order of x_pad * w,
// every product fused into the sum (mul_add), so an output depends only on its own inputs and
// weights: not on the batch, the samples beside it, the vector width or the thread. Used where a
// group has at least direct_conv_min_channels output channels (fewer fill too few vector lanes)
// and its padded input is indexable by 32 bits; elsewhere the forward keeps im2col + GEMM.
//
// Threads: the products below split their outputs into units (sample, tile of positions, channel
// block), which the threads take in turn. An output is computed whole by one
// thread, by the same sequence of operations, so the results do not depend on the thread count.

#include <adaquant/core/parallel.hpp>
#include <adaquant/kernels/conv.hpp>
#include <adaquant/objectives/geometry.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

namespace adaquant::detail {

inline constexpr std::size_t direct_conv_min_channels = 8;
// Output positions per tile: a multiple of every kernel block's positions (4, 6, 8, 14).
inline constexpr std::size_t direct_conv_tile = 168;
// Packed weights above this many bytes do not stay in L2 across a tile's channel blocks: the
// blocks then go outermost, each one's weights reused over every sample and tile.
inline constexpr std::size_t direct_conv_l2_bytes = std::size_t{256} << 10;
// Threads worth using for a product of `macs` multiply-adds: one per `grain` of them, at most
// `threads`. The default 4e6 dates from when each call started its threads (a start cost about
// as much as 1e6); handing work to the persistent pool costs less, not yet re-tuned.
inline constexpr double direct_conv_grain = 4.0e6;
[[nodiscard]] inline std::size_t direct_conv_threads(double macs, std::size_t threads,
                                                     double grain = direct_conv_grain) noexcept {
  const double most = std::max(1.0, std::min(macs / std::max(grain, 1.0), 1024.0));
  return std::min(threads, static_cast<std::size_t>(most));
}
// The same for one pass of layer g over `batch` samples (its multiply-adds: batch x output
// positions x weights).
[[nodiscard]] inline std::size_t direct_conv_threads(const layer_geometry& g, std::size_t batch,
                                                     std::size_t threads,
                                                     double grain = direct_conv_grain) noexcept {
  return direct_conv_threads(static_cast<double>(batch) * static_cast<double>(g.out_positions()) *
                                 static_cast<double>(g.weight_size()),
                             threads, grain);
}

// f(u) for u in [0, units) on up to `threads` threads, each taking the next unit when free (a
// thread the system holds back delays only the unit it holds).
template <class F>
void split_units(std::size_t units, std::size_t threads, F&& f) {
  if (threads <= 1) {
    for (std::size_t u = 0; u < units; ++u) f(u);
    return;
  }
  parallel_for(units, threads, f);
}

// Channel blocks of 1 to 3 vectors as the kernel splits them: (first vector, vectors).
[[nodiscard]] inline std::vector<std::pair<std::size_t, std::size_t>> channel_blocks(
    std::size_t vectors) {
  std::vector<std::pair<std::size_t, std::size_t>> blocks;
  for (std::size_t v = 0; v < vectors;) {
    const std::size_t left = vectors - v, take = left == 1 ? 1 : left % 2 == 1 ? 3 : 2;
    blocks.emplace_back(v, take);
    v += take;
  }
  return blocks;
}

// Scratch shared by the products never shrinks: growing it again would clear the tail each time.
inline void grow(std::vector<float>& ws, std::size_t n) {
  if (ws.size() < n) ws.resize(n);
}

// dst [channels][h + 2 pad_h][w + 2 pad_w] = x [channels][h][w] with zero borders: cleared in one
// call, then the rows copied (on 14 x 14 planes, 5 % faster than writing each border row and
// column separately, whose many short memsets cost more than the second pass over the planes).
// The interiors alone: dst's borders are left as they are.
inline void copy_plane_interiors(const float* x, std::size_t planes, std::size_t h, std::size_t w,
                                 std::size_t pad_h, std::size_t pad_w, float* dst) noexcept {
  const std::size_t wp = w + 2 * pad_w, hp = h + 2 * pad_h;
  dst += pad_h * wp + pad_w;
  for (std::size_t c = 0; c < planes; ++c, dst += hp * wp, x += h * w)
    for (std::size_t r = 0; r < h; ++r) std::memcpy(dst + r * wp, x + r * w, w * sizeof(float));
}
inline void pad_planes(const float* x, std::size_t channels, std::size_t h, std::size_t w,
                       std::size_t pad_h, std::size_t pad_w, float* dst) noexcept {
  std::memset(dst, 0, channels * (h + 2 * pad_h) * (w + 2 * pad_w) * sizeof(float));
  copy_plane_interiors(x, channels, h, w, pad_h, pad_w, dst);
}

// A batch laid out as the direct products read a padded input ([batch][channels][h + 2 pad_h]
// [w + 2 pad_w], zero borders), kept between calls: the borders are written when the buffer grows
// or the shape changes, only the planes' interiors on every fill. A training step pads its
// quantized inputs once for the forward and dL/dW, and dL/dY once for the adjoint. Without
// padding x is already in that layout: fill returns x itself.
class padded_batch {
 public:
  const float* fill(const float* x, std::size_t batch, std::size_t channels, std::size_t h,
                    std::size_t w, std::size_t pad_h, std::size_t pad_w) {
    if (pad_h == 0 && pad_w == 0) return x;
    const std::size_t n = batch * channels * (h + 2 * pad_h) * (w + 2 * pad_w);
    const std::array<std::size_t, 5> shape{channels, h, w, pad_h, pad_w};
    if (shape != shape_ || buf_.size() < n) {
      // Every border rewritten: on a new shape the old interiors may lie on the new borders.
      shape_ = shape;
      buf_.assign(std::max(buf_.size(), n), 0.0f);
    }
    copy_plane_interiors(x, batch * channels, h, w, pad_h, pad_w, buf_.data());
    return buf_.data();
  }

 private:
  std::vector<float> buf_;
  std::array<std::size_t, 5> shape_{};
};

[[nodiscard]] inline bool direct_conv_applies(const conv2d_geometry& g) noexcept {
  const std::size_t hp = g.in_h + 2 * g.pad_h, wp = g.in_w + 2 * g.pad_w;
  const double plane = static_cast<double>(g.in_channels / g.groups) * static_cast<double>(hp) *
                       static_cast<double>(wp);
  return g.out_channels / g.groups >= direct_conv_min_channels &&
         plane < static_cast<double>(std::numeric_limits<gather_index>::max());
}

// y [batch, out_c, P] = conv(x, w) + b (b may be null); ws: scratch, resized as needed; threads:
// at most this many (file comment). x_padded: x is already padded (as padded_batch lays it out).
inline void direct_conv2d(const conv2d_geometry& g, std::size_t batch, const float* x,
                          const float* w, const float* b, float* y, std::vector<float>& ws,
                          std::size_t threads = 1, bool x_padded = false) {
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
  // Each block packed [k][block width] so that it streams its taps from consecutive memory.
  const auto blocks = channel_blocks(ldw / lanes);
  const bool unpadded = x_padded || (g.pad_h == 0 && g.pad_w == 0);  // read x in place
  const bool weights_outer = k * ldw * sizeof(float) > direct_conv_l2_bytes;
  // With the blocks outermost or on several threads every sample is padded first (one plane
  // each), else one plane in turn.
  const bool all_padded = threads > 1 || weights_outer;
  const std::size_t plane = unpadded ? 0 : cg * hp * wp, planes = all_padded ? batch : 1;
  grow(ws, k * ldw + plane * planes);
  float* packed = ws.data();
  float* padded = ws.data() + k * ldw;
  const std::size_t in_n = x_padded ? g.in_channels * hp * wp : g.in_channels * g.in_h * g.in_w,
                    in_plane = x_padded ? hp * wp : g.in_h * g.in_w,
                    tiles = (P + direct_conv_tile - 1) / direct_conv_tile;
  // Packing is pure data movement, split over the blocks when the weights are large.
  const std::size_t pack_threads = k * ldw >= parallel_min_elements ? threads : 1;
  for (std::size_t gr = 0; gr < g.groups; ++gr) {
    split_units(blocks.size(), pack_threads, [&](std::size_t bi) {
      const auto [v0, take] = blocks[bi];
      float* pb = packed + k * v0 * lanes;
      const std::size_t width = take * lanes, c0 = v0 * lanes, cn = std::min(width, og - c0);
      if (cn < width) std::fill(pb, pb + k * width, 0.0f);  // the missing channels stay 0
      for (std::size_t r0 = 0; r0 < k; r0 += 16)  // 16 taps at a time: the rows stay in L1
        for (std::size_t j = 0; j < cn; ++j) {
          const float* wr = w + (gr * og + c0 + j) * k;
          for (std::size_t r = r0; r < std::min(k, r0 + 16); ++r) pb[r * width + j] = wr[r];
        }
    });
    const auto pad = [&](std::size_t n, float* dst) {
      pad_planes(x + n * in_n + gr * cg * g.in_h * g.in_w, cg, g.in_h, g.in_w, g.pad_h, g.pad_w,
                 dst);
    };
    // Unit (sample, tile, block): tiles of positions outside the channel blocks, so the input
    // rows a tile reads stay in cache across the blocks; (block, sample, tile) for large weights.
    const std::size_t nb = blocks.size();
    const auto unit = [&](std::size_t u) {
      const std::size_t bi = weights_outer ? u / (batch * tiles) : u % nb;
      const std::size_t st = weights_outer ? u % (batch * tiles) : u / nb;  // sample * tiles + tile
      const std::size_t n = st / tiles, t = st % tiles;
      if (!all_padded && !unpadded && t == 0 && bi == 0) pad(n, padded);
      const float* src =
          unpadded ? x + n * in_n + gr * cg * in_plane : padded + (all_padded ? n * plane : 0);
      const std::size_t p0 = t * direct_conv_tile, pn = std::min(direct_conv_tile, P - p0);
      const auto [v0, take] = blocks[bi];
      const std::size_t c0 = v0 * lanes, cn = std::min(take * lanes, og - c0);
      gather_product_run(src, base.data() + p0, pn, off.data(), k, packed + k * c0, take * lanes,
                         b ? b + gr * og + c0 : nullptr, cn,
                         y + (n * g.out_channels + gr * og + c0) * P + p0, P);
    };
    if (all_padded && !unpadded)
      for (std::size_t n = 0; n < batch; ++n) pad(n, padded + n * plane);
    split_units(batch * tiles * blocks.size(), threads, unit);
  }
}

}  // namespace adaquant::detail

namespace adaquant::detail {

// The adjoint of a stride-1 convolution (dL/dX from dL/dY) is itself a direct convolution: of dY
// with the weights transposed (input and output channels swapped within each group) and flipped,
// at padding dilation * (kernel - 1) - pad, so that it returns X's height and width.
[[nodiscard]] inline conv2d_geometry adjoint_geometry(const conv2d_geometry& g) noexcept {
  conv2d_geometry a = g;
  a.in_channels = g.out_channels;
  a.out_channels = g.in_channels;
  a.in_h = g.out_h();
  a.in_w = g.out_w();
  a.pad_h = g.dilation_h * (g.kernel_h - 1) - g.pad_h;
  a.pad_w = g.dilation_w * (g.kernel_w - 1) - g.pad_w;
  return a;
}
[[nodiscard]] inline bool direct_adjoint_applies(const conv2d_geometry& g) noexcept {
  return g.stride_h == 1 && g.stride_w == 1 && g.pad_h <= g.dilation_h * (g.kernel_h - 1) &&
         g.pad_w <= g.dilation_w * (g.kernel_w - 1) && direct_conv_applies(adjoint_geometry(g));
}

// dx [batch, in_c, in_h, in_w] = the adjoint applied to dy [batch, out_c, out_h, out_w]
// (overwritten, not added); wt, ws: scratch; threads as direct_conv2d. dy_padded: dy is already
// padded at adjoint_geometry(g)'s padding (padded_batch). Needs direct_adjoint_applies(g).
inline void direct_conv2d_adjoint(const conv2d_geometry& g, std::size_t batch, const float* dy,
                                  const float* w, float* dx, std::vector<float>& wt,
                                  std::vector<float>& ws, std::size_t threads = 1,
                                  bool dy_padded = false) {
  const std::size_t cg = g.in_channels / g.groups, og = g.out_channels / g.groups;
  const std::size_t kh = g.kernel_h, kw = g.kernel_w;
  wt.resize(g.out_channels * cg * kh * kw);
  // Over (group, output channel) rows in contiguous ranges, one per thread for large weights.
  const std::size_t rows = g.groups * og, parts = wt.size() >= parallel_min_elements ? threads : 1;
  split_units(parts, parts, [&](std::size_t part) {
    for (std::size_t u = rows * part / parts, e = rows * (part + 1) / parts; u < e; ++u) {
      const std::size_t gr = u / og, o = u % og;
      for (std::size_t c = 0; c < cg; ++c)
        for (std::size_t i = 0; i < kh; ++i)
          for (std::size_t j = 0; j < kw; ++j)
            wt[(((gr * cg + c) * og + o) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)] =
                w[(((gr * og + o) * cg + c) * kh + i) * kw + j];
    }
  });
  direct_conv2d(adjoint_geometry(g), batch, dy, wt.data(), nullptr, dx, ws, threads, dy_padded);
}

}  // namespace adaquant::detail

namespace adaquant::detail {

// The weight gradient of a convolution as a gathered product whose depth is (sample, output
// position): dw[o, k] = sum over n, p in that order of x_pad[n][window(p) + tap(k)] * dy[n, o, p],
// each product fused. Needs direct_conv_applies(g) and the padded batch indexable by 32 bits (one
// group's planes per sample, or every channel's when the caller passes x padded).
[[nodiscard]] inline bool direct_weight_grad_applies(const conv2d_geometry& g, std::size_t batch,
                                                     bool x_padded = false) noexcept {
  const std::size_t channels = x_padded ? g.in_channels : g.in_channels / g.groups;
  const double padded = static_cast<double>(batch) * static_cast<double>(channels) *
                        static_cast<double>(g.in_h + 2 * g.pad_h) *
                        static_cast<double>(g.in_w + 2 * g.pad_w);
  return direct_conv_applies(g) &&
         padded < static_cast<double>(std::numeric_limits<gather_index>::max());
}

// dw [out_c, in_c / groups * kh * kw] (overwritten) from x [batch, in_c, in_h, in_w] and
// dy [batch, out_c, out_h, out_w]; ws: scratch; threads: at most this many (units: channel block,
// tile of taps). x_padded: x is already padded (padded_batch).
inline void direct_conv2d_weight_grad(const conv2d_geometry& g, std::size_t batch, const float* x,
                                      const float* dy, float* dw, std::vector<float>& ws,
                                      std::size_t threads = 1, bool x_padded = false) {
  constexpr std::size_t lanes = simd::lanes;
  const std::size_t cg = g.in_channels / g.groups, og = g.out_channels / g.groups;
  const std::size_t hp = g.in_h + 2 * g.pad_h, wp = g.in_w + 2 * g.pad_w, plane = cg * hp * wp;
  const std::size_t k = cg * g.kernel_h * g.kernel_w, oh = g.out_h(), ow = g.out_w(), P = oh * ow,
                    depth = batch * P;
  const std::size_t ldw = (og + lanes - 1) / lanes * lanes;
  std::vector<gather_index> tap(k), pos(depth);
  for (std::size_t c = 0; c < cg; ++c)
    for (std::size_t i = 0; i < g.kernel_h; ++i)
      for (std::size_t j = 0; j < g.kernel_w; ++j)
        tap[(c * g.kernel_h + i) * g.kernel_w + j] =
            static_cast<gather_index>(c * hp * wp + i * g.dilation_h * wp + j * g.dilation_w);
  // Between samples: one group's planes when padded here, every channel's when x came padded.
  const std::size_t sample = x_padded ? g.groups * plane : plane;
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t y0 = 0; y0 < oh; ++y0)
      for (std::size_t x0 = 0; x0 < ow; ++x0)
        pos[n * P + y0 * ow + x0] =
            static_cast<gather_index>(n * sample + y0 * g.stride_h * wp + x0 * g.stride_w);
  const auto blocks = channel_blocks(ldw / lanes);
  const std::size_t tiles = (k + direct_conv_tile - 1) / direct_conv_tile;
  const std::size_t pad_size = x_padded ? 0 : batch * plane;
  grow(ws, pad_size + depth * ldw);
  float* packed = ws.data() + pad_size;
  const std::size_t in_n = g.in_channels * g.in_h * g.in_w;
  for (std::size_t gr = 0; gr < g.groups; ++gr) {
    const float* padded = x_padded ? x + gr * plane : ws.data();
    if (!x_padded)
      for (std::size_t n = 0; n < batch; ++n)
        pad_planes(x + n * in_n + gr * cg * g.in_h * g.in_w, cg, g.in_h, g.in_w, g.pad_h, g.pad_w,
                   ws.data() + n * plane);
    for (const auto& [v0, take] : blocks) {
      float* pb = packed + depth * v0 * lanes;
      const std::size_t width = take * lanes, c0 = v0 * lanes, cn = std::min(width, og - c0);
      if (cn < width) std::fill(pb, pb + depth * width, 0.0f);  // the missing channels stay 0
      for (std::size_t n = 0; n < batch; ++n)  // pb[n P + p][j] = dy[n][gr og + c0 + j][p]
        transpose_run(dy + (n * g.out_channels + gr * og + c0) * P, P, cn, P, pb + n * P * width,
                      width);
    }
    split_units(blocks.size() * tiles, threads, [&](std::size_t u) {
      const auto [v0, take] = blocks[u / tiles];
      const std::size_t c0 = v0 * lanes, cn = std::min(take * lanes, og - c0);
      const std::size_t t0 = u % tiles * direct_conv_tile, tn = std::min(direct_conv_tile, k - t0);
      gather_product_run(padded, tap.data() + t0, tn, pos.data(), depth, packed + depth * c0,
                         take * lanes, nullptr, cn, dw + (gr * og + c0) * k + t0, k);
    });
  }
}

}  // namespace adaquant::detail
