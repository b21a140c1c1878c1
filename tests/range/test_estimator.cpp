#include <adaquant/adapters/std.hpp>
#include <adaquant/range/estimator.hpp>

#include <limits>

#include "range_test_util.hpp"

using namespace adaquant;
using range_test::require_error;

namespace {
constexpr quant_scheme int4_sym{4, true, true, false};
}

TEST_CASE("estimate_params dispatches to each estimator", "[range][estimator]") {
  const auto x = range_test::gaussian(10'000, 60, 0.8f, 0.1f);
  const auto g = granularity::per_tensor();
  for (const auto& scheme : {int4_sym, uint8_affine}) {
    CHECK(std::get<quant_params>(estimate_params(x, scheme, g, range_method::min_max)) ==
          params_for(scheme, min_max(x)));
    estimate_options o;
    o.percentile = 99.9;
    const clipping clip = scheme.symmetric ? clipping::symmetric : clipping::asymmetric;
    CHECK(std::get<quant_params>(estimate_params(x, scheme, g, range_method::percentile, o)) ==
          params_for(scheme, percentile_range(x, 99.9, clip)));
    CHECK(std::get<quant_params>(estimate_params(x, scheme, g, range_method::mse)) ==
          mse_search(x, scheme).params);
    o.rounding = rounding_mode::onnx;
    CHECK(estimate_tensor_params(x, scheme, range_method::mse, o) ==
          mse_search<round_onnx>(x, scheme).params);
  }
}

TEST_CASE("estimate_params per channel returns channel_params", "[range][estimator]") {
  const std::size_t rows = 6, cols = 500;
  const auto x = range_test::gaussian(rows * cols, 61);
  const tensor_view<const float> w(x.data(), {rows, cols});
  for (const auto m : {range_method::min_max, range_method::percentile, range_method::mse}) {
    const auto v = estimate_params(w, int4_sym, granularity::per_channel(0), m);
    REQUIRE(std::holds_alternative<channel_params>(v));
    const channel_params& p = std::get<channel_params>(v);
    CHECK(p.channels() == rows);
    CHECK(p.axis == 0);
    CHECK(range_test::same(p, estimate_channel_params(w, int4_sym, 0, m)));
    if (m == range_method::min_max)
      CHECK(range_test::same(p, params_for(int4_sym, min_max_per_channel(w, 0))));
    if (m == range_method::mse)
      CHECK(range_test::same(p, mse_search_per_channel(w, 0, int4_sym).params));
  }
}

TEST_CASE("range_method names round-trip", "[range][estimator]") {
  for (const auto m : {range_method::min_max, range_method::percentile, range_method::mse})
    CHECK(parse_range_method(to_string(m)) == m);
  require_error([] { (void)parse_range_method("kl"); }, errc::invalid_argument,
                {"parse_range_method: s", "\"kl\""});
}

TEST_CASE("estimator errors come from the estimator and name the argument",
          "[range][estimator][errors]") {
  auto x = range_test::gaussian(100, 62);
  x[3] = std::numeric_limits<float>::infinity();
  const auto g = granularity::per_tensor();
  require_error([&] { (void)estimate_params(x, int4_sym, g, range_method::min_max); },
                errc::non_finite, {"min_max: x", "element 3 is +inf"});
  require_error([&] { (void)estimate_params(x, int4_sym, g, range_method::mse); }, errc::non_finite,
                {"mse_search: x", "element 3"});
  require_error(
      [&] {
        (void)estimate_params(x, int4_sym, granularity::per_channel(0), range_method::percentile);
      },
      errc::non_finite, {"percentile_channel_observer::observe: x", "element 3"});
  const std::vector<float> empty;
  for (const auto m : {range_method::min_max, range_method::percentile, range_method::mse})
    require_error([&] { (void)estimate_params(empty, int4_sym, g, m); }, errc::empty_input,
                  {": x"});
  estimate_options bad;
  bad.percentile = 0.0;
  require_error([&] { (void)estimate_tensor_params(x, int4_sym, range_method::percentile, bad); },
                errc::invalid_argument, {"percentile"});
  require_error(
      [&] {
        (void)estimate_params(x, int4_sym, granularity::per_channel(2), range_method::min_max);
      },
      errc::invalid_argument, {"axis"});
  require_error([&] { (void)estimate_tensor_params(x, quant_scheme{17}, range_method::min_max); },
                errc::invalid_argument, {"estimate_range: scheme.bits"});
  // All-zero tensors follow on_zero.
  const std::vector<float> zeros(8, 0.0f);
  require_error([&] { (void)estimate_tensor_params(zeros, int4_sym, range_method::mse); },
                errc::invalid_argument, {"range is zero"});
  estimate_options eps;
  eps.on_zero = zero_range::use_epsilon;
  CHECK(estimate_tensor_params(zeros, int4_sym, range_method::mse, eps).scale ==
        std::numeric_limits<float>::epsilon());
}
