#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <limits>

#include "golden/golden_vectors.inc"

namespace aq = adaquant;

TEST_CASE("grids: qmin/qmax for signed, unsigned and narrow schemes") {
  CHECK(aq::quant_scheme{8, true, true, false}.qmin() == -128);
  CHECK(aq::quant_scheme{8, true, true, false}.qmax() == 127);
  CHECK(aq::quant_scheme{8, true, true, true}.qmin() == -127);
  CHECK(aq::quant_scheme{4, false, false, false}.qmax() == 15);
  CHECK(aq::quant_scheme{4, false, false, true}.qmax() == 14);
  CHECK(aq::quant_scheme{2, true, true, false}.qmin() == -2);
  CHECK(aq::quant_scheme{16, false, false, false}.qmax() == 65535);
}

TEST_CASE("params_from_range reproduces torch MinMaxObserver.calculate_qparams") {
  for (const auto& c : golden::observer_cases) {
    const float lo = std::bit_cast<float>(c.lo_bits), hi = std::bit_cast<float>(c.hi_bits);
    INFO("bits " << c.bits << " signed " << c.is_signed << " sym " << c.symmetric << " [" << lo
                 << ", " << hi << "]");
    const auto p = aq::params_from_range({c.bits, c.is_signed, c.symmetric, false}, lo, hi);
    CHECK(std::bit_cast<std::uint32_t>(p.scale) == c.scale_bits);
    CHECK(p.zero_point == c.zero_point);
  }
}

TEST_CASE("params_from_range: the range always contains 0, and 0 is exactly representable") {
  const auto p = aq::params_from_range({4, false, false, false}, 0.25f, 0.75f);
  CHECK(p.zero_point == 0);
  const auto q = aq::params_from_range({8, false, false, false}, -1.0f, 3.0f);
  std::vector<float> x{0.0f}, y{1.0f};
  aq::fake_quant_per_tensor(aq::tensor_view<const float>(x.data(), {1}),
                            aq::tensor_view<float>(y.data(), {1}), q);
  CHECK(y[0] == 0.0f);
}

TEST_CASE("params_from_range rejects bad ranges and bits with a clear error") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  auto code_of = [](auto f) {
    try {
      f();
    } catch (const aq::error& e) {
      return e.code();
    }
    FAIL("no error thrown");
    return aq::errc::corrupt_data;
  };
  CHECK(code_of([&] { (void)aq::params_from_range({}, nan, 1.0f); }) == aq::errc::non_finite);
  CHECK(code_of([&] { (void)aq::params_from_range({}, -1.0f, inf); }) == aq::errc::non_finite);
  CHECK(code_of([&] { (void)aq::params_from_range({}, 2.0f, 1.0f); }) ==
        aq::errc::invalid_argument);
  CHECK(code_of([&] { (void)aq::params_from_range({}, 0.0f, 0.0f); }) ==
        aq::errc::invalid_argument);
  CHECK(code_of([&] {
          (void)aq::params_from_range({17, true, true, false}, 0.f, 1.f);
        }) == aq::errc::invalid_argument);
  CHECK(code_of([&] {
          (void)aq::params_from_range({1, true, true, false}, 0.f, 1.f);
        }) == aq::errc::invalid_argument);
  CHECK_THROWS_WITH(aq::params_from_range({17, true, true, false}, 0.f, 1.f),
                    Catch::Contains("bits") && Catch::Contains("17"));
  CHECK_THROWS_WITH(aq::params_from_range({}, 2.0f, 1.0f), Catch::Contains("negative"));
  CHECK_THROWS_WITH(aq::params_from_range({}, 0.0f, 0.0f), Catch::Contains("zero"));
  // PyTorch's behaviour on request: scale = FLT_EPSILON.
  const auto p = aq::params_from_range({}, 0.0f, 0.0f, aq::zero_range::use_epsilon);
  CHECK(p.scale == std::numeric_limits<float>::epsilon());
}

TEST_CASE("quant_params::validate names the broken rule") {
  CHECK_THROWS_WITH((aq::quant_params{0.0f, 0, -8, 7}.validate()),
                    Catch::Contains("scale must be > 0"));
  CHECK_THROWS_WITH((aq::quant_params{-1.0f, 0, -8, 7}.validate()),
                    Catch::Contains("scale must be > 0"));
  CHECK_THROWS_WITH(
      (aq::quant_params{std::numeric_limits<float>::quiet_NaN(), 0, -8, 7}.validate()),
      Catch::Contains("scale"));
  CHECK_THROWS_WITH((aq::quant_params{std::numeric_limits<float>::infinity(), 0, -8, 7}.validate()),
                    Catch::Contains("finite"));
  CHECK_THROWS_WITH((aq::quant_params{1e-39f, 0, -8, 7}.validate()), Catch::Contains("reciprocal"));
  CHECK_THROWS_WITH((aq::quant_params{1.0f, 0, 7, 7}.validate()),
                    Catch::Contains("qmin must be < qmax"));
  CHECK_THROWS_WITH((aq::quant_params{1.0f, 9, -8, 7}.validate()), Catch::Contains("zero_point 9"));
  CHECK_NOTHROW(aq::quant_params{0.5f, 3, -8, 7}.validate());
}

TEST_CASE("channel_params_from_ranges: one PyTorch formula per channel, sizes checked") {
  const std::vector<float> lo{-1.0f, -2.0f, 0.0f}, hi{1.0f, 0.5f, 4.0f};
  const auto p = aq::channel_params_from_ranges({8, true, true, false}, lo, hi, 1);
  REQUIRE(p.channels() == 3);
  CHECK(p.axis == 1);
  for (std::size_t c = 0; c < 3; ++c)
    CHECK(p.channel(c) == aq::params_from_range({8, true, true, false}, lo[c], hi[c]));
  const std::vector<float> short_hi{1.0f};
  CHECK_THROWS_AS(aq::channel_params_from_ranges({}, lo, short_hi, 0), aq::error);
  CHECK_THROWS_WITH(aq::channel_params_from_ranges({}, lo, short_hi, 0), Catch::Contains("hi"));
}
