#pragma once
// A quantized convolution's forward on its integer codes, for AdaQuant's layer objective
// (objectives/layer_objective.hpp): where the inputs lie on a per-tensor grid of at most 256 codes
// and the weights on per-channel grids of signed 8-bit codes, with xq = s_x (u - u_z) (u the input
// code minus qmin, u_z the code of 0) and wq[o] = s_w[o] c[o] (c in [-128, 127]),
//   y[n, o, p] = b[o] + sum_k wq[o, k] xq[n, k, p]
//              = mul_add(float(A[n, o, p]), s_w[o] s_x, b[o]),
//   A[n, o, p] = sum_k c[o, k] (u[n, k, p] - u_z)     (an exact 32-bit integer)
// with zero padding as code u_z. The float product (objectives/direct_conv.hpp) rounds after
// every multiply-add; this one rounds twice (float(A), then the mul_add), so the two differ in
// the last bits of an output and this one is the closer to the exact sum. It runs the integer
// gathered product (kernels/conv.hpp: 4 multiply-adds per 32-bit lane per instruction with
// AVX-512 VNNI) on the inputs in blocks of 4 channels ([channels / 4][h + 2 pad][w + 2 pad][4]
// bytes per sample), so that 4 consecutive bytes are 4 taps of one output position.
//
// run() recovers the codes from the dequantized values and checks each one (fl((u - u_z) s) must
// give back the value): inputs that keep some float elements (QDrop), relaxed AdaRound weights or
// any other value off the grid make it return false before anything is written, and the caller
// takes the float path. Used only where the integer product has a SIMD body
// (kernels/conv.hpp's gather_product_u8_native); the results do not depend on the thread count.

#include <adaquant/kernels/conv.hpp>
#include <adaquant/objectives/direct_conv.hpp>
#include <adaquant/objectives/geometry.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace adaquant::detail {

// Integer codes per input element at most (8 bits) and the depth bound that keeps A within 32 bits
// (255 x 128 per product).
inline constexpr std::int32_t integer_conv_levels = 256;
inline constexpr std::size_t integer_conv_max_depth = (std::size_t{1} << 31) / (255 * 128) - 1;

class integer_conv {
 public:
  // any_target: run also where the integer product is the scalar twin (tests).
  explicit integer_conv(bool any_target = false) noexcept : any_target_(any_target) {}

  // Whether geometry c can run on codes here at all (the grids are checked by run).
  [[nodiscard]] static bool applies(const conv2d_geometry& c, bool any_target = false) noexcept {
    if (!(gather_product_u8_native || any_target) || c.groups != 1 || !direct_conv_applies(c))
      return false;
    const std::size_t c4 = (c.in_channels + 3) / 4 * 4;
    const double plane = static_cast<double>(c4) * static_cast<double>(c.in_h + 2 * c.pad_h) *
                         static_cast<double>(c.in_w + 2 * c.pad_w);
    return c4 * c.kernel_h * c.kernel_w <= integer_conv_max_depth &&
           plane < static_cast<double>(std::numeric_limits<gather_index>::max());
  }

  // y [batch, out_c, P] from xq [batch, in_c, h, w] and wq [out_c, in_c * kh * kw] (dequantized
  // values on the grids above: act_scale s_x, act_zero_code u_z in [0, levels), weight scales
  // s_w per output channel) and b (may be null); false (nothing written) where a value is off its
  // grid or the layer does not apply.
  bool run(const conv2d_geometry& c, std::size_t batch, const float* xq, float act_scale,
           std::int32_t act_zero_code, std::int32_t act_levels, const float* wq,
           const float* weight_scale, const float* b, float* y, std::size_t threads) {
    if (!applies(c, any_target_) || act_levels > integer_conv_levels || act_zero_code < 0 ||
        act_zero_code >= act_levels || !(act_scale > 0.0f))
      return false;
    if (!pack_weights(c, wq, weight_scale, act_scale, act_zero_code, threads)) return false;
    if (!pack_inputs(c, batch, xq, act_scale, act_zero_code, act_levels, threads)) return false;
    const std::size_t P = c.out_h() * c.out_w(),
                      tiles = (P + direct_conv_tile - 1) / direct_conv_tile;
    split_units(batch * tiles, threads, [&](std::size_t u) {
      const std::size_t n = u / tiles, p0 = (u % tiles) * direct_conv_tile;
      const std::size_t pn = std::min(direct_conv_tile, P - p0);
      gather_product_u8_run(x_.data() + n * sample_bytes_, base_.data() + p0, pn, off_.data(),
                            off_.size(), w_.data(), ldw_, init_.data(), scale_.data(), b,
                            c.out_channels, y + n * c.out_channels * P + p0, P);
    });
    return true;
  }

 private:
  // Codes c = wq / s_w (checked: fl(c s_w) == wq, c in [-128, 127]), packed [group][ldw][4] with
  // group (channel block of 4, kernel row, kernel column); the zero-point term and scales. Blocks
  // of 16 output channels on the threads: each block's codes row by row (a loop the compiler
  // vectorizes), then its 64 bytes per group (16 channels x 4 taps) written in turn.
  bool pack_weights(const conv2d_geometry& c, const float* wq, const float* ws, float act_scale,
                    std::int32_t uz, std::size_t threads) {
    const std::size_t oc = c.out_channels, ic = c.in_channels, kh = c.kernel_h, kw = c.kernel_w;
    const std::size_t blocks = (ic + 3) / 4, k = ic * kh * kw, taps = kh * kw;
    const std::size_t groups = blocks * taps;
    ldw_ = (oc + 15) / 16 * 16;
    w_.resize(groups * ldw_ * 4);
    init_.resize(oc);
    scale_.resize(oc);
    const std::size_t units = ldw_ / 16;
    std::vector<std::uint8_t> bad(units, 0);
    const std::size_t pack_threads = groups * ldw_ * 4 >= parallel_min_elements ? threads : 1;
    split_units(units, pack_threads, [&](std::size_t u) {
      // Codes of 16 channels, [16][blocks * 4][taps], missing channels and outputs 0 (32-bit:
      // int8 stores may alias the weights, which keeps the compiler from vectorizing the loop).
      std::vector<std::int32_t> codes(16 * blocks * 4 * taps, 0);
      bool off_grid = false;
      for (std::size_t l = 0; l < 16 && u * 16 + l < oc; ++l) {
        const std::size_t o = u * 16 + l;
        const float s = ws[o];
        if (!(s > 0.0f) || !is_finite(s)) {
          off_grid = true;
          break;
        }
        const float inv = 1.0f / s;
        constexpr float magic = 12582912.0f;  // 1.5 x 2^23: rounds to nearest, ties to even
        const float* row = wq + o * k;
        std::int32_t* dst = codes.data() + l * blocks * 4 * taps;
        std::int32_t sum = 0;
        std::uint32_t off = 0;
        for (std::size_t t = 0; t < k; ++t) {
          // Rounded, NaN to 0, clamped: the value is on the grid iff rc * s gives it back.
          const float v = row[t], r0 = (v * inv + magic) - magic, r = r0 == r0 ? r0 : 0.0f;
          const float rc = std::min(std::max(r, -128.0f), 127.0f);
          off |= static_cast<std::uint32_t>(rc * s != v);
          const auto q = static_cast<std::int32_t>(rc);
          dst[t] = q;
          sum += q;
        }
        off_grid |= off != 0;
        init_[o] = -uz * sum;
        scale_[o] = s * act_scale;
      }
      bad[u] = off_grid;
      if (off_grid) return;
      const std::size_t row_len = blocks * 4 * taps;
      for (std::size_t g = 0; g < groups; ++g) {
        const std::size_t cb = g / taps, tap = g % taps;
        std::int8_t* out = w_.data() + (g * ldw_ + u * 16) * 4;
        for (std::size_t l = 0; l < 16; ++l)
          for (std::size_t j = 0; j < 4; ++j)
            out[l * 4 + j] =
                static_cast<std::int8_t>(codes[l * row_len + (cb * 4 + j) * taps + tap]);
      }
    });
    return std::find(bad.begin(), bad.end(), std::uint8_t{1}) == bad.end();
  }

  // Input codes u = xq / s_x + u_z (checked), in blocks of 4 channels with borders (and missing
  // channels) at u_z; the gather offsets of positions and taps.
  bool pack_inputs(const conv2d_geometry& c, std::size_t batch, const float* xq, float s,
                   std::int32_t uz, std::int32_t levels, std::size_t threads) {
    const std::size_t ic = c.in_channels, h = c.in_h, w = c.in_w, blocks = (ic + 3) / 4;
    const std::size_t hp = h + 2 * c.pad_h, wp = w + 2 * c.pad_w, plane = hp * wp * 4;
    sample_bytes_ = blocks * plane;
    x_.resize(batch * sample_bytes_);
    const float inv = 1.0f / s, hi = static_cast<float>(levels - 1 - uz),
                lo = static_cast<float>(-uz);
    std::vector<std::uint8_t> bad(batch, 0);
    split_units(batch, threads, [&](std::size_t n) {
      std::uint8_t* dst = x_.data() + n * sample_bytes_;
      std::memset(dst, static_cast<int>(uz), sample_bytes_);
      const float* src = xq + n * ic * h * w;
      bool off_grid = false;
      // One 32-bit word (4 channels' codes) per position, a plane at a time, then copied row by
      // row inside the borders; a missing channel of the last block repeats channel 0 (its
      // weights are 0).
      std::vector<std::uint32_t> words(h * w);
      for (std::size_t cb = 0; cb < blocks; ++cb) {
        std::array<const float*, 4> rows;
        for (std::size_t j = 0; j < 4; ++j)
          rows[j] = src + (cb * 4 + j < ic ? cb * 4 + j : 0) * h * w;
        off_grid |= quad_codes_run(rows, h * w, s, inv, lo, hi, uz, words.data());
        std::uint8_t* dp = dst + cb * plane + (c.pad_h * wp + c.pad_w) * 4;
        for (std::size_t r = 0; r < h; ++r)
          std::memcpy(dp + r * wp * 4, words.data() + r * w, w * 4);
      }
      bad[n] = off_grid;
    });
    if (std::find(bad.begin(), bad.end(), std::uint8_t{1}) != bad.end()) return false;
    const std::size_t oh = c.out_h(), ow = c.out_w();
    base_.resize(oh * ow);
    for (std::size_t y0 = 0; y0 < oh; ++y0)
      for (std::size_t x0 = 0; x0 < ow; ++x0)
        base_[y0 * ow + x0] =
            static_cast<gather_index>((y0 * c.stride_h * wp + x0 * c.stride_w) * 4);
    off_.resize(blocks * c.kernel_h * c.kernel_w);
    for (std::size_t cb = 0; cb < blocks; ++cb)
      for (std::size_t i = 0; i < c.kernel_h; ++i)
        for (std::size_t j = 0; j < c.kernel_w; ++j)
          off_[(cb * c.kernel_h + i) * c.kernel_w + j] = static_cast<gather_index>(
              cb * plane + (i * c.dilation_h * wp + j * c.dilation_w) * 4);
    return true;
  }

  std::vector<std::int8_t> w_;
  std::vector<std::int32_t> init_;
  std::vector<float> scale_;
  std::vector<std::uint8_t> x_;
  std::vector<gather_index> base_, off_;
  std::size_t ldw_ = 0, sample_bytes_ = 0;
  bool any_target_ = false;
};

}  // namespace adaquant::detail
