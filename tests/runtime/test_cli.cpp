// The command-line examples' shared flags-to-config mapping (examples/runtime cli.hpp): weight
// granularity and weight-only mode, and the pipeline flags both CLIs parse the same way.
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

namespace {
// Parses `argv` with parse_pipeline_flag only; returns the flags it did not take.
std::vector<std::string> parse_shared(const ex::cli& cli, const std::vector<std::string>& argv,
                                      ex::pipeline_settings& s) {
  std::vector<std::string> rest;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string f = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argv.size()) cli.fail(f + " needs a value");
      return argv[++i];
    };
    if (!ex::parse_pipeline_flag(cli, f, value, s)) rest.push_back(f);
  }
  return rest;
}
}  // namespace

TEST_CASE("the pipeline flags both CLIs share parse into one settings struct", "[cli]") {
  const ex::cli cli{"tool"};
  ex::pipeline_settings s;
  const auto rest = parse_shared(cli,
                                 {"--pipeline",
                                  "advanced",
                                  "--wbits",
                                  "2",
                                  "--abits",
                                  "3",
                                  "--all-layers",
                                  "--model",
                                  "x",
                                  "--max-size-ratio",
                                  "0.08",
                                  "--bit-options",
                                  "2,4",
                                  "--bit-rounds",
                                  "2",
                                  "--no-recalibrate-allocation",
                                  "--iterations",
                                  "300",
                                  "--order",
                                  "parallel",
                                  "--seed",
                                  "7",
                                  "--batch-size",
                                  "20",
                                  "--step-macs",
                                  "1e6",
                                  "--qdrop",
                                  "0.25",
                                  "--lr-weight",
                                  "0.004",
                                  "--lr-quant",
                                  "0.002",
                                  "--weight-rounding",
                                  "adaround",
                                  "--adaround-lambda",
                                  "0.1",
                                  "--inner-weight",
                                  "0.5",
                                  "--trial-iterations",
                                  "0",
                                  "--no-bn-tuning",
                                  "--bn-target",
                                  "fp",
                                  "--no-bias"},
                                 s);
  CHECK(rest == std::vector<std::string>{"--model", "x"});  // not a pipeline flag: left alone
  CHECK(s.pipeline == "advanced");
  CHECK((s.wbits == 2 && s.abits == 3 && s.all_layers));
  CHECK(s.max_size_ratio == 0.08);
  CHECK(s.bit_options == std::vector<int>{2, 4});
  CHECK((s.bit_rounds == 2 && s.iterations == 300 && s.order == "parallel" && s.seed == 7));
  CHECK(!s.recalibrate_allocation);
  CHECK((s.qdrop == 0.25 && s.lr_weight == 0.004 && s.lr_quant == 0.002));
  CHECK((s.weight_rounding == "adaround" && s.adaround_lambda == 0.1 && s.inner_weight == 0.5));
  CHECK((!s.bn_tuning && s.bn_target == "fp" && !s.bias));
  ex::check_pipeline_settings(cli, s);  // all in their domains
  const aq::advanced_config c = ex::advanced_config_of(s);
  CHECK(c.adaquant->layer.iterations == 300);
  CHECK((c.adaquant->layer.batch_size == 20 && c.adaquant->layer.step_macs == 1e6));
  CHECK(c.adaquant->layer.inner_weight == 0.5f);
  CHECK(c.adaquant->layer.trial_iterations == std::size_t{0});  // 0: no trial, not the default
  const aq::adaquant_options library;  // unset, the CLI's are the library's defaults
  const aq::adaquant_options cli_default =
      ex::advanced_config_of(ex::pipeline_settings{.pipeline = "advanced"}).adaquant->layer;
  CHECK(
      (cli_default.batch_size == library.batch_size && cli_default.step_macs == library.step_macs));
  CHECK((!cli_default.inner_weight && !library.inner_weight));  // by bits, in the library
  CHECK((!cli_default.trial_iterations && !library.trial_iterations));
  CHECK(c.adaquant->layer.rounding == aq::weight_rounding::adaround);
  CHECK(c.adaquant->order == aq::calibration_order::parallel);
  CHECK(!c.recalibrate_allocation);
  CHECK(
      ex::advanced_config_of(ex::pipeline_settings{.pipeline = "advanced"}).recalibrate_allocation);

  // Out of their domains: one message per setting, naming the flag.
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"--pipeline", "heavy"}, "--pipeline: must be one of naive, light, advanced, got 'heavy'"},
      {{"--wbits", "1"}, "--wbits: must be in [2, 16], got 1"},
      {{"--abits", "17"}, "--abits: must be in [2, 16], got 17"},
      {{"--bit-options", "2,20"}, "--bit-options: bits must be in [2, 16], got 20"},
      {{"--max-size-ratio", "0"}, "--max-size-ratio: must be in (0, 1]"},
      {{"--bit-rounds", "0"}, "--bit-rounds: must be >= 1"},
      {{"--iterations", "0"}, "--iterations: must be > 0"},
      {{"--batch-size", "0"}, "--batch-size: must be > 0"},
      {{"--step-macs", "-1"}, "--step-macs: must be >= 0 (0: no bound)"},
      {{"--step-macs", "nan"}, "--step-macs: must be >= 0 (0: no bound)"},
      {{"--order", "random"}, "--order: must be one of sequential, parallel, got 'random'"},
      {{"--bn-target", "x"}, "--bn-target: must be one of running, fp, got 'x'"},
      {{"--qdrop", "1.5"}, "--qdrop: must be in [0, 1]"},
      {{"--weight-rounding", "up"}, "--weight-rounding: must be one of learned_step, adaround"},
      {{"--reconstruction", "net"}, "--reconstruction: must be one of layer, block, got 'net'"},
      {{"--reconstruction", "block", "--order", "parallel"},
       "--reconstruction: block needs --order sequential"},
      {{"--adaround-lambda", "-1"}, "--adaround-lambda: must be >= 0"},
      {{"--inner-weight", "-0.1"}, "--inner-weight: must be >= 0"},
      {{"--inner-weight", "inf"}, "--inner-weight: must be >= 0"},
      {{"--blocks", "3"}, "--blocks: needs block reconstruction"},
      {{"--blocks", "3", "--wbits", "2", "--reconstruction", "layer"},
       "--blocks: needs block reconstruction"},
      {{"--blocks", "3", "--wbits", "3", "--order", "parallel"},
       "--blocks: needs block reconstruction"},
      {{"--blocks", "3", "--all-layers", "--abits", "5"}, "--blocks: needs block reconstruction"},
      {{"--blocks", "3", "--all-layers", "--8bit-layers", "/stem/"},
       "--blocks: needs block reconstruction"},
      {{"--reconstruction", "block", "--blocks", "1"},
       "--blocks: a run needs at least 2 layers, got 1"},
      {{"--reconstruction", "block", "--blocks", "a..b,c"},
       "--blocks: 'c' is not FIRST..LAST (layer names)"},
      {{"--reconstruction", "block", "--blocks", "..b"},
       "--blocks: '..b' is not FIRST..LAST (layer names)"},
      {{"--lr-quant", "0"}, "--lr-quant: must be > 0"},
      {{"--no-recalibrate-allocation", "--max-size-ratio", "0.1"},
       "--no-recalibrate-allocation: only the advanced pipeline with bit allocation"},
  };
  for (const auto& [argv, message] : bad) {
    ex::pipeline_settings t{.pipeline = "light"};
    (void)parse_shared(cli, argv, t);
    adaquant_test::expect_error([&] { ex::check_pipeline_settings(cli, t); },
                                aq::errc::invalid_argument, "tool: " + message);
  }
  // Block reconstruction reaches the advanced pipeline's AdaQuant options.
  ex::pipeline_settings blocks{.pipeline = "advanced"};
  (void)parse_shared(cli, {"--reconstruction", "block"}, blocks);
  ex::check_pipeline_settings(cli, blocks);
  CHECK(ex::advanced_config_of(blocks).adaquant->reconstruction == aq::reconstruction_unit::block);
  CHECK(!ex::advanced_config_of(s).adaquant->reconstruction);  // by bits
  ex::pipeline_settings by_layer{.pipeline = "advanced"};
  (void)parse_shared(cli, {"--reconstruction", "layer"}, by_layer);
  CHECK(ex::advanced_config_of(by_layer).adaquant->reconstruction ==
        aq::reconstruction_unit::layer);
  // Below 4 weight bits, blocks may be selected without --reconstruction (by bits).
  ex::pipeline_settings low{.pipeline = "advanced"};
  (void)parse_shared(cli, {"--wbits", "3", "--blocks", "3"}, low);
  ex::check_pipeline_settings(cli, low);
  CHECK(ex::advanced_config_of(low).adaquant->blocks.max_layers == 3);
  // So may they with every layer's input at 4 bits or fewer, the network's input among them.
  ex::pipeline_settings all{.pipeline = "advanced"};
  (void)parse_shared(cli, {"--all-layers", "--abits", "4", "--blocks", "3"}, all);
  ex::check_pipeline_settings(cli, all);
  CHECK(ex::advanced_config_of(all).adaquant->blocks.max_layers == 3);
  CHECK(ex::advanced_config_of(blocks).adaquant->blocks.automatic());
  // --blocks N: runs of up to N layers; --blocks A..B,C..D: named blocks, resolved by the tool.
  (void)parse_shared(cli, {"--blocks", "3"}, blocks);
  ex::check_pipeline_settings(cli, blocks);
  CHECK(ex::advanced_config_of(blocks).adaquant->blocks.max_layers == 3);
  (void)parse_shared(cli, {"--blocks", "conv1..conv2,conv4..fc"}, blocks);
  ex::check_pipeline_settings(cli, blocks);
  const ex::layer_lookup lookup = [](const std::string& n) -> std::optional<std::size_t> {
    if (n == "conv1") return 1;
    if (n == "conv2") return 2;
    if (n == "conv4") return 4;
    return std::nullopt;
  };
  adaquant_test::expect_error([&] { (void)ex::named_blocks(cli, blocks, lookup); },
                              aq::errc::invalid_argument,
                              "tool: --blocks: no quantizable layer named 'fc'");
  (void)parse_shared(cli, {"--blocks", "conv1..conv2,conv4..conv4"}, blocks);
  const auto ids = ex::named_blocks(cli, blocks, lookup);
  CHECK(ids == std::vector<std::pair<std::size_t, std::size_t>>{{1, 2}, {4, 4}});
  const aq::advanced_config named = ex::advanced_config_of(blocks, ids);
  CHECK((named.adaquant->blocks.named == ids && named.adaquant->blocks.max_layers == 0));
  // Values that do not parse fail while parsing, naming the flag.
  ex::pipeline_settings t;
  adaquant_test::expect_error(
      [&] {
        (void)parse_shared(cli, {"--seed", "-1"}, t);
      },
      aq::errc::invalid_argument, "tool: --seed: must be >= 0, got -1");
  adaquant_test::expect_error(
      [&] {
        (void)parse_shared(cli, {"--wbits", "four"}, t);
      },
      aq::errc::invalid_argument, "tool: --wbits: not an integer: 'four'");
  adaquant_test::expect_error([&] { (void)parse_shared(cli, {"--qdrop"}, t); },
                              aq::errc::invalid_argument, "tool: --qdrop needs a value");
  adaquant_test::expect_error(
      [&] {
        (void)parse_shared(cli, {"--trial-iterations", "-1"}, t);
      },
      aq::errc::invalid_argument, "tool: --trial-iterations: must be >= 0, got -1");
}
