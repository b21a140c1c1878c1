#pragma once
// Quantizer policies: a grid (quant_scheme) plus a rounding policy, fixed at compile time for
// firmware builds (fixed_quantizer, any type modelling QuantizerPolicy). The run-time
// specification of a quantizer, which also says where its parameters vary and how they are
// estimated, is quantizer_spec (range/spec.hpp); quantizer_spec::of<Q>() builds one from a policy.
//
// fixed_quantizer<Bits, Signed, Symmetric, Rounding, Narrow> evaluates in constant expressions:
//   constexpr auto p = q4::params(-1.0f, 1.0f);                  // quant_params
//   constexpr auto table = q4::quantize_table(weights, p);       // std::array<storage_type, N>
//   constexpr auto packed = pack_int4(table);                    // when Bits <= 4 and signed
// Numerics: quant/quant_params.hpp (range -> params), quant/rounding.hpp (real -> grid).

#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/rounding.hpp>
#include <adaquant/quant/scheme.hpp>

#include <array>
#include <concepts>
#include <cstdint>
#include <type_traits>

namespace adaquant {

namespace detail {
// The narrowest standard integer type holding a grid.
template <int Bits, bool Signed>
using storage_for_t =
    std::conditional_t<(Bits <= 8), std::conditional_t<Signed, std::int8_t, std::uint8_t>,
                       std::conditional_t<Signed, std::int16_t, std::uint16_t>>;
}  // namespace detail

template <int Bits, bool Signed, bool Symmetric, RoundingPolicy Rounding = round_pytorch,
          bool Narrow = false>
struct fixed_quantizer {
  static_assert(Bits >= min_bits && Bits <= max_bits, "bits must be in [2, 16]");
  static constexpr quant_scheme scheme{Bits, Signed, Symmetric, Narrow};
  using rounding = Rounding;
  using storage_type = detail::storage_for_t<Bits, Signed>;

  [[nodiscard]] static constexpr quant_params params(float lo, float hi) {
    return params_from_range(scheme, lo, hi);
  }
  [[nodiscard]] static constexpr storage_type quantize(float x, const quant_params& p) {
    const float zf = static_cast<float>(p.zero_point);
    float g = Rounding::to_grid(x, p.scale, p.inv_scale()) + zf;
    g = g < static_cast<float>(p.qmin) ? static_cast<float>(p.qmin) : g;
    g = g > static_cast<float>(p.qmax) ? static_cast<float>(p.qmax) : g;
    if (!(g == g)) detail::fail(errc::non_finite, "fixed_quantizer::quantize: x", "NaN");
    return static_cast<storage_type>(static_cast<std::int32_t>(g));
  }
  [[nodiscard]] static constexpr float dequantize(storage_type q, const quant_params& p) noexcept {
    return (static_cast<float>(q) - static_cast<float>(p.zero_point)) * p.scale;
  }
  template <std::size_t N>
  [[nodiscard]] static constexpr std::array<storage_type, N> quantize_table(
      const std::array<float, N>& values, const quant_params& p) {
    p.validate("fixed_quantizer::quantize_table: params");
    std::array<storage_type, N> out{};
    for (std::size_t i = 0; i < N; ++i) out[i] = quantize(values[i], p);
    return out;
  }
  // The smallest and largest value of a table, as a range for params().
  template <std::size_t N>
  [[nodiscard]] static constexpr std::array<float, 2> table_range(
      const std::array<float, N>& values) {
    static_assert(N > 0, "empty table");
    float lo = values[0], hi = values[0];
    for (float v : values) {
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    return {lo, hi};
  }
};

// What an algorithm needs of a quantizer policy type.
template <class Q>
concept QuantizerPolicy = requires {
  { Q::scheme } -> std::convertible_to<quant_scheme>;
  typename Q::rounding;
  typename Q::storage_type;
}
&&RoundingPolicy<typename Q::rounding>;

// Common compile-time policies.
using int8_symmetric_quantizer = fixed_quantizer<8, true, true>;
using uint8_affine_quantizer = fixed_quantizer<8, false, false>;
using int4_symmetric_quantizer = fixed_quantizer<4, true, true>;

}  // namespace adaquant
