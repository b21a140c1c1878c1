#pragma once
// im2col / col2im for one sample and one group of a 2-D convolution (geometry.hpp).
//   cols [K, P] row-major, K = (in_c / groups) * kh * kw with row (c * kh + i) * kw + j, matching
//   W [out_c, in_c / groups, kh, kw]; P = out_h * out_w. Padding reads as 0.
// col2im_add is the adjoint: it adds each column entry back to the input element it came from.

#include <adaquant/objectives/geometry.hpp>

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace adaquant::detail {

// Valid output range [lo, hi) along one axis for kernel offset `off` (= i * dilation - pad).
inline void valid_range(std::ptrdiff_t off, std::size_t stride, std::size_t in, std::size_t out,
                        std::size_t& lo, std::size_t& hi) noexcept {
  // o valid iff 0 <= o * stride + off < in.
  const auto s = static_cast<std::ptrdiff_t>(stride);
  std::ptrdiff_t a = off >= 0 ? 0 : (-off + s - 1) / s;
  std::ptrdiff_t b = static_cast<std::ptrdiff_t>(in) - off;  // o * s < b
  b = b <= 0 ? 0 : (b + s - 1) / s;
  a = std::min<std::ptrdiff_t>(a, static_cast<std::ptrdiff_t>(out));
  b = std::clamp<std::ptrdiff_t>(b, a, static_cast<std::ptrdiff_t>(out));
  lo = static_cast<std::size_t>(a);
  hi = static_cast<std::size_t>(b);
}

// x: one sample [in_c, in_h, in_w]; writes cols for group g.
inline void im2col(const conv2d_geometry& g, const float* x, std::size_t group,
                   float* cols) noexcept {
  const std::size_t cin = g.in_channels / g.groups, oh = g.out_h(), ow = g.out_w();
  const std::size_t P = oh * ow;
  float* row = cols;
  for (std::size_t c = 0; c < cin; ++c) {
    const float* xc = x + (group * cin + c) * g.in_h * g.in_w;
    for (std::size_t i = 0; i < g.kernel_h; ++i) {
      const std::ptrdiff_t offy =
          static_cast<std::ptrdiff_t>(i * g.dilation_h) - static_cast<std::ptrdiff_t>(g.pad_h);
      std::size_t y0, y1;
      valid_range(offy, g.stride_h, g.in_h, oh, y0, y1);
      for (std::size_t j = 0; j < g.kernel_w; ++j, row += P) {
        const std::ptrdiff_t offx =
            static_cast<std::ptrdiff_t>(j * g.dilation_w) - static_cast<std::ptrdiff_t>(g.pad_w);
        std::size_t x0, x1;
        valid_range(offx, g.stride_w, g.in_w, ow, x0, x1);
        std::fill(row, row + y0 * ow, 0.0f);
        for (std::size_t oy = y0; oy < y1; ++oy) {
          float* r = row + oy * ow;
          const float* src =
              xc + static_cast<std::size_t>(static_cast<std::ptrdiff_t>(oy * g.stride_h) + offy) *
                       g.in_w;
          std::fill(r, r + x0, 0.0f);
          if (g.stride_w == 1) {
            if (x1 > x0)
              std::memcpy(r + x0, src + static_cast<std::ptrdiff_t>(x0) + offx,
                          (x1 - x0) * sizeof(float));
          } else {
            for (std::size_t ox = x0; ox < x1; ++ox)
              r[ox] = src[static_cast<std::ptrdiff_t>(ox * g.stride_w) + offx];
          }
          std::fill(r + x1, r + ow, 0.0f);
        }
        std::fill(row + y1 * ow, row + P, 0.0f);
      }
    }
  }
}

// dx: one sample [in_c, in_h, in_w]; adds the group-g columns' gradient into it.
inline void col2im_add(const conv2d_geometry& g, const float* cols, std::size_t group,
                       float* dx) noexcept {
  const std::size_t cin = g.in_channels / g.groups, oh = g.out_h(), ow = g.out_w();
  const std::size_t P = oh * ow;
  const float* row = cols;
  for (std::size_t c = 0; c < cin; ++c) {
    float* xc = dx + (group * cin + c) * g.in_h * g.in_w;
    for (std::size_t i = 0; i < g.kernel_h; ++i) {
      const std::ptrdiff_t offy =
          static_cast<std::ptrdiff_t>(i * g.dilation_h) - static_cast<std::ptrdiff_t>(g.pad_h);
      std::size_t y0, y1;
      valid_range(offy, g.stride_h, g.in_h, oh, y0, y1);
      for (std::size_t j = 0; j < g.kernel_w; ++j, row += P) {
        const std::ptrdiff_t offx =
            static_cast<std::ptrdiff_t>(j * g.dilation_w) - static_cast<std::ptrdiff_t>(g.pad_w);
        std::size_t x0, x1;
        valid_range(offx, g.stride_w, g.in_w, ow, x0, x1);
        for (std::size_t oy = y0; oy < y1; ++oy) {
          const float* r = row + oy * ow;
          float* dst =
              xc + static_cast<std::size_t>(static_cast<std::ptrdiff_t>(oy * g.stride_h) + offy) *
                       g.in_w;
          for (std::size_t ox = x0; ox < x1; ++ox)
            dst[static_cast<std::ptrdiff_t>(ox * g.stride_w) + offx] += r[ox];
        }
      }
    }
  }
}

}  // namespace adaquant::detail
