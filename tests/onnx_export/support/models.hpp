#pragma once
// Small ONNX models built with the protobuf API, and quantized layers for them.

#include <adaquant/adapters/std.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/onnx/export.hpp>
#include <adaquant/quant/quant_params.hpp>

#include "reference_eval.hpp"

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace test_onnx {

inline onnx::TensorProto float_tensor(const std::string& name, std::vector<std::int64_t> dims,
                                      const std::vector<float>& v) {
  onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(1);
  for (auto d : dims) t.add_dims(d);
  for (float x : v) t.add_float_data(x);
  return t;
}

inline std::vector<float> random_floats(std::size_t n, float lo, float hi, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (float& x : v) x = d(gen);
  return v;
}

inline onnx::NodeProto& add_node(onnx::GraphProto& g, const std::string& op,
                                 const std::string& name, std::vector<std::string> in,
                                 std::vector<std::string> out) {
  auto* n = g.add_node();
  n->set_op_type(op);
  n->set_name(name);
  for (auto& s : in) n->add_input(s);
  for (auto& s : out) n->add_output(s);
  return *n;
}

inline void set_ints(onnx::NodeProto& n, const std::string& name, std::vector<std::int64_t> v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INTS);
  for (auto x : v) a->add_ints(x);
}
inline void set_int(onnx::NodeProto& n, const std::string& name, std::int64_t v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}
inline void set_float(onnx::NodeProto& n, const std::string& name, float v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

// A graph input or output of `elem_type` (1 = FLOAT, 7 = INT64); a negative extent is the
// symbolic batch dimension "N".
inline void add_io(onnx::ValueInfoProto* v, const std::string& name, std::vector<std::int64_t> dims,
                   std::int32_t elem_type = 1) {
  v->set_name(name);
  auto* tt = v->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(elem_type);
  for (auto d : dims) {
    auto* dim = tt->mutable_shape()->add_dim();
    if (d < 0)
      dim->set_dim_param("N");
    else
      dim->set_dim_value(d);
  }
}

inline onnx::ModelProto empty_model(std::int64_t opset) {
  onnx::ModelProto m;
  m.set_ir_version(opset >= 13 ? 7 : 6);
  m.set_producer_name("adaquant-test");
  auto* o = m.add_opset_import();
  o->set_domain("");
  o->set_version(opset);
  m.mutable_graph()->set_name("test");
  return m;
}

// x[1,3,8,8] -> conv1 (no bias) -> bn1 -> relu1 -> conv2 (bias, stride 2) -> flatten -> fc (Gemm
// transB = 1) -> y[1,10]: a torch-style export.
inline onnx::ModelProto make_cnn(std::int64_t opset = 13) {
  onnx::ModelProto m = empty_model(opset);
  auto& g = *m.mutable_graph();
  add_io(g.add_input(), "x", {1, 3, 8, 8});
  add_io(g.add_output(), "y", {1, 10});
  *g.add_initializer() = float_tensor("conv1.weight", {16, 3, 3, 3}, random_floats(432, -1, 1, 1));
  for (const char* p : {"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"})
    *g.add_initializer() = float_tensor(p, {16}, random_floats(16, 0.5f, 1.5f, 2));
  *g.add_initializer() =
      float_tensor("conv2.weight", {32, 16, 3, 3}, random_floats(4608, -1, 1, 3));
  *g.add_initializer() = float_tensor("conv2.bias", {32}, random_floats(32, -1, 1, 4));
  *g.add_initializer() = float_tensor("fc.weight", {10, 512}, random_floats(5120, -1, 1, 5));
  *g.add_initializer() = float_tensor("fc.bias", {10}, random_floats(10, -1, 1, 6));
  auto& c1 = add_node(g, "Conv", "conv1", {"x", "conv1.weight"}, {"conv1_out"});
  set_ints(c1, "pads", {1, 1, 1, 1});
  set_ints(c1, "kernel_shape", {3, 3});
  add_node(g, "BatchNormalization", "bn1",
           {"conv1_out", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"},
           {"bn1_out"});
  add_node(g, "Relu", "relu1", {"bn1_out"}, {"relu1_out"});
  auto& c2 =
      add_node(g, "Conv", "conv2", {"relu1_out", "conv2.weight", "conv2.bias"}, {"conv2_out"});
  set_ints(c2, "pads", {1, 1, 1, 1});
  set_ints(c2, "strides", {2, 2});
  add_node(g, "Flatten", "flatten", {"conv2_out"}, {"flat"});
  auto& fc = add_node(g, "Gemm", "fc", {"flat", "fc.weight", "fc.bias"}, {"y"});
  set_int(fc, "transB", 1);
  set_float(fc, "alpha", 1.0f);
  set_float(fc, "beta", 1.0f);
  return m;
}

// Per-channel grid of `bits` over each channel's min/max, and the weights fake-quantized on it
// with round_onnx (as a pipeline run with rounding_mode::onnx leaves them).
inline void quantize_weights(adaquant::onnx::exported_layer& l, std::vector<float> w,
                             std::size_t channels, adaquant::quant_scheme scheme) {
  const std::size_t per = w.size() / channels;
  std::vector<float> lo(channels), hi(channels);
  for (std::size_t c = 0; c < channels; ++c) {
    lo[c] = *std::min_element(w.begin() + static_cast<std::ptrdiff_t>(c * per),
                              w.begin() + static_cast<std::ptrdiff_t>((c + 1) * per));
    hi[c] = *std::max_element(w.begin() + static_cast<std::ptrdiff_t>(c * per),
                              w.begin() + static_cast<std::ptrdiff_t>((c + 1) * per));
  }
  l.weight_params = adaquant::channel_params_from_ranges(scheme, lo, hi, 0);
  l.weight.resize(w.size());
  const adaquant::tensor_view<const float> in(w.data(), {channels, per});
  adaquant::tensor_view<float> out(l.weight.data(), {channels, per});
  adaquant::fake_quant_per_channel<adaquant::round_onnx>(in, out, l.weight_params);
  l.weight_bits = scheme.bits;
}

inline adaquant::onnx::input_quantizer input_grid(adaquant::quant_scheme scheme, float lo,
                                                  float hi) {
  return {adaquant::params_from_range(scheme, lo, hi), scheme.bits};
}

struct bits_choice {
  int w1 = 8, w2 = 8, w3 = 8, a1 = 8, a2 = 8, a3 = 8;
};

// The three layers of make_cnn() quantized: conv1 (+ folded bn1), conv2, fc. Inputs: x affine
// unsigned, relu1_out unsigned, flat signed symmetric.
inline std::vector<adaquant::onnx::exported_layer> cnn_layers(const bits_choice& b) {
  using adaquant::quant_scheme;
  std::vector<adaquant::onnx::exported_layer> ls(3);
  ls[0].node = "conv1";
  ls[0].weight_initializer = "conv1.weight";
  ls[0].folded_batch_norm = "bn1";
  quantize_weights(ls[0], random_floats(432, -0.8f, 0.9f, 11), 16,
                   quant_scheme{b.w1, true, true, false});
  ls[0].bias = random_floats(16, -0.5f, 0.5f, 12);
  ls[0].input = input_grid(quant_scheme{b.a1, false, false, false}, -1.0f, 1.5f);
  ls[1].node = "conv2";
  ls[1].weight_initializer = "conv2.weight";
  ls[1].bias_initializer = "conv2.bias";
  quantize_weights(ls[1], random_floats(4608, -0.3f, 0.3f, 13), 32,
                   quant_scheme{b.w2, true, true, false});
  ls[1].bias = random_floats(32, -0.2f, 0.2f, 14);
  ls[1].input = input_grid(quant_scheme{b.a2, false, false, false}, 0.0f, 3.0f);
  ls[2].node = "fc";
  ls[2].weight_initializer = "fc.weight";
  ls[2].bias_initializer = "fc.bias";
  quantize_weights(ls[2], random_floats(5120, -0.1f, 0.1f, 15), 10,
                   quant_scheme{b.w3, true, true, false});
  ls[2].bias = random_floats(10, -0.2f, 0.2f, 16);
  ls[2].input = input_grid(quant_scheme{b.a3, true, true, false}, -2.0f, 2.0f);
  return ls;
}

inline std::vector<float> fake_quant_onnx(const std::vector<float>& x,
                                          const adaquant::quant_params& p) {
  std::vector<float> y(x.size());
  adaquant::fake_quant_per_tensor<adaquant::round_onnx>(x, y, p);
  return y;
}

// export_qdq(m, ls, opt) as a value.
inline onnx::ModelProto exported(const onnx::ModelProto& m,
                                 const std::vector<adaquant::onnx::exported_layer>& ls,
                                 adaquant::onnx::export_options opt = {}) {
  onnx::ModelProto out;
  adaquant::onnx::export_qdq(m, ls, opt, out);
  return out;
}

inline value float_value(std::vector<std::int64_t> shape, std::vector<float> f) {
  value v;
  v.shape = std::move(shape);
  v.f = std::move(f);
  return v;
}

// What adaquant's simulation computes for make_cnn() with `ls` (round_onnx), using the
// reference interpreter's kernels.
inline value simulate_cnn(const std::vector<adaquant::onnx::exported_layer>& ls, const value& x) {
  const auto q = [](const value& v, const adaquant::onnx::exported_layer& l) {
    return float_value(v.shape, fake_quant_onnx(v.f, l.input->params));
  };
  conv_params p1;
  p1.pad_t = p1.pad_l = p1.pad_b = p1.pad_r = 1;
  value h = conv2d(q(x, ls[0]), float_value({16, 3, 3, 3}, ls[0].weight), ls[0].bias.data(), p1);
  for (float& v : h.f) v = std::max(v, 0.0f);
  conv_params p2 = p1;
  p2.stride_h = p2.stride_w = 2;
  h = conv2d(q(h, ls[1]), float_value({32, 16, 3, 3}, ls[1].weight), ls[1].bias.data(), p2);
  h.shape = {1, 512};
  const value b = float_value({10}, ls[2].bias);
  return gemm(q(h, ls[2]), float_value({10, 512}, ls[2].weight), true, &b);
}

}  // namespace test_onnx
