#pragma once
// Quantization parameters and the PyTorch observer formulas that derive them from a range.
//
//   real_value = scale * (quantized_value - zero_point),   quantized_value in [qmin, qmax]
//
// params_from_range(scheme, lo, hi), in float32 like torch.ao.quantization's _calculate_qparams:
//   lo' = min(lo, 0), hi' = max(hi, 0)              (the range always contains real 0)
//   symmetric:  scale = max(-lo', hi') / ((qmax - qmin) / 2)
//               zero_point = 0 (signed) or (qmin + qmax) / 2 (unsigned: 127 for 8 bits, as PyTorch
//               picks for an explicit quant_min/quant_max; its default quint8 range picks 128)
//   affine:     scale = (hi' - lo') / (qmax - qmin)
//               zero_point = clamp(qmin - round_half_even(lo' / scale), qmin, qmax)
//   scale = max(scale, FLT_EPSILON)
// Errors: non-finite lo/hi (errc::non_finite); hi < lo (errc::invalid_argument); an all-zero range
// lo' == hi' == 0 (errc::invalid_argument) unless zero_range::use_epsilon asks for PyTorch's
// behaviour (scale = FLT_EPSILON, so every value maps to the zero point).

#include <adaquant/core/error.hpp>
#include <adaquant/core/numeric.hpp>
#include <adaquant/quant/rounding.hpp>
#include <adaquant/quant/scheme.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

struct quant_params {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
  std::int32_t qmin = -128;
  std::int32_t qmax = 127;

  // The reciprocal every multiply-based policy uses, computed in float32 as PyTorch does.
  [[nodiscard]] constexpr float inv_scale() const noexcept { return 1.0f / scale; }

  // Throws unless scale is finite and > 0 with a finite reciprocal, qmin < qmax, both within
  // int32 range of a 16-bit grid, and qmin <= zero_point <= qmax.
  constexpr void validate(const char* where = "quant_params") const;
  friend constexpr bool operator==(const quant_params&, const quant_params&) = default;
};

// Per-channel parameters: one scale and zero point per index along `axis`.
struct channel_params {
  std::vector<float> scale;
  std::vector<std::int32_t> zero_point;
  std::int32_t qmin = -128;
  std::int32_t qmax = 127;
  std::size_t axis = 0;

  [[nodiscard]] std::size_t channels() const noexcept { return scale.size(); }
  [[nodiscard]] quant_params channel(std::size_t c) const {
    return {scale[c], zero_point[c], qmin, qmax};
  }
  void validate(const char* where = "channel_params") const;
  friend bool operator==(const channel_params&, const channel_params&) = default;
};

// Per-block parameters (granularity::per_block, quant/scheme.hpp, has the maths): one scale and
// zero point per block of block_size consecutive indices along `axis`, for every index of the
// other axes. scale and zero_point hold the tensor's shape with extent(axis) replaced by
// ceil(extent / block_size), in the tensor's memory order (block_layout, core/tensor_shape.hpp):
// for a row-major weight [out, in] and axis 1, scale[o * ceil(in / block_size) + j] is block j of
// row o, as ONNX DequantizeLinear's `y_scale` with `axis` = 1 and `block_size`.
struct block_params {
  std::vector<float> scale;
  std::vector<std::int32_t> zero_point;
  std::int32_t qmin = -128;
  std::int32_t qmax = 127;
  std::size_t axis = 1;
  std::size_t block_size = 32;

  [[nodiscard]] std::size_t blocks() const noexcept { return scale.size(); }
  [[nodiscard]] quant_params block(std::size_t j) const {
    return {scale[j], zero_point[j], qmin, qmax};
  }
  void validate(const char* where = "block_params") const;
  friend bool operator==(const block_params&, const block_params&) = default;
};

enum class zero_range { reject, use_epsilon };

namespace detail {
inline std::string fmt_float(float v) { return std::to_string(v); }

constexpr void validate_grid(std::int32_t qmin, std::int32_t qmax, const char* where) {
  if (!(qmin < qmax))
    fail(errc::invalid_argument, where,
         "qmin must be < qmax, got qmin=" + std::to_string(qmin) + " qmax=" + std::to_string(qmax));
  if (!(qmin >= -65536 && qmax <= 65535))
    fail(errc::invalid_argument, where,
         "[qmin, qmax] must fit a 16-bit grid, got [" + std::to_string(qmin) + ", " +
             std::to_string(qmax) + "]");
}

constexpr void validate_scale_zp(float scale, std::int32_t zp, std::int32_t qmin, std::int32_t qmax,
                                 const char* where) {
  // NaN fails every comparison, so `!(scale > 0)` also rejects NaN.
  if (!(scale > 0.0f))
    fail(errc::invalid_argument, where, "scale must be > 0, got " + fmt_float(scale));
  if (!(scale <= std::numeric_limits<float>::max()))
    fail(errc::non_finite, where, "scale must be finite, got " + fmt_float(scale));
  if (!(1.0f / scale <= std::numeric_limits<float>::max()))
    fail(errc::invalid_argument, where,
         "scale " + fmt_float(scale) + " is too small: its reciprocal overflows float");
  if (!(zp >= qmin && zp <= qmax))
    fail(errc::invalid_argument, where,
         "zero_point " + std::to_string(zp) + " is outside [qmin, qmax] = [" +
             std::to_string(qmin) + ", " + std::to_string(qmax) + "]");
}
}  // namespace detail

constexpr void quant_params::validate(const char* where) const {
  detail::validate_grid(qmin, qmax, where);
  detail::validate_scale_zp(scale, zero_point, qmin, qmax, where);
}

inline void channel_params::validate(const char* where) const {
  detail::validate_grid(qmin, qmax, where);
  if (scale.empty()) detail::fail(errc::empty_input, where, "no channels");
  if (zero_point.size() != scale.size())
    detail::fail(errc::shape_mismatch, where,
                 "zero_point has " + std::to_string(zero_point.size()) + " entries, scale has " +
                     std::to_string(scale.size()));
  for (std::size_t c = 0; c < scale.size(); ++c)
    detail::validate_scale_zp(scale[c], zero_point[c], qmin, qmax, where);
}

inline void block_params::validate(const char* where) const {
  const std::string w(where);
  if (!(block_size >= 1))
    detail::fail(errc::invalid_argument, w + ".block_size", "block size must be >= 1, got 0");
  detail::validate_grid(qmin, qmax, where);
  if (scale.empty()) detail::fail(errc::empty_input, where, "no blocks");
  if (zero_point.size() != scale.size())
    detail::fail(errc::shape_mismatch, where,
                 "zero_point has " + std::to_string(zero_point.size()) + " entries, scale has " +
                     std::to_string(scale.size()));
  for (std::size_t j = 0; j < scale.size(); ++j)
    detail::validate_scale_zp(scale[j], zero_point[j], qmin, qmax, where);
}

// Parameters for the range [lo, hi] (see the file comment for the formulas and errors).
constexpr quant_params params_from_range(const quant_scheme& scheme, float lo, float hi,
                                         zero_range on_zero = zero_range::reject) {
  constexpr const char* where = "params_from_range";
  scheme.validate("params_from_range: scheme.bits");
  if (!(detail::is_finite(lo) && detail::is_finite(hi)))
    detail::fail(
        errc::non_finite, where,
        "range must be finite, got [" + detail::fmt_float(lo) + ", " + detail::fmt_float(hi) + "]");
  if (!(lo <= hi))
    detail::fail(
        errc::invalid_argument, where,
        "range is negative: lo " + detail::fmt_float(lo) + " > hi " + detail::fmt_float(hi));
  const float lo0 = lo < 0.0f ? lo : 0.0f;
  const float hi0 = hi > 0.0f ? hi : 0.0f;
  if (lo0 == hi0 && on_zero == zero_range::reject)
    detail::fail(
        errc::invalid_argument, where,
        "range is zero ([0, 0]): every value is 0; pass zero_range::use_epsilon to accept");
  const std::int32_t qmin = scheme.qmin();
  const std::int32_t qmax = scheme.qmax();
  constexpr float eps = std::numeric_limits<float>::epsilon();
  quant_params p{1.0f, 0, qmin, qmax};
  if (scheme.symmetric) {
    const float m = -lo0 > hi0 ? -lo0 : hi0;
    const float s = m / (static_cast<float>(qmax - qmin) / 2.0f);
    p.scale = s > eps ? s : eps;
    p.zero_point = scheme.symmetric_zero_point();
  } else {
    const float s = (hi0 - lo0) / static_cast<float>(qmax - qmin);
    p.scale = s > eps ? s : eps;
    const float z = static_cast<float>(qmin) - detail::round_half_even(lo0 / p.scale);
    const float zc = z < static_cast<float>(qmin)   ? static_cast<float>(qmin)
                     : z > static_cast<float>(qmax) ? static_cast<float>(qmax)
                                                    : z;
    p.zero_point = static_cast<std::int32_t>(zc);
  }
  return p;
}

namespace detail {
// params_from_range for every (lo[i], hi[i]) into scale and zero_point; `fn` names the caller and
// `what` the items ("channels", "blocks").
inline void params_from_ranges(const quant_scheme& scheme, std::span<const float> lo,
                               std::span<const float> hi, zero_range on_zero, const std::string& fn,
                               const char* what, std::vector<float>& scale,
                               std::vector<std::int32_t>& zero_point) {
  if (lo.size() != hi.size())
    fail(errc::shape_mismatch, fn + ": hi",
         "lo has " + std::to_string(lo.size()) + " " + what + ", hi has " +
             std::to_string(hi.size()));
  if (lo.empty()) fail(errc::empty_input, fn + ": lo", std::string("no ") + what);
  scale.resize(lo.size());
  zero_point.resize(lo.size());
  for (std::size_t i = 0; i < lo.size(); ++i) {
    const quant_params p = params_from_range(scheme, lo[i], hi[i], on_zero);
    scale[i] = p.scale;
    zero_point[i] = p.zero_point;
  }
}
}  // namespace detail

// Per-channel parameters from per-channel ranges (lo[c], hi[c]) along `axis`.
inline channel_params channel_params_from_ranges(const quant_scheme& scheme,
                                                 std::span<const float> lo,
                                                 std::span<const float> hi, std::size_t axis,
                                                 zero_range on_zero = zero_range::reject) {
  channel_params out;
  out.qmin = scheme.qmin();
  out.qmax = scheme.qmax();
  out.axis = axis;
  detail::params_from_ranges(scheme, lo, hi, on_zero, "channel_params_from_ranges", "channels",
                             out.scale, out.zero_point);
  return out;
}

// Per-block parameters from per-block ranges (lo[j], hi[j]), in the order of block_params.
inline block_params block_params_from_ranges(const quant_scheme& scheme, std::span<const float> lo,
                                             std::span<const float> hi, std::size_t axis,
                                             std::size_t block_size,
                                             zero_range on_zero = zero_range::reject) {
  if (!(block_size >= 1))
    detail::fail(errc::invalid_argument, "block_params_from_ranges: block_size",
                 "block size must be >= 1, got 0");
  block_params out;
  out.qmin = scheme.qmin();
  out.qmax = scheme.qmax();
  out.axis = axis;
  out.block_size = block_size;
  detail::params_from_ranges(scheme, lo, hi, on_zero, "block_params_from_ranges", "blocks",
                             out.scale, out.zero_point);
  return out;
}

}  // namespace adaquant
