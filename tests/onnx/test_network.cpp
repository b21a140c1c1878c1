// onnx_network: layers, batch-norm folding, activations, shape folding, captures (resumable),
// calibration loss, determinism across batch sizes and thread counts, and a pipeline run.
#include "network_test_util.hpp"
#include "onnx_test_util.hpp"

#include <adaquant/pipeline/light.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <optional>

using namespace onnx_test;
using adaquant::capture_mode;

namespace {

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

TEST_CASE("a partial capture fills only the parts asked for, with the same values",
          "[onnx][network][memory]") {
  for (const std::size_t threads : {1, 2}) {
    auto net = make_net(threads);
    for (const auto& l : net.quantizable_layers())
      for (const auto mode : {capture_mode::full_precision, capture_mode::quantized}) {
        const auto both = net.capture(l.id, 3, 9, mode);
        const auto out = net.capture(l.id, 3, 9, mode, {false, true});
        const auto in = net.capture(l.id, 3, 9, mode, {true, false});
        REQUIRE_FALSE(both.inputs.empty());
        CHECK(out.inputs.empty());
        CHECK(out.outputs == both.outputs);
        CHECK(in.outputs.empty());
        CHECK(in.inputs == both.inputs);
        net.set_quantized(coarse(l));
      }
  }
}

TEST_CASE(
    "a network built from a moved model holds its ModelProto unchanged and the same "
    "layers",
    "[onnx][network][memory]") {
  aq::model m = small_cnn().load("small_cnn.onnx");
  REQUIRE_FALSE(m.initializers.empty());
  aq::network_options o;
  o.threads = 1;
  const aq::onnx_network copied(m, {images(6, 11)}, o);
  aq::onnx_network moved(std::move(m), {images(6, 11)}, o);
  CHECK(m.initializers.empty());  // dropped: the graphs hold what the network needs
  CHECK(moved.model_proto().SerializeAsString() == copied.model_proto().SerializeAsString());
  CHECK(moved.model_proto().graph().initializer_size() > 0);
  const auto x = images(5, 4);
  CHECK(moved.forward({x}).at(0).f == copied.forward({x}).at(0).f);
  const auto a = copied.quantizable_layers(), b = moved.quantizable_layers();
  REQUIRE(a.size() == b.size());
  for (std::size_t i = 0; i < a.size(); ++i)
    CHECK(
        std::equal(a[i].weight.begin(), a[i].weight.end(), b[i].weight.begin(), b[i].weight.end()));
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

TEST_CASE("streamed light steps give the same bits for any capture batch and thread count",
          "[onnx][network]") {
  // BN tuning and bias correction stream the calibration samples in chunks of capture_batch;
  // capture_batch >= samples is the unchunked path (one capture of every sample).
  for (const auto target : {adaquant::bn_reference::running_statistics, adaquant::bn_reference::full_precision}) {
    adaquant::light_config c;
    c.quant.weights = adaquant::quantizer_spec::weights(4);
    c.quant.activations = adaquant::quantizer_spec::activations(4);
    c.bn_tuning->target = target;
    auto whole = make_net(1, 40);
    const auto rep = adaquant::light_pipeline(whole, c, {1, 40, {}});
    REQUIRE(rep.steps.size() == 3);
    CHECK(rep.steps[2].name == "bias_correction");
    for (const auto& [threads, chunk] : {std::pair<std::size_t, std::size_t>{1, 1}, {2, 7}, {2, 40}, {1, 13}}) {
      auto net = make_net(threads, 40);
      (void)adaquant::light_pipeline(net, c, {threads, chunk, {}});
      for (const auto& l : net.quantizable_layers()) {
        const auto& a = *whole.quantized().at(l.id).layer;
        const auto& b = *net.quantized().at(l.id).layer;
        CHECK(a.weight.f == b.weight.f);
        CHECK(a.bias == b.bias);
        REQUIRE(b.input_quant.has_value());
        CHECK(a.input_quant->scale == b.input_quant->scale);
        CHECK(a.input_quant->zero_point == b.input_quant->zero_point);
      }
      CHECK(net.calibration_loss() == whole.calibration_loss());
    }
    // The steps changed what they should: the tuned bias differs from the range step's alone.
    auto ranges_only = make_net(1, 40);
    adaquant::light_config r = c;
    r.bn_tuning.reset();
    r.bias_correction = false;
    (void)adaquant::light_pipeline(ranges_only, r, {1, 40, {}});
    const auto id = whole.quantizable_layers()[0].id;
    CHECK(whole.quantized().at(id).layer->bias != ranges_only.quantized().at(id).layer->bias);
  }
}

TEST_CASE("the layer report says why a node is not a layer", "[onnx][network]") {
  builder b(13);
  b.input("x", {-1, 5, 1, 4});
  b.init_f("w", {4, 2}, pseudo_random(8, 9));
  b.init_f("wt", {5, 2, 3, 3}, pseudo_random(90, 10));
  b.node("MatMul", {"x", "w"}, {"y"}, "attention_proj");  // [N, 5, 1, 2]: rank 4
  b.node("ConvTranspose", {"y", "wt"}, {"z"}, "up");
  b.output("z");
  aq::network_options o;
  o.threads = 1;
  const auto net = aq::onnx_network(b.load(), {aq::tensor({2, 5, 1, 4}, pseudo_random(40, 1))}, o);
  CHECK(net.quantizable_layers().empty());
  const auto& rep = net.layer_report();
  REQUIRE(rep.size() == 2);
  CHECK_FALSE(rep[0].quantizable);
  CHECK(rep[0].reason.find("rank-4 input stays float") != std::string::npos);
  CHECK(rep[1].reason.find("not quantized") != std::string::npos);
}

// --- Token-id inputs: a one-block encoder on int64 ids and an int64 attention mask -----------

namespace {
constexpr std::int64_t vocab = 5, width = 2, positions = 4, classes = 3;

// ids, mask [N, 4] -> Gather(embedding) + positions -> one attention head (Q, K, V MatMuls on the
// rank-3 activations, scores + (1 - mask) * -10000, Softmax, x V) -> LayerNormalization ->
// Gather(axis 1, index 0) -> Gemm classifier.
builder tiny_encoder() {
  builder b(17);
  b.input("input_ids", {-1, positions}, P::INT64);
  b.input("attention_mask", {-1, positions}, P::INT64);
  b.init_f("emb", {vocab, width}, pseudo_random(vocab * width, 21, 1.0f));
  b.init_f("pos", {positions, width}, pseudo_random(positions * width, 22));
  for (const auto& [name, seed] : {std::pair{"wq", 23u}, {"wk", 24u}, {"wv", 25u}})
    b.init_f(name, {width, width}, pseudo_random(width * width, seed, 1.0f));
  b.init_f("one", {}, {1.0f});
  b.init_f("neg", {}, {-10000.0f});
  b.init_i("ax1", {1}, {1});
  b.init_f("gamma", {width}, {1.0f, 0.5f});
  b.init_f("beta", {width}, {0.1f, -0.2f});
  b.init_i("idx0", {}, {0});
  b.init_f("wc", {classes, width}, pseudo_random(classes * width, 26, 1.0f));
  b.init_f("bc", {classes}, {0.1f, 0.0f, -0.1f});
  b.node("Gather", {"emb", "input_ids"}, {"e"}, "embed");
  b.node("Add", {"e", "pos"}, {"x"}, "add_pos");
  attr_i(b.node("Cast", {"attention_mask"}, {"mf"}, "cast"), "to", P::FLOAT);
  b.node("Sub", {"one", "mf"}, {"inv"}, "sub");
  b.node("Mul", {"inv", "neg"}, {"bias2"}, "mul");
  b.node("Unsqueeze", {"bias2", "ax1"}, {"bias"}, "unsqueeze");
  b.node("MatMul", {"x", "wq"}, {"q"}, "q");
  b.node("MatMul", {"x", "wk"}, {"k"}, "k");
  b.node("MatMul", {"x", "wv"}, {"v"}, "v");
  attr_ints(b.node("Transpose", {"k"}, {"kt"}, "kt"), "perm", {0, 2, 1});
  b.node("MatMul", {"q", "kt"}, {"s"}, "scores");
  b.node("Add", {"s", "bias"}, {"sb"}, "mask_scores");
  attr_i(b.node("Softmax", {"sb"}, {"p"}, "softmax"), "axis", -1);
  b.node("MatMul", {"p", "v"}, {"a"}, "attend");
  b.node("LayerNormalization", {"a", "gamma", "beta"}, {"h"}, "ln");
  attr_i(b.node("Gather", {"h", "idx0"}, {"cls"}, "cls"), "axis", 1);
  attr_i(b.node("Gemm", {"cls", "wc", "bc"}, {"logits"}, "fc"), "transB", 1);
  b.output("logits");
  return b;
}

aq::tensor ids_of(std::vector<std::vector<std::int64_t>> rows) {
  const auto n = static_cast<std::int64_t>(rows.size()), t = static_cast<std::int64_t>(rows[0].size());
  std::vector<std::int64_t> v;
  for (const auto& r : rows) v.insert(v.end(), r.begin(), r.end());
  return aq::tensor(aq::dtype::int64, {n, t}, std::move(v));
}

// tiny_encoder's logits of one sequence, in double.
std::vector<double> tiny_encoder_reference(const std::vector<std::int64_t>& ids,
                                           const std::vector<std::int64_t>& mask) {
  const auto emb = pseudo_random(vocab * width, 21, 1.0f), pos = pseudo_random(positions * width, 22);
  const auto wq = pseudo_random(4, 23, 1.0f), wk = pseudo_random(4, 24, 1.0f), wv = pseudo_random(4, 25, 1.0f);
  const auto wc = pseudo_random(classes * width, 26, 1.0f);
  const double gamma[2] = {1.0, 0.5}, beta[2] = {0.1, -0.2}, bc[3] = {0.1, 0.0, -0.1};
  double x[positions][width], q[positions][width], k[positions][width], v[positions][width];
  for (std::int64_t t = 0; t < positions; ++t)
    for (std::int64_t d = 0; d < width; ++d) x[t][d] = emb[ids[t] * width + d] + pos[t * width + d];
  for (std::int64_t t = 0; t < positions; ++t)
    for (std::int64_t o = 0; o < width; ++o) {
      q[t][o] = k[t][o] = v[t][o] = 0.0;
      for (std::int64_t d = 0; d < width; ++d) {
        q[t][o] += x[t][d] * wq[d * width + o];
        k[t][o] += x[t][d] * wk[d * width + o];
        v[t][o] += x[t][d] * wv[d * width + o];
      }
    }
  // Only the [CLS] query (position 0) reaches the classifier.
  double p[positions], sum = 0.0, a[width] = {0.0, 0.0};
  for (std::int64_t j = 0; j < positions; ++j) {
    p[j] = mask[j] ? std::exp(q[0][0] * k[j][0] + q[0][1] * k[j][1]) : 0.0;
    sum += p[j];
  }
  for (std::int64_t j = 0; j < positions; ++j)
    for (std::int64_t d = 0; d < width; ++d) a[d] += p[j] / sum * v[j][d];
  const double mean = (a[0] + a[1]) / 2, var = ((a[0] - mean) * (a[0] - mean) + (a[1] - mean) * (a[1] - mean)) / 2;
  double h[width];
  for (std::int64_t d = 0; d < width; ++d) h[d] = (a[d] - mean) / std::sqrt(var + 1e-5) * gamma[d] + beta[d];
  std::vector<double> logits(classes);
  for (std::int64_t c = 0; c < classes; ++c) logits[c] = bc[c] + h[0] * wc[c * width] + h[1] * wc[c * width + 1];
  return logits;
}

aq::onnx_network tiny_encoder_net(const aq::tensor& ids, const aq::tensor& mask) {
  aq::network_options o;
  o.threads = 1;
  return aq::onnx_network(tiny_encoder().load("encoder.onnx"), {ids, mask}, o);
}

}  // namespace

TEST_CASE("an encoder on int64 token ids and a mask computes attention with padding masked out",
          "[onnx][network][text]") {
  const auto ids = ids_of({{2, 3, 4, 0}, {2, 1, 0, 0}}), mask = ids_of({{1, 1, 1, 0}, {1, 1, 0, 0}});
  auto net = tiny_encoder_net(ids, mask);
  const auto logits = net.forward({ids, mask}).at(0);
  REQUIRE(logits.shape == aq::shape_t{2, classes});
  for (std::size_t s = 0; s < 2; ++s) {
    const std::vector<std::int64_t> row(ids.i.begin() + 4 * static_cast<std::ptrdiff_t>(s), ids.i.begin() + 4 * static_cast<std::ptrdiff_t>(s + 1)),
        m(mask.i.begin() + 4 * static_cast<std::ptrdiff_t>(s), mask.i.begin() + 4 * static_cast<std::ptrdiff_t>(s + 1));
    const auto want = tiny_encoder_reference(row, m);
    for (std::size_t c = 0; c < classes; ++c) CHECK(std::abs(logits.f[s * classes + c] - want[c]) < 1e-5);
  }
  // Tokens under the mask do not matter, to the bit.
  const auto other = ids_of({{2, 3, 4, 4}, {2, 1, 3, 1}});
  CHECK(net.forward({other, mask}).at(0).f == logits.f);
  // The rank-3 projections are token-wise layers (4 rows per sample), then the classifier; the
  // attention products (no constant weight) stay float.
  const auto layers = net.quantizable_layers();
  REQUIRE(layers.size() == 4);
  for (std::size_t l = 0; l < 3; ++l) {
    CHECK(net.full_precision().at(layers[l].id).name == std::string(1, "qkv"[l]));
    CHECK(layers[l].geometry.linear.rows == static_cast<std::size_t>(positions));
    CHECK(layers[l].geometry.input_per_sample() == static_cast<std::size_t>(positions * width));
  }
  CHECK(net.full_precision().at(layers[3].id).name == "fc");
  CHECK(layers[3].geometry.linear.rows == 1);
  CHECK(net.token_mask() == "attention_mask");
}

TEST_CASE("token-wise MatMuls capture per token, with the attention mask as row mask",
          "[onnx][network][text]") {
  const auto ids = ids_of({{2, 3, 4, 0}, {2, 1, 0, 0}, {1, 2, 3, 4}}),
             mask = ids_of({{1, 1, 1, 0}, {1, 1, 0, 0}, {1, 1, 1, 1}});
  auto net = tiny_encoder_net(ids, mask);
  const auto layers = net.quantizable_layers();  // by value: keep it alive
  const auto& v = layers.at(2);                   // x [N, 4, 2] -> v = x wv
  const auto io = net.capture(v.id, 1, 2, capture_mode::full_precision);
  CHECK(io.row_mask == std::vector<std::uint8_t>{1, 1, 0, 0, 1, 1, 1, 1});
  REQUIRE(io.inputs.size() == 2 * 4 * 2);
  REQUIRE(io.outputs.size() == 2 * 4 * 2);
  const auto wv = pseudo_random(4, 25, 1.0f);
  for (std::size_t r = 0; r < 8; ++r)
    for (std::size_t o = 0; o < 2; ++o)
      CHECK(std::abs(io.outputs[r * 2 + o] -
                     (io.inputs[r * 2] * wv[o] + io.inputs[r * 2 + 1] * wv[2 + o])) < 1e-6);
  // The layer objective's view: the driver keeps the valid tokens only.
  adaquant::layer_io all;
  adaquant::detail::capture_all(net, v, 3, 2, capture_mode::full_precision, true, true, all);
  CHECK(all.inputs.size() == (3 + 2 + 4) * 2);
  CHECK(all.outputs.size() == (3 + 2 + 4) * 2);
  // Quantized captures fake-quantize the token-wise layer's input, per tensor.
  adaquant::quantized_layer q;
  q.id = v.id;
  q.weight.assign(v.weight.begin(), v.weight.end());
  q.bias.assign(2, 0.0f);
  q.weight_params = {{1.0f, 1.0f}, {0, 0}, -127, 127, 0};
  q.act_params = {0.25f, 0, -128, 127};
  net.set_quantized(q);
  const auto qio = net.capture(v.id, 0, 3, capture_mode::quantized);
  const auto fio = net.capture(v.id, 0, 3, capture_mode::full_precision);
  CHECK(qio.inputs == fio.inputs);  // before the layer's own quantizer
  for (std::size_t r = 0; r < 12; ++r) {
    float xq[2];
    for (std::size_t k = 0; k < 2; ++k)
      xq[k] = std::clamp(std::nearbyint(fio.inputs[r * 2 + k] / 0.25f), -128.0f, 127.0f) * 0.25f;
    for (std::size_t o = 0; o < 2; ++o)
      CHECK(std::abs(qio.outputs[r * 2 + o] - (xq[0] * wv[o] + xq[1] * wv[2 + o])) < 1e-6);
  }
}

TEST_CASE("the token mask input: named, disabled, or refused with the input named",
          "[onnx][network][text][errors]") {
  using adaquant::errc;
  const auto ids = ids_of({{2, 3, 4, 0}, {2, 1, 0, 0}}),
             mask = ids_of({{1, 1, 1, 0}, {1, 1, 0, 0}});
  const auto net_with = [&](std::optional<std::string> name) {
    aq::network_options o;
    o.threads = 1;
    o.token_mask = std::move(name);
    return aq::onnx_network(tiny_encoder().load("encoder.onnx"), {ids, mask}, o);
  };
  {
    auto none = net_with("");
    CHECK(none.token_mask().empty());
    CHECK(none.capture(none.quantizable_layers()[0].id, 0, 2, capture_mode::full_precision)
              .row_mask.empty());
    auto named = net_with("input_ids");  // any integer [N, 4] input fits
    CHECK(named.token_mask() == "input_ids");
    CHECK(named.capture(named.quantizable_layers()[0].id, 0, 1, capture_mode::full_precision)
              .row_mask == std::vector<std::uint8_t>{1, 1, 1, 0});
  }
  expect_error([&] { (void)net_with("mask"); }, errc::invalid_argument,
               {"encoder.onnx: token mask", "no input 'mask'", "'input_ids', 'attention_mask'"});
  // x [N, 3, 2] -> MatMul + bias: a token-wise layer of 3 rows; attention_mask [N, 5] cannot
  // mask it.
  builder b;
  b.input("x", {-1, 3, 2});
  b.input("attention_mask", {-1, 5}, P::INT64);
  b.init_f("w", {2, 2}, pseudo_random(4, 3, 1.0f));
  b.init_f("b", {2}, {0.5f, -0.25f});
  b.node("MatMul", {"x", "w"}, {"xw"}, "proj");
  b.node("Add", {"b", "xw"}, {"y"}, "proj_bias");
  attr_i(b.node("Cast", {"attention_mask"}, {"m"}, "cast"), "to", P::FLOAT);
  b.output("y");
  b.output("m");
  const aq::tensor x({2, 3, 2}, pseudo_random(12, 4, 1.0f)),
      m5 = ids_of({{1, 1, 1, 0, 0}, {1, 0, 0, 0, 0}});
  const auto make = [&](std::optional<std::string> name) {
    aq::network_options o;
    o.threads = 1;
    o.token_mask = std::move(name);
    return aq::onnx_network(b.load("proj.onnx"), {x, m5}, o);
  };
  expect_error([&] { (void)make(std::nullopt); }, errc::shape_mismatch,
               {"proj.onnx: token mask", "input 'attention_mask' is [2, 5]",
                "integer [samples, 3] for layer \"proj\""});
  expect_error([&] { (void)make("x"); }, errc::shape_mismatch, {"input 'x' is float [2, 3, 2]"});
  const auto plain = make("");
  REQUIRE(plain.quantizable_layers().size() == 1);
  const auto plain_layers = plain.quantizable_layers();  // by value: keep it alive
  const auto& d = plain_layers[0];
  CHECK(d.geometry.linear.rows == 3);
  // The Add's constant is the layer's bias (the Add becomes an Identity); the output is unchanged.
  CHECK(std::vector<float>(d.bias.begin(), d.bias.end()) == std::vector<float>{0.5f, -0.25f});
  CHECK(plain.layer_origins()[0].bias_initializer == "b");
  for (const auto& n : plain.full_precision().nodes())
    if (n.name == "proj_bias") CHECK(n.op_type == "Identity");
  const auto y = plain.forward({x, m5}).at(0);
  const auto w = pseudo_random(4, 3, 1.0f);
  REQUIRE(y.shape == aq::shape_t{2, 3, 2});
  for (std::size_t r = 0; r < 6; ++r)
    for (std::size_t o = 0; o < 2; ++o)
      CHECK(std::abs(y.f[r * 2 + o] -
                     (x.f[r * 2] * w[o] + x.f[r * 2 + 1] * w[2 + o] + (o ? -0.25f : 0.5f))) < 1e-6);
}

TEST_CASE("a token id outside the vocabulary names the Gather node and the id", "[onnx][network][text]") {
  const auto ids = ids_of({{2, 3, 4, 0}}), mask = ids_of({{1, 1, 1, 0}});
  const auto net = tiny_encoder_net(ids, mask);
  expect_error([&] { (void)net.forward({ids_of({{2, 3, 5, 0}}), mask}); }, adaquant::errc::shape_mismatch,
               {"encoder.onnx", "node \"embed\" (Gather)", "index 5 is outside [-5, 5)"});
  expect_error([&] { (void)net.forward({ids_of({{2, -6, 1, 0}}), mask}); }, adaquant::errc::shape_mismatch,
               {"\"embed\"", "index -6"});
  // Calibration data are checked the same way, when the network first runs them (a capture, the
  // calibration loss; construction runs nothing).
  auto bad = tiny_encoder_net(ids_of({{2, 3, 4, 1000}}), mask);
  expect_error([&] { (void)bad.calibration_loss(); }, adaquant::errc::shape_mismatch,
               {"\"embed\"", "index 1000"});
  expect_error([&] { (void)bad.capture(bad.quantizable_layers()[0].id, 0, 1, capture_mode::full_precision); },
               adaquant::errc::shape_mismatch, {"\"embed\"", "index 1000"});
}

TEST_CASE("ids and masks that do not fit the declared inputs name the input", "[onnx][network][text]") {
  using adaquant::errc;
  const auto ids = ids_of({{2, 3, 4, 0}, {2, 1, 0, 0}}), mask = ids_of({{1, 1, 1, 0}, {1, 1, 0, 0}});
  // A mask of another length than the ids.
  expect_error([&] { (void)tiny_encoder_net(ids, ids_of({{1, 1, 1}, {1, 1, 0}})); }, errc::shape_mismatch,
               {"encoder.onnx: input \"attention_mask\"", "per-sample shape [3] does not fit the declared shape [?, 4]"});
  // Sequences longer than the model's positions.
  const auto long_ids = ids_of({{2, 3, 4, 1, 1, 0}}), long_mask = ids_of({{1, 1, 1, 1, 1, 0}});
  expect_error([&] { (void)tiny_encoder_net(long_ids, long_mask); }, errc::shape_mismatch,
               {"input \"input_ids\"", "per-sample shape [6] does not fit the declared shape [?, 4]"});
  // Another sample count in the mask.
  expect_error([&] { (void)tiny_encoder_net(ids, ids_of({{1, 1, 1, 0}})); }, errc::shape_mismatch,
               {"same number of samples"});
  // Inputs of a compiled network are checked against its shapes before anything runs.
  const auto net = tiny_encoder_net(ids, mask);
  expect_error([&] { (void)net.forward({long_ids, long_mask}); }, errc::shape_mismatch,
               {"input \"input_ids\"", "expected shape [2, 4] (any leading extent), got [1, 6]"});
  expect_error([&] { (void)net.forward({ids, ids_of({{1, 1, 1}, {1, 1, 0}})}); }, errc::shape_mismatch,
               {"input \"attention_mask\"", "got [2, 3]"});
}
