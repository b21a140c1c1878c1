// Block-wise weights: blocked DequantizeLinear (opset 21, block_size) on MatMul, Gemm and 1x1
// Conv, checked against adaquant's per-block fake-quant through the independent reference
// interpreter; the encodings; and the errors.

#include <adaquant/onnx/encodings.hpp>

#include "support/inspect.hpp"
#include "support/models.hpp"
#include "support/ort_cases.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <bit>

namespace aq = adaquant;
namespace ax = adaquant::onnx;
using namespace test_onnx;

namespace {

// Block grids of `bits` over each block's min/max along the input dimension of w [out, in], and
// the weights fake-quantized on them with round_onnx (as a pipeline run with rounding_mode::onnx
// leaves them).
void quantize_blocks(ax::exported_layer& l, const std::vector<float>& w, std::size_t out,
                     std::size_t block, aq::quant_scheme scheme) {
  const std::size_t in = w.size() / out, blocks = (in + block - 1) / block;
  std::vector<float> lo(out * blocks), hi(out * blocks);
  for (std::size_t o = 0; o < out; ++o)
    for (std::size_t j = 0; j < blocks; ++j) {
      const auto first = w.begin() + static_cast<std::ptrdiff_t>(o * in + j * block);
      const auto last =
          w.begin() + static_cast<std::ptrdiff_t>(o * in + std::min(in, (j + 1) * block));
      lo[o * blocks + j] = *std::min_element(first, last);
      hi[o * blocks + j] = *std::max_element(first, last);
    }
  l.weight_blocks = aq::block_params_from_ranges(scheme, lo, hi, 1, block);
  l.weight.resize(w.size());
  const aq::tensor_view<const float> x(w.data(), {out, in});
  aq::tensor_view<float> y(l.weight.data(), {out, in});
  aq::fake_quant_per_block<aq::round_onnx>(x, y, *l.weight_blocks);
  l.weight_bits = scheme.bits;
}

// x[2, 80] -> MatMul(w1 [80, 48]) -> Add(b1) -> Gemm(w2 [16, 48], transB = 1) -> h
//          -> Gemm(w3 [16, 24], transB = 0) -> y[2, 24]
// 80 inputs in blocks of 32: a partial last block of 16.
onnx::ModelProto make_dense() {
  onnx::ModelProto m = empty_model(17);
  auto& g = *m.mutable_graph();
  add_io(g.add_input(), "x", {2, 80});
  add_io(g.add_output(), "y", {2, 24});
  *g.add_initializer() = float_tensor("w1", {80, 48}, random_floats(80 * 48, -1, 1, 1));
  *g.add_initializer() = float_tensor("b1", {48}, random_floats(48, -1, 1, 2));
  *g.add_initializer() = float_tensor("w2", {16, 48}, random_floats(16 * 48, -1, 1, 3));
  *g.add_initializer() = float_tensor("b2", {16}, random_floats(16, -1, 1, 4));
  *g.add_initializer() = float_tensor("w3", {16, 24}, random_floats(16 * 24, -1, 1, 5));
  add_node(g, "MatMul", "mm", {"x", "w1"}, {"mm_out"});
  add_node(g, "Add", "mm_add", {"mm_out", "b1"}, {"h1"});
  set_int(add_node(g, "Gemm", "fc", {"h1", "w2", "b2"}, {"h2"}), "transB", 1);
  add_node(g, "Gemm", "fc_t", {"h2", "w3"}, {"y"});
  return m;
}

struct dense_case {
  std::size_t block1 = 32, block2 = 16, block3 = 16;
  int bits1 = 4, bits2 = 4, bits3 = 8;
  bool weight_only = true;
};

std::vector<ax::exported_layer> dense_layers(const dense_case& c) {
  std::vector<ax::exported_layer> ls(3);
  const std::size_t outs[] = {48, 16, 24}, ins[] = {80, 48, 16},
                    blocks[] = {c.block1, c.block2, c.block3};
  const int bits[] = {c.bits1, c.bits2, c.bits3};
  const char* nodes[] = {"mm", "fc", "fc_t"};
  const char* weights[] = {"w1", "w2", "w3"};
  const char* biases[] = {"b1", "b2", ""};
  for (std::size_t i = 0; i < 3; ++i) {
    ls[i].node = nodes[i];
    ls[i].weight_initializer = weights[i];
    ls[i].bias_initializer = biases[i];
    quantize_blocks(
        ls[i], random_floats(outs[i] * ins[i], -0.5f, 0.6f, 10 + static_cast<std::uint32_t>(i)),
        outs[i], blocks[i], aq::quant_scheme{bits[i], true, i != 1, false});
    ls[i].bias = random_floats(outs[i], -0.2f, 0.2f, 20 + static_cast<std::uint32_t>(i));
    if (!c.weight_only)
      ls[i].input = input_grid(aq::quant_scheme{8, true, false, false}, -3.0f, 3.0f);
  }
  return ls;
}

// What adaquant's simulation computes for make_dense() with `ls` (round_onnx inputs).
value simulate_dense(const std::vector<ax::exported_layer>& ls, const value& x) {
  const std::int64_t outs[] = {48, 16, 24}, ins[] = {80, 48, 16};
  value h = x;
  for (std::size_t i = 0; i < 3; ++i) {
    const value b = float_value({outs[i]}, ls[i].bias);
    const value in =
        ls[i].input ? float_value(h.shape, fake_quant_onnx(h.f, ls[i].input->params)) : h;
    h = gemm(in, float_value({outs[i], ins[i]}, ls[i].weight), true, &b);
  }
  return h;
}

}  // namespace

TEST_CASE(
    "Blocked DequantizeLinear: block_size, axis along the inputs, [K/B, N] or [N, K/B] scales") {
  const auto ls = dense_layers({});
  const auto m = exported(make_dense(), ls);
  CHECK(opset(m) == 21);
  CHECK(m.ir_version() == 10);
  // MatMul's [K, N] initializer: blocks along axis 0, scales [ceil(80 / 32), 48].
  const auto& dq1 = node(m, "w1_DequantizeLinear");
  CHECK(attr_i(dq1, "axis", -1) == 0);
  CHECK(attr_i(dq1, "block_size", -1) == 32);
  const auto* s1 = initializer(m, "w1_scale");
  REQUIRE(s1);
  CHECK(std::vector<std::int64_t>(s1->dims().begin(), s1->dims().end()) ==
        std::vector<std::int64_t>{3, 48});
  const value sv = decode(*s1);
  for (std::size_t o = 0; o < 48; ++o)
    for (std::size_t j = 0; j < 3; ++j)
      CHECK(sv.f[j * 48 + o] == ls[0].weight_blocks->scale[o * 3 + j]);
  CHECK(initializer(m, "w1_quantized")->data_type() == 22);  // int4
  CHECK(initializer(m, "w1_zero_point")->data_type() == 22);
  // Gemm transB = 1 is written as transB = 0 with a [K, N] = [48, 16] weight (ONNX Runtime fuses
  // only blocks along axis 0 into MatMulNBits): scales [3, 16].
  CHECK(attr_i(node(m, "fc"), "transB", -1) == 0);
  CHECK(attr_i(node(m, "w2_DequantizeLinear"), "axis", -1) == 0);
  const auto* w2 = initializer(m, "w2_quantized");
  CHECK(std::vector<std::int64_t>(w2->dims().begin(), w2->dims().end()) ==
        std::vector<std::int64_t>{48, 16});
  const auto* s2 = initializer(m, "w2_scale");
  CHECK(std::vector<std::int64_t>(s2->dims().begin(), s2->dims().end()) ==
        std::vector<std::int64_t>{3, 16});
  // Gemm transB = 0, 8 bits: [K, N] blocks along axis 0, signed 8-bit stored as uint8 + 128.
  CHECK(attr_i(node(m, "w3_DequantizeLinear"), "axis", -1) == 0);
  CHECK(initializer(m, "w3_quantized")->data_type() == 2);
  const value z3 = decode(*initializer(m, "w3_zero_point"));
  CHECK(z3.i.at(0) == ls[2].weight_blocks->zero_point.at(0) + 128);
  // Weight-only: no QuantizeLinear anywhere.
  for (const auto& n : m.graph().node()) CHECK(n.op_type() != "QuantizeLinear");
}

TEST_CASE("The blocked graph computes exactly adaquant's per-block simulation") {
  for (const dense_case c :
       {dense_case{}, dense_case{32, 16, 16, 3, 2, 4, false}, dense_case{64, 48, 7, 8, 5, 4, true},
        dense_case{128, 1, 16, 4, 4, 4, false}}) {
    INFO("blocks " << c.block1 << "/" << c.block2 << "/" << c.block3 << " bits " << c.bits1
                   << c.bits2 << c.bits3);
    const auto ls = dense_layers(c);
    for (const bool allow4 : {true, false}) {
      ax::export_options opt;
      opt.allow_4bit_types = allow4;
      const auto m = exported(make_dense(), ls, opt);
      CHECK(opset(m) == 21);  // blocked DequantizeLinear needs it, whatever the types
      evaluator ev(m);
      const value x = float_value({2, 80}, random_floats(160, -2.5f, 2.5f, 31));
      const auto out =
          ev.run({{"x", x}}, {"y", "w1_dequantized", "w2_dequantized", "w3_dequantized"});
      // The [K, N] initializers hold our [N, K] weights transposed.
      std::vector<float> w1(80 * 48);
      for (std::size_t o = 0; o < 48; ++o)
        for (std::size_t k = 0; k < 80; ++k) w1[k * 48 + o] = ls[0].weight[o * 80 + k];
      CHECK(same_bits(out.at("w1_dequantized").f, w1));
      std::vector<float> w2(16 * 48);  // Gemm transB = 1 written transposed
      for (std::size_t o = 0; o < 16; ++o)
        for (std::size_t k = 0; k < 48; ++k) w2[k * 16 + o] = ls[1].weight[o * 48 + k];
      CHECK(same_bits(out.at("w2_dequantized").f, w2));
      CHECK(same_bits(out.at("y").f, simulate_dense(ls, x).f));
      if (allow4)
        write_ort_case(m,
                       "blocked_" + std::to_string(c.block1) + "_" + std::to_string(c.bits1) +
                           std::to_string(c.bits2) + std::to_string(c.bits3) +
                           (c.weight_only ? "_wo" : "_a8"),
                       {{"x", x}}, out);
    }
  }
}

TEST_CASE("Block-wise 1x1 Conv: blocks along the input channels, scales [M, C/B, 1, 1]") {
  onnx::ModelProto model = empty_model(13);
  auto& g = *model.mutable_graph();
  add_io(g.add_input(), "x", {1, 40, 3, 3});
  add_io(g.add_output(), "y", {1, 8, 3, 3});
  *g.add_initializer() = float_tensor("cw", {8, 40, 1, 1}, random_floats(320, -1, 1, 7));
  add_node(g, "Conv", "pw", {"x", "cw"}, {"y"});
  ax::exported_layer l;
  l.node = "pw";
  l.weight_initializer = "cw";
  quantize_blocks(l, random_floats(320, -0.4f, 0.4f, 8), 8, 16,
                  aq::quant_scheme{4, true, true, false});
  l.bias = random_floats(8, -0.1f, 0.1f, 9);
  const auto m = exported(model, {l});
  const auto* s = initializer(m, "cw_scale");
  REQUIRE(s);
  CHECK(std::vector<std::int64_t>(s->dims().begin(), s->dims().end()) ==
        std::vector<std::int64_t>{8, 3, 1, 1});
  CHECK(attr_i(node(m, "cw_DequantizeLinear"), "axis", -1) == 1);
  evaluator ev(m);
  const value x = float_value({1, 40, 3, 3}, random_floats(360, -1, 1, 10));
  const auto out = ev.run({{"x", x}}, {"y", "cw_dequantized"});
  CHECK(same_bits(out.at("cw_dequantized").f, l.weight));
  CHECK(same_bits(out.at("y").f,
                  conv2d(x, float_value({8, 40, 1, 1}, l.weight), l.bias.data(), {}).f));
  write_ort_case(m, "blocked_conv1x1", {{"x", x}}, out);
}

TEST_CASE("make_exported_layer carries a quantized_layer's blocks; the encodings describe them") {
  const auto ref = dense_layers({});
  aq::quantized_layer q;
  q.weight = ref[0].weight;
  q.weight_blocks = ref[0].weight_blocks;
  q.weight_params.qmin = q.weight_blocks->qmin;  // grid only, as the pipelines leave it
  q.weight_params.qmax = q.weight_blocks->qmax;
  q.quantize_input = false;
  q.bias = ref[0].bias;
  std::vector<ax::exported_layer> ls = ref;
  ls[0] = ax::make_exported_layer(q, "mm", "w1", "b1");
  CHECK(ls[0].weight_bits == 4);
  CHECK(ls[0].weight_params.scale.empty());
  CHECK(!ls[0].input);
  CHECK(exported(make_dense(), ls).SerializeAsString() ==
        exported(make_dense(), ref).SerializeAsString());
  const auto j = nlohmann::json::parse(ax::encodings_json(make_dense(), ls));
  CHECK(j["opset"] == 21);
  const auto& w = j["tensors"]["w1"];
  CHECK(w["axis"] == 0);
  CHECK(w["block_size"] == 32);
  CHECK(w["scale_shape"] == nlohmann::json::array({3, 48}));
  REQUIRE(w["scale"].size() == 3 * 48);
  CHECK(w["scale"][1 * 48 + 5].get<float>() == ref[0].weight_blocks->scale[5 * 3 + 1]);
  CHECK(w["zero_point"][0] == ref[0].weight_blocks->zero_point[0]);
  CHECK(j["layers"][0]["input"].is_null());
  const auto& w3 = j["tensors"]["w3"];  // the grid's own zero points, not the uint8 storage's
  CHECK(w3["dtype"] == "int8");
  CHECK(w3["zero_point"][0] == ref[2].weight_blocks->zero_point[0]);
  CHECK(j["tensors"]["w2"]["block_size"] == 16);
  CHECK(j["tensors"]["w2"]["axis"] == 0);  // the weight as written: [K, N]
}

TEST_CASE("Blocked export errors name the node and what disagrees") {
  const auto fails = [](const std::function<void(std::vector<ax::exported_layer>&)>& edit,
                        onnx::ModelProto model = make_dense()) -> std::pair<aq::errc, std::string> {
    auto ls = dense_layers({});
    edit(ls);
    onnx::ModelProto out;
    try {
      ax::export_qdq(model, ls, {}, out);
    } catch (const aq::error& e) {
      CHECK(out.graph().node_size() == 0);
      return {e.code(), e.what()};
    }
    FAIL("no error");
    return {};
  };
  auto [c1, m1] = fails([](auto& ls) {
    ls[0].weight_blocks->scale.pop_back(), ls[0].weight_blocks->zero_point.pop_back();
  });
  CHECK(c1 == aq::errc::shape_mismatch);
  CHECK(mentions(m1, "node 'mm'"));
  CHECK(mentions(m1, "144 blocks of 32; weight_blocks has 143"));
  auto [c2, m2] = fails([](auto& ls) { ls[1].weight_blocks->axis = 0; });
  CHECK(c2 == aq::errc::invalid_argument);
  CHECK(mentions(m2, "weight_blocks.axis must be 1"));
  auto [c3, m3] = fails(
      [](auto& ls) { ls[1].weight_params.scale = {1.0f}, ls[1].weight_params.zero_point = {0}; });
  CHECK(c3 == aq::errc::invalid_argument);
  CHECK(mentions(m3, "either weight_params (per channel) or weight_blocks"));
  auto [c4, m4] =
      fails([](auto& ls) { ls[0].weight[40] = std::nextafter(ls[0].weight[40], 2.0f); });
  CHECK(c4 == aq::errc::invalid_argument);
  CHECK(mentions(m4, "weight[40]"));
  CHECK(mentions(m4, "not on the grid of block 1 of channel 0"));
  auto [c5, m5] = fails([](auto& ls) { ls[2].weight_blocks->block_size = 0; });
  CHECK(c5 == aq::errc::invalid_argument);
  CHECK(mentions(m5, "weight_blocks.block_size"));
  // A 3x3 conv cannot take blocks along its input channels.
  onnx::ModelProto conv = empty_model(13);
  auto& g = *conv.mutable_graph();
  add_io(g.add_input(), "x", {1, 4, 5, 5});
  add_io(g.add_output(), "y", {1, 2, 3, 3});
  *g.add_initializer() = float_tensor("cw", {2, 4, 3, 3}, random_floats(72, -1, 1, 7));
  add_node(g, "Conv", "c3", {"x", "cw"}, {"y"});
  ax::exported_layer l;
  l.node = "c3";
  l.weight_initializer = "cw";
  quantize_blocks(l, random_floats(72, -1, 1, 8), 2, 4, aq::quant_scheme{4, true, true, false});
  onnx::ModelProto out;
  try {
    ax::export_qdq(conv, std::vector<ax::exported_layer>{l}, {}, out);
    FAIL("no error");
  } catch (const aq::error& e) {
    CHECK(e.code() == aq::errc::invalid_argument);
    CHECK(mentions(e.what(), "node 'c3'"));
    CHECK(mentions(e.what(), "block-wise weights need a kernel of 1"));
  }
}
