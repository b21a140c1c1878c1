// Block objective: forward against the direct double evaluation, gradients of every group against
// central differences of the straight-through surrogate (residual block, linear chain, QDrop,
// AdaRound, weight-only, asymmetric, output weights), determinism, program and input validation.

#include "support/adaquant_test_util.hpp"
#include "support/expect_error.hpp"

#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/objectives/block_gradient_check.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace adaquant;
using adaquant_test::conv_geom;
using adaquant_test::linear_geom;
using adaquant_test::randn;

namespace {

// A block's layers with random weights, its program, inputs and (random) targets.
struct random_block {
  std::vector<layer_geometry> geoms;
  std::vector<std::vector<float>> w, b;
  block_program prog;
  std::vector<float> x, t;

  random_block(std::vector<layer_geometry> g, block_program p, std::size_t n, std::uint32_t seed)
      : geoms(std::move(g)), prog(std::move(p)) {
    for (std::size_t k = 0; k < geoms.size(); ++k) {
      const float sd = 1.0f / std::sqrt(static_cast<float>(geoms[k].weights_per_channel()));
      w.push_back(randn(geoms[k].weight_size(), sd, seed + 10 * static_cast<std::uint32_t>(k)));
      b.push_back(
          randn(geoms[k].out_channels(), 0.1f, seed + 10 * static_cast<std::uint32_t>(k) + 1));
    }
    x = randn(n * prog.input_sizes[0], 1.0f, seed + 100, 0.3f);
    for (float& v : x) v = v > 0.0f ? v : 0.0f;
    const auto sizes = prog.slot_sizes(geoms, "test");
    t = randn(n * sizes[prog.output], 0.5f, seed + 200, 0.2f);
  }
  block_objective objective(const layer_quant_config& cfg) const {
    std::vector<block_layer> layers;
    for (std::size_t k = 0; k < geoms.size(); ++k) layers.push_back({geoms[k], w[k], b[k], cfg});
    return block_objective(layers, prog, {x}, t);
  }
};

// conv 3x3, relu, conv 3x3, + input, relu.
random_block residual_block(std::size_t n = 6) {
  const layer_geometry c = conv_geom(4, 4, 5, 5, 3, 1, 1);
  block_program p;
  p.input_sizes = {c.input_per_sample()};
  p.ops = {block_op::layer_of(0, 0), block_op::relu(1), block_op::layer_of(1, 2),
           block_op::add(3, 0), block_op::relu(4)};
  p.output = 5;
  return random_block({c, c}, p, n, 3);
}

// linear, relu6, linear, identity, relu, linear.
random_block linear_chain(std::size_t n = 12) {
  block_program p;
  p.input_sizes = {10};
  p.ops = {block_op::layer_of(0, 0), block_op::relu6(1), block_op::layer_of(1, 2),
           block_op::identity(3),    block_op::relu(4),  block_op::layer_of(2, 5)};
  p.output = 6;
  return random_block({linear_geom(10, 9), linear_geom(9, 8), linear_geom(8, 5)}, p, n, 5);
}

layer_quant_config config(int bits, bool symmetric_weights = true) {
  layer_quant_config c;
  c.weight_scheme = {bits, symmetric_weights, symmetric_weights, false};
  c.act_scheme = {bits, false, false, false};
  return c;
}

// Round-to-nearest per layer from min/max ranges, moved off the grid (as test_objective.cpp).
std::vector<layer_state> perturbed_states(block_objective& obj) {
  std::vector<layer_state> states;
  for (std::size_t k = 0; k < obj.layers(); ++k) {
    layer_objective& L = obj.layer(k);
    const auto init = estimate_initial_params(
        L, quantizers_of(L.config(), range_method::min_max, range_method::min_max));
    layer_state s = init.weight_blocks ? L.initial_state(*init.weight_blocks, init.act)
                                       : L.initial_state(init.weight, init.act);
    const auto v = randn(s.weight_offset.size(), 1.0f, 77 + static_cast<std::uint32_t>(k));
    const weight_grouping& wg = L.weight_groups();
    for (std::size_t i = 0; i < v.size(); ++i)
      s.weight_offset[i] = 0.3f * v[i] * s.weight_scale[wg.group(i / wg.k, i % wg.k)];
    for (std::size_t c = 0; c < s.bias.size(); ++c) s.bias[c] += 0.01f * static_cast<float>(c % 3);
    for (std::size_t g = 0; g < s.weight_scale.size(); ++g) {
      s.weight_scale[g] *= 0.83f + 0.01f * static_cast<float>(g % 5);
      s.weight_zero_point[g] += 0.23f;
    }
    s.act_scale *= 0.71f;
    s.act_zero_point += 0.31f;
    states.push_back(s);
  }
  return states;
}

void check_block(const random_block& rb, const layer_quant_config& cfg, const input_drop& drop = {},
                 std::span<const float> output_weights = {}, float inner_weight = 0.0f) {
  block_objective obj = rb.objective(cfg);
  obj.set_output_weights(output_weights);
  std::vector<layer_state> s = perturbed_states(obj);
  std::vector<std::size_t> batch;
  for (std::size_t i = 0; i < obj.samples(); i += 2) batch.push_back(i);
  const double fast = obj.value(s, batch);
  const double ref = block_straight_through_surrogate(obj, s, s, batch);
  CHECK(fast == Approx(ref).epsilon(1e-4));
  if (inner_weight > 0.0f) {
    // value() stays the output's error; relaxed_value() and the surrogate add the inner term.
    obj.set_inner_weight(inner_weight);
    const double with_inner = block_straight_through_surrogate(obj, s, s, batch);
    CHECK(with_inner > ref);
    CHECK(obj.value(s, batch) == fast);
    CHECK(obj.relaxed_value(s, batch) == Approx(with_inner).epsilon(1e-4));
  }
  const gradient_check_result r = check_block_gradient(obj, s, batch, {}, 1e-3, 24, drop);
  INFO("worst: " << r.worst << " error " << r.max_error);
  CHECK(r.checked > 50);
  CHECK(r.max_error < 1e-4);
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("Block gradients match central differences on a residual block",
          "[block][objective][gradient]") {
  check_block(residual_block(), config(4));
  check_block(residual_block(), config(3, false));  // asymmetric weights: zero points too
}

TEST_CASE("Block gradients match central differences on a linear chain",
          "[block][objective][gradient]") {
  check_block(linear_chain(), config(4));
  check_block(linear_chain(), config(2, false));
  layer_quant_config weight_only = config(3);
  weight_only.quantize_activations = false;
  check_block(linear_chain(), weight_only);
  layer_quant_config blocks = config(4);
  blocks.weight_block = 4;
  check_block(linear_chain(), blocks);
}

TEST_CASE("Block gradients match central differences with QDrop and AdaRound",
          "[block][objective][gradient]") {
  check_block(residual_block(), config(3), {0.5f, 9});
  check_block(linear_chain(), config(3), {0.5f, 9});
}

// Weights in [0, 2) per sample and output element, some exactly 0.
std::vector<float> output_weights_for(const random_block& rb, std::uint32_t seed) {
  std::vector<float> w = randn(rb.t.size(), 1.0f, seed);
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] = i % 7 == 3 ? 0.0f : std::min(std::abs(w[i]), 1.9f);
  return w;
}

TEST_CASE("Block gradients match central differences with output weights",
          "[block][objective][gradient]") {
  const random_block res = residual_block(), chain = linear_chain();
  const std::vector<float> wr = output_weights_for(res, 41), wc = output_weights_for(chain, 43);
  check_block(res, config(4), {}, wr);
  check_block(chain, config(3, false), {}, wc);
  check_block(res, config(3), {0.5f, 9}, wr);
}

TEST_CASE("Block gradients match central differences with the inner term",
          "[block][objective][gradient]") {
  // Residual block: a relu-read layer and an add-read one; chain: relu6, and an identity reader.
  check_block(residual_block(), config(4), {}, {}, 0.7f);
  check_block(linear_chain(), config(3, false), {}, {}, 2.0f);
  check_block(residual_block(), config(3), {0.5f, 9}, output_weights_for(residual_block(), 41),
              0.7f);
  check_block(linear_chain(), config(2), {0.5f, 9}, {}, 0.3f);
}

TEST_CASE("The inner term supervises every layer but the output's, on the output's scale",
          "[block][objective]") {
  const random_block res = residual_block(8), chain = linear_chain();
  block_objective r = res.objective(config(3));
  block_objective c = chain.objective(config(3));
  // Which values: after the relu that alone reads a layer's output; the raw output when an add or
  // an identity reads it; the layer whose value is the output slot is left out.
  const auto rv = r.inner_values();
  REQUIRE(rv.size() == 2);
  CHECK((rv[0].layer == 0 && rv[0].slot == 2 && rv[0].activation == block_op_kind::relu));
  CHECK((rv[1].layer == 1 && rv[1].slot == 3 && rv[1].activation == block_op_kind::layer));
  const auto cv = c.inner_values();
  REQUIRE(cv.size() == 2);
  CHECK((cv[0].layer == 0 && cv[0].slot == 2 && cv[0].activation == block_op_kind::relu6));
  CHECK((cv[1].layer == 1 && cv[1].slot == 3 && cv[1].activation == block_op_kind::layer));
  // c_k E[a(Y_k)^2] = E[T^2] / K' for each value.
  for (block_objective* o : {&r, &c}) {
    double tt = 0.0;
    for (float t : o->targets()) tt += static_cast<double>(t) * t;
    tt /= static_cast<double>(o->targets().size());
    for (std::size_t j = 0; j < o->inner_values().size(); ++j) {
      const auto& v = o->inner_values()[j];
      const std::size_t sz = o->slot_sizes()[v.slot];
      double ff = 0.0;
      for (std::size_t n = 0; n < o->samples(); ++n)
        for (std::size_t e = 0; e < sz; ++e) ff += std::pow(o->inner_target(j, n, e), 2.0);
      ff /= static_cast<double>(o->samples() * sz);
      CHECK(v.scale * ff == Approx(tt / 2.0).epsilon(1e-9));
    }
  }
  // Weight 0 after another one: the plain objective, bit for bit.
  const std::vector<layer_state> s = perturbed_states(r);
  std::vector<layer_state> g0, g1;
  block_objective off = res.objective(config(3));
  r.set_inner_weight(1.5f);
  r.set_inner_weight(0.0f);
  const double l0 = off.gradient(s, {}, g0, {}, {0.5f, 2});
  const double l1 = r.gradient(s, {}, g1, {}, {0.5f, 2});
  CHECK(l0 == l1);
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(same_bits(g0[k].weight_offset, g1[k].weight_offset));
    CHECK(same_bits(g0[k].bias, g1[k].bias));
    CHECK(g0[k].act_scale == g1[k].act_scale);
  }
}

TEST_CASE("Output weights: all 1 is the plain loss, 0 leaves a sample out", "[block][objective]") {
  const random_block rb = residual_block(8);
  block_objective plain = rb.objective(config(3));
  block_objective ones = rb.objective(config(3));
  const std::vector<float> one(rb.t.size(), 1.0f);
  ones.set_output_weights(one);
  const std::vector<layer_state> s = perturbed_states(plain);
  CHECK(ones.value(s) == Approx(plain.value(s)).epsilon(1e-6));
  std::vector<layer_state> gp, go;
  const std::vector<std::size_t> batch = {1, 4, 6};
  (void)plain.gradient(s, batch, gp, {}, {0.5f, 5});
  (void)ones.gradient(s, batch, go, {}, {0.5f, 5});
  for (std::size_t k = 0; k < 2; ++k) {  // dL/dY = (1 * d) * scale: the same bits
    CHECK(same_bits(gp[k].weight_offset, go[k].weight_offset));
    CHECK(same_bits(gp[k].bias, go[k].bias));
    CHECK(gp[k].act_scale == go[k].act_scale);
  }
  // Samples 0-3 weighted 0: the loss over all 8 is half the loss over samples 4-7.
  const std::size_t out = rb.t.size() / 8;
  std::vector<float> half(rb.t.size(), 1.0f);
  std::fill(half.begin(), half.begin() + static_cast<std::ptrdiff_t>(4 * out), 0.0f);
  block_objective weighted = rb.objective(config(3));
  weighted.set_output_weights(half);
  const std::vector<std::size_t> last = {4, 5, 6, 7};
  CHECK(weighted.value(s) == Approx(0.5 * plain.value(s, last)).epsilon(1e-6));
  CHECK(weighted.value(s) != Approx(plain.value(s)).epsilon(1e-3));
  weighted.set_output_weights({});  // back to the plain loss
  CHECK(weighted.value(s) == plain.value(s));
}

// The surrogate freezes the weight grid, which AdaRound's relaxed weights do not have: as for one
// layer (test_adaround.cpp), the directional derivative of relaxed_value along sign(dL/dV) of all
// layers, on weight-only layers (no input rounding between the layers, so relaxed_value is smooth
// but for the ReLU kinks).
TEST_CASE("Block AdaRound gradient matches the directional derivative of relaxed_value",
          "[block][objective][adaround][gradient]") {
  layer_quant_config cfg = config(3);
  cfg.quantize_activations = false;
  for (const random_block& rb : {residual_block(), linear_chain()}) {
    block_objective obj = rb.objective(cfg);
    std::vector<layer_state> s = perturbed_states(obj);
    for (std::size_t k = 0; k < obj.layers(); ++k) obj.use_adaround(k, s[k], 1.1f, -0.1f);
    std::vector<layer_state> grad;
    (void)obj.gradient(s, {}, grad, {true, false, false, false});
    double slope = 0.0;
    std::vector<layer_state> up = s, down = s;
    const float h = 1e-2f;
    for (std::size_t k = 0; k < s.size(); ++k)
      for (std::size_t i = 0; i < s[k].weight_offset.size(); ++i) {
        const float d = grad[k].weight_offset[i] > 0.0f ? 1.0f : -1.0f;
        slope += static_cast<double>(grad[k].weight_offset[i]) * d;
        up[k].weight_offset[i] += h * d;
        down[k].weight_offset[i] -= h * d;
      }
    REQUIRE(slope > 0.0);
    const double numeric = (obj.relaxed_value(up) - obj.relaxed_value(down)) / (2.0 * h);
    CHECK(slope == Approx(numeric).epsilon(2e-2));
  }
}

TEST_CASE("A one-layer block is the per-layer objective without activation", "[block][objective]") {
  const layer_geometry g = conv_geom(3, 5, 6, 6, 3, 1, 1);
  block_program p;
  p.input_sizes = {g.input_per_sample()};
  p.ops = {block_op::layer_of(0, 0)};
  p.output = 1;
  const random_block rb({g}, p, 8, 21);
  block_objective obj = rb.objective(config(3));
  layer_objective single(g, rb.w[0], rb.b[0], rb.x, rb.t, config(3));
  const std::vector<layer_state> s = perturbed_states(obj);
  CHECK(obj.value(s) == single.value(s[0]));
  std::vector<layer_state> gb;
  layer_state gl;
  const std::vector<std::size_t> batch = {1, 4, 6};
  CHECK(obj.gradient(s, batch, gb) == single.gradient(s[0], batch, gl));
  CHECK(same_bits(gb[0].weight_offset, gl.weight_offset));
  CHECK(same_bits(gb[0].weight_scale, gl.weight_scale));
  CHECK(same_bits(gb[0].bias, gl.bias));
  CHECK(gb[0].act_scale == gl.act_scale);
  CHECK(gb[0].act_zero_point == gl.act_zero_point);
}

TEST_CASE("Block gradients are deterministic", "[block][objective]") {
  const random_block rb = residual_block(10);
  block_objective a = rb.objective(config(3));
  block_objective b = rb.objective(config(3));
  const std::vector<layer_state> s = perturbed_states(a);
  std::vector<layer_state> ga, gb;
  const std::vector<std::size_t> batch = {7, 2, 5, 9};
  const double la = a.gradient(s, batch, ga, {}, {0.5f, 3});
  (void)b.value(s);  // different history
  const double lb = b.gradient(s, batch, gb, {}, {0.5f, 3});
  CHECK(la == lb);
  for (std::size_t k = 0; k < 2; ++k) {
    CHECK(same_bits(ga[k].weight_offset, gb[k].weight_offset));
    CHECK(same_bits(ga[k].weight_scale, gb[k].weight_scale));
    CHECK(same_bits(ga[k].bias, gb[k].bias));
    CHECK(ga[k].act_scale == gb[k].act_scale);
  }
}

TEST_CASE("Block programs that do not fit their layers are refused", "[block][objective][errors]") {
  const random_block rb = residual_block();
  const auto make = [&](block_program p) {
    std::vector<block_layer> layers;
    for (std::size_t k = 0; k < 2; ++k)
      layers.push_back({rb.geoms[k], rb.w[k], rb.b[k], config(4)});
    return block_objective(layers, p, {rb.x}, rb.t);
  };
  using adaquant_test::expect_error;
  block_program p = rb.prog;
  p.ops[2] = block_op::layer_of(1, 4);  // reads a later slot
  expect_error([&] { (void)make(p); }, errc::invalid_argument, "ops[2].a");
  p = rb.prog;
  p.ops[2] = block_op::layer_of(0, 2);  // layer 0 twice, layer 1 never
  expect_error([&] { (void)make(p); }, errc::invalid_argument, "layer 0 is used twice");
  p = rb.prog;
  p.ops.resize(2);
  p.output = 2;
  expect_error([&] { (void)make(p); }, errc::invalid_argument, "no op applies layer 1");
  p = rb.prog;
  p.output = 9;
  expect_error([&] { (void)make(p); }, errc::invalid_argument, "output");
  p = rb.prog;
  p.ops[3] = block_op::add(3, 1);  // the conv's output and its relu: fine
  CHECK_NOTHROW(make(p));
  p.ops[3] = block_op::add(2, 0);  // a relu'd conv output of 4x5x5 and... the same size
  CHECK_NOTHROW(make(p));
  block_program q;
  q.input_sizes = {10};
  q.ops = {block_op::layer_of(0, 0), block_op::add(1, 0)};  // 9 + 10 floats
  q.output = 2;
  const std::vector<float> w(90, 0.1f), x(20, 1.0f), t(18, 0.0f);
  expect_error(
      [&] {
        (void)block_objective({{linear_geom(10, 9), w, {}, config(4)}}, q, {x}, t);
      },
      errc::shape_mismatch, "ops[1]: adds slots of 9 and 10");
  p = rb.prog;
  p.input_sizes = {7};
  expect_error([&] { (void)make(p); }, errc::shape_mismatch, "ops[0].a");
}

TEST_CASE("Block inputs, targets and states are validated", "[block][objective][errors]") {
  using adaquant_test::expect_error;
  const random_block rb = residual_block();
  std::vector<block_layer> layers;
  for (std::size_t k = 0; k < 2; ++k) layers.push_back({rb.geoms[k], rb.w[k], rb.b[k], config(4)});
  expect_error(
      [&] {
        (void)block_objective(layers, rb.prog, {rb.x, rb.x}, rb.t);
      },
      errc::shape_mismatch, "inputs");
  const std::span<const float> short_t(rb.t.data(), rb.t.size() - 1);
  expect_error([&] { (void)block_objective(layers, rb.prog, {rb.x}, short_t); },
               errc::shape_mismatch, "targets");
  std::vector<float> bad = rb.x;
  bad[5] = std::nanf("");
  expect_error([&] { (void)block_objective(layers, rb.prog, {bad}, rb.t); }, errc::non_finite,
               "inputs[0]");
  block_objective obj(layers, rb.prog, {rb.x}, rb.t);
  std::vector<layer_state> s = perturbed_states(obj);
  expect_error([&] { (void)obj.value(std::span(s).first(1)); }, errc::shape_mismatch, "states");
  s[1].weight_scale[0] = -1.0f;
  expect_error([&] { (void)obj.value(s); }, errc::invalid_argument, "states[1]");
  s = perturbed_states(obj);
  const std::vector<std::size_t> batch = {obj.samples()};
  expect_error([&] { (void)obj.value(s, batch); }, errc::invalid_argument, "batch");
  std::vector<float> w(rb.t.size(), 1.0f);
  expect_error([&] { obj.set_output_weights(std::span(w).first(w.size() - 1)); },
               errc::shape_mismatch, "set_output_weights");
  w[3] = std::nanf("");
  expect_error([&] { obj.set_output_weights(w); }, errc::non_finite, "set_output_weights");
  for (const float mu : {-0.5f, std::nanf(""), INFINITY})
    expect_error([&] { obj.set_inner_weight(mu); }, errc::invalid_argument, "set_inner_weight");
  CHECK(obj.inner_weight() == 0.0f);
  expect_error([&] { (void)obj.inner_target(2, 0, 0); }, errc::invalid_argument, "inner_target");
  expect_error([&] { (void)obj.inner_target(0, obj.samples(), 0); }, errc::invalid_argument,
               "inner_target");
  w[3] = -0.5f;
  expect_error([&] { obj.set_output_weights(w); }, errc::invalid_argument,
               "set_output_weights: weight 3 (sample 0) is negative");
  CHECK(obj.output_weights().empty());  // a refused set changes nothing
}
