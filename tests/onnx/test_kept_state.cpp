// onnx_network's memory rule (network.hpp, "Memory"): while quantized passes hold state, a
// full-precision capture of outputs keeps its state only where the live values fit within
// network_options::full_precision_keep_limit, recomputing from there. Same bits as keeping it
// before every layer; less kept.
#include "network_test_util.hpp"
#include "onnx_test_util.hpp"

#include <adaquant/onnx/live_values.hpp>
#include <adaquant/pipeline/advanced.hpp>
#include <adaquant/pipeline/light.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <vector>

using namespace onnx_test;
using adaquant::capture_mode;

namespace {

// x [N, 2, 6, 6] -> Conv a 3x3 -> BN -> Relu -> Conv b 3x3 -> Add(x) -> Relu -> Conv c 1x1 (3)
// -> Relu -> GlobalAveragePool -> Flatten -> Gemm (4) -> logits. Before conv b the block input x
// is live beside conv b's input: 2 x 72 elements per sample, over the largest layer input (72).
builder residual_cnn() {
  builder b(13);
  b.input("x", {-1, 2, 6, 6});
  b.init_f("wa", {2, 2, 3, 3}, pseudo_random(36, 21));
  b.init_f("gamma", {2}, {1.0f, 0.5f});
  b.init_f("beta", {2}, {0.1f, -0.2f});
  b.init_f("mean", {2}, {0.05f, -0.1f});
  b.init_f("var", {2}, {1.0f, 0.5f});
  b.init_f("wb", {2, 2, 3, 3}, pseudo_random(36, 22));
  b.init_f("bb", {2}, {0.05f, -0.05f});
  b.init_f("wc", {3, 2, 1, 1}, pseudo_random(6, 23, 1.0f));
  b.init_f("wf", {4, 3}, pseudo_random(12, 24, 1.0f));
  b.init_f("bf", {4}, {0.1f, 0.2f, 0.3f, 0.4f});
  attr_ints(b.node("Conv", {"x", "wa"}, {"ca"}, "conv_a"), "pads", {1, 1, 1, 1});
  b.node("BatchNormalization", {"ca", "gamma", "beta", "mean", "var"}, {"na"}, "bn_a");
  b.node("Relu", {"na"}, {"ra"}, "relu_a");
  attr_ints(b.node("Conv", {"ra", "wb", "bb"}, {"cb"}, "conv_b"), "pads", {1, 1, 1, 1});
  b.node("Add", {"cb", "x"}, {"s"}, "add");
  b.node("Relu", {"s"}, {"rs"}, "relu_s");
  b.node("Conv", {"rs", "wc"}, {"cc"}, "conv_c");
  b.node("Relu", {"cc"}, {"rc"}, "relu_c");
  b.node("GlobalAveragePool", {"rc"}, {"p"}, "gap");
  b.node("Flatten", {"p"}, {"flat"}, "flatten");
  attr_i(b.node("Gemm", {"flat", "wf", "bf"}, {"logits"}, "fc"), "transB", 1);
  b.output("logits");
  return b;
}

aq::onnx_network make_residual(std::size_t threads, std::int64_t samples,
                               std::optional<std::size_t> limit) {
  aq::network_options o;
  o.threads = threads;
  o.loss_samples = 16;
  o.full_precision_keep_limit = limit;
  return aq::onnx_network(
      residual_cnn().load("residual_cnn.onnx"),
      {aq::tensor({samples, 2, 6, 6},
                  pseudo_random(static_cast<std::size_t>(samples * 72), 31, 2.0f))},
      o);
}

std::size_t node_named(const aq::graph& g, const std::string& name) {
  for (std::size_t i = 0; i < g.nodes().size(); ++i)
    if (g.at(i).name == name) return i;
  FAIL("no node " << name);
  return 0;
}

// Every quantized layer of a and b has the same bits.
void check_same_quantized(const aq::onnx_network& a, const aq::onnx_network& b) {
  for (const auto& l : a.quantizable_layers()) {
    const auto& x = *a.quantized().at(l.id).layer;
    const auto& y = *b.quantized().at(l.id).layer;
    CHECK(x.weight.f == y.weight.f);
    CHECK(x.bias == y.bias);
    REQUIRE(x.input_quant.has_value());
    REQUIRE(y.input_quant.has_value());
    CHECK(x.input_quant->scale == y.input_quant->scale);
    CHECK(x.input_quant->zero_point == y.input_quant->zero_point);
  }
}

adaquant::quantization_spec w4a4() {
  adaquant::quantization_spec q;
  q.weights = adaquant::quantizer_spec::weights(4);
  q.activations = adaquant::quantizer_spec::activations(4);
  return q;
}

}  // namespace

TEST_CASE("live_elements counts the values a pass keeps before each node", "[onnx][network]") {
  const auto net = make_residual(1, 4, std::nullopt);
  const auto& g = net.full_precision();
  const auto live = aq::detail::live_elements(g);
  REQUIRE(live.size() == g.nodes().size() + 1);
  CHECK(live[0] == 72);                         // x
  CHECK(live[node_named(g, "conv_a")] == 72);   // x (read again by the Add)
  CHECK(live[node_named(g, "conv_b")] == 144);  // x and relu_a's output
  CHECK(live[node_named(g, "add")] == 144);     // x and conv_b's output
  CHECK(live[node_named(g, "conv_c")] == 72);   // relu_s's output
  CHECK(live[node_named(g, "fc")] == 3);        // the flattened pool
  CHECK(live[g.nodes().size()] == 4);           // the logits, a graph output
}

TEST_CASE("full-precision captures keep within the limit while quantized passes hold state",
          "[onnx][network]") {
  constexpr std::int64_t samples = 6;
  auto bounded = make_residual(1, samples, std::nullopt);  // limit: largest layer input, 72
  auto unbounded = make_residual(1, samples, aq::graph::npos);
  const auto layers = bounded.quantizable_layers();
  REQUIRE(layers.size() == 4);
  const std::size_t conv_b = layers[1].id;
  REQUIRE(bounded.full_precision().at(conv_b).name == "conv_b");
  const adaquant::capture_parts outputs{false, true};

  // No quantized state: full precision keeps before the layer, as always.
  auto alone = make_residual(1, samples, std::nullopt);
  (void)alone.capture(conv_b, 0, samples, capture_mode::full_precision, outputs);
  CHECK(alone.kept_elements(capture_mode::full_precision) == samples * 144);

  for (auto* net : {&bounded, &unbounded})
    (void)net->capture(conv_b, 0, samples, capture_mode::quantized, outputs);
  CHECK(bounded.kept_elements(capture_mode::quantized) == samples * 144);
  const auto fb = bounded.capture(conv_b, 0, samples, capture_mode::full_precision, outputs);
  const auto fu = unbounded.capture(conv_b, 0, samples, capture_mode::full_precision, outputs);
  CHECK(fb.outputs == fu.outputs);
  CHECK(fb.inputs.empty());
  // Kept before conv_a (x only) instead of before conv_b (x and conv_b's input).
  CHECK(bounded.kept_elements(capture_mode::full_precision) == samples * 72);
  CHECK(unbounded.kept_elements(capture_mode::full_precision) == samples * 144);
  // Resumed from there, again the same bits.
  CHECK(bounded.capture(conv_b, 0, samples, capture_mode::full_precision, outputs).outputs ==
        fu.outputs);

  // A capture that wants the inputs keeps before the layer (it reads them from the kept state).
  const auto both = bounded.capture(conv_b, 0, samples, capture_mode::full_precision, {});
  CHECK(both.outputs == fu.outputs);
  CHECK(both.inputs ==
        unbounded.capture(conv_b, 0, samples, capture_mode::full_precision, {}).inputs);
  CHECK(bounded.kept_elements(capture_mode::full_precision) == samples * 144);

  // Limit 0: nothing but the start qualifies; kept: the inputs.
  auto zero = make_residual(1, samples, std::size_t{0});
  (void)zero.capture(conv_b, 0, samples, capture_mode::quantized, outputs);
  CHECK(zero.capture(layers[2].id, 0, samples, capture_mode::full_precision, outputs).outputs ==
        unbounded.capture(layers[2].id, 0, samples, capture_mode::full_precision, outputs).outputs);
  CHECK(zero.kept_elements(capture_mode::full_precision) == samples * 72);
}

TEST_CASE("held_inputs lends what a quantized capture just returned, from the kept state",
          "[onnx][network][held_inputs]") {
  constexpr std::int64_t samples = 12;
  for (const std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
    auto net = make_residual(threads, samples, std::nullopt);
    auto copy = make_residual(threads, samples, std::nullopt);
    const auto layers = net.quantizable_layers();
    const std::size_t conv_b = layers[1].id;
    CHECK_FALSE(net.held_inputs(conv_b, 0, 5).has_value());  // nothing captured yet
    (void)net.capture(conv_b, 0, 5, capture_mode::quantized, {false, false});
    const std::size_t kept = net.kept_elements(capture_mode::quantized);
    const auto held = net.held_inputs(conv_b, 0, 5);
    REQUIRE(held.has_value());
    CHECK(held->size() == threads);  // one run per pass of the capture
    std::vector<float> lent;
    for (const auto r : *held) lent.insert(lent.end(), r.begin(), r.end());
    CHECK(lent == copy.capture(conv_b, 0, 5, capture_mode::quantized, {true, false}).inputs);
    CHECK(net.kept_elements(capture_mode::quantized) == kept);  // a view, not a copy
    CHECK((*held)[0].data() ==
          net.held_inputs(conv_b, 0, 5)->at(0).data());            // the same memory each time
    CHECK_FALSE(net.held_inputs(conv_b, 5, 7).has_value());        // other samples: not captured
    CHECK_FALSE(net.held_inputs(layers[2].id, 0, 5).has_value());  // the passes are not there
    // An earlier layer quantized: the kept state is stale, nothing is lent.
    adaquant::quantized_layer q;
    q.id = layers[0].id;
    q.weight.assign(layers[0].weight.begin(), layers[0].weight.end());
    q.bias.assign(layers[0].geometry.out_channels(), 0.0f);
    q.weight_params = {{1.0f, 1.0f}, {0, 0}, -8, 7, 0};
    q.act_params = {0.1f, 0, -8, 7};
    net.set_quantized(q);
    CHECK_FALSE(net.held_inputs(conv_b, 0, 5).has_value());
  }
}

// The pipelines' AdaQuant step sees the network through a wrapper that must pass the lending on.
static_assert(requires(adaquant::detail::recording_network<aq::onnx_network> & r) {
  r.held_inputs(0, 0, 1);
});

TEST_CASE("the full-precision keep limit changes no pipeline result, any chunk and thread count",
          "[onnx][network]") {
  constexpr std::int64_t samples = 12;
  SECTION("light: BN tuning to full-precision statistics and bias correction") {
    adaquant::light_config c;
    c.quant = w4a4();
    c.bn_tuning->target = adaquant::bn_reference::full_precision;
    auto reference = make_residual(1, samples, aq::graph::npos);
    (void)adaquant::light_pipeline(reference, c, {1, samples, {}});
    for (const auto limit : {std::optional<std::size_t>{}, std::optional<std::size_t>{0}})
      for (const auto& [threads, chunk] :
           {std::pair<std::size_t, std::size_t>{1, 1}, {2, 5}, {2, samples}, {1, samples}}) {
        auto net = make_residual(threads, samples, limit);
        (void)adaquant::light_pipeline(net, c, {threads, chunk, {}});
        check_same_quantized(reference, net);
        CHECK(net.calibration_loss() == reference.calibration_loss());
      }
  }
  SECTION("advanced: AdaQuant, BN tuning and bias tuning") {
    adaquant::advanced_config c;
    c.quant = w4a4();
    c.adaquant->layer.iterations = 20;
    auto reference = make_residual(1, samples, aq::graph::npos);
    (void)adaquant::advanced_pipeline(reference, c, {1, samples, {}});
    for (const auto& [threads, chunk] : {std::pair<std::size_t, std::size_t>{1, 1}, {2, samples}}) {
      auto net = make_residual(threads, samples, std::nullopt);
      (void)adaquant::advanced_pipeline(net, c, {threads, chunk, {}});
      check_same_quantized(reference, net);
    }
  }
}

TEST_CASE("a saved run state holds storage of its own size, not the pooled storage it sat in",
          "[onnx][graph]") {
  // x [8, 1, 60, 60] -> MaxPool 2x2 -> m [8, 1, 30, 30] -> Conv 1x1 (2 channels) -> c -> Relu -> r
  // -> Conv 1x1 (1 channel) -> y. x's storage (28800 floats) is released after the pool, and the
  // first conv's output (14400, half of it) is made in it; the Relu rewrites c in place, so r
  // sits in twice its size. The state saved before the last conv keeps r.
  builder b(13);
  b.input("x", {-1, 1, 60, 60});
  b.init_f("w1", {2, 1, 1, 1}, {0.5f, -0.25f});
  b.init_f("w2", {1, 2, 1, 1}, {1.0f, 2.0f});
  auto& pool = b.node("MaxPool", {"x"}, {"m"}, "pool");
  attr_ints(pool, "kernel_shape", {2, 2});
  attr_ints(pool, "strides", {2, 2});
  b.node("Conv", {"m", "w1"}, {"c"}, "conv1");
  b.node("Relu", {"c"}, {"r"}, "relu");
  b.node("Conv", {"r", "w2"}, {"y"}, "conv2");
  b.output("y");
  const aq::graph g = aq::graph::compile(b.load("pooled_state.onnx"));
  const std::size_t last = node_named(g, "conv2");
  const aq::tensor x({8, 1, 60, 60}, pseudo_random(28800, 41, 2.0f));
  const std::vector<float> expected = g.forward({x}).at(0).f;
  // A fresh thread: its storage pool starts empty, so x's storage is the one reused.
  std::optional<aq::run_state> saved;
  std::vector<float> out;
  std::thread([&] {
    aq::run_state s;
    out = g.run_from(g.start({x}), last, g.output_values(), last, &s).at(0).f;
    saved = std::move(s);
  }).join();
  REQUIRE(saved.has_value());
  CHECK(out == expected);
  CHECK(saved->next == last);
  REQUIRE(saved->live.size() == 1);
  const aq::tensor& r = saved->live.begin()->second;
  CHECK(r.shape == aq::shape_t{8, 2, 30, 30});
  CHECK(r.f.size() == 14400);
  CHECK(r.f.capacity() == r.f.size());
  // The saved state resumes to the same output.
  CHECK(g.run_from(std::move(*saved), last, g.output_values()).at(0).f == expected);
}

TEST_CASE("graph::recycle hands storage to the thread's next run", "[onnx][graph]") {
  // x [8, 1, 60, 60] -> MaxPool 2x2 -> m [8, 1, 30, 30] (7200 floats, a graph output).
  builder b(13);
  b.input("x", {-1, 1, 60, 60});
  auto& pool = b.node("MaxPool", {"x"}, {"m"}, "pool");
  attr_ints(pool, "kernel_shape", {2, 2});
  attr_ints(pool, "strides", {2, 2});
  b.output("m");
  const aq::graph g = aq::graph::compile(b.load("recycle.onnx"));
  const aq::tensor x({8, 1, 60, 60}, pseudo_random(28800, 43, 2.0f));
  const std::vector<float> expected = g.forward({x}).at(0).f;
  // A fresh thread (its pool starts empty); storage for 10000 floats holds the 7200 of m.
  std::uintptr_t given = 0, used = 0;  // storage addresses
  std::size_t used_capacity = 0;
  bool emptied = false, small_emptied = false;
  std::vector<float> out;
  aq::tensor small_one({2, 2}, {1.0f, 2.0f, 3.0f, 4.0f});
  std::thread([&] {  // Catch's assertions stay on the test's thread
    aq::tensor t({10000}, std::vector<float>(10000, -1.0f));
    given = reinterpret_cast<std::uintptr_t>(t.f.data());
    aq::graph::recycle(t);
    emptied = t.f.empty() && t.shape.empty();
    std::vector<aq::tensor> outs = g.forward({x});
    const aq::tensor& m = outs.at(0);
    used = reinterpret_cast<std::uintptr_t>(m.f.data());
    used_capacity = m.f.capacity();  // fresh storage would hold 7200
    out = m.f;
    // Small storage (below 4096 floats) is not pooled: it is freed, and the tensor emptied.
    aq::graph::recycle(small_one);
    small_emptied = small_one.f.empty();
  }).join();
  CHECK(emptied);
  CHECK(small_emptied);
  CHECK(used == given);
  CHECK(used_capacity == 10000);
  CHECK(out == expected);  // every element written over the -1s
}
