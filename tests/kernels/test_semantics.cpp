// What the kernels promise beyond twin equality: saturation, NaN handling, the STE mask, in-place
// use, int4 storage, and a clear error for every kind of bad argument.
#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace aq = adaquant;

namespace {
constexpr float inf = std::numeric_limits<float>::infinity();
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

template <class F>
aq::errc error_code(F&& f) {
  try {
    f();
  } catch (const aq::error& e) {
    return e.code();
  }
  FAIL("expected adaquant::error");
  return aq::errc::corrupt_data;
}
}  // namespace

TEST_CASE("+-inf saturate to the ends of the grid with mask 0; NaN stays NaN with mask 0") {
  const aq::quant_params p{0.5f, 1, -8, 7};
  std::vector<float> x{inf, -inf, qnan, 1.0f, 100.0f}, y(5);
  std::vector<std::uint8_t> m(5);
  aq::fake_quant_per_tensor(x, y, p, m);
  CHECK(y[0] == (7 - 1) * 0.5f);
  CHECK(y[1] == (-8 - 1) * 0.5f);
  CHECK(std::isnan(y[2]));
  CHECK(y[3] == 1.0f);
  CHECK(y[4] == 3.0f);
  CHECK(m == std::vector<std::uint8_t>{0, 0, 0, 1, 0});
}

TEST_CASE("quantize saturates +-inf and rejects NaN with errc::non_finite") {
  const aq::quant_params p{0.5f, 0, -128, 127};
  std::vector<float> x{inf, -inf, 3.0f};
  std::vector<std::int8_t> q(3);
  aq::quantize_per_tensor(x, q, p);
  CHECK(q == std::vector<std::int8_t>{127, -128, 6});
  std::vector<float> bad(40, 1.0f);
  bad[33] = qnan;
  std::vector<std::int8_t> qb(40);
  CHECK(error_code([&] { aq::quantize_per_tensor(bad, qb, p); }) == aq::errc::non_finite);
  CHECK_THROWS_WITH(aq::quantize_per_tensor(bad, qb, p), Catch::Contains("NaN"));
}

TEST_CASE("fake quant in place equals out of place") {
  std::vector<float> x(100);
  for (std::size_t i = 0; i < x.size(); ++i) x[i] = std::sin(static_cast<float>(i)) * 3.0f;
  std::vector<float> y(x.size());
  const aq::quant_params p{0.1f, 0, -8, 7};
  aq::fake_quant_per_tensor(x, y, p);
  aq::fake_quant_per_tensor(x, x, p);
  CHECK(x == y);
}

TEST_CASE("int4 packed quantize/dequantize equals fake quant") {
  std::vector<float> x{-1.0f, -0.3f, 0.0f, 0.26f, 0.9f, 2.0f, -2.0f};
  const aq::quant_params p{0.125f, 0, -8, 7};
  std::vector<std::uint8_t> packed(aq::int4_packed_size(x.size()));
  aq::quantize_int4_per_tensor(x, packed, p);
  std::vector<float> back(x.size()), fq(x.size());
  aq::dequantize_int4_per_tensor(packed, back, p);
  aq::fake_quant_per_tensor(x, fq, p);
  CHECK(back == fq);
  const aq::quant_params p8{0.125f, 0, -128, 127};
  CHECK(error_code([&] { aq::quantize_int4_per_tensor(x, packed, p8); }) ==
        aq::errc::invalid_argument);
  std::vector<std::uint8_t> small(2);
  CHECK(error_code([&] { aq::quantize_int4_per_tensor(x, small, p); }) == aq::errc::shape_mismatch);
}

TEST_CASE("kernels reject bad arguments with errors that name them") {
  std::vector<float> x(10, 1.0f), y(10), y9(9);
  std::vector<std::uint8_t> m3(3);
  const aq::quant_params ok{0.1f, 0, -8, 7};
  CHECK(error_code([&] { aq::fake_quant_per_tensor(x, y9, ok); }) == aq::errc::shape_mismatch);
  CHECK_THROWS_WITH(aq::fake_quant_per_tensor(x, y9, ok), Catch::Contains("output"));
  CHECK(error_code([&] { aq::fake_quant_per_tensor(x, y, ok, m3); }) == aq::errc::shape_mismatch);
  CHECK_THROWS_WITH(aq::fake_quant_per_tensor(x, y, ok, m3), Catch::Contains("ste_mask"));
  CHECK(error_code([&] {
          aq::fake_quant_per_tensor(x, y, aq::quant_params{0.0f, 0, -8, 7});
        }) == aq::errc::invalid_argument);
  CHECK(error_code([&] {
          aq::fake_quant_per_tensor(x, y, aq::quant_params{-0.1f, 0, -8, 7});
        }) == aq::errc::invalid_argument);
  CHECK(error_code([&] {
          aq::fake_quant_per_tensor(x, y, aq::quant_params{inf, 0, -8, 7});
        }) == aq::errc::non_finite);
  CHECK(error_code([&] {
          aq::fake_quant_per_tensor(x, y, aq::quant_params{0.1f, 0, 7, -8});
        }) == aq::errc::invalid_argument);
  // Same sizes but different shapes.
  CHECK(error_code([&] {
          aq::fake_quant_per_tensor(aq::tensor_view<const float>(x.data(), {2, 5}),
                                    aq::tensor_view<float>(y.data(), {5, 2}), ok);
        }) == aq::errc::shape_mismatch);

  aq::channel_params cp;
  cp.scale = {0.1f, 0.2f};
  cp.zero_point = {0, 0};
  cp.qmin = -8;
  cp.qmax = 7;
  cp.axis = 0;
  const aq::tensor_view<const float> x25(x.data(), {2, 5});
  const aq::tensor_view<float> y25(y.data(), {2, 5});
  CHECK_NOTHROW(aq::fake_quant_per_channel(x25, y25, cp));
  cp.axis = 1;  // extent 5, 2 parameters
  CHECK(error_code([&] { aq::fake_quant_per_channel(x25, y25, cp); }) == aq::errc::shape_mismatch);
  CHECK_THROWS_WITH(aq::fake_quant_per_channel(x25, y25, cp),
                    Catch::Contains("channel parameters"));
  cp.axis = 2;
  CHECK(error_code([&] { aq::fake_quant_per_channel(x25, y25, cp); }) ==
        aq::errc::invalid_argument);
  CHECK_THROWS_WITH(aq::fake_quant_per_channel(x25, y25, cp), Catch::Contains("axis"));
  cp.axis = 0;
  cp.zero_point = {0};
  CHECK(error_code([&] { aq::fake_quant_per_channel(x25, y25, cp); }) == aq::errc::shape_mismatch);
  cp.zero_point = {0, 0};
  cp.scale = {0.1f, std::numeric_limits<float>::quiet_NaN()};
  CHECK(error_code([&] { aq::fake_quant_per_channel(x25, y25, cp); }) ==
        aq::errc::invalid_argument);

  // A 16-bit grid does not fit int8 storage.
  std::vector<std::int8_t> q(10);
  CHECK(error_code([&] {
          aq::quantize_per_tensor(x, q, aq::quant_params{0.1f, 0, -32768, 32767});
        }) == aq::errc::invalid_argument);
  CHECK_THROWS_WITH(aq::quantize_per_tensor(x, q, aq::quant_params{0.1f, 0, -32768, 32767}),
                    Catch::Contains("does not fit"));
}
