#pragma once
// Raising a model's default-domain opset (to 13 for per-axis DequantizeLinear, to 21 for
// INT4/UINT4). Each node must mean the same at the new opset: ops whose later versions only add
// types or optional attributes/inputs with the old behaviour as default are kept; ops whose
// attributes became inputs are rewritten (Clip min/max at 11, Pad pads/value at 11, Slice at
// 10, Squeeze/Unsqueeze axes and ReduceSum axes and Split split at 13, the other Reduce* axes at
// 18, Split num_outputs at 18); Softmax/LogSoftmax/Hardmax before 13 (coerced to 2-D at `axis`)
// become Flatten -> op(axis -1) -> Reshape unless axis is -1; Dropout before 12 becomes Identity;
// BatchNormalization before 14 with training outputs (training mode) is refused. Anything else (Upsample,
// Resize-10, TopK-1, ops with subgraphs, ops not listed) throws adaquant::error naming the node.
// Attribute-to-input rewrites assume float32 data for Clip and Pad's constant value.

#include <adaquant/core/error.hpp>
#include <adaquant/onnx/export/proto.hpp>

#include <algorithm>
#include <iterator>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant::onnx::detail::exporting {

// Ops whose versions from 9 to 21 keep the meaning of an older node.
[[nodiscard]] inline bool keeps_meaning_up_to_21(std::string_view op) {
  static constexpr std::string_view ops[] = {
      "Abs", "Acos", "Acosh", "Add", "And", "ArgMax", "ArgMin", "Asin", "Asinh", "Atan", "Atanh",
      "AveragePool", "Cast", "Ceil", "Celu", "Concat", "Constant", "ConstantOfShape", "Conv",
      "ConvTranspose", "Cos", "Cosh", "CumSum", "DepthToSpace", "DequantizeLinear", "Div", "Einsum",
      "Elu", "Equal", "Erf", "Exp", "Expand", "EyeLike", "Flatten", "Floor", "Gather",
      "GatherElements", "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalLpPool",
      "GlobalMaxPool", "Greater", "GreaterOrEqual", "HardSigmoid", "HardSwish", "Identity",
      "InstanceNormalization", "IsInf", "IsNaN", "LayerNormalization", "LeakyRelu", "Less",
      "LessOrEqual", "Log", "LpNormalization", "LRN", "MatMul", "Max", "MaxPool", "Mean", "Min",
      "Mish", "Mod", "Mul", "Neg", "NonZero", "Not", "OneHot", "Or", "Pow", "PRelu",
      "QuantizeLinear", "Range", "Reciprocal", "Relu", "Reshape", "Resize", "Round", "Selu",
      "Shape", "Sigmoid", "Sign", "Sin", "Size", "Softplus", "Softsign", "Sqrt", "Sub", "Sum",
      "Tanh", "Tile", "Transpose", "Trilu", "Where", "Xor", "Tan", "SpaceToDepth"};
  return std::find(std::begin(ops), std::end(ops), op) != std::end(ops);
}

[[nodiscard]] inline bool is_reduce_from_18(std::string_view op) {
  static constexpr std::string_view ops[] = {
      "ReduceL1",   "ReduceL2",  "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
      "ReduceMean", "ReduceMin", "ReduceProd",   "ReduceSumSquare"};
  return std::find(std::begin(ops), std::end(ops), op) != std::end(ops);
}

class opset_upgrader {
 public:
  opset_upgrader(::onnx::GraphProto& g, std::int64_t from, std::int64_t to, unique_names& names)
      : g_(g), from_(from), to_(to), names_(names) {}

  void run() {
    std::vector<::onnx::NodeProto> out;
    out.reserve(static_cast<std::size_t>(g_.node_size()));
    for (const auto& n : g_.node()) {
      if (!is_default_domain(n)) {
        out.push_back(n);
        continue;
      }
      upgrade(n, out);
    }
    g_.clear_node();
    for (auto& n : out) *g_.add_node() = std::move(n);
  }

 private:
  [[noreturn]] void refuse(const ::onnx::NodeProto& n, const std::string& why) const {
    adaquant::detail::fail(errc::invalid_argument, "export_qdq: " + node_label(n),
                           why + " (upgrading opset " + std::to_string(from_) + " to " +
                               std::to_string(to_) + ")");
  }

  bool crosses(std::int64_t version) const { return from_ < version && to_ >= version; }

  void upgrade(const ::onnx::NodeProto& n, std::vector<::onnx::NodeProto>& out) {
    const std::string& op = n.op_type();
    if (has_subgraphs(n)) refuse(n, "ops with subgraphs are not upgraded");
    ::onnx::NodeProto m = n;
    if (op == "BatchNormalization") {
      // Before 14 the optional outputs select training mode (batch statistics): not an
      // inference graph, and not expressible as BatchNormalization-14 with two outputs.
      if (crosses(14) && std::any_of(m.output().begin() + 1, m.output().end(),
                                     [](const std::string& o) { return !o.empty(); }))
        refuse(n, "has training outputs, so it runs in training mode; export it in inference mode");
    } else if (op == "Clip") {
      if (crosses(11)) {
        const auto* lo = find_attribute(n, "min");
        const auto* hi = find_attribute(n, "max");
        set_input(m, 1, lo ? scalar(n, "min", lo->f()) : std::string{});
        set_input(m, 2, hi ? scalar(n, "max", hi->f()) : std::string{});
        erase_attribute(m, "min");
        erase_attribute(m, "max");
      }
    } else if (op == "Pad") {
      if (crosses(11)) {
        attribute_to_input(m, "pads", 1, true);
        const auto* v = find_attribute(n, "value");
        if (v && v->f() != 0.0f) set_input(m, 2, scalar(n, "value", v->f()));
        erase_attribute(m, "value");
      }
    } else if (op == "Slice") {
      if (crosses(10)) {
        attribute_to_input(m, "starts", 1, true);
        attribute_to_input(m, "ends", 2, true);
        attribute_to_input(m, "axes", 3, false);
      }
    } else if (op == "Squeeze" || op == "Unsqueeze" || op == "ReduceSum") {
      if (crosses(13)) attribute_to_input(m, "axes", 1, op == "Unsqueeze");
    } else if (is_reduce_from_18(op)) {
      if (crosses(18)) attribute_to_input(m, "axes", 1, false);
    } else if (op == "Split") {
      if (crosses(13)) attribute_to_input(m, "split", 1, false);
      if (crosses(18) && (m.input_size() < 2 || m.input(1).empty()) && !find_attribute(m, "num_outputs"))
        set_int_attribute(m, "num_outputs", m.output_size());
    } else if (op == "Softmax" || op == "LogSoftmax" || op == "Hardmax") {
      if (crosses(13) && int_attribute(n, "axis", 1) != -1) {
        coerce_to_2d(n, out);
        return;
      }
    } else if (op == "Dropout") {
      if (crosses(12)) {
        drop_unread_outputs(m, "mask output");
        m.set_op_type("Identity");
        m.clear_attribute();
        while (m.input_size() > 1) m.mutable_input()->RemoveLast();
      }
    } else if (op == "TopK") {
      if (crosses(10)) refuse(n, "TopK's k attribute became an input at opset 10; re-export the model");
    } else if (op == "Resize" && crosses(11)) {
      refuse(n, "Resize-10's coordinate semantics changed at opset 11; re-export the model");
    } else if (!keeps_meaning_up_to_21(op)) {
      refuse(n, "the exporter does not know whether " + op + " keeps its meaning");
    }
    out.push_back(std::move(m));
  }

  void drop_unread_outputs(::onnx::NodeProto& m, const char* what) const {
    for (int k = 1; k < m.output_size(); ++k)
      if (!m.output(k).empty() && count_uses(g_, m.output(k)) != 0)
        refuse(m, std::string("its ") + what + " " + in_quotes(m.output(k)) + " is read");
    while (m.output_size() > 1) m.mutable_output()->RemoveLast();
  }

  static void set_input(::onnx::NodeProto& m, int k, const std::string& name) {
    while (m.input_size() <= k) m.add_input();
    m.set_input(k, name);
    while (m.input_size() > 0 && m.input(m.input_size() - 1).empty()) m.mutable_input()->RemoveLast();
  }

  std::string scalar(const ::onnx::NodeProto& n, const std::string& what, float v) {
    const std::string name = names_.make(n.name() + "_" + what);
    const float value[1] = {v};
    *g_.add_initializer() = make_float_tensor(name, {}, value);
    return name;
  }

  void attribute_to_input(::onnx::NodeProto& m, const char* attr, int k, bool required) {
    const auto* a = find_attribute(m, attr);
    if (!a) {
      if (required) refuse(m, std::string("lacks its '") + attr + "' attribute");
      return;
    }
    const std::vector<std::int64_t> v(a->ints().begin(), a->ints().end());
    const std::int64_t dims[1] = {static_cast<std::int64_t>(v.size())};
    const std::string name = names_.make(m.name() + "_" + attr);
    *g_.add_initializer() = make_int64_tensor(name, dims, v);
    erase_attribute(m, attr);
    set_input(m, k, name);
  }

  // Before 13 these ops flattened the input to 2-D at `axis`; Flatten reproduces that exactly.
  void coerce_to_2d(const ::onnx::NodeProto& n, std::vector<::onnx::NodeProto>& out) {
    if (n.input_size() != 1 || n.output_size() != 1) refuse(n, "has unexpected inputs or outputs");
    const std::string base = n.name().empty() ? n.output(0) : n.name();
    const std::string shape = names_.make(base + "_shape"), flat = names_.make(base + "_2d"),
                      two_d = names_.make(base + "_2d_out");
    out.push_back(make_node("Shape", names_.make(base + "_shape"), {n.input(0)}, {shape}));
    ::onnx::NodeProto f = make_node("Flatten", names_.make(base + "_flatten"), {n.input(0)}, {flat});
    set_int_attribute(f, "axis", int_attribute(n, "axis", 1));
    out.push_back(std::move(f));
    ::onnx::NodeProto s = make_node(n.op_type(), n.name(), {flat}, {two_d});
    set_int_attribute(s, "axis", -1);
    out.push_back(std::move(s));
    out.push_back(make_node("Reshape", names_.make(base + "_reshape"), {two_d, shape}, {n.output(0)}));
  }

  ::onnx::GraphProto& g_;
  std::int64_t from_, to_;
  unique_names& names_;
};

// Rewrites the graph's nodes for opset `to` (see the file comment); a no-op when from == to.
inline void upgrade_opset(::onnx::GraphProto& g, std::int64_t from, std::int64_t to,
                          unique_names& names) {
  if (from >= to) return;
  opset_upgrader(g, from, to, names).run();
}

}  // namespace adaquant::onnx::detail::exporting
