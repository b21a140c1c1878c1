#pragma once
// quant_scheme: the integer grid of a uniform quantizer.
//
//   signed:   [qmin, qmax] = [-2^(bits-1), 2^(bits-1) - 1]   (narrow_range: qmin = -2^(bits-1) + 1)
//   unsigned: [qmin, qmax] = [0, 2^bits - 1]                  (narrow_range: qmax = 2^bits - 2)
//
// symmetric: zero_point is fixed (symmetric_zero_point(): 0 when signed, the grid's lower midpoint
// floor((qmin + qmax) / 2) when unsigned, 127 at 8 bits as PyTorch picks it); the
// range is [-max|x|, max|x|]; asymmetric (affine): zero_point is chosen so that [min, max] maps
// onto [qmin, qmax] with real 0 exactly representable. bits is in [2, 16].

#include <adaquant/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace adaquant {

inline constexpr int min_bits = 2;
inline constexpr int max_bits = 16;

struct quant_scheme {
  int bits = 8;
  bool is_signed = true;
  bool symmetric = true;
  bool narrow_range = false;

  [[nodiscard]] constexpr std::int32_t qmin() const noexcept {
    if (!is_signed) return 0;
    return -(std::int32_t{1} << (bits - 1)) + (narrow_range ? 1 : 0);
  }
  [[nodiscard]] constexpr std::int32_t qmax() const noexcept {
    if (is_signed) return (std::int32_t{1} << (bits - 1)) - 1;
    return (std::int32_t{1} << bits) - 1 - (narrow_range ? 1 : 0);
  }
  // The zero point of a symmetric grid, the one definition every component uses: 0 when signed,
  // floor((qmin + qmax) / 2) when unsigned (127 at 8 bits, 7 at 4 bits).
  [[nodiscard]] constexpr std::int32_t symmetric_zero_point() const noexcept {
    return is_signed ? 0 : (qmin() + qmax()) / 2;
  }
  // Throws errc::invalid_argument (naming `where`) when bits is outside [2, 16].
  constexpr void validate(const char* where = "quant_scheme: bits") const {
    if (!(bits >= min_bits && bits <= max_bits))
      detail::fail(errc::invalid_argument, where,
                   "bits must be in [2, 16], got " + std::to_string(bits));
  }
  friend constexpr bool operator==(const quant_scheme&, const quant_scheme&) = default;
};

// Granularity of the parameters: one set for the tensor, one per index along an axis, or one per
// block of consecutive indices along an axis.
//
// per_block(axis, block_size): blocks of block_size consecutive indices along `axis`, separately
// for every index of the other axes (ONNX opset-21 blocked QuantizeLinear/DequantizeLinear with
// the same `axis` and `block_size`). For x of shape [d_0, ..., d_axis, ..., d_n], the parameters
// (scale, zero point) form a tensor of x's shape with d_axis replaced by ceil(d_axis / block_size),
// stored in x's memory order (block_params, quant/quant_params.hpp); the last block along the axis
// is partial when d_axis % block_size != 0 (ONNX allows it). A weight W [out, in] blocked along
// its input dimension is per_block(1, B): scales [out, ceil(in / B)], block (o, j) holding
// W[o, j B .. min((j + 1) B, in) - 1]. Every element of a block shares the block's scale s and
// zero point z, and is rounded and clamped exactly as per tensor:
//   g = to_grid(x; s) + z,  q = clamp(g, qmin, qmax),  x_hat = (q - z) s,  mask = [qmin<=g<=qmax]
// Gradients (kernels/fake_quant_backward.hpp): dx_hat/dx = mask (straight through); the LSQ terms
// dL/ds = sum dL/dx_hat * (x_hat - mask x) / s and dL/dz = sum dL/dx_hat * (mask - 1) s are summed
// over the elements of each block. block_size is any integer >= 1 (ONNX accepts any positive
// size; runtimes' fused kernels may want 16, 32, 64 or 128); block_size >= d_axis gives one block
// per index of the other axes, the same numbers as per_channel along those axes. The kernels are
// fastest when `axis` is the innermost (stride-1) axis: each block is then a contiguous run.
struct granularity {
  enum class kind { per_tensor, per_channel, per_block } type = kind::per_tensor;
  std::size_t axis = 0;        // per_channel: the channel axis; per_block: the blocked axis
  std::size_t block_size = 0;  // per_block only: indices per block along `axis`, >= 1
  [[nodiscard]] static constexpr granularity per_tensor() noexcept { return {}; }
  [[nodiscard]] static constexpr granularity per_channel(std::size_t axis) noexcept {
    return {kind::per_channel, axis, 0};
  }
  // Throws errc::invalid_argument for block_size 0.
  [[nodiscard]] static constexpr granularity per_block(std::size_t axis, std::size_t block_size) {
    granularity g{kind::per_block, axis, block_size};
    g.validate("granularity::per_block: block_size");
    return g;
  }
  // Throws errc::invalid_argument (naming `where`) for a per-block granularity whose block_size
  // is 0.
  constexpr void validate(const char* where = "granularity: block_size") const {
    if (type == kind::per_block && !(block_size >= 1))
      detail::fail(errc::invalid_argument, where, "block size must be >= 1, got 0");
  }
  friend constexpr bool operator==(const granularity&, const granularity&) = default;
};

// Common schemes.
inline constexpr quant_scheme int8_symmetric{8, true, true, false};
inline constexpr quant_scheme uint8_affine{8, false, false, false};

}  // namespace adaquant
