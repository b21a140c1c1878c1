// QDrop (objectives/input_drop.hpp) in the AdaQuant objective and optimiser: bad probabilities,
// p = 0 is the plain objective bit for bit, p = 1 is the float-input objective, the input
// quantizer's gradient only flows through the quantized elements (central differences), and the
// drop pattern depends only on the seed and the sample.

#include "support/adaquant_test_util.hpp"
#include "support/expect_error.hpp"

#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/objectives/gradient_check.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>

using namespace adaquant;
using adaquant_test::conv_geom;
using adaquant_test::linear_geom;
using adaquant_test::random_layer;

namespace {

layer_state rtn_state(const layer_objective& obj) {
  const auto init = estimate_initial_params(obj, quantizers_of(obj.config()));
  return obj.initial_state(init.weight, init.act);
}

layer_quant_config low_bit(bool quantize_activations = true) {
  layer_quant_config c;
  c.weight_scheme.bits = 3;
  c.act_scheme.bits = 2;
  c.activation = output_activation::relu;
  c.quantize_activations = quantize_activations;
  return c;
}

bool same(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
bool same_state(const layer_state& a, const layer_state& b) {
  return same(a.weight_offset, b.weight_offset) && same(a.bias, b.bias) &&
         same(a.weight_scale, b.weight_scale) && a.act_scale == b.act_scale &&
         a.act_zero_point == b.act_zero_point;
}

}  // namespace

TEST_CASE("QDrop: probabilities outside [0, 1] or NaN are errors naming the setting",
          "[objective][qdrop][errors]") {
  const layer_geometry g = linear_geom(12, 5);
  random_layer L(g, 8, 3, true);
  layer_objective obj(g, L.w, L.b, L.x, L.y, low_bit());
  const layer_state s = rtn_state(obj);
  layer_state grad;
  for (float p : {-0.01f, 1.01f, std::numeric_limits<float>::quiet_NaN(),
                  std::numeric_limits<float>::infinity()}) {
    INFO("p = " << p);
    adaquant_test::expect_error(
        [&] {
          (void)obj.gradient(s, {}, grad, {}, {p, 1});
        },
        errc::invalid_argument, "drop.keep_float");
    adaquant_options o;
    o.qdrop = p;
    adaquant_test::expect_error(
        [&] { (void)adaquant_layer(g, L.w, L.b, L.x, L.y, output_activation::relu, {}, o); },
        errc::invalid_argument, "options.qdrop");
  }
}

TEST_CASE("QDrop p = 0 is the plain objective bit for bit; p = 1 is the float-input objective",
          "[objective][qdrop]") {
  const layer_geometry g = conv_geom(3, 4, 6, 6, 3, 1, 1);
  random_layer L(g, 10, 5, true);
  layer_objective obj(g, L.w, L.b, L.x, L.y, low_bit());
  layer_objective fp_in(g, L.w, L.b, L.x, L.y, low_bit(false));
  const layer_state s = rtn_state(obj);
  const std::vector<std::size_t> batch{1, 4, 7, 8};
  layer_state plain, p0, p1, wo;
  const double v_plain = obj.gradient(s, batch, plain);
  const double v0 = obj.gradient(s, batch, p0, {}, {0.0f, 99});
  CHECK(v0 == v_plain);
  CHECK(same_state(p0, plain));

  const double v1 = obj.gradient(s, batch, p1, {}, {1.0f, 99});
  const double v_wo = fp_in.gradient(s, batch, wo);
  CHECK(v1 == v_wo);
  CHECK(same(p1.weight_offset, wo.weight_offset));
  CHECK(same(p1.bias, wo.bias));
  CHECK(same(p1.weight_scale, wo.weight_scale));
  CHECK(p1.act_scale == 0.0f);
  CHECK(p1.act_zero_point == 0.0f);
  CHECK(plain.act_scale != 0.0f);  // the fully quantized input does have a gradient
  CHECK(v1 != v_plain);

  // Through the optimiser, on W4A4 (no QDrop by default): qdrop = 0 runs exactly as without the
  // setting.
  layer_quant_config a4 = low_bit();
  a4.weight_scheme.bits = 4;
  a4.act_scheme.bits = 4;
  layer_objective obj4(g, L.w, L.b, L.x, L.y, a4);
  adaquant_options o;
  o.iterations = 30;
  o.batch_size = 4;
  o.eval_every = 10;
  const initial_quant_params init = estimate_initial_params(obj4, quantizers_of(a4));
  const layer_result r_plain = adaquant_optimize(obj4, o, init);
  o.qdrop = 0.0f;
  const layer_result r0 = adaquant_optimize(obj4, o, init);
  CHECK(same_state(r0.state, r_plain.state));
  o.qdrop = 0.5f;
  const layer_result r5 = adaquant_optimize(obj4, o, init);
  CHECK_FALSE(same_state(r5.state, r_plain.state));
}

TEST_CASE("QDrop: the drop pattern depends on the seed and the sample, not on the batch",
          "[objective][qdrop]") {
  const std::vector<std::size_t> ab{3, 9}, ba{9, 3};
  std::vector<std::uint8_t> k1, k2, k3;
  detail::input_drop_mask({0.5f, 42}, ab, 1000, k1);
  detail::input_drop_mask({0.5f, 42}, ba, 1000, k2);
  CHECK(std::equal(k1.begin(), k1.begin() + 1000, k2.begin() + 1000));
  CHECK(std::equal(k1.begin() + 1000, k1.end(), k2.begin()));
  detail::input_drop_mask({0.5f, 43}, ab, 1000, k3);
  CHECK(k3 != k1);
  std::size_t kept = 0;
  for (std::uint8_t k : k1) kept += k;
  CHECK(kept > 850);  // about half of 2000 (binomial sd ~ 22)
  CHECK(kept < 1150);
  detail::input_drop_mask({1.0f, 42}, ab, 1000, k3);
  CHECK(std::count(k3.begin(), k3.end(), 1) == 2000);
  detail::input_drop_mask({0.0f, 42}, ab, 1000, k3);
  CHECK(k3.empty());
}

TEST_CASE("QDrop: gradients (input quantizer's included) match central differences",
          "[objective][qdrop][gradient]") {
  layer_quant_config cfg = low_bit();
  cfg.act_scheme = {2, true, false, false};  // signed affine: z_a is trained too
  SECTION("linear") {
    const layer_geometry g = linear_geom(20, 6);
    random_layer L(g, 10, 13, false);
    layer_objective obj(g, L.w, L.b, L.x, L.y, cfg);
    layer_state s = rtn_state(obj);
    s.act_scale *= 0.7f;
    s.act_zero_point += 0.3f;
    for (float p : {0.25f, 0.5f, 0.9f}) {
      const gradient_check_result r = check_gradient(obj, s, {}, {}, 1e-3, 48, {p, 5});
      INFO("p = " << p << " worst: " << r.worst << " error " << r.max_error);
      CHECK(r.max_error < 1e-4);
    }
    // The drop matters: the scale gradient with the drop differs from the plain one, and
    // differences of the plain surrogate do not match it.
    layer_state plain, dropped;
    (void)obj.gradient(s, {}, plain);
    (void)obj.gradient(s, {}, dropped, {}, {0.5f, 5});
    CHECK(std::abs(dropped.act_scale - plain.act_scale) > 1e-3 * std::abs(plain.act_scale));
    layer_state up = s, down = s;
    up.act_scale = s.act_scale * 1.001f;
    down.act_scale = s.act_scale * 0.999f;
    const double step = static_cast<double>(up.act_scale) - static_cast<double>(down.act_scale);
    const auto slope = [&](const input_drop& d) {
      return (straight_through_surrogate(obj, up, s, {}, d) -
              straight_through_surrogate(obj, down, s, {}, d)) /
             step;
    };
    CHECK(dropped.act_scale == Approx(slope({0.5f, 5})).epsilon(1e-3));
    CHECK(dropped.act_scale != Approx(slope({})).epsilon(1e-3));
  }
  SECTION("conv2d") {
    const layer_geometry g = conv_geom(3, 4, 6, 5, 3, 1, 1);
    random_layer L(g, 4, 17, true);
    layer_objective obj(g, L.w, L.b, L.x, L.y, cfg);
    const gradient_check_result r =
        check_gradient(obj, rtn_state(obj), {}, {}, 1e-3, 48, {0.5f, 8});
    INFO("worst: " << r.worst << " error " << r.max_error);
    CHECK(r.max_error < 1e-4);
  }
}

TEST_CASE("QDrop default: by the layer's input and weight bits (default_qdrop)",
          "[objective][qdrop]") {
  const layer_geometry g = linear_geom(16, 6);
  random_layer L(g, 40, 21, true);
  adaquant_options o;
  o.iterations = 40;
  o.batch_size = 8;
  o.eval_every = 10;
  for (int wbits : {2, 3, 4, 8})
    for (int abits : {2, 3, 4, 8}) {
      INFO("weight bits " << wbits << ", input bits " << abits);
      layer_quant_config cfg = low_bit();
      cfg.weight_scheme.bits = wbits;
      cfg.act_scheme.bits = abits;
      CHECK(default_qdrop(cfg) == (wbits < 4 || abits < 4 ? 0.5f : 0.0f));
      layer_objective obj(g, L.w, L.b, L.x, L.y, cfg);
      const initial_quant_params init = estimate_initial_params(obj, quantizers_of(cfg));
      o.qdrop.reset();
      const layer_result by_default = adaquant_optimize(obj, o, init);
      o.qdrop = default_qdrop(cfg);
      const layer_result explicit_p = adaquant_optimize(obj, o, init);
      CHECK(same_state(by_default.state, explicit_p.state));
    }
  // In a network quantized below 4 bits somewhere, 8-bit layers drop too.
  layer_quant_config w8a8 = low_bit();
  w8a8.weight_scheme.bits = w8a8.act_scheme.bits = 8;
  CHECK(default_qdrop(w8a8, true) == 0.5f);
  CHECK(default_qdrop(w8a8, false) == 0.0f);
  for (int wbits : {2, 8}) {  // weight-only layers: no input to drop
    layer_quant_config wo = low_bit(false);
    wo.weight_scheme.bits = wbits;
    CHECK(default_qdrop(wo) == 0.0f);
    CHECK(default_qdrop(wo, true) == 0.0f);
  }
}
