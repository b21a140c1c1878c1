// Raising the opset: nodes whose attributes became inputs are rewritten, old Softmax semantics are
// kept through Flatten/Reshape, ops the exporter cannot vouch for are refused by name.

#include <adaquant/onnx/export.hpp>

#include "support/models.hpp"
#include "support/ort_cases.hpp"

#include <catch2/catch.hpp>

namespace aq = adaquant;
namespace ax = adaquant::onnx;
using namespace test_onnx;

namespace {

const onnx::NodeProto* find(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& n : m.graph().node())
    if (n.name() == name) return &n;
  return nullptr;
}

// x[2,8] -> Clip(attrs) -> Unsqueeze(axes attr) -> Softmax(axis 1, old 2-D semantics) ->
// Squeeze(axes attr) -> Dropout -> MatMul (the exported layer, weights already on a 4-bit grid)
// -> BatchNormalization -> ReduceMean(axes attr) -> Pad(attrs) -> y[2,3]
onnx::ModelProto make_opset9(bool bn_training_outputs = false) {
  onnx::ModelProto m = empty_model(9);
  auto& g = *m.mutable_graph();
  add_io(g.add_input(), "x", {2, 8});
  add_io(g.add_output(), "y", {2, 3});
  auto& clip = add_node(g, "Clip", "clip", {"x"}, {"c"});
  set_float(clip, "min", -1.0f);
  set_float(clip, "max", 1.5f);
  set_ints(add_node(g, "Unsqueeze", "unsqueeze", {"c"}, {"u"}), "axes", {1});
  set_int(add_node(g, "Softmax", "softmax", {"u"}, {"s"}), "axis", 1);
  set_ints(add_node(g, "Squeeze", "squeeze", {"s"}, {"q"}), "axes", {1});
  set_float(add_node(g, "Dropout", "dropout", {"q"}, {"d"}), "ratio", 0.3f);
  std::vector<float> w(48);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(static_cast<int>(i % 15) - 7) * 0.25f;
  *g.add_initializer() = float_tensor("w", {8, 6}, w);
  add_node(g, "MatMul", "mm", {"d", "w"}, {"h"});
  for (const char* p : {"bn.scale", "bn.bias", "bn.mean", "bn.var"})
    *g.add_initializer() = float_tensor(p, {6}, random_floats(6, 0.5f, 1.5f, 7));
  add_node(g, "BatchNormalization", "bn", {"h", "bn.scale", "bn.bias", "bn.mean", "bn.var"},
           {"b"});
  if (bn_training_outputs)  // at opset < 14 these make the batch norm a training-mode one
    for (const char* o : {"bn_mean", "bn_var", "bn_saved_mean", "bn_saved_var"})
      g.mutable_node(g.node_size() - 1)->add_output(o);
  auto& r = add_node(g, "ReduceMean", "reduce", {"b"}, {"r"});
  set_ints(r, "axes", {1});
  set_int(r, "keepdims", 1);
  auto& pad = add_node(g, "Pad", "pad", {"r"}, {"y"});
  set_ints(pad, "pads", {0, 1, 0, 1});
  set_float(pad, "value", 0.5f);
  return m;
}

ax::exported_layer matmul_layer(const onnx::ModelProto& m) {
  ax::exported_layer l;
  l.node = "mm";
  l.weight_initializer = "w";
  l.weight_bits = 4;
  const auto w = decode(m.graph().initializer(0)).f;  // [8, 6] -> ours [6, 8]
  l.weight.resize(48);
  for (std::size_t o = 0; o < 6; ++o)
    for (std::size_t k = 0; k < 8; ++k) l.weight[o * 8 + k] = w[k * 6 + o];
  l.weight_params.scale.assign(6, 0.25f);
  l.weight_params.zero_point.assign(6, 0);
  l.weight_params.qmin = -8;
  l.weight_params.qmax = 7;
  return l;
}

std::vector<std::string> inputs_of(const onnx::NodeProto& n) { return {n.input().begin(), n.input().end()}; }

}  // namespace

TEST_CASE("Opset 9 -> 21: attributes become inputs, Softmax keeps its 2-D semantics") {
  const onnx::ModelProto m = make_opset9();
  const std::vector<ax::exported_layer> ls = {matmul_layer(m)};
  onnx::ModelProto out;
  ax::export_qdq(m, ls, {}, out);
  CHECK(out.opset_import(0).version() == 21);
  CHECK(out.ir_version() == 10);
  CHECK(inputs_of(*find(out, "clip")) == std::vector<std::string>{"x", "clip_min", "clip_max"});
  CHECK(find(out, "clip")->attribute_size() == 0);
  CHECK(inputs_of(*find(out, "unsqueeze")) == std::vector<std::string>{"c", "unsqueeze_axes"});
  CHECK(inputs_of(*find(out, "squeeze")) == std::vector<std::string>{"s", "squeeze_axes"});
  CHECK(inputs_of(*find(out, "reduce")) == std::vector<std::string>{"b", "reduce_axes"});
  CHECK(inputs_of(*find(out, "pad")) == std::vector<std::string>{"r", "pad_pads", "pad_value"});
  CHECK(find(out, "dropout")->op_type() == "Identity");
  CHECK(find(out, "bn")->output_size() == 1);
  const auto* sm = find(out, "softmax");
  REQUIRE(sm);
  CHECK(sm->input(0) == "softmax_2d");
  CHECK(find(out, "softmax_flatten")->op_type() == "Flatten");
  CHECK(find(out, "softmax_reshape")->output(0) == "s");
  // ONNX Runtime runs both: the exported model must compute what the opset-9 original does (the
  // weights were already on their grid and no input is quantized).
  write_ort_pair(out, m, "opset9_upgraded", {{"x", float_value({2, 8}, random_floats(16, -2.0f, 2.0f, 8))}});
}

TEST_CASE("Opset 11 -> 13 at 8 bits: Squeeze axes become an input, ReduceMean keeps its attribute") {
  onnx::ModelProto m = make_opset9();
  m.mutable_opset_import(0)->set_version(11);
  auto* clip = m.mutable_graph()->mutable_node(0);  // Clip-11 reads min/max as inputs
  clip->clear_attribute();
  std::vector<ax::exported_layer> ls = {matmul_layer(m)};
  ls[0].weight_bits = 8;
  onnx::ModelProto out;
  ax::export_qdq(m, ls, {}, out);
  CHECK(out.opset_import(0).version() == 13);
  CHECK(out.ir_version() == 7);
  CHECK(find(out, "squeeze")->input_size() == 2);
  CHECK(find(out, "reduce")->input_size() == 1);
  CHECK(find(out, "reduce")->attribute_size() == 2);
}

TEST_CASE("Nodes that cannot be upgraded are refused by name") {
  const auto refused = [](onnx::ModelProto m, const std::string& needle) {
    const std::vector<ax::exported_layer> ls = {matmul_layer(m)};
    onnx::ModelProto out;
    try {
      ax::export_qdq(m, ls, {}, out);
      FAIL("no error");
    } catch (const aq::error& e) {
      CHECK(e.code() == aq::errc::invalid_argument);
      INFO(e.what());
      CHECK(std::string(e.what()).find(needle) != std::string::npos);
      CHECK(std::string(e.what()).find("opset 9 to 21") != std::string::npos);
    }
  };
  refused(make_opset9(true), "'bn' (BatchNormalization): has training outputs, so it runs in training mode");
  onnx::ModelProto up = make_opset9();
  add_node(*up.mutable_graph(), "Upsample", "up", {"y", "scales"}, {"z"});
  refused(up, "'up' (Upsample)");
  onnx::ModelProto topk = make_opset9();
  set_int(add_node(*topk.mutable_graph(), "TopK", "top", {"y"}, {"v", "i"}), "k", 1);
  refused(topk, "'top' (TopK): TopK's k attribute became an input");
}
