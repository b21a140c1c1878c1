// The command-line examples' shared flags-to-config mapping (examples/runtime cli.hpp): weight
// granularity and weight-only mode.
#include <adaquant_runtime/cli.hpp>

#include "support/expect_error.hpp"

#include <catch2/catch.hpp>

namespace aq = adaquant;
namespace ex = adaquant::examples;

TEST_CASE("weight granularity and weight-only flags map to the pipeline config", "[cli]") {
  const ex::cli cli{"tool"};
  CHECK(cli.to_weight_block("--weight-granularity", "channel") == 0);
  CHECK(cli.to_weight_block("--weight-granularity", "block:64") == 64);
  for (const char* bad : {"block:0", "block:", "block:-3", "block:8x", "blocks", "64"})
    adaquant_test::expect_error(
        [&] { (void)cli.to_weight_block("--weight-granularity", bad); }, aq::errc::invalid_argument,
        std::string("tool: --weight-granularity: must be channel or block:N with N >= 1, got '") +
            bad + "'");
  ex::pipeline_settings s{.pipeline = "light"};
  aq::quantization_spec q = ex::quantization_of(s);
  CHECK(q.weights.gran == aq::granularity::per_channel(0));
  REQUIRE(q.activations.has_value());
  CHECK(q.activations->scheme.bits == 4);
  s.weight_block = 32;
  s.weight_only = true;
  s.wbits = 3;
  s.weight_range = "min_max";
  q = ex::quantization_of(s);
  CHECK(q.weights.gran == aq::granularity::per_block(1, 32));
  CHECK(q.weights.scheme.bits == 3);
  CHECK(q.weights.range == aq::range_method::min_max);
  CHECK_FALSE(q.activations.has_value());
  CHECK_FALSE(ex::advanced_config_of(s).quant.activations.has_value());
}
