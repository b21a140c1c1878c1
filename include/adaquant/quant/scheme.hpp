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

// Granularity of the parameters: one set for the tensor, or one per index along an axis.
struct granularity {
  enum class kind { per_tensor, per_channel } type = kind::per_tensor;
  std::size_t axis = 0;
  [[nodiscard]] static constexpr granularity per_tensor() noexcept { return {}; }
  [[nodiscard]] static constexpr granularity per_channel(std::size_t axis) noexcept {
    return {kind::per_channel, axis};
  }
  friend constexpr bool operator==(const granularity&, const granularity&) = default;
};

// Common schemes.
inline constexpr quant_scheme int8_symmetric{8, true, true, false};
inline constexpr quant_scheme uint8_affine{8, false, false, false};

}  // namespace adaquant
