// Calibration drivers on a tiny synthetic network implementing QuantizableNetwork:
// conv(2->4, 3x3, pad 1) ReLU -> conv(4->4, 3x3, stride 2, pad 1, groups 2) ReLU -> linear(36->5).

#include "support/adaquant_test_util.hpp"

#include <adaquant/adapters/std.hpp>
#include <adaquant/calibrate/driver.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <map>
#include <optional>

using namespace adaquant;

namespace {

struct tiny_net {
  struct layer {
    layer_desc desc;
    std::vector<float> w, b;
    std::optional<quantized_layer> q;
  };
  std::vector<layer> layers;
  std::vector<float> data;  // calibration inputs [N, 2, 6, 6]
  std::size_t n = 0;
  std::map<std::pair<std::size_t, int>, std::size_t> captured;  // (layer, mode) -> samples seen
  bool break_capture = false;

  explicit tiny_net(std::size_t samples) : n(samples) {
    const layer_geometry g[3] = {adaquant_test::conv_geom(2, 4, 6, 6, 3, 1, 1),
                                 adaquant_test::conv_geom(4, 4, 6, 6, 3, 2, 1, 1, 2),
                                 adaquant_test::linear_geom(36, 5)};
    const output_activation a[3] = {output_activation::relu, output_activation::relu,
                                    output_activation::none};
    for (std::size_t i = 0; i < 3; ++i) {
      layer l;
      const float sd = 1.5f / std::sqrt(static_cast<float>(g[i].weights_per_channel()));
      l.w = adaquant_test::randn(g[i].weight_size(), sd, 100 + static_cast<std::uint32_t>(i));
      l.b = adaquant_test::randn(g[i].out_channels(), 0.1f, 200 + static_cast<std::uint32_t>(i));
      l.desc = {10 * i + 1, g[i], a[i], {}, {}};
      layers.push_back(std::move(l));
    }
    for (layer& l : layers) {
      l.desc.weight = l.w;
      l.desc.bias = l.b;
    }
    data = adaquant_test::randn(n * 72, 1.0f, 300);
  }

  // --- QuantizableNetwork ---
  std::size_t calibration_size() const { return n; }
  std::vector<layer_desc> quantizable_layers() const {
    std::vector<layer_desc> d;
    for (const layer& l : layers) d.push_back(l.desc);
    return d;
  }
  layer_io capture(std::size_t id, std::size_t first, std::size_t count, capture_mode mode) {
    captured[{id, static_cast<int>(mode)}] += count;
    layer_io io;
    std::vector<float> x(data.begin() + static_cast<std::ptrdiff_t>(first * 72),
                         data.begin() + static_cast<std::ptrdiff_t>((first + count) * 72));
    for (const layer& l : layers) {
      const bool quant = mode == capture_mode::quantized && l.q.has_value();
      if (l.desc.id == id) io.inputs = x;
      if (quant && l.q->quantize_input) fake_quant_per_tensor(x, x, l.q->act_params);
      std::vector<float> y(count * l.desc.geometry.output_per_sample());
      const std::vector<float>& w = quant ? l.q->weight : l.w;
      const std::vector<float>& b = quant ? l.q->bias : l.b;
      if (l.desc.geometry.kind == layer_kind::linear)
        linear_forward(l.desc.geometry.linear, x, w, b, y);
      else
        conv2d_forward(l.desc.geometry.conv, x, w, b, y);
      if (l.desc.id == id) {
        io.outputs = y;
        if (break_capture) io.outputs.pop_back();
        return io;
      }
      for (float& v : y) v = detail::apply_activation(l.desc.activation, v);
      x = std::move(y);
    }
    return io;
  }
  void set_quantized(const quantized_layer& q) {
    for (layer& l : layers)
      if (l.desc.id == q.id) l.q = q;
  }
  // --- end of QuantizableNetwork ---

  // Network output (last layer) MSE of the quantized network against full precision.
  double output_mse() {
    const layer_io fp = capture(21, 0, n, capture_mode::full_precision);
    const layer_io q = capture(21, 0, n, capture_mode::quantized);
    std::vector<float> x = q.inputs;
    const layer& l = layers[2];
    fake_quant_per_tensor(x, x, l.q->act_params);
    std::vector<float> y(n * 5);
    linear_forward(l.desc.geometry.linear, x, l.q->weight, l.q->bias, y);
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) s += (y[i] - fp.outputs[i]) * (y[i] - fp.outputs[i]);
    return s / static_cast<double>(y.size());
  }
};
static_assert(QuantizableNetwork<tiny_net>);

// tiny_net lending its quantized captures' inputs back (held_inputs), one run per sample, from
// storage it keeps per (layer, first sample); `lend` false: it declines, `short_by` > 0: it lends
// that many floats too few.
struct lending_net : tiny_net {
  using tiny_net::tiny_net;
  bool lend = true;
  std::size_t short_by = 0, lent = 0;
  std::map<std::pair<std::size_t, std::size_t>, std::vector<float>> held;
  layer_io capture(std::size_t id, std::size_t first, std::size_t count, capture_mode mode) {
    layer_io io = tiny_net::capture(id, first, count, mode);
    if (mode == capture_mode::quantized) held[{id, first}] = io.inputs;
    return io;
  }
  std::optional<std::vector<std::span<const float>>> held_inputs(std::size_t id, std::size_t first,
                                                                 std::size_t count) {
    if (!lend) return std::nullopt;
    const std::vector<float>& x = held.at({id, first});
    const std::size_t per = x.size() / count;
    std::vector<std::span<const float>> runs;
    for (std::size_t i = 0; i < count; ++i) runs.emplace_back(x.data() + i * per, per);
    runs.back() = runs.back().first(per - short_by);
    ++lent;
    return runs;
  }
};
static_assert(!QuantizableNetwork<int>);

calibration_options options(calibration_order order, std::size_t iterations = 150) {
  calibration_options o;
  o.order = order;
  o.layer.iterations = iterations;
  o.layer.batch_size = 16;
  o.layer.eval_every = 25;
  return o;
}
// W4A8: weight rounding dominates, which AdaQuant targets.
const layer_quantizers w4a8{quantizer_spec::weights(4), quantizer_spec::activations(8)};
execution_context context(std::size_t threads = 1) {
  return {threads, 24, {}};  // several chunks: every sample must be captured
}

bool same_quantization(const tiny_net& a, const tiny_net& b) {
  for (std::size_t i = 0; i < a.layers.size(); ++i) {
    const auto &qa = *a.layers[i].q, &qb = *b.layers[i].q;
    if (std::memcmp(qa.weight.data(), qb.weight.data(), qa.weight.size() * 4) != 0) return false;
    if (std::memcmp(qa.bias.data(), qb.bias.data(), qa.bias.size() * 4) != 0) return false;
    if (!(qa.act_params == qb.act_params)) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("Sequential AdaQuant beats round-to-nearest end to end", "[driver]") {
  tiny_net rtn(96), seq(96), par(96);
  calibration_options frozen = options(calibration_order::sequential, 1);
  frozen.layer.train = {false, false, false, false};
  frozen.layer.holdout_fraction = 0.0f;
  (void)adaquant_calibrate(rtn, w4a8, frozen, context());
  const calibration_report rs =
      adaquant_calibrate(seq, w4a8, options(calibration_order::sequential), context());
  const calibration_report rp =
      adaquant_calibrate(par, w4a8, options(calibration_order::parallel), context());
  REQUIRE(rs.layers.size() == 3);
  REQUIRE(rp.layers.size() == 3);
  for (const layer_report& r : rs.layers) {
    WARN("sequential " << to_string(r));
    CHECK(r.mse_after <= r.mse_before);
  }
  for (const layer_report& r : rp.layers) WARN("parallel " << to_string(r));
  // Sequential: later layers saw quantized predecessors over all samples, in chunks.
  CHECK(seq.captured[{11, static_cast<int>(capture_mode::quantized)}] == 96);
  CHECK(seq.captured[{21, static_cast<int>(capture_mode::quantized)}] == 96);
  CHECK(seq.captured[{21, static_cast<int>(capture_mode::full_precision)}] == 96);
  CHECK(par.captured[{21, static_cast<int>(capture_mode::quantized)}] == 0);
  const double e_rtn = rtn.output_mse(), e_seq = seq.output_mse(), e_par = par.output_mse();
  WARN("network output MSE: round-to-nearest " << e_rtn << ", parallel " << e_par << ", sequential "
                                               << e_seq);
  CHECK(e_seq < e_rtn);
  CHECK(e_par < 1.1 * e_rtn);  // parallel does not correct accumulated errors: no promise
}

TEST_CASE("Parallel results do not depend on the thread count; runs are repeatable", "[driver]") {
  tiny_net a(48), b(48), c(48);
  calibration_options o = options(calibration_order::parallel, 40);
  (void)adaquant_calibrate(a, w4a8, o, context(1));
  (void)adaquant_calibrate(b, w4a8, o, context(3));
  (void)adaquant_calibrate(c, w4a8, o, context(2));
  CHECK(same_quantization(a, b));
  CHECK(same_quantization(a, c));
  tiny_net s1(48), s2(48);
  (void)adaquant_calibrate(s1, w4a8, options(calibration_order::sequential, 40), context());
  (void)adaquant_calibrate(s2, w4a8, options(calibration_order::sequential, 40), context(2));
  CHECK(same_quantization(s1, s2));
}

// Calibrates two nets with o on 1 and 2 threads; true when they quantize alike. into: the 1-thread
// net, for further comparisons.
bool same_for_1_and_2_threads(const calibration_options& o, tiny_net& into) {
  tiny_net b(48);
  (void)adaquant_calibrate(into, w4a8, o, context(1));
  (void)adaquant_calibrate(b, w4a8, o, context(2));
  return same_quantization(into, b);
}

TEST_CASE("A step bound (step_macs): results do not depend on the thread count",
          "[driver][step_macs]") {
  calibration_options o = options(calibration_order::parallel, 40);
  o.layer.step_macs = 1.0;  // one sample per step on every layer
  tiny_net a(48), plain(48);
  CHECK(same_for_1_and_2_threads(o, a));
  o.layer.step_macs = 0.0;
  (void)adaquant_calibrate(plain, w4a8, o, context(2));
  CHECK_FALSE(same_quantization(a, plain));
  tiny_net s1(48);
  calibration_options q = options(calibration_order::sequential, 40);
  q.layer.step_macs = 1.0;
  CHECK(same_for_1_and_2_threads(q, s1));
}

TEST_CASE("Sequential order splits steps into chunks: results do not depend on the thread count",
          "[driver][chunks]") {
  calibration_options o = options(calibration_order::sequential, 40);
  o.layer.chunk_macs = 1.0;  // one sample per chunk on every layer
  tiny_net a(48), plain(48);
  CHECK(same_for_1_and_2_threads(o, a));
  o.layer.chunk_macs = 0.0;
  (void)adaquant_calibrate(plain, w4a8, o, context(2));
  CHECK_FALSE(same_quantization(a, plain));  // the summation order changed
}

TEST_CASE("QDrop: results do not depend on the thread count and differ from no drop",
          "[driver][qdrop]") {
  const layer_quantizers w4a2{quantizer_spec::weights(4), quantizer_spec::activations(2)};
  calibration_options o = options(calibration_order::parallel, 40);
  o.layer.qdrop = 0.5f;
  tiny_net a(48), b(48), plain(48);
  (void)adaquant_calibrate(a, w4a2, o, context(1));
  (void)adaquant_calibrate(b, w4a2, o, context(2));
  CHECK(same_quantization(a, b));
  o.layer.qdrop = 0.0f;
  (void)adaquant_calibrate(plain, w4a2, o, context(2));
  CHECK_FALSE(same_quantization(a, plain));
}

TEST_CASE("QDrop's default is the network's: below 4 bits anywhere, every layer drops",
          "[driver][qdrop]") {
  // Parallel order: each layer is calibrated on full-precision inputs, so a layer's result
  // depends on its own options only.
  const layer_quantizers w8a8{quantizer_spec::weights(8), quantizer_spec::activations(8)};
  const layer_quantizers w2a4{quantizer_spec::weights(2), quantizer_spec::activations(4)};
  calibration_options o = options(calibration_order::parallel, 40);
  const auto run = [&](const std::vector<layer_quantizers>& q, std::optional<float> p) {
    o.layer.qdrop = p;
    tiny_net net(48);
    (void)adaquant_calibrate(net, std::span<const layer_quantizers>(q), o, context(2));
    return net;
  };
  const auto same_layer = [](const tiny_net& a, const tiny_net& b, std::size_t i) {
    const auto &qa = *a.layers[i].q, &qb = *b.layers[i].q;
    return qa.weight == qb.weight && qa.bias == qb.bias && qa.act_params == qb.act_params;
  };
  // The middle layer at W2A4: the 8-bit first and last layers drop too.
  const std::vector<layer_quantizers> mixed{w8a8, w2a4, w8a8};
  const tiny_net by_default = run(mixed, std::nullopt), half = run(mixed, 0.5f),
                 none = run(mixed, 0.0f);
  for (std::size_t i = 0; i < 3; ++i) {
    INFO("layer " << i);
    CHECK(same_layer(by_default, half, i));
  }
  // Dropping changed the 2-bit layer and the 8-bit last layer (the first layer's result on this
  // data is the same with and without it, so it tells nothing here).
  CHECK_FALSE(same_layer(by_default, none, 1));
  CHECK_FALSE(same_layer(by_default, none, 2));
  // Every layer at 8 bits: no drop.
  const std::vector<layer_quantizers> high{w8a8, w8a8, w8a8};
  const tiny_net high_default = run(high, std::nullopt), high_none = run(high, 0.0f);
  for (std::size_t i = 0; i < 3; ++i) CHECK(same_layer(high_default, high_none, i));
}

TEST_CASE(
    "AdaRound with QDrop: results do not depend on the thread count, differ from the "
    "learned step and sit on the grid",
    "[driver][adaround]") {
  const layer_quantizers w2a2{quantizer_spec::weights(2), quantizer_spec::activations(2)};
  calibration_options o = options(calibration_order::parallel, 40);
  o.layer.rounding = weight_rounding::adaround;
  o.layer.qdrop = 0.5f;
  tiny_net a(48), b(48), step(48);
  (void)adaquant_calibrate(a, w2a2, o, context(1));
  (void)adaquant_calibrate(b, w2a2, o, context(2));
  CHECK(same_quantization(a, b));
  o.order = calibration_order::sequential;
  tiny_net c(48), d(48);
  (void)adaquant_calibrate(c, w2a2, o, context(1));
  (void)adaquant_calibrate(d, w2a2, o, context(2));
  CHECK(same_quantization(c, d));
  o.layer.rounding = weight_rounding::learned_step;
  (void)adaquant_calibrate(step, w2a2, o, context(2));
  CHECK_FALSE(same_quantization(c, step));
}

TEST_CASE("Per-layer configuration: 8-bit first layer, skipped layers", "[driver]") {
  tiny_net net(48);
  calibration_options o = options(calibration_order::sequential, 20);
  o.configure = [](const layer_desc& d, adaquant_options& lo) {
    if (d.id == 11) lo.iterations = 5;
    return d.id != 21;  // keep the head in full precision
  };
  const layer_quantizers w8a8{quantizer_spec::weights(8), quantizer_spec::activations(8)};
  const std::vector<layer_quantizers> per_layer{w8a8, w4a8, w4a8};
  std::vector<std::size_t> progress;
  execution_context ctx = context();
  ctx.progress = [&](const progress_event& e) {
    CHECK(e.step == "adaquant");
    CHECK(e.total == 2);
    progress.push_back(e.done);
  };
  const calibration_report r =
      adaquant_calibrate(net, std::span<const layer_quantizers>(per_layer), o, ctx);
  REQUIRE(r.layers.size() == 2);
  CHECK(r.layers[0].layer_id == 1);
  CHECK(r.layers[1].layer_id == 11);
  CHECK(r.layers[1].iterations == 5);
  CHECK(progress == std::vector<std::size_t>{1, 2});
  CHECK(net.layers[0].q->weight_params.qmax == 127);
  CHECK_FALSE(net.layers[2].q.has_value());
}

TEST_CASE("Block-wise weight-only layers through the driver; 3x3 convs refuse blocks",
          "[driver][block]") {
  tiny_net net(48);
  const layer_quantizers w4_blocks{quantizer_spec::weights_per_block(4, 16), std::nullopt};
  const std::vector<layer_quantizers> per_layer{w4a8, w4a8, w4_blocks};  // 36 inputs: 16, 16, 4
  const calibration_report r =
      adaquant_calibrate(net, std::span<const layer_quantizers>(per_layer),
                         options(calibration_order::sequential, 40), context());
  REQUIRE(r.layers.size() == 3);
  const quantized_layer& head = *net.layers[2].q;
  REQUIRE(head.weight_blocks.has_value());
  CHECK(head.weight_blocks->blocks() == 5 * 3);
  CHECK_FALSE(head.quantize_input);
  CHECK(r.layers[2].mse_after <= r.layers[2].mse_before);
  CHECK_FALSE(net.layers[0].q->weight_blocks.has_value());
  std::vector<float> again(head.weight.size());
  fake_quant_per_block(tensor_view<const float>(head.weight.data(), {5, 36}),
                       tensor_view<float>(again.data(), {5, 36}), *head.weight_blocks);
  CHECK(again == head.weight);  // on its blocks' grids

  tiny_net fresh(8);
  try {
    (void)adaquant_calibrate(fresh, w4_blocks, options(calibration_order::parallel, 5));
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK_THAT(std::string(e.what()),
               Catch::Contains("quantizers[layer 1].weights.gran: block-wise weights need") &&
                   Catch::Contains("got a 3x3 convolution"));
  }
  CHECK(fresh.captured.empty());  // rejected before any capture
}

TEST_CASE("Driver errors: empty calibration set, bad captures", "[driver][errors]") {
  tiny_net empty(0);
  try {
    (void)adaquant_calibrate(empty, w4a8, options(calibration_order::sequential, 5));
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::empty_input);
    CHECK_THAT(std::string(e.what()), Catch::Contains("calibration set"));
  }
  tiny_net broken(8);
  broken.break_capture = true;
  try {
    (void)adaquant_calibrate(broken, w4a8, options(calibration_order::parallel, 5));
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::shape_mismatch);
    CHECK_THAT(std::string(e.what()), Catch::Contains("capture(layer 1).outputs"));
  }
  tiny_net net(8);
  const std::vector<layer_quantizers> two{w4a8, w4a8};
  try {
    (void)adaquant_calibrate(net, std::span<const layer_quantizers>(two),
                             options(calibration_order::sequential, 5));
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::shape_mismatch);
    CHECK_THAT(std::string(e.what()), Catch::Contains("quantizers: has 2 entries for 3 layers"));
  }
  layer_quantizers per_tensor_weights = w4a8;
  per_tensor_weights.weights.gran = granularity::per_tensor();
  CHECK_THROWS_WITH(
      adaquant_calibrate(net, per_tensor_weights, options(calibration_order::sequential, 5)),
      Catch::Contains("quantizers[layer 1].weights.gran"));
  CHECK_FALSE(net.layers[0].q.has_value());  // rejected before any layer was changed
  // Caches above the memory limit: the estimate grows with the layers taken at once.
  execution_context tight = context(2);
  tight.memory_limit = 64;
  try {
    (void)adaquant_calibrate(net, w4a8, options(calibration_order::parallel, 5), tight);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::infeasible);
    CHECK_THAT(std::string(e.what()), Catch::Contains("8 samples x"));
    CHECK_THAT(std::string(e.what()), Catch::Contains("2 layer(s) at a time"));
  }
  const cache_estimate one = estimate_cache(net.quantizable_layers(), 8, 1);
  CHECK(estimate_cache(net.quantizable_layers(), 8, 2).bytes == 2 * one.bytes);
  CHECK(estimate_cache(net.quantizable_layers(), 16, 1).bytes == 2 * one.bytes);
  tight.memory_limit = static_cast<std::size_t>(one.bytes);  // sequential: one layer at a time
  CHECK_NOTHROW(adaquant_calibrate(net, w4a8, options(calibration_order::sequential, 5), tight));
  CHECK(net.layers[0].q.has_value());
  REQUIRE(available_memory().has_value());  // Linux: /proc/meminfo
  CHECK(*available_memory() > 0);
}

TEST_CASE("capture_batch_within: samples whose largest layer's inputs and outputs fit the bytes",
          "[driver][memory]") {
  const tiny_net net(8);
  const std::vector<layer_desc> layers = net.quantizable_layers();
  std::size_t per = 0;  // floats per sample of the largest layer (inputs + outputs)
  for (const layer_desc& d : layers)
    per = std::max(per, d.geometry.input_per_sample() + d.geometry.output_per_sample());
  CHECK(capture_batch_within(layers, 10 * per * 4, 100) == 10);
  CHECK(capture_batch_within(layers, 10 * per * 4 + 3, 100) == 10);  // rounded down
  CHECK(capture_batch_within(layers, 1000 * per * 4, 100) == 100);   // at most `most`
  CHECK(capture_batch_within(layers, 1, 100) == 1);                  // at least 1
  CHECK(capture_batch_within({}, 1 << 20, 100) == 100);              // no layers
}

TEST_CASE("Sequential order reads the inputs a network lends: the same bits as copies",
          "[driver][held_inputs]") {
  calibration_options o = options(calibration_order::sequential, 40);
  tiny_net copied(48);
  lending_net lender(48), decliner(48);
  decliner.lend = false;
  (void)adaquant_calibrate(copied, w4a8, o, context(2));
  (void)adaquant_calibrate(lender, w4a8, o, context(2));
  (void)adaquant_calibrate(decliner, w4a8, o, context(2));
  CHECK(lender.lent == 3 * 2);  // 3 layers, 48 samples in chunks of 24
  CHECK(decliner.lent == 0);
  CHECK(same_quantization(copied, lender));
  CHECK(same_quantization(copied, decliner));
  // MSE clipping of the inputs over runs that split its blocks, and AdaRound's regulariser.
  o.layer.rounding = weight_rounding::adaround;
  const layer_quantizers w3a3{quantizer_spec::weights(3), quantizer_spec::activations(3)};
  tiny_net copied3(48);
  lending_net lender3(48);
  (void)adaquant_calibrate(copied3, w3a3, o, context(1));
  (void)adaquant_calibrate(lender3, w3a3, o, context(1));
  CHECK(same_quantization(copied3, lender3));
  lending_net liar(8);
  liar.short_by = 1;
  try {
    (void)adaquant_calibrate(liar, w4a8, options(calibration_order::sequential, 5));
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::shape_mismatch);
    CHECK_THAT(std::string(e.what()),
               Catch::Contains("held_inputs(layer 1)") && Catch::Contains("not whole samples"));
  }
  CHECK_FALSE(liar.layers[0].q.has_value());
}
