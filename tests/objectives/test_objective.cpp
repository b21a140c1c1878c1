// Layer objectives: forward against direct loops, gradients against central differences of the
// straight-through surrogate, input validation.

#include "support/adaquant_test_util.hpp"
#include "support/expect_error.hpp"

#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/objectives/gradient_check.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace adaquant;
using adaquant_test::conv_geom;
using adaquant_test::linear_geom;
using adaquant_test::random_layer;

namespace {

// The round-to-nearest state from min/max ranges (per channel or per block).
layer_state rtn_state(const layer_objective& obj) {
  const auto init = estimate_initial_params(
      obj, quantizers_of(obj.config(), range_method::min_max, range_method::min_max));
  return init.weight_blocks ? obj.initial_state(*init.weight_blocks, init.act)
                            : obj.initial_state(init.weight, init.act);
}

// A state away from round-to-nearest: random V, bias shift, scales and zero points off-grid.
layer_state perturbed_state(layer_objective& obj) {
  layer_state s = rtn_state(obj);
  const auto v = adaquant_test::randn(s.weight_offset.size(), 1.0f, 77);
  const weight_grouping& wg = obj.weight_groups();
  for (std::size_t i = 0; i < v.size(); ++i)
    s.weight_offset[i] = 0.3f * v[i] * s.weight_scale[wg.group(i / wg.k, i % wg.k)];
  for (std::size_t c = 0; c < s.bias.size(); ++c) s.bias[c] += 0.01f * static_cast<float>(c % 3);
  for (std::size_t g = 0; g < s.weight_scale.size(); ++g) {
    s.weight_scale[g] *= 0.83f + 0.01f * static_cast<float>(g % 5);  // some clamping
    s.weight_zero_point[g] += 0.23f;
  }
  s.act_scale *= 0.71f;  // clamp some inputs above
  s.act_zero_point += 0.31f;
  return s;
}

void check(const layer_geometry& g, const layer_quant_config& cfg, std::size_t n,
           bool relu_inputs) {
  random_layer L(g, n, 11, relu_inputs);
  layer_objective obj(g, L.w, L.b, L.x, L.y, cfg);
  const layer_state s = perturbed_state(obj);
  std::vector<std::size_t> batch;
  for (std::size_t i = 0; i < n; i += 2) batch.push_back(i);
  // Forward: GEMM/im2col path against the direct double evaluation at the anchor.
  const double fast = obj.value(s, batch);
  const double ref = straight_through_surrogate(obj, s, s, batch);
  CHECK(fast == Approx(ref).epsilon(1e-4));
  const gradient_check_result r = check_gradient(obj, s, batch);
  INFO("worst: " << r.worst << " error " << r.max_error);
  CHECK(r.checked > 0);
  CHECK(r.max_error < 1e-4);
}

}  // namespace

TEST_CASE("linear objective: gradients match central differences of the surrogate",
          "[objective][gradient]") {
  layer_quant_config cfg;
  SECTION("symmetric weights, affine unsigned inputs, no activation") {
    check(linear_geom(24, 10), cfg, 12, true);
  }
  SECTION("asymmetric weights, signed affine inputs, ReLU") {
    cfg.weight_scheme = {4, true, false, false};
    cfg.act_scheme = {4, true, false, false};
    cfg.activation = output_activation::relu;
    check(linear_geom(20, 9), cfg, 10, false);
  }
  SECTION("3 bits, ReLU6, ONNX rounding") {
    cfg.weight_scheme.bits = 3;
    cfg.act_scheme.bits = 3;
    cfg.rounding = rounding_mode::onnx;
    cfg.activation = output_activation::relu6;
    check(linear_geom(16, 8), cfg, 8, true);
  }
  SECTION("unquantized activations") {
    cfg.quantize_activations = false;
    check(linear_geom(16, 8), cfg, 8, false);
  }
}

TEST_CASE("conv2d objective: gradients match central differences of the surrogate",
          "[objective][gradient]") {
  layer_quant_config cfg;
  SECTION("3x3, padding 1") { check(conv_geom(3, 4, 6, 5, 3, 1, 1), cfg, 4, true); }
  SECTION("stride 2, dilation 2, padding 2, groups 2, asymmetric, ReLU") {
    cfg.weight_scheme = {4, true, false, false};
    cfg.activation = output_activation::relu;
    check(conv_geom(4, 6, 7, 7, 3, 2, 2, 2, 2), cfg, 3, true);
  }
  SECTION("depthwise 3x3, stride 2") { check(conv_geom(5, 5, 6, 6, 3, 2, 1, 1, 5), cfg, 4, true); }
  // Groups of >= 8 channels: the direct forward (objectives/direct_conv.hpp), and at stride 1
  // its adjoint for dL/dX.
  SECTION("direct convolution: 8 -> 9 channels, 3x3, padding 1") {
    check(conv_geom(8, 9, 5, 6, 3, 1, 1), cfg, 3, true);
  }
  SECTION("direct convolution: groups 2 of 8 channels, dilation 2, padding 2, asymmetric") {
    cfg.act_scheme = {4, true, false, false};
    check(conv_geom(16, 16, 6, 6, 3, 1, 2, 2, 2), cfg, 3, false);
  }
  SECTION("direct convolution: 8 -> 8 channels, stride 2 (no adjoint path)") {
    check(conv_geom(8, 8, 7, 6, 3, 2, 1), cfg, 3, true);
  }
  SECTION("1x1 with ReLU6") {
    cfg.activation = output_activation::relu6;
    check(conv_geom(6, 3, 4, 4, 1), cfg, 3, false);
  }
}

TEST_CASE("block-wise weights: gradients match central differences of the surrogate",
          "[objective][gradient][block]") {
  layer_quant_config cfg;
  SECTION("linear, blocks of 8 over 20 inputs (last block 4), weight-only") {
    cfg.weight_block = 8;
    cfg.quantize_activations = false;
    check(linear_geom(20, 6), cfg, 8, false);
  }
  SECTION("linear, blocks of 7, asymmetric weights, quantized inputs, ReLU") {
    cfg.weight_block = 7;
    cfg.weight_scheme = {4, true, false, false};
    cfg.activation = output_activation::relu;
    check(linear_geom(24, 5), cfg, 10, true);
  }
  SECTION("1x1 conv, blocks of 4 over 6 input channels, weight-only, ReLU6, ONNX rounding") {
    cfg.weight_block = 4;
    cfg.quantize_activations = false;
    cfg.rounding = rounding_mode::onnx;
    cfg.activation = output_activation::relu6;
    check(conv_geom(6, 3, 4, 4, 1), cfg, 3, false);
  }
}

TEST_CASE("block-wise weights: one block per channel is the per-channel objective bit for bit",
          "[objective][block]") {
  const random_layer L(linear_geom(16, 5), 12, 21, true);
  layer_quant_config per_channel;
  per_channel.weight_scheme = {3, true, false, false};
  layer_quant_config one_block = per_channel;
  one_block.weight_block = 16;
  layer_objective a(L.geometry, L.w, L.b, L.x, L.y, per_channel);
  layer_objective b(L.geometry, L.w, L.b, L.x, L.y, one_block);
  const layer_state s = perturbed_state(a);
  REQUIRE(b.weight_groups().groups() == 5);
  CHECK(a.value(s) == b.value(s));
  layer_state ga, gb;
  const std::vector<std::size_t> batch = {0, 3, 4, 9};
  CHECK(a.gradient(s, batch, ga) == b.gradient(s, batch, gb));
  CHECK(ga.weight_offset == gb.weight_offset);
  CHECK(ga.weight_scale == gb.weight_scale);
  CHECK(ga.weight_zero_point == gb.weight_zero_point);
  CHECK(ga.act_scale == gb.act_scale);
  CHECK(a.weight_params(s).scale == b.weight_block_params(s).scale);
  CHECK(a.weight_params(s).zero_point == b.weight_block_params(s).zero_point);
}

TEST_CASE("block-wise weights: layers whose inputs are strided and mismatched params are errors",
          "[objective][block][errors]") {
  layer_quant_config cfg;
  cfg.weight_block = 4;
  const random_layer conv(conv_geom(4, 3, 5, 5, 3), 2, 5);
  adaquant_test::expect_error(
      [&] { layer_objective(conv.geometry, conv.w, conv.b, conv.x, conv.y, cfg); },
      errc::invalid_argument,
      "layer_objective: config.weight_block: block-wise weights need blocks along the weight's "
      "innermost axis: a linear layer or a 1x1 convolution, got a 3x3 convolution");
  const random_layer L(linear_geom(10, 3), 4, 6);
  layer_objective obj(L.geometry, L.w, L.b, L.x, L.y, cfg);
  const auto init = estimate_initial_params(obj, quantizers_of(cfg));
  REQUIRE(init.weight_blocks);
  CHECK(init.weight_blocks->blocks() == 3 * 3);
  adaquant_test::expect_error([&] { (void)obj.initial_state(init.weight, init.act); },
                              errc::invalid_argument, "pass block_params");
  block_params other = *init.weight_blocks;
  other.block_size = 5;
  adaquant_test::expect_error([&] { (void)obj.initial_state(other, init.act); },
                              errc::invalid_argument, "are blocks of 5 along axis 1");
  const layer_state s = obj.initial_state(*init.weight_blocks, init.act);
  adaquant_test::expect_error([&] { (void)obj.weight_params(s); }, errc::invalid_argument,
                              "use weight_block_params");
  layer_state short_state = s;
  short_state.weight_scale.pop_back();
  adaquant_test::expect_error([&] { (void)obj.value(short_state); }, errc::shape_mismatch,
                              "state.weight_scale: has 8 elements, expected 9");
}

TEST_CASE("conv2d_forward matches a direct convolution", "[objective][forward]") {
  const layer_geometry g = conv_geom(4, 6, 7, 6, 3, 2, 1, 2, 2);
  random_layer L(g, 2, 5, false);
  const conv2d_geometry& c = g.conv;
  const std::size_t cin = 2, cg = 3, oh = c.out_h(), ow = c.out_w();
  double max_err = 0.0;
  for (std::size_t n = 0; n < 2; ++n)
    for (std::size_t o = 0; o < 6; ++o)
      for (std::size_t oy = 0; oy < oh; ++oy)
        for (std::size_t ox = 0; ox < ow; ++ox) {
          double a = L.b[o];
          for (std::size_t ci = 0; ci < cin; ++ci)
            for (std::size_t i = 0; i < 3; ++i)
              for (std::size_t j = 0; j < 3; ++j) {
                const long iy = static_cast<long>(oy * 2 + i * 2) - 1;
                const long ix = static_cast<long>(ox * 2 + j * 2) - 1;
                if (iy < 0 || ix < 0 || iy >= 7 || ix >= 6) continue;
                a += L.w[((o * cin + ci) * 3 + i) * 3 + j] *
                     L.x[((n * 4 + (o / cg) * cin + ci) * 7 + static_cast<std::size_t>(iy)) * 6 +
                         static_cast<std::size_t>(ix)];
              }
          const double got = L.y[((n * 6 + o) * oh + oy) * ow + ox];
          max_err = std::max(max_err, std::abs(got - a));
        }
  CHECK(max_err < 1e-5);
}

TEST_CASE("layer_objective rejects bad input with a clear error", "[objective][errors]") {
  random_layer L(linear_geom(8, 4), 6, 3);
  const layer_quant_config cfg;
  const auto code_of = [](auto&& f) {
    try {
      f();
    } catch (const error& e) {
      return std::pair{e.code(), std::string(e.what())};
    }
    return std::pair{errc::corrupt_data, std::string("no throw")};
  };
  const auto g = L.geometry;
  {
    std::vector<float> x(L.x.begin(), L.x.end() - 1);
    auto [c, m] = code_of([&] { layer_objective(g, L.w, L.b, x, L.y, cfg); });
    CHECK(c == errc::shape_mismatch);
    CHECK_THAT(m, Catch::Contains("inputs"));
  }
  {
    std::vector<float> y(L.y.begin(), L.y.end() - 4);
    auto [c, m] = code_of([&] { layer_objective(g, L.w, L.b, L.x, y, cfg); });
    CHECK(c == errc::shape_mismatch);
    CHECK_THAT(m, Catch::Contains("targets"));
  }
  {
    std::vector<float> w(L.w.begin(), L.w.end() - 1);
    auto [c, m] = code_of([&] { layer_objective(g, w, L.b, L.x, L.y, cfg); });
    CHECK(c == errc::shape_mismatch);
    CHECK_THAT(m, Catch::Contains("weight"));
  }
  {
    auto [c, m] = code_of([&] {
      layer_objective(g, L.w, L.b, std::span<const float>(), std::span<const float>(), cfg);
    });
    CHECK(c == errc::empty_input);
    CHECK_THAT(m, Catch::Contains("inputs"));
  }
  {
    std::vector<float> x = L.x;
    x[5] = std::nanf("");
    auto [c, m] = code_of([&] { layer_objective(g, L.w, L.b, x, L.y, cfg); });
    CHECK(c == errc::non_finite);
    CHECK_THAT(m, Catch::Contains("inputs") && Catch::Contains("element 5"));
  }
  {
    std::vector<float> y = L.y;
    y[2] = INFINITY;
    auto [c, m] = code_of([&] { layer_objective(g, L.w, L.b, L.x, y, cfg); });
    CHECK(c == errc::non_finite);
    CHECK_THAT(m, Catch::Contains("targets"));
  }
  {
    const layer_geometry bad = conv_geom(3, 4, 5, 5, 3, 1, 0, 1, 2);
    auto [c, m] = code_of([&] { layer_objective(bad, L.w, L.b, L.x, L.y, cfg); });
    CHECK(c == errc::invalid_argument);
    CHECK_THAT(m, Catch::Contains("geometry") && Catch::Contains("groups"));
  }
  {
    layer_objective obj(g, L.w, L.b, L.x, L.y, cfg);
    const auto init = estimate_initial_params(
        obj, quantizers_of(obj.config(), range_method::min_max, range_method::min_max));
    layer_state s = obj.initial_state(init.weight, init.act);
    s.weight_scale[1] = 0.0f;
    auto [c, m] = code_of([&] { (void)obj.value(s); });
    CHECK(c == errc::invalid_argument);
    CHECK_THAT(m, Catch::Contains("weight_scale"));
    s = obj.initial_state(init.weight, init.act);
    s.bias.pop_back();
    std::tie(c, m) = code_of([&] { (void)obj.value(s); });
    CHECK(c == errc::shape_mismatch);
    CHECK_THAT(m, Catch::Contains("state.bias"));
    s = obj.initial_state(init.weight, init.act);
    const std::size_t idx[] = {0, 6};
    std::tie(c, m) = code_of([&] { (void)obj.value(s, idx); });
    CHECK(c == errc::invalid_argument);
    CHECK_THAT(m, Catch::Contains("batch"));
  }
}

TEST_CASE("symmetric unsigned grids: the objective's zero point is the library's",
          "[objective][params]") {
  // One definition (quant_scheme::symmetric_zero_point): the objective once used
  // (qmin + qmax + 1) / 2 = 128 at 8 bits where params_from_range uses 127.
  const random_layer L(linear_geom(8, 4), 16, 12);
  for (int bits : {2, 4, 8}) {
    layer_quant_config cfg;
    cfg.weight_scheme = {bits, false, true, false};
    cfg.act_scheme = {bits, false, true, false};
    layer_objective obj(L.geometry, L.w, L.b, L.x, L.y, cfg);
    const auto init = estimate_initial_params(
        obj, quantizers_of(cfg, range_method::min_max, range_method::min_max));
    CHECK(init.act.zero_point == params_from_range(cfg.act_scheme, -1.0f, 1.0f).zero_point);
    const layer_state s = obj.initial_state(init.weight, init.act);
    INFO("bits " << bits);
    CHECK(s.act_zero_point == static_cast<float>(init.act.zero_point));
    CHECK(obj.act_params(s).zero_point == init.act.zero_point);
    for (float z : s.weight_zero_point) CHECK(z == static_cast<float>(init.weight.zero_point[0]));
    CHECK(obj.weight_params(s).zero_point == init.weight.zero_point);
    CHECK(cfg.act_scheme.symmetric_zero_point() == ((1 << bits) - 1) / 2);
  }
}

TEST_CASE("a linear geometry with rows per sample is the objective over every row",
          "[objective][tokens]") {
  const random_layer L(linear_geom(8, 3), 12, 31, false);  // 12 rows
  layer_quant_config cfg;
  cfg.weight_scheme = {4, true, false, false};
  layer_geometry tokens = L.geometry;
  tokens.linear.rows = 4;  // 3 samples of 4 tokens
  CHECK(tokens.input_per_sample() == 32);
  CHECK(tokens.output_per_sample() == 12);
  CHECK(tokens.per_row().input_per_sample() == 8);
  layer_objective a(L.geometry, L.w, L.b, L.x, L.y, cfg);
  layer_objective b(tokens, L.w, L.b, L.x, L.y, cfg);
  CHECK(b.samples() == 12);
  CHECK(b.geometry().linear.rows == 1);
  const layer_state s = perturbed_state(a);
  CHECK(a.value(s) == b.value(s));
  layer_state ga, gb;
  const std::vector<std::size_t> batch = {0, 5, 11};
  CHECK(a.gradient(s, batch, ga) == b.gradient(s, batch, gb));
  CHECK(ga.weight_offset == gb.weight_offset);
  layer_geometry none = tokens;
  none.linear.rows = 0;
  adaquant_test::expect_error([&] { none.validate("g"); }, errc::invalid_argument,
                              "g: in_features, out_features and rows must be > 0, got 8, 3 and 0");
}
