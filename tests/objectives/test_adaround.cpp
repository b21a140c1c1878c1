// AdaRound (objectives/adaround.hpp) in the AdaQuant objective and optimiser: the start is
// round-to-nearest, the relaxed objective's gradient of V, the scales and the bias and the
// regulariser's gradient match central differences, the annealing schedule, hardening, bad
// settings are errors naming the option.

#include "support/adaquant_test_util.hpp"
#include "support/expect_error.hpp"

#include <adaquant/calibrate/adaquant.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>

using namespace adaquant;
using adaquant_test::conv_geom;
using adaquant_test::linear_geom;
using adaquant_test::random_layer;

namespace {

layer_quant_config low_bit() {
  layer_quant_config c;
  c.weight_scheme.bits = 2;
  c.act_scheme.bits = 4;
  c.activation = output_activation::relu;
  return c;
}

layer_state rtn_state(const layer_objective& obj) {
  const auto init = estimate_initial_params(obj, quantizers_of(obj.config()));
  return obj.initial_state(init.weight, init.act);
}

// The relaxed objective of a linear layer in double, independently of layer_objective: weights
// s (clamp(floor(w * (1/s0)) + h(V) + z, qmin, qmax) - z) with h in double, inputs fake-quantized
// by round-to-nearest as the objective does (fixed: s_a is not varied here), ReLU after.
double relaxed_linear(const random_layer& L, const layer_quant_config& cfg, const layer_state& s,
                      const std::vector<float>& scale0, const adaround_options& a) {
  const std::size_t in = L.geometry.linear.in_features, out = L.geometry.linear.out_features;
  const double qmin = cfg.weight_scheme.qmin(), qmax = cfg.weight_scheme.qmax();
  std::vector<double> wq(in * out);
  for (std::size_t c = 0; c < out; ++c)
    for (std::size_t j = 0; j < in; ++j) {
      const std::size_t i = c * in + j;
      const double fl = std::floor(L.w[i] * (1.0f / scale0[c]));
      const double sg = 1.0 / (1.0 + std::exp(-static_cast<double>(s.weight_offset[i])));
      const double h = std::clamp(sg * (a.zeta - a.gamma) + a.gamma, 0.0, 1.0);
      wq[i] = std::clamp(fl + h, qmin, qmax) * s.weight_scale[c];  // symmetric: z = 0
    }
  const quant_params ap{s.act_scale, static_cast<std::int32_t>(s.act_zero_point),
                        cfg.act_scheme.qmin(), cfg.act_scheme.qmax()};
  std::vector<float> xq(L.x.size());
  fake_quant_per_tensor<round_pytorch>(tensor_view<const float>(L.x.data(), {L.x.size()}),
                                       tensor_view<float>(xq.data(), {xq.size()}), ap);
  double total = 0.0;
  for (std::size_t n = 0; n < L.n; ++n)
    for (std::size_t c = 0; c < out; ++c) {
      double y = s.bias[c];
      for (std::size_t j = 0; j < in; ++j) y += wq[c * in + j] * xq[n * in + j];
      const double d = std::max(y, 0.0) - std::max<double>(L.y[n * out + c], 0.0);
      total += d * d;
    }
  return total / static_cast<double>(L.n * out);
}

}  // namespace

TEST_CASE("AdaRound: starts at round-to-nearest and the relaxed weights start at W",
          "[objective][adaround]") {
  const layer_geometry g = linear_geom(24, 6);
  random_layer L(g, 8, 21, true);
  const layer_quant_config cfg = low_bit();
  layer_objective plain(g, L.w, L.b, L.x, L.y, cfg), ada(g, L.w, L.b, L.x, L.y, cfg);
  const layer_state rtn = rtn_state(plain);
  layer_state s = rtn;
  ada.use_adaround(s, 1.1f, -0.1f);
  CHECK(ada.adaround());
  const std::vector<float> q_rtn = plain.quantized_weights(rtn), q_ada = ada.quantized_weights(s);
  // Hardened: round-to-nearest (the random weights have no exact ties).
  CHECK(q_ada == q_rtn);
  CHECK(ada.value(s) == plain.value(rtn));
  // Relaxed: h(V) = frac(w / s), so inside the grid s (floor + h) = w up to float round-off.
  layer_state grad;
  (void)ada.gradient(s, {}, grad);
  std::size_t inside = 0;
  for (std::size_t i = 0; i < L.w.size(); ++i) {
    const float sc = s.weight_scale[i / 24];
    const float h = detail::rectified_sigmoid(s.weight_offset[i], 1.1f, -0.1f);
    const float u = std::floor(L.w[i] * (1.0f / sc)) + h;
    if (u >= -2.0f && u <= 1.0f) {
      ++inside;
      CHECK(u * sc == Approx(L.w[i]).margin(1e-5f * sc));
    }
  }
  CHECK(inside > L.w.size() / 2);
}

TEST_CASE("AdaRound: gradients of V, scales and bias match central differences",
          "[objective][adaround][gradient]") {
  const adaround_options a;
  SECTION("linear, against an independent double evaluation") {
    const layer_geometry g = linear_geom(20, 5);
    random_layer L(g, 12, 7, true);
    const layer_quant_config cfg = low_bit();
    layer_objective obj(g, L.w, L.b, L.x, L.y, cfg);
    layer_state s = rtn_state(obj);
    const std::vector<float> scale0 = s.weight_scale;
    obj.use_adaround(s, a.zeta, a.gamma);
    for (std::size_t i = 0; i < s.weight_offset.size(); ++i)  // away from the start
      s.weight_offset[i] += 0.3f * std::sin(static_cast<float>(i));
    for (float& sc : s.weight_scale) sc *= 1.05f;
    layer_state grad;
    const trainable_groups which{true, true, true, false};
    const double v = obj.gradient(s, {}, grad, which);
    CHECK(v == Approx(relaxed_linear(L, cfg, s, scale0, a)).epsilon(1e-5));
    CHECK(obj.relaxed_value(s) == Approx(v).epsilon(1e-6));
    const auto numeric = [&](float& p, double h) {
      const float orig = p;
      p = static_cast<float>(orig + h);
      const double hp = static_cast<double>(p) - orig;
      const double fp = relaxed_linear(L, cfg, s, scale0, a);
      p = static_cast<float>(orig - h);
      const double hm = orig - static_cast<double>(p);
      const double fm = relaxed_linear(L, cfg, s, scale0, a);
      p = orig;
      return (fp - fm) / (hp + hm);
    };
    double gmax = 0.0;
    for (float gv : grad.weight_offset) gmax = std::max(gmax, std::abs(static_cast<double>(gv)));
    REQUIRE(gmax > 0.0);
    for (std::size_t i = 0; i < s.weight_offset.size(); i += 3) {
      INFO("V[" << i << "]");
      CHECK(std::abs(grad.weight_offset[i] - numeric(s.weight_offset[i], 1e-3)) < 1e-3 * gmax);
    }
    for (std::size_t c = 0; c < s.weight_scale.size(); ++c) {
      INFO("s_w[" << c << "]");
      CHECK(
          grad.weight_scale[c] ==
          Approx(numeric(s.weight_scale[c], 1e-4 * s.weight_scale[c])).epsilon(1e-3).margin(1e-6));
      CHECK(grad.bias[c] == Approx(numeric(s.bias[c], 1e-3)).epsilon(1e-3).margin(1e-6));
    }
  }
  SECTION("conv2d, directional derivative of relaxed_value") {
    const layer_geometry g = conv_geom(3, 4, 6, 5, 3, 1, 1);
    random_layer L(g, 4, 17, true);
    layer_objective obj(g, L.w, L.b, L.x, L.y, low_bit());
    layer_state s = rtn_state(obj);
    obj.use_adaround(s, a.zeta, a.gamma);
    layer_state grad;
    (void)obj.gradient(s, {}, grad, {true, false, false, false});
    // Along d = sign(grad) (a direction with a large slope), in float: step 1e-2 of a logit.
    double slope = 0.0;
    layer_state up = s, down = s;
    const float h = 1e-2f;
    for (std::size_t i = 0; i < s.weight_offset.size(); ++i) {
      const float d = grad.weight_offset[i] > 0.0f ? 1.0f : -1.0f;
      slope += static_cast<double>(grad.weight_offset[i]) * d;
      up.weight_offset[i] += h * d;
      down.weight_offset[i] -= h * d;
    }
    const double numeric = (obj.relaxed_value(up) - obj.relaxed_value(down)) / (2.0 * h);
    CHECK(slope == Approx(numeric).epsilon(2e-2));
  }
}

TEST_CASE("AdaRound: the regulariser's gradient matches central differences",
          "[objective][adaround][gradient]") {
  std::vector<float> v;
  for (int i = -40; i <= 40; ++i) v.push_back(0.137f * static_cast<float>(i) + 0.01f);
  for (float beta : {20.0f, 8.5f, 2.0f}) {
    std::vector<float> grad(v.size(), 0.0f);
    (void)detail::adaround_regulariser(v, beta, 1.1f, -0.1f, 0.5f, grad);
    double gmax = 0.0;
    for (float gv : grad) gmax = std::max(gmax, std::abs(static_cast<double>(gv)));
    REQUIRE(gmax > 0.0);
    for (std::size_t i = 0; i < v.size(); ++i) {
      std::vector<float> p = v, m = v;
      p[i] += 1e-3f;
      m[i] -= 1e-3f;
      const double numeric = 0.5 *
                             (detail::adaround_regulariser(p, beta, 1.1f, -0.1f, 0, {}) -
                              detail::adaround_regulariser(m, beta, 1.1f, -0.1f, 0, {})) /
                             (static_cast<double>(p[i]) - static_cast<double>(m[i]));
      INFO("beta " << beta << " V " << v[i]);
      CHECK(std::abs(grad[i] - numeric) < 2e-3 * gmax);
    }
  }
}

TEST_CASE("AdaRound: annealing, warm-up and the rectified sigmoid", "[objective][adaround]") {
  adaround_options a;
  CHECK(a.beta(0, 1000) == 0.0f);
  CHECK(a.beta(199, 1000) == 0.0f);
  CHECK(a.beta(200, 1000) == 20.0f);
  CHECK(a.beta(600, 1000) == Approx(11.0f));
  CHECK(a.beta(999, 1000) == Approx(2.0f).margin(0.05f));
  CHECK(detail::rectified_sigmoid(-100.0f, 1.1f, -0.1f) == 0.0f);
  CHECK(detail::rectified_sigmoid(100.0f, 1.1f, -0.1f) == 1.0f);
  CHECK(detail::rectified_sigmoid_slope(100.0f, 1.1f, -0.1f) == 0.0f);
  for (float f : {0.0f, 0.25f, 0.5f, 0.9f})
    CHECK(detail::rectified_sigmoid(detail::rectified_sigmoid_inverse(f, 1.1f, -0.1f), 1.1f,
                                    -0.1f) == Approx(f).margin(1e-6));
}

TEST_CASE("AdaRound through the optimiser: hardened integers, no worse than round-to-nearest",
          "[objective][adaround]") {
  const layer_geometry g = linear_geom(32, 8);
  random_layer L(g, 64, 5, true);
  const layer_quant_config cfg = low_bit();
  layer_objective obj(g, L.w, L.b, L.x, L.y, cfg);
  adaquant_options o;
  o.iterations = 200;
  o.batch_size = 16;
  o.rounding = weight_rounding::adaround;
  o.train.weight_quant = false;
  const initial_quant_params init = estimate_initial_params(obj, quantizers_of(cfg));
  const layer_result r = adaquant_optimize(obj, o, init);
  // The weights sit on the starting grid with each integer floor or floor + 1 of w / s.
  std::size_t up = 0, moved = 0;
  for (std::size_t i = 0; i < L.w.size(); ++i) {
    const float s = init.weight.scale[i / 32];
    const float q = r.weights[i] / s, fl = std::floor(L.w[i] * (1.0f / s));
    CHECK(q == std::round(q));
    const bool is_up = std::round(q) == fl + 1.0f, rtn_up = std::nearbyint(L.w[i] / s) > fl;
    CHECK((is_up || std::round(q) == fl || q == -2.0f || q == 1.0f));
    up += is_up;
    moved += is_up != rtn_up;
  }
  CHECK(up > 0);
  CHECK(moved > 0);  // it learned something other than round-to-nearest
  CHECK(r.report.heldout_after <= r.report.heldout_before);
  CHECK(r.report.mse_after < r.report.mse_before);
  // An objective in AdaRound mode does not silently run the learned step.
  o.rounding = weight_rounding::learned_step;
  adaquant_test::expect_error([&] { (void)adaquant_optimize(obj, o, init); },
                              errc::invalid_argument, "options.rounding");
}

TEST_CASE("AdaRound default: below 4 weight bits (default_rounding)", "[objective][adaround]") {
  const layer_geometry g = linear_geom(16, 6);
  random_layer L(g, 40, 23, true);
  adaquant_options o;
  o.iterations = 40;
  o.batch_size = 8;
  o.eval_every = 10;
  const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  for (int wbits : {2, 3, 4, 8}) {
    INFO("weight bits " << wbits);
    layer_quant_config cfg = low_bit();
    cfg.weight_scheme.bits = wbits;
    const weight_rounding expected =
        wbits < 4 ? weight_rounding::adaround : weight_rounding::learned_step;
    CHECK(default_rounding(cfg) == expected);
    // Unset and explicit default each on a fresh objective (AdaRound changes the objective).
    layer_objective by_default(g, L.w, L.b, L.x, L.y, cfg), explicit_r(g, L.w, L.b, L.x, L.y, cfg);
    const initial_quant_params init = estimate_initial_params(by_default, quantizers_of(cfg));
    o.rounding.reset();
    const layer_result rd = adaquant_optimize(by_default, o, init);
    o.rounding = expected;
    const layer_result re = adaquant_optimize(explicit_r, o, init);
    CHECK(by_default.adaround() == (expected == weight_rounding::adaround));
    CHECK(same(rd.weights, re.weights));
    CHECK(same(rd.bias, re.bias));
    CHECK(same(rd.state.weight_offset, re.state.weight_offset));
  }
}

TEST_CASE("AdaRound: settings outside their domains are errors naming the option",
          "[objective][adaround][errors]") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const layer_geometry g = linear_geom(8, 3);
  random_layer L(g, 4, 3, true);
  const layer_quant_config cfg = low_bit();
  struct bad_case {
    const char* name;
    void (*set)(adaround_options&, float);
    float value;
  };
  const bad_case cases[] = {
      {"lambda", [](adaround_options& a, float v) { a.lambda = v; }, -0.01f},
      {"lambda", [](adaround_options& a, float v) { a.lambda = v; }, nan},
      {"beta_end", [](adaround_options& a, float v) { a.beta_end = v; }, 0.0f},
      {"beta_start", [](adaround_options& a, float v) { a.beta_start = v; }, 1.0f},
      {"beta_start", [](adaround_options& a, float v) { a.beta_start = v; }, nan},
      {"warmup", [](adaround_options& a, float v) { a.warmup = v; }, 1.0f},
      {"zeta", [](adaround_options& a, float v) { a.zeta = v; }, 1.0f},
      {"gamma", [](adaround_options& a, float v) { a.gamma = v; }, 0.0f},
      {"lr", [](adaround_options& a, float v) { a.lr = v; },
       std::numeric_limits<float>::infinity()},
  };
  for (const bad_case& c : cases) {
    adaquant_options o;
    o.iterations = 5;
    o.rounding = weight_rounding::adaround;
    c.set(o.adaround, c.value);
    INFO(c.name << " = " << c.value);
    layer_objective obj(g, L.w, L.b, L.x, L.y, cfg);
    const initial_quant_params init = estimate_initial_params(obj, quantizers_of(cfg));
    adaquant_test::expect_error([&] { (void)adaquant_optimize(obj, o, init); },
                                errc::invalid_argument, std::string("options.adaround.") + c.name);
    CHECK_FALSE(obj.adaround());  // refused before anything changed
  }
}
