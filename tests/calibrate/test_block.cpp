// Block reconstruction (calibrate/block.hpp): a one-layer block is adaquant_optimize bit for bit,
// a residual block's output error drops below round-to-nearest's, determinism, bad options.

#include "support/adaquant_test_util.hpp"
#include "support/expect_error.hpp"

#include <adaquant/calibrate/block.hpp>

#include <catch2/catch.hpp>

#include <cstring>

using namespace adaquant;
using adaquant_test::conv_geom;
using adaquant_test::randn;

namespace {

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

adaquant_options fast_options(std::size_t iters = 150) {
  adaquant_options o;
  o.iterations = iters;
  o.batch_size = 16;
  o.eval_every = 25;
  o.seed = 7;
  return o;
}

// conv 3x3, relu, conv 3x3, + input, relu; targets are the full-precision block's outputs, inputs
// are ReLU'd Gaussians.
struct residual_case {
  layer_geometry g;
  std::vector<float> w0, b0, w1, b1, x, t;
  block_program prog;
  explicit residual_case(std::size_t n, std::size_t channels = 6)
      : g(conv_geom(channels, channels, 6, 6, 3, 1, 1)) {
    const float sd = 1.0f / std::sqrt(static_cast<float>(g.weights_per_channel()));
    w0 = randn(g.weight_size(), sd, 1);
    w1 = randn(g.weight_size(), sd, 2);
    b0 = randn(channels, 0.1f, 3);
    b1 = randn(channels, 0.1f, 4);
    x = randn(n * g.input_per_sample(), 1.0f, 5, 0.3f);
    for (float& v : x) v = v > 0.0f ? v : 0.0f;
    std::vector<float> h(x.size()), y(x.size());
    conv2d_forward(g.conv, x, w0, b0, h, output_activation::relu);
    conv2d_forward(g.conv, h, w1, b1, y);
    t.resize(y.size());
    for (std::size_t i = 0; i < y.size(); ++i) t[i] = std::max(0.0f, y[i] + x[i]);
    prog.input_sizes = {g.input_per_sample()};
    prog.ops = {block_op::layer_of(0, 0), block_op::relu(1), block_op::layer_of(1, 2),
                block_op::add(3, 0), block_op::relu(4)};
    prog.output = 5;
  }
  block_objective objective(int bits) const {
    layer_quant_config c;
    c.weight_scheme = {bits, true, true, false};
    c.act_scheme = {bits, false, false, false};
    return block_objective({{g, w0, b0, c}, {g, w1, b1, c}}, prog, {x}, t);
  }
};

}  // namespace

TEST_CASE("A one-layer block optimises exactly as adaquant_optimize", "[block][calibrate]") {
  const adaquant_test::random_layer L(conv_geom(4, 5, 6, 6, 3, 1, 1), 48, 9);
  layer_quant_config c;
  c.weight_scheme = {3, true, true, false};
  c.act_scheme = {3, false, false, false};
  block_program p;
  p.input_sizes = {L.geometry.input_per_sample()};
  p.ops = {block_op::layer_of(0, 0)};
  p.output = 1;
  for (const weight_rounding r : {weight_rounding::learned_step, weight_rounding::adaround}) {
    adaquant_options o = fast_options();
    o.qdrop = 0.0f;  // the block draws QDrop per layer from its own streams
    o.rounding = r;
    block_objective block({{L.geometry, L.w, L.b, c}}, p, {L.x}, L.y);
    layer_objective single(L.geometry, L.w, L.b, L.x, L.y, c);
    const layer_quantizers q = quantizers_of(c);
    const std::vector<initial_quant_params> init = estimate_block_initial_params(block, {&q, 1});
    const block_result rb = block_optimize(block, o, init);
    const layer_result rl = adaquant_optimize(single, o, estimate_initial_params(single, q));
    CHECK(same_bits(rb.layers[0].weights, rl.weights));
    CHECK(same_bits(rb.layers[0].bias, rl.bias));
    CHECK(rb.layers[0].act_params.scale == rl.act_params.scale);
    CHECK(rb.report.mse_after == rl.report.mse_after);
    CHECK(rb.report.best_iteration == rl.report.best_iteration);
  }
}

TEST_CASE("Block reconstruction lowers the block output error below round-to-nearest",
          "[block][calibrate]") {
  const residual_case rc(96);
  for (int bits : {4, 3}) {
    block_objective obj = rc.objective(bits);
    const layer_quantizers q = quantizers_of(obj.layer(0).config());
    const auto init = estimate_block_initial_params(obj, {&q, 1});
    adaquant_options o = fast_options(300);
    o.qdrop = 0.0f;
    // Each width's default: the learned step at 4 bits, AdaRound at 3.
    const block_result r = block_optimize(obj, o, init);
    WARN("W" << bits << "A" << bits << " block: " << to_string(r.report));
    // Held-out selection: never worse than the start. Measured on this block (6 channels, 86
    // training samples): x1.15 / x1.19 (train / held-out) at W4A4, x1.14 / x1.07 at W3A3 (before
    // AdaRound's regulariser was scaled to the layer, W3A3 did not improve at all: best
    // iteration 0).
    CHECK(r.report.heldout_after <= r.report.heldout_before);
    CHECK(r.report.mse_after < (bits == 4 ? 0.95 : 0.92) * r.report.mse_before);
    if (bits == 3) {
      CHECK(r.report.best_iteration > 0);
      CHECK(r.report.heldout_after < 0.97 * r.report.heldout_before);
    }
    REQUIRE(r.layers.size() == 2);
    for (const layer_result& l : r.layers)
      for (float v : l.weights) CHECK(std::isfinite(v));
    // Each layer's report: the block's figures and the settings the layer ran with.
    CHECK(r.report.block_layers == 2);
    CHECK(r.report.step_samples == 16);
    for (const layer_result& l : r.layers) {
      CHECK(l.report.mse_after == r.report.mse_after);
      CHECK(l.report.block_layers == 2);
      CHECK(l.report.step_samples == 16);
      CHECK(l.report.adaround == (bits == 3));
      CHECK(l.report.weight_rate == (bits == 3 ? o.adaround.lr : 2e-3f));
      CHECK(l.report.qdrop == 0.0f);
    }
  }
}

TEST_CASE("The inner term keeps a block's layers nearer their full-precision outputs",
          "[block][calibrate]") {
  const residual_case rc(96);
  // The inner error of states s: the objective's relaxed value with weight 1 less its output error
  // (the learned step: no relaxed rounding in between).
  const auto inner_error = [&](const std::vector<layer_state>& s) {
    block_objective probe = rc.objective(3);
    probe.set_inner_weight(1.0f);
    return probe.relaxed_value(s) - probe.value(s);
  };
  double inner[2] = {}, output[2] = {}, start_inner = 0.0;
  {
    block_objective obj = rc.objective(3);
    const layer_quantizers q = quantizers_of(obj.layer(0).config());
    const auto init = estimate_block_initial_params(obj, {&q, 1});
    std::vector<layer_state> s;
    for (std::size_t k = 0; k < 2; ++k)
      s.push_back(obj.layer(k).initial_state(init[k].weight, init[k].act));
    start_inner = inner_error(s);
  }
  for (const float mu : {0.0f, 50.0f}) {
    block_objective obj = rc.objective(3);
    const layer_quantizers q = quantizers_of(obj.layer(0).config());
    adaquant_options o = fast_options(300);
    o.qdrop = 0.0f;
    o.rounding = weight_rounding::learned_step;
    o.inner_weight = mu;
    const block_result r = block_optimize(obj, o, estimate_block_initial_params(obj, {&q, 1}));
    CHECK(obj.inner_weight() == mu);
    for (const layer_result& l : r.layers) CHECK(l.report.inner_weight == mu);
    std::vector<layer_state> s;
    for (const layer_result& l : r.layers) s.push_back(l.state);
    inner[mu > 0.0f] = inner_error(s);
    output[mu > 0.0f] = r.report.mse_after;
  }
  WARN("inner error " << inner[0] << " -> " << inner[1] << ", output MSE " << output[0] << " -> "
                      << output[1]);
  // Measured (300 steps, W3A3, learned step): without the term the output error falls (0.01106 ->
  // 0.01061) while the layers drift from their full-precision outputs (inner error 0.05533 at
  // round-to-nearest -> 0.05598); at weight 50 the inner error ends at 0.05350 (at 5 the
  // held-out selection kept the start).
  CHECK(inner[0] > start_inner);
  CHECK(inner[1] < 0.97 * inner[0]);
  CHECK(inner[1] < start_inner);
  // Unset: the default of the block's length, 0 for its 2 layers.
  block_objective obj = rc.objective(3);
  const layer_quantizers q = quantizers_of(obj.layer(0).config());
  const block_result r =
      block_optimize(obj, fast_options(20), estimate_block_initial_params(obj, {&q, 1}));
  CHECK(r.layers[0].report.inner_weight == 0.0f);
  CHECK(obj.inner_weight() == 0.0f);
  CHECK(default_inner_weight(3) == 0.0f);
  CHECK(default_inner_weight(4) == 1.0f);
}

TEST_CASE("Block reconstruction is deterministic, for any thread count", "[block][calibrate]") {
  // 8 channels: the direct convolutions, which split over threads (grain 1: every pass does).
  const residual_case rc(40, 8);
  const auto run = [&](std::size_t threads) {
    block_objective obj = rc.objective(3);
    obj.set_thread_grain(1.0);
    const layer_quantizers q = quantizers_of(obj.layer(0).config());
    adaquant_options o = fast_options(60);
    o.qdrop = 0.5f;
    block_result r = block_optimize(obj, o, estimate_block_initial_params(obj, {&q, 1}), threads);
    CHECK(obj.threads() == 1);  // restored
    return r;
  };
  const block_result a = run(1);
  for (const std::size_t threads : {1u, 2u, 3u}) {
    INFO(threads << " threads");
    const block_result b = run(threads);
    for (std::size_t k = 0; k < 2; ++k) {
      CHECK(same_bits(a.layers[k].weights, b.layers[k].weights));
      CHECK(same_bits(a.layers[k].bias, b.layers[k].bias));
      CHECK(a.layers[k].act_params.scale == b.layers[k].act_params.scale);
    }
    CHECK(a.report.mse_after == b.report.mse_after);
  }
}

TEST_CASE("A block's step is bounded per layer: L * step_macs (block_step_samples)",
          "[block][calibrate][step_macs]") {
  const residual_case rc(40);
  const block_objective obj = rc.objective(4);
  // Two layers of the same shape: m multiply-adds per sample each, 2m for the block.
  const double m = static_cast<double>(rc.g.out_positions() * rc.g.weight_size());
  adaquant_options o = fast_options();
  o.batch_size = 16;
  o.step_macs = 0.0;  // no bound
  CHECK(block_step_samples(o, obj) == 16);
  o.step_macs = 16.0 * m;  // one layer's 16 samples: the block's 16 fit 2 * step_macs exactly
  CHECK(block_step_samples(o, obj) == 16);
  o.step_macs = 8.0 * m;  // 2 * 8m / 2m = 8 samples
  CHECK(block_step_samples(o, obj) == 8);
  o.step_macs = 5.5 * m;  // floor(11m / 2m) = 5
  CHECK(block_step_samples(o, obj) == 5);
  o.step_macs = 1.0;  // at least one sample
  CHECK(block_step_samples(o, obj) == 1);
  // As many samples as each of its layers takes on its own under the same bound.
  o.step_macs = 8.0 * m;
  CHECK(step_samples(o, rc.g) == 8);
}

TEST_CASE("Block reconstruction refuses bad options and initial parameters",
          "[block][calibrate][errors]") {
  using adaquant_test::expect_error;
  const residual_case rc(20);
  block_objective obj = rc.objective(4);
  const layer_quantizers q = quantizers_of(obj.layer(0).config());
  auto init = estimate_block_initial_params(obj, {&q, 1});
  adaquant_options o = fast_options(10);
  o.qdrop = 1.5f;
  expect_error([&] { (void)block_optimize(obj, o, init); }, errc::invalid_argument, "qdrop");
  for (const float mu : {-1.0f, std::nanf(""), INFINITY}) {
    adaquant_options bad = fast_options(10);
    bad.inner_weight = mu;
    expect_error([&] { (void)block_optimize(obj, bad, init); }, errc::invalid_argument,
                 "options.inner_weight");
  }
  init.pop_back();
  expect_error([&] { (void)block_optimize(obj, fast_options(10), init); }, errc::shape_mismatch,
               "block_optimize: init");
  const std::vector<layer_quantizers> three(3, q);
  expect_error([&] { (void)estimate_block_initial_params(obj, three); }, errc::shape_mismatch,
               "3 for 2 layers");
}
