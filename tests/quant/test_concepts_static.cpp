// Static tests of the quant/ concepts (positive and negative), mp-units style: RoundingPolicy,
// QuantizerPolicy, and the compile-time to run-time conversion they constrain.
#include <adaquant/adapters/std.hpp>
#include <adaquant/quant/quantizer.hpp>
#include <adaquant/quant/rounding.hpp>
#include <adaquant/range/quantizer_spec.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string_view>

namespace aq = adaquant;

namespace {
struct not_a_policy {};
struct name_only {
  static constexpr std::string_view name = "x";
};
struct scalar_only {  // no batch form: the kernels could not use it
  static constexpr std::string_view name = "scalar";
  static constexpr float to_grid(float x, float, float) noexcept { return x; }
};
// A user's own compile-time quantizer: a grid, a rounding policy, a storage type.
struct my_uint3 {
  static constexpr aq::quant_scheme scheme{3, false, false, false};
  using rounding = aq::round_onnx;
  using storage_type = std::uint8_t;
};
struct missing_storage {
  static constexpr aq::quant_scheme scheme{3, false, false, false};
  using rounding = aq::round_onnx;
};
struct bad_rounding {
  static constexpr aq::quant_scheme scheme{3, false, false, false};
  using rounding = not_a_policy;
  using storage_type = std::uint8_t;
};
}  // namespace

// RoundingPolicy
static_assert(aq::RoundingPolicy<aq::round_pytorch>);
static_assert(aq::RoundingPolicy<aq::round_onnx>);
static_assert(aq::RoundingPolicy<aq::round_half_away>);
static_assert(!aq::RoundingPolicy<not_a_policy>);
static_assert(!aq::RoundingPolicy<name_only>);
static_assert(!aq::RoundingPolicy<scalar_only>);
static_assert(!aq::RoundingPolicy<float>);

// QuantizerPolicy
static_assert(aq::QuantizerPolicy<aq::int8_symmetric_quantizer>);
static_assert(aq::QuantizerPolicy<aq::uint8_affine_quantizer>);
static_assert(aq::QuantizerPolicy<aq::fixed_quantizer<4, true, true, aq::round_onnx, true>>);
static_assert(aq::QuantizerPolicy<my_uint3>);
static_assert(!aq::QuantizerPolicy<missing_storage>);
static_assert(!aq::QuantizerPolicy<bad_rounding>);
static_assert(!aq::QuantizerPolicy<aq::round_pytorch>);
static_assert(!aq::QuantizerPolicy<int>);

// rounding_mode_of and quantizer_spec::of, in constant expressions.
static_assert(aq::rounding_mode_of<aq::round_pytorch>() == aq::rounding_mode::pytorch);
static_assert(aq::rounding_mode_of<aq::round_onnx>() == aq::rounding_mode::onnx);
static_assert(aq::rounding_mode_of<aq::round_half_away>() == aq::rounding_mode::half_away);
static_assert(aq::quantizer_spec::of<my_uint3>().scheme == my_uint3::scheme);
static_assert(aq::quantizer_spec::of<my_uint3>().rounding == aq::rounding_mode::onnx);
static_assert(aq::quantizer_spec::of<aq::int4_symmetric_quantizer>(
                  aq::granularity::per_channel(0), aq::range_method::min_max)
                  .gran == aq::granularity::per_channel(0));

TEST_CASE("a compile-time policy gives the run-time spec of the same quantizer") {
  const aq::quantizer_spec s = aq::quantizer_spec::of<aq::int4_symmetric_quantizer>(
      aq::granularity::per_channel(0), aq::range_method::min_max);
  CHECK(s.scheme == aq::int4_symmetric_quantizer::scheme);
  CHECK(s.rounding == aq::rounding_mode::pytorch);
  CHECK(s.range == aq::range_method::min_max);
  // Both give the same parameters for the same range.
  const std::vector<float> w{-0.7f, 0.1f, 0.35f, 0.5f};
  const aq::quant_params p = aq::estimate_tensor_params(
      w, aq::quantizer_spec::of<aq::int4_symmetric_quantizer>({}, aq::range_method::min_max));
  CHECK(p == aq::int4_symmetric_quantizer::params(-0.7f, 0.5f));
}
