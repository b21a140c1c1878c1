// onnx_network: layers, batch-norm folding, activations, shape folding, captures (resumable),
// calibration loss, determinism across batch sizes and thread counts, and a pipeline run.
#include "onnx_test_util.hpp"

#include <adaquant/pipeline/light.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace onnx_test;
using adaquant::capture_mode;

namespace {
std::vector<float> pseudo_random(std::size_t n, std::uint32_t seed, float scale = 0.5f) {
  std::vector<float> v(n);
  for (auto& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = scale * (static_cast<float>(seed >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f);
  }
  return v;
}

// x [N, 1, 6, 6] -> Conv 3x3 (pads top/left 0, bottom/right 1) -> BN -> Relu -> depthwise 3x3
// -> Clip(0, 6) -> GlobalAveragePool -> Reshape(x, [Shape(x)[0], -1]) -> Gemm(transB) -> logits.
builder small_cnn() {
  builder b(13);
  b.input("x", {-1, 1, 6, 6});
  b.init_f("w1", {4, 1, 3, 3}, pseudo_random(36, 1));
  b.init_f("b1", {4}, pseudo_random(4, 2));
  b.init_f("gamma", {4}, {1.0f, 0.5f, 2.0f, 1.5f});
  b.init_f("beta", {4}, {0.1f, -0.2f, 0.3f, 0.0f});
  b.init_f("mean", {4}, {0.05f, -0.1f, 0.2f, 0.0f});
  b.init_f("var", {4}, {1.0f, 0.5f, 2.0f, 0.25f});
  b.init_f("w2", {4, 1, 3, 3}, pseudo_random(36, 3, 1.0f));
  b.init_f("lo", {}, {0.0f});
  b.init_f("hi", {}, {6.0f});
  b.init_i("axes0", {1}, {0});
  b.init_i("idx0", {}, {0});
  b.init_i("minus1", {1}, {-1});
  b.init_f("wf", {3, 4}, pseudo_random(12, 4, 1.0f));
  b.init_f("bf", {3}, {0.1f, 0.2f, 0.3f});
  attr_ints(b.node("Conv", {"x", "w1", "b1"}, {"c1"}, "conv1"), "pads", {0, 0, 1, 1});
  b.node("BatchNormalization", {"c1", "gamma", "beta", "mean", "var"}, {"n1"}, "bn1");
  b.node("Relu", {"n1"}, {"r1"}, "relu1");
  auto& dw = b.node("Conv", {"r1", "w2"}, {"c2"}, "dw");
  attr_i(dw, "group", 4);
  attr_ints(dw, "pads", {1, 1, 1, 1});
  b.node("Clip", {"c2", "lo", "hi"}, {"r2"}, "relu6");
  b.node("GlobalAveragePool", {"r2"}, {"p"}, "gap");
  b.node("Shape", {"p"}, {"s"}, "shape");
  b.node("Gather", {"s", "idx0"}, {"n"}, "gather");
  b.node("Unsqueeze", {"n", "axes0"}, {"n_1"}, "unsq");
  attr_i(b.node("Concat", {"n_1", "minus1"}, {"shape2"}, "concat"), "axis", 0);
  b.node("Reshape", {"p", "shape2"}, {"flat"}, "flatten");
  attr_i(b.node("Gemm", {"flat", "wf", "bf"}, {"logits"}, "fc"), "transB", 1);
  b.output("logits");
  return b;
}

aq::tensor images(std::int64_t n, std::uint32_t seed) {
  return aq::tensor({n, 1, 6, 6}, pseudo_random(static_cast<std::size_t>(n * 36), seed, 2.0f));
}

aq::onnx_network make_net(std::size_t threads = 1, std::int64_t samples = 24) {
  aq::network_options o;
  o.threads = threads;
  o.loss_samples = 16;
  return aq::onnx_network(small_cnn().load("small_cnn.onnx"), {images(samples, 11)}, o);
}

// A quantized version of layer d: weights on a 1/16 grid, input fake-quantized (8 bits).
adaquant::quantized_layer coarse(const adaquant::layer_desc& d) {
  adaquant::quantized_layer q;
  q.id = d.id;
  for (const float w : d.weight) q.weight.push_back(std::round(w * 16.0f) / 16.0f);
  q.bias.assign(d.bias.begin(), d.bias.end());
  q.weight_params.scale.assign(d.geometry.out_channels(), 1.0f / 16);
  q.weight_params.zero_point.assign(d.geometry.out_channels(), 0);
  q.act_params = {0.05f, 0, -128, 127};
  q.quantize_input = true;
  return q;
}
}  // namespace

TEST_CASE("layers, folded batch norm, activations and geometry of an imported CNN", "[onnx][network]") {
  auto net = make_net();
  const auto layers = net.quantizable_layers();
  REQUIRE(layers.size() == 3);
  const auto& g = net.full_precision();
  CHECK(g.at(layers[0].id).name == "conv1");
  CHECK(g.at(layers[1].id).name == "dw");
  CHECK(g.at(layers[2].id).name == "fc");
  CHECK(net.folded_batch_norm(layers[0].id) != nullptr);
  CHECK(net.folded_batch_norm(layers[1].id) == nullptr);
  CHECK(layers[0].activation == adaquant::output_activation::relu);
  CHECK(layers[1].activation == adaquant::output_activation::relu6);
  CHECK(layers[2].activation == adaquant::output_activation::none);
  // Asymmetric pads: the layer sees its input padded explicitly, with pad 0.
  const auto& c1 = layers[0].geometry.conv;
  CHECK(c1.pad_h == 0);
  CHECK(c1.pad_w == 0);
  CHECK(c1.in_h == 7);
  CHECK(c1.in_w == 7);
  CHECK(layers[0].geometry.output_per_sample() == 4 * 5 * 5);
  CHECK(layers[1].geometry.conv.groups == 4);
  CHECK(layers[1].geometry.conv.pad_h == 1);
  CHECK(layers[2].geometry.linear.in_features == 4);
  CHECK(layers[2].geometry.linear.out_features == 3);
  // The Shape -> Gather -> Unsqueeze -> Concat chain is folded; Reshape reads a batch-affine constant.
  for (const auto& n : g.nodes()) {
    CHECK(n.op_type != "Shape");
    CHECK(n.op_type != "Concat");
  }
  CHECK(g.nodes().size() == 8);
  const auto origins = net.layer_origins();
  CHECK(origins[0].weight_initializer == "w1");
  CHECK(origins[0].bias_initializer == "b1");
  CHECK(origins[0].folded_batch_norm == "bn1");
  CHECK(origins[2].weight_initializer == "wf");
  CHECK_FALSE(origins[2].weight_transposed);
}

TEST_CASE("results do not depend on batch size or thread count", "[onnx][network]") {
  const auto net1 = make_net(1), net2 = make_net(2);
  const auto x = images(37, 5);
  aq::eval_options a, b, c;
  a.batch = 37;
  b.batch = 1;
  c.batch = 5;
  c.threads = 2;
  const auto ya = net1.forward({x}, a).at(0), yb = net1.forward({x}, b).at(0), yc = net2.forward({x}, c).at(0);
  REQUIRE(ya.shape == aq::shape_t{37, 3});
  CHECK(ya.f == yb.f);
  CHECK(ya.f == yc.f);
  // Captures too.
  auto n1 = make_net(1), n2 = make_net(2);
  for (const auto& l : n1.quantizable_layers()) {
    const auto i1 = n1.capture(l.id, 3, 17, capture_mode::full_precision);
    const auto i2 = n2.capture(l.id, 3, 17, capture_mode::full_precision);
    CHECK(i1.inputs == i2.inputs);
    CHECK(i1.outputs == i2.outputs);
  }
}

TEST_CASE("captures return the padded input and the layer's output", "[onnx][network]") {
  auto net = make_net();
  const auto layers = net.quantizable_layers();
  const auto io = net.capture(layers[0].id, 2, 3, capture_mode::full_precision);
  REQUIRE(io.inputs.size() == 3 * 49);
  const auto x = images(24, 11);
  for (std::size_t s = 0; s < 3; ++s)
    for (std::size_t h = 0; h < 7; ++h)
      for (std::size_t w = 0; w < 7; ++w) {
        const float want = h < 6 && w < 6 ? x.f[(2 + s) * 36 + h * 6 + w] : 0.0f;
        REQUIRE(io.inputs[s * 49 + h * 7 + w] == want);
      }
  // The last layer's output is the model output.
  const auto fc = net.capture(layers[2].id, 0, 24, capture_mode::full_precision);
  const auto logits = net.forward({x}).at(0);
  CHECK(fc.outputs == logits.f);
}

TEST_CASE("resumable captures and loss equal a fresh network's", "[onnx][network]") {
  auto net = make_net(2);
  CHECK(net.calibration_loss() == 0.0);
  const auto layers = net.quantizable_layers();
  for (const auto& l : layers) {
    (void)net.capture(l.id, 0, 24, capture_mode::quantized);
    net.set_quantized(coarse(l));
    const double loss = net.calibration_loss();
    auto fresh = make_net(1);
    for (const auto& m : layers) {
      if (m.id > l.id) break;
      fresh.set_quantized(coarse(m));
    }
    CHECK(fresh.calibration_loss() == loss);
    for (const auto& m : layers) {
      const auto a = net.capture(m.id, 0, 24, capture_mode::quantized);
      const auto b = fresh.capture(m.id, 0, 24, capture_mode::quantized);
      CHECK(a.inputs == b.inputs);
      CHECK(a.outputs == b.outputs);
    }
  }
  CHECK(net.calibration_loss() > 0.0);
  // Quantized evaluation differs from full precision.
  aq::eval_options q;
  q.quantized = true;
  const auto x = images(8, 3);
  CHECK(net.forward({x}, q).at(0).f != net.forward({x}).at(0).f);
}

TEST_CASE("the light pipeline quantizes an imported network", "[onnx][network]") {
  auto net = make_net(2, 64);
  adaquant::light_config c;
  c.quant.weights = adaquant::quantizer_spec::weights(8);
  c.quant.activations = adaquant::quantizer_spec::activations(8);
  const auto report = adaquant::light_pipeline(net, c, {1, 32, {}});
  CHECK(report.weight_bits.size() == 3);
  CHECK(net.calibration_loss() < 1e-2);
}

TEST_CASE("the layer report says why a node is not a layer", "[onnx][network]") {
  builder b(13);
  b.input("x", {-1, 5, 4});
  b.init_f("w", {4, 2}, pseudo_random(8, 9));
  b.init_f("wt", {5, 2, 3, 3}, pseudo_random(90, 10));
  b.node("MatMul", {"x", "w"}, {"y"}, "attention_proj");
  b.node("Unsqueeze", {"y", "ax"}, {"y4"}, "u");
  b.init_i("ax", {1}, {3});
  b.node("ConvTranspose", {"y4", "wt"}, {"z"}, "up");
  b.output("z");
  aq::network_options o;
  o.threads = 1;
  const auto net = aq::onnx_network(b.load(), {aq::tensor({2, 5, 4}, pseudo_random(40, 1))}, o);
  CHECK(net.quantizable_layers().empty());
  const auto& rep = net.layer_report();
  REQUIRE(rep.size() == 2);
  CHECK_FALSE(rep[0].quantizable);
  CHECK(rep[0].reason.find("transformer") != std::string::npos);
  CHECK(rep[1].reason.find("not quantized") != std::string::npos);
}
