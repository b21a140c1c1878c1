// QDQ export: graph structure, storage types, int4 packing, exactness against adaquant's
// fake-quant with round_onnx (through an independent interpreter of the ONNX spec), file sizes.

#include <adaquant/onnx/export.hpp>
#include <adaquant/quant/int4.hpp>

#include "support/inspect.hpp"
#include "support/models.hpp"
#include "support/ort_cases.hpp"
#include "support/reference_eval.hpp"

#include <catch2/catch.hpp>

#include <bit>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace aq = adaquant;
namespace ax = adaquant::onnx;
using namespace test_onnx;

namespace {

// Inputs with exact ties of the first layer's grid (x / s = k + 0.5) and values beyond the range.
value cnn_input(const ax::exported_layer& first) {
  std::vector<float> x = random_floats(192, -1.5f, 2.0f, 21);
  const float s = first.input->params.scale;
  for (std::size_t i = 0; i < 40; ++i) x[i] = (static_cast<float>(i) - 20.5f) * s;
  return float_value({1, 3, 8, 8}, x);
}

}  // namespace

TEST_CASE("W8A8: BN removed, Q/DQ before each layer, uint8 weights, uint8/int8 inputs, opset 13") {
  const auto ls = cnn_layers({});
  const auto m = exported(make_cnn(), ls);
  CHECK(op_types(m) == std::vector<std::string>{
                           "QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv", "Relu",
                           "QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Conv", "Flatten",
                           "QuantizeLinear", "DequantizeLinear", "DequantizeLinear", "Gemm"});
  CHECK(opset(m) == 13);
  CHECK(m.ir_version() == 7);
  const auto& c1 = node(m, "conv1");
  CHECK(c1.output(0) == "bn1_out");  // the batch norm's output, read by relu1
  REQUIRE(c1.input_size() == 3);     // bias added (conv1 had none)
  CHECK(c1.input(0) == "x_dequantized");
  CHECK(c1.input(1) == "conv1.weight_dequantized");
  CHECK(initializer(m, "conv1.weight") == nullptr);
  CHECK(initializer(m, "bn1.running_mean") == nullptr);
  // Signed 8-bit weights stored as uint8 + 128 (export_options::signed_8bit_weights = false).
  CHECK(initializer(m, "conv1.weight_quantized")->data_type() == 2);
  CHECK(initializer(m, "conv1.weight_zero_point")->data_type() == 2);
  const value z = decode(*initializer(m, "conv1.weight_zero_point"));
  for (std::size_t c = 0; c < 16; ++c) CHECK(z.i.at(c) == ls[0].weight_params.zero_point.at(c) + 128);
  CHECK(initializer(m, "conv1.weight_scale")->dims(0) == 16);
  CHECK(initializer(m, "x_zero_point")->data_type() == 2);          // uint8 at 8 bits
  CHECK(initializer(m, "flat_zero_point")->data_type() == 3);       // signed grid: int8
  CHECK(initializer(m, "conv2.weight_quantized")->raw_data().size() == 4608);
  CHECK(node(m, "conv1.weight_DequantizeLinear").attribute(0).i() == 0);  // axis 0
  // conv2.bias was read only by conv2: rewritten in place.
  CHECK(node(m, "conv2").input(2) == "conv2.bias");
  CHECK(initializer(m, "conv2.bias")->raw_data().size() == 32 * 4);
}

TEST_CASE("signed_8bit_weights: int8 weights with the grid's own integers and zero points") {
  const auto ls = cnn_layers({});
  ax::export_options opt;
  opt.signed_8bit_weights = true;
  const auto m = exported(make_cnn(), ls, opt);
  CHECK(initializer(m, "conv1.weight_quantized")->data_type() == 3);
  CHECK(initializer(m, "conv1.weight_zero_point")->data_type() == 3);
  const value z = decode(*initializer(m, "conv1.weight_zero_point"));
  for (std::size_t c = 0; c < 16; ++c) CHECK(z.i.at(c) == ls[0].weight_params.zero_point.at(c));
  // Both storages dequantize to the layer's weights bit for bit.
  const auto u = exported(make_cnn(), ls);
  for (const auto* model : {&m, &u}) {
    evaluator ev(*model);
    const auto out = ev.run({{"x", cnn_input(ls[0])}}, {"conv1.weight_dequantized", "conv2.weight_dequantized"});
    CHECK(same_bits(out.at("conv1.weight_dequantized").f, ls[0].weight));
    CHECK(same_bits(out.at("conv2.weight_dequantized").f, ls[1].weight));
  }
}

TEST_CASE("W4A4: int4 packed two per byte (low nibble first), uint4 inputs, opset 21, IR 10") {
  const auto ls = cnn_layers({4, 4, 4, 4, 4, 4});
  ax::export_options opt;
  opt.four_bit_activation_types = true;
  const auto m = exported(make_cnn(), ls, opt);
  CHECK(opset(m) == 21);
  CHECK(m.ir_version() == 10);
  const auto* w = initializer(m, "conv2.weight_quantized");
  REQUIRE(w);
  CHECK(w->data_type() == 22);
  // The integers, computed here independently: q = round_half_even(w / s) + z.
  std::vector<std::int8_t> q(4608);
  for (std::size_t i = 0; i < q.size(); ++i) {
    const std::size_t c = i / 144;
    q[i] = static_cast<std::int8_t>(std::nearbyint(ls[1].weight[i] / ls[1].weight_params.scale[c]) +
                                    static_cast<float>(ls[1].weight_params.zero_point[c]));
  }
  std::vector<std::uint8_t> packed(aq::int4_packed_size(q.size()));
  aq::pack_int4(q, packed);
  REQUIRE(w->raw_data().size() == packed.size());
  CHECK(std::memcmp(w->raw_data().data(), packed.data(), packed.size()) == 0);
  CHECK((static_cast<std::uint8_t>(w->raw_data()[0]) & 0x0F) == (static_cast<std::uint8_t>(q[0]) & 0x0F));
  CHECK(initializer(m, "x_zero_point")->data_type() == 21);
  CHECK(initializer(m, "flat_zero_point")->data_type() == 22);
  const auto ops = op_types(m);
  CHECK(std::count(ops.begin(), ops.end(), "Clip") == 0);
  // By default the 4-bit activation grids go through 8-bit types and a Clip; weights stay int4.
  const auto d = exported(make_cnn(), ls);
  CHECK(opset(d) == 21);
  CHECK(initializer(d, "conv2.weight_quantized")->data_type() == 22);
  CHECK(initializer(d, "x_zero_point")->data_type() == 2);
  CHECK(initializer(d, "flat_zero_point")->data_type() == 3);
  const auto dops = op_types(d);
  CHECK(std::count(dops.begin(), dops.end(), "Clip") == 3);
}

TEST_CASE("Grids no type expresses (3, 5, 6, 7 bits, signed 2 bits) get a Clip at the grid's ends") {
  const auto ls = cnn_layers({3, 5, 2, 3, 6, 2});
  ax::export_options opt;
  opt.four_bit_activation_types = true;
  const auto m = exported(make_cnn(), ls, opt);
  CHECK(op_types(m) == std::vector<std::string>{
                           "QuantizeLinear", "DequantizeLinear", "Clip", "DequantizeLinear", "Conv", "Relu",
                           "QuantizeLinear", "DequantizeLinear", "Clip", "DequantizeLinear", "Conv", "Flatten",
                           "QuantizeLinear", "DequantizeLinear", "Clip", "DequantizeLinear", "Gemm"});
  CHECK(initializer(m, "conv1.weight_quantized")->data_type() == 22);  // 3 bits in int4
  CHECK(initializer(m, "conv2.weight_quantized")->data_type() == 2);   // 5 bits in uint8 + 128
  CHECK(initializer(m, "relu1_out_zero_point")->data_type() == 2);     // 6 bits in uint8
  CHECK(initializer(m, "flat_zero_point")->data_type() == 22);         // [-2, 1] in int4
  const auto& a = ls[0].input->params;  // [0, 7]
  CHECK(decode(*initializer(m, "x_clip_min")).f.at(0) == static_cast<float>(a.qmin - a.zero_point) * a.scale);
  CHECK(decode(*initializer(m, "x_clip_max")).f.at(0) == static_cast<float>(a.qmax - a.zero_point) * a.scale);
}

TEST_CASE("With four_bit_activation_types, a 4-bit input of an 8-bit-weight layer stays 8-bit") {
  // ONNX Runtime 1.30 would fuse UINT4 DequantizeLinear + 8-bit weights + Conv into a QLinearConv
  // it cannot run; with 4-bit weights the input keeps its 4-bit type.
  ax::export_options opt;
  opt.four_bit_activation_types = true;
  const auto m = exported(make_cnn(), cnn_layers({8, 4, 4, 4, 4, 4}), opt);
  CHECK(initializer(m, "x_zero_point")->data_type() == 2);             // uint8, conv1 has 8-bit weights
  CHECK(initializer(m, "x_clip_max") != nullptr);                      // the 4-bit grid's end
  CHECK(initializer(m, "relu1_out_zero_point")->data_type() == 21);    // uint4, conv2 has 4-bit weights
  CHECK(initializer(m, "conv1.weight_quantized")->data_type() == 2);   // uint8 + 128
}

TEST_CASE("The exported graph computes exactly adaquant's round_onnx simulation") {
  for (const bits_choice b : {bits_choice{}, bits_choice{4, 4, 4, 4, 4, 4}, bits_choice{3, 5, 2, 3, 6, 2},
                              bits_choice{8, 4, 6, 7, 5, 8}}) {
    const auto ls = cnn_layers(b);
    for (const int variant : {0, 1, 2}) {  // 4-bit types for weights and activations, weights, none
      const bool allow4 = variant < 2;
      ax::export_options opt;
      opt.allow_4bit_types = allow4;
      opt.four_bit_activation_types = variant == 0;
      const auto m = exported(make_cnn(), ls, opt);
      if (!allow4) CHECK(opset(m) == 13);
      const value x = cnn_input(ls[0]);
      evaluator ev(m);
      const std::string x_q = node(m, "conv1").input(0);  // after the Clip when there is one
      // Intermediate tensors too, so that a runtime's first divergence can be located.
      const auto out = ev.run({{"x", x}}, {"y", "conv1.weight_dequantized", "conv2.weight_dequantized",
                                          "fc.weight_dequantized", x_q, "bn1_out", node(m, "conv2").input(0),
                                          "conv2_out", node(m, "fc").input(0)});
      // Weights: DequantizeLinear of the exported integers gives the layer's weights bit for bit.
      CHECK(same_bits(out.at("conv1.weight_dequantized").f, ls[0].weight));
      CHECK(same_bits(out.at("conv2.weight_dequantized").f, ls[1].weight));
      CHECK(same_bits(out.at("fc.weight_dequantized").f, ls[2].weight));
      // Inputs (before any Clip) and the whole network.
      CHECK(same_bits(out.at(x_q).f, fake_quant_onnx(x.f, ls[0].input->params)));
      CHECK(same_bits(out.at("y").f, simulate_cnn(ls, x).f));
      write_ort_case(m, "cnn_w" + std::to_string(b.w1) + std::to_string(b.w2) + std::to_string(b.w3) + "_a" +
                            std::to_string(b.a1) + std::to_string(b.a2) + std::to_string(b.a3) +
                            (variant == 0 ? "" : variant == 1 ? "_8bit_activations" : "_8bit_types"),
                     {{"x", x}}, out);
    }
  }
}

TEST_CASE("Quantize -> Dequantize -> Clip equals fake_quant<round_onnx> on ties and saturation") {
  // A probe: x[1, 64] -> MatMul(identity, exact) with the input quantizer under test.
  for (const auto& [scheme, lo, hi] : {std::tuple{aq::quant_scheme{8, false, false, false}, -1.3f, 2.1f},
                                       std::tuple{aq::quant_scheme{4, false, false, false}, -0.7f, 1.9f},
                                       std::tuple{aq::quant_scheme{3, false, false, false}, -0.2f, 0.9f},
                                       std::tuple{aq::quant_scheme{5, true, true, false}, -1.1f, 1.1f},
                                       std::tuple{aq::quant_scheme{2, true, false, false}, -0.4f, 0.3f},
                                       std::tuple{aq::quant_scheme{7, true, false, true}, -3.0f, 0.5f}}) {
    const std::size_t k = 64;
    onnx::ModelProto m = empty_model(13);
    auto& g = *m.mutable_graph();
    add_io(g.add_input(), "x", {1, static_cast<std::int64_t>(k)});
    add_io(g.add_output(), "y", {1, static_cast<std::int64_t>(k)});
    std::vector<float> eye(k * k, 0.0f);
    for (std::size_t i = 0; i < k; ++i) eye[i * k + i] = 1.0f;
    *g.add_initializer() = float_tensor("eye", {static_cast<std::int64_t>(k), static_cast<std::int64_t>(k)}, eye);
    add_node(g, "MatMul", "probe", {"x", "eye"}, {"y"});
    ax::exported_layer l;
    l.node = "probe";
    l.weight_initializer = "eye";
    l.weight = eye;
    l.weight_bits = 2;
    l.weight_params.scale.assign(k, 1.0f);
    l.weight_params.zero_point.assign(k, 0);
    l.weight_params.qmin = 0;
    l.weight_params.qmax = 1;
    l.input = input_grid(scheme, lo, hi);
    const aq::quant_params& p = l.input->params;
    std::vector<float> x = random_floats(k, lo * 1.5f, hi * 1.5f, 31);
    for (std::size_t i = 0; i < 24; ++i)  // exact ties around and beyond the grid
      x[i] = (static_cast<float>(p.qmin - p.zero_point) + static_cast<float>(i) * 0.5f - 2.25f) * p.scale;
    const auto out_m = exported(m, {l});
    evaluator ev(out_m);
    const value xv = float_value({1, static_cast<std::int64_t>(k)}, x);
    const auto out = ev.run({{"x", xv}}, {"y"});
    INFO("bits " << scheme.bits << " signed " << scheme.is_signed);
    CHECK(same_bits(out.at("y").f, fake_quant_onnx(x, p)));
    write_ort_case(out_m, "probe_" + std::to_string(scheme.bits) + (scheme.is_signed ? "s" : "u"), {{"x", xv}}, out);
  }
}

TEST_CASE("MatMul and Gemm transB = 0 quantize along axis 1 of the [K, N] initializer") {
  onnx::ModelProto m = empty_model(13);
  auto& g = *m.mutable_graph();
  add_io(g.add_input(), "x", {2, 6});
  add_io(g.add_output(), "y", {2, 3});
  *g.add_initializer() = float_tensor("w1", {6, 4}, random_floats(24, -1, 1, 41));
  *g.add_initializer() = float_tensor("b1", {4}, random_floats(4, -1, 1, 42));
  *g.add_initializer() = float_tensor("w2", {4, 3}, random_floats(12, -1, 1, 43));
  *g.add_initializer() = float_tensor("w3", {3, 3}, random_floats(9, -1, 1, 44));
  add_node(g, "MatMul", "mm", {"x", "w1"}, {"mm_out"});
  add_node(g, "Add", "mm_bias", {"mm_out", "b1"}, {"h"});
  auto& gemm_node = add_node(g, "Gemm", "gemm", {"h", "w2"}, {"h2"});
  set_float(gemm_node, "alpha", 0.5f);  // folded into the exported weights: written as 1
  add_node(g, "MatMul", "mm_nobias", {"h2", "w3"}, {"y"});
  std::vector<ax::exported_layer> ls(3);
  const std::vector<std::size_t> n_out = {4, 3, 3}, n_in = {6, 4, 3};
  const char* names[] = {"mm", "gemm", "mm_nobias"};
  const char* weights[] = {"w1", "w2", "w3"};
  for (std::size_t i = 0; i < 3; ++i) {
    ls[i].node = names[i];
    ls[i].weight_initializer = weights[i];
    quantize_weights(ls[i], random_floats(n_out[i] * n_in[i], -1, 1, 50 + static_cast<std::uint32_t>(i)),
                     n_out[i], aq::quant_scheme{i == 1 ? 8 : 4, true, true, false});
    ls[i].bias = random_floats(n_out[i], -1, 1, 60 + static_cast<std::uint32_t>(i));
    ls[i].input = input_grid(aq::quant_scheme{8, true, false, false}, -2.0f, 2.0f);
  }
  ls[0].bias_initializer = "b1";
  const auto out_m = exported(m, ls);
  CHECK(op_types(out_m) == std::vector<std::string>{"QuantizeLinear", "DequantizeLinear", "DequantizeLinear",
                                                    "MatMul", "Add", "QuantizeLinear", "DequantizeLinear",
                                                    "DequantizeLinear", "Gemm", "QuantizeLinear",
                                                    "DequantizeLinear", "DequantizeLinear", "MatMul", "Add"});
  CHECK(node(out_m, "w1_DequantizeLinear").attribute(0).i() == 1);
  CHECK(initializer(out_m, "w1_quantized")->dims(0) == 6);
  CHECK(node(out_m, "gemm").attribute(0).f() == 1.0f);
  CHECK(node(out_m, "gemm").input(2) == "gemm_bias");
  evaluator ev(out_m);
  const value x = float_value({2, 6}, random_floats(12, -2.5f, 2.5f, 45));
  const auto out = ev.run({{"x", x}}, {"y", "w1_dequantized"});
  // The [K, N] initializer holds our [N, K] weights transposed.
  for (std::size_t o = 0; o < 4; ++o)
    for (std::size_t k = 0; k < 6; ++k) CHECK(out.at("w1_dequantized").f[k * 4 + o] == ls[0].weight[o * 6 + k]);
  // The simulation: y = q(x) W^T + b per layer.
  value h = x;
  for (std::size_t i = 0; i < 3; ++i) {
    const value b = float_value({static_cast<std::int64_t>(n_out[i])}, ls[i].bias);
    h = gemm(float_value(h.shape, fake_quant_onnx(h.f, ls[i].input->params)),
             float_value({static_cast<std::int64_t>(n_out[i]), static_cast<std::int64_t>(n_in[i])}, ls[i].weight),
             true, &b);
  }
  CHECK(same_bits(out.at("y").f, h.f));
  write_ort_case(out_m, "matmul_gemm_transb0", {{"x", x}}, out);
}

TEST_CASE("4-bit weights take about half the bytes of 8-bit ones") {
  const auto m8 = exported(make_cnn(), cnn_layers({8, 8, 8, 8, 8, 8}));
  const auto m4 = exported(make_cnn(), cnn_layers({4, 4, 4, 8, 8, 8}));
  const auto weight_bytes = [](const onnx::ModelProto& m) {
    std::size_t n = 0;
    for (const char* w : {"conv1.weight_quantized", "conv2.weight_quantized", "fc.weight_quantized"})
      n += initializer(m, w)->raw_data().size();
    return n;
  };
  CHECK(weight_bytes(m8) == 432 + 4608 + 5120);
  CHECK(weight_bytes(m4) == (432 + 4608 + 5120) / 2);
  // The whole file also holds float biases, scales, names: a little over half.
  const double s8 = static_cast<double>(m8.ByteSizeLong()), s4 = static_cast<double>(m4.ByteSizeLong());
  INFO("8-bit " << s8 << " bytes, 4-bit " << s4);
  CHECK(s4 / s8 < 0.65);
  report_size("float (float_data)", make_cnn().ByteSizeLong());
  report_size("W8A8", m8.ByteSizeLong());
  report_size("W4A8", m4.ByteSizeLong());
  report_size("W4A4", exported(make_cnn(), cnn_layers({4, 4, 4, 4, 4, 4})).ByteSizeLong());
}

TEST_CASE("write_model writes atomically and the file parses back to the same model") {
  const auto m = exported(make_cnn(), cnn_layers({4, 4, 4, 4, 4, 4}));
  const auto dir = std::filesystem::temp_directory_path() / "adaquant_export_test";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto path = dir / "cnn.onnx";
  ax::write_model(m, path);
  ax::write_model(m, path);  // replaces
  std::ifstream f(path, std::ios::binary);
  onnx::ModelProto back;
  REQUIRE(back.ParseFromIstream(&f));
  CHECK(back.SerializeAsString() == m.SerializeAsString());
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++files;
  CHECK(files == 1);  // no temporary left behind
  CHECK_THROWS_AS(ax::write_model(m, dir / "missing" / "x.onnx"), aq::error);
  std::filesystem::remove_all(dir);
}
