// Compile-time quantization for firmware: parameters and constant weight tables in constexpr.
#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>

#include <catch2/catch.hpp>

#include <array>

namespace aq = adaquant;

namespace {
using q4 = aq::fixed_quantizer<4, true, true>;
using u8 = aq::fixed_quantizer<8, false, false>;
constexpr std::array<float, 5> weights{-0.9f, -0.2f, 0.0f, 0.31f, 0.75f};
constexpr auto range = q4::table_range(weights);
constexpr auto p4 = q4::params(range[0], range[1]);
constexpr auto table4 = q4::quantize_table(weights, p4);
constexpr auto packed4 = aq::pack_int4(table4);

static_assert(aq::QuantizerPolicy<q4>);
static_assert(aq::QuantizerPolicy<u8>);
static_assert(!aq::QuantizerPolicy<int>);
static_assert(std::is_same_v<q4::storage_type, std::int8_t>);
static_assert(std::is_same_v<aq::fixed_quantizer<12, false, false>::storage_type, std::uint16_t>);
static_assert(p4.zero_point == 0 && p4.qmin == -8 && p4.qmax == 7);
static_assert(table4[2] == 0);
static_assert(table4[0] == -8 && table4[4] == 6);  // -0.9 / 0.12 = -7.5: a tie, to even
static_assert(packed4.size() == 3);
static_assert(aq::detail::round_half_even_constexpr(2.5f) == 2.0f);
static_assert(aq::detail::round_half_even_constexpr(-3.5f) == -4.0f);
static_assert(aq::detail::round_half_away(2.5f) == 3.0f);
static_assert(aq::detail::round_half_away(-2.5f) == -3.0f);
}  // namespace

TEST_CASE("constexpr tables equal the run-time kernels") {
  std::vector<float> x(weights.begin(), weights.end());
  std::vector<std::int8_t> q(x.size());
  aq::quantize_per_tensor(x, q, p4);
  for (std::size_t i = 0; i < x.size(); ++i) CHECK(q[i] == table4[i]);
  // The run-time parameter computation gives the same parameters.
  CHECK(aq::params_from_range(q4::scheme, range[0], range[1]) == p4);
}

TEST_CASE("constexpr round-half-even agrees with nearbyint on every kind of value") {
  for (float v : {0.5f, 1.5f, -0.5f, -1.5f, 2.4999998f, 1e7f + 0.5f, 8388607.5f, 16777216.0f, -0.0f,
                  0.0f, 3.0f, 1e-40f}) {
    CHECK(aq::detail::round_half_even_constexpr(v) == std::nearbyint(v));
    CHECK(std::signbit(aq::detail::round_half_even_constexpr(v)) ==
          std::signbit(std::nearbyint(v)));
  }
}

TEST_CASE("int4 packing: low nibble first, signed values sign-extended on unpack") {
  const std::array<std::int8_t, 5> v{-8, 7, -1, 0, 3};
  const auto packed = aq::pack_int4(v);
  CHECK(packed[0] == 0x78);
  CHECK(packed[1] == 0x0F);
  CHECK(packed[2] == 0x03);
  std::array<std::int8_t, 5> back{};
  aq::unpack_int4(packed, back, true);
  CHECK(back == v);
  std::array<std::uint8_t, 2> wrong{};
  CHECK_THROWS_AS(aq::unpack_int4(wrong, back, true), aq::error);
}

TEST_CASE("fixed_quantizer saturates +-inf and rejects NaN") {
  CHECK(q4::quantize(std::numeric_limits<float>::infinity(), p4) == 7);
  CHECK(q4::quantize(-std::numeric_limits<float>::infinity(), p4) == -8);
  CHECK_THROWS_AS(q4::quantize(std::numeric_limits<float>::quiet_NaN(), p4), aq::error);
}
