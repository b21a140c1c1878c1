#pragma once
// int4 storage: two 4-bit values per byte, element 2i in the low nibble and element 2i+1 in the
// high nibble (the layout of ONNX's INT4/UINT4 and of gemmlowp-style packed weights). Signed
// values are two's complement nibbles in [-8, 7]; unsigned in [0, 15]. An odd count leaves the
// last high nibble 0.

#include <adaquant/core/error.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace adaquant {

[[nodiscard]] constexpr std::size_t int4_packed_size(std::size_t n) noexcept { return (n + 1) / 2; }

// Packs values already on a 4-bit grid (caller guarantees the range).
constexpr void pack_int4(std::span<const std::int8_t> values, std::span<std::uint8_t> packed) {
  if (!(packed.size() == int4_packed_size(values.size())))
    detail::fail(errc::shape_mismatch, "pack_int4: packed",
                 "needs " + std::to_string(int4_packed_size(values.size())) + " bytes, got " +
                     std::to_string(packed.size()));
  for (std::size_t i = 0; i < packed.size(); ++i) {
    const auto lo = static_cast<std::uint8_t>(values[2 * i]) & 0x0Fu;
    const auto hi =
        2 * i + 1 < values.size() ? static_cast<std::uint8_t>(values[2 * i + 1]) & 0x0Fu : 0u;
    packed[i] = static_cast<std::uint8_t>(lo | (hi << 4));
  }
}

constexpr void unpack_int4(std::span<const std::uint8_t> packed, std::span<std::int8_t> values,
                           bool is_signed) {
  if (!(packed.size() == int4_packed_size(values.size())))
    detail::fail(errc::shape_mismatch, "unpack_int4: packed",
                 "needs " + std::to_string(int4_packed_size(values.size())) + " bytes, got " +
                     std::to_string(packed.size()));
  for (std::size_t i = 0; i < values.size(); ++i) {
    const unsigned nib = (packed[i / 2] >> ((i % 2) * 4)) & 0x0Fu;
    values[i] = static_cast<std::int8_t>(is_signed && nib >= 8 ? static_cast<int>(nib) - 16
                                                               : static_cast<int>(nib));
  }
}

template <std::size_t N>
[[nodiscard]] constexpr std::array<std::uint8_t, (N + 1) / 2> pack_int4(
    const std::array<std::int8_t, N>& values) {
  std::array<std::uint8_t, (N + 1) / 2> out{};
  pack_int4(std::span<const std::int8_t>(values), std::span<std::uint8_t>(out));
  return out;
}

}  // namespace adaquant
