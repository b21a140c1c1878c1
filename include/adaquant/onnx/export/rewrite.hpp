#pragma once
// Second phase of the export: rewrite a copy of the graph from an export_plan (plan.hpp). Per
// layer, in node order, right before the layer's node:
//   input:  x -> QuantizeLinear -> DequantizeLinear [-> Clip] -> node (only this node's input;
//           layers reading the same tensor with the same quantizer share one chain)
//   weight: <w>_quantized (integers) -> DequantizeLinear(axis[, block_size]) -> node
//   bias:   rewritten in place (or as a new initializer when another node reads it too); added
//           as an input (Conv, Gemm) or a following Add (MatMul) when the node had none
//   folded BatchNormalization: removed; the layer writes its output tensor.
// Initializers nothing reads any more (the float weights, the batch norm's) are dropped.

#include <adaquant/onnx/export/plan.hpp>
#include <adaquant/onnx/export/proto.hpp>

#include <bit>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace adaquant::onnx::detail::exporting {

class qdq_rewriter {
 public:
  qdq_rewriter(::onnx::GraphProto& g, unique_names& names) : g_(g), names_(names) {
    for (int i = 0; i < g.node_size(); ++i) index_[g.node(i).name()] = i;
  }

  void run(const export_plan& plan) {
    before_.assign(static_cast<std::size_t>(g_.node_size()), {});
    after_.assign(static_cast<std::size_t>(g_.node_size()), {});
    for (const planned_layer& p : plan.layers) rewrite(p);
    for (const planned_product& p : plan.products) rewrite(p);
    std::vector<::onnx::NodeProto> nodes;
    for (int i = 0; i < g_.node_size(); ++i) {
      const auto k = static_cast<std::size_t>(i);
      for (auto& n : before_[k]) nodes.push_back(std::move(n));
      if (!removed_.count(i)) nodes.push_back(g_.node(i));
      for (auto& n : after_[k]) nodes.push_back(std::move(n));
    }
    g_.clear_node();
    for (auto& n : nodes) *g_.add_node() = std::move(n);
    for (const std::string& name : replaced_) remove_initializer_if_unused(g_, name);
  }

 private:
  void rewrite(const planned_layer& p) {
    const exported_layer& l = *p.layer;
    const int i = index_.at(l.node);
    ::onnx::NodeProto& n = *g_.mutable_node(i);
    auto& before = before_[static_cast<std::size_t>(i)];
    if (l.input) n.set_input(0, quantize_input(n.input(0), *l.input, p, before));
    n.set_input(1, dequantize_weight(p, before));
    replaced_.insert(l.weight_initializer);
    if (p.op == "Gemm") {
      if (p.flip_gemm) set_int_attribute(n, "transB", 0);
      if (find_attribute(n, "alpha")) set_float_attribute(n, "alpha", 1.0f);
      if (!l.bias.empty() && find_attribute(n, "beta")) set_float_attribute(n, "beta", 1.0f);
    }
    if (!l.folded_batch_norm.empty()) remove_batch_norm(l, n);  // before a MatMul's new Add
    if (!l.bias.empty()) write_bias(l, n, i);
  }

  void rewrite(const planned_product& p) {
    const int i = index_.at(p.product->node);
    ::onnx::NodeProto& n = *g_.mutable_node(i);
    auto& before = before_[static_cast<std::size_t>(i)];
    const std::string a = n.input(0), b = n.input(1);
    n.set_input(0, quantize_input(a, p.product->a, p.a.type, p.a.clip, before));
    n.set_input(1, quantize_input(b, p.product->b, p.b.type, p.b.clip, before));
  }

  std::string quantize_input(const std::string& x, const input_quantizer& q, const planned_layer& p,
                             std::vector<::onnx::NodeProto>& before) {
    return quantize_input(x, q, *p.input_type, p.input_clip, before);
  }

  // x -> QuantizeLinear -> DequantizeLinear [-> Clip to the grid's ends], in storage `type`.
  std::string quantize_input(const std::string& x, const input_quantizer& q,
                             const storage_type& type, bool clip,
                             std::vector<::onnx::NodeProto>& before) {
    const quant_params& a = q.params;
    const auto key = std::make_tuple(x, std::bit_cast<std::uint32_t>(a.scale), a.zero_point, a.qmin,
                                     a.qmax, type.onnx_type);
    if (const auto it = inputs_.find(key); it != inputs_.end()) return it->second;
    const std::string scale = names_.make(x + "_scale"), zp = names_.make(x + "_zero_point");
    const float s[1] = {a.scale};
    const std::int32_t z[1] = {a.zero_point};
    *g_.add_initializer() = make_float_tensor(scale, {}, s);
    *g_.add_initializer() = make_integer_tensor(zp, type.onnx_type, {}, z);
    const std::string q_out = names_.make(x + "_quantized"),
                      dq_out = names_.make(x + "_dequantized");
    before.push_back(
        make_node("QuantizeLinear", names_.make(x + "_QuantizeLinear"), {x, scale, zp}, {q_out}));
    before.push_back(make_node("DequantizeLinear", names_.make(x + "_DequantizeLinear"),
                               {q_out, scale, zp}, {dq_out}));
    std::string out = dq_out;
    if (clip) {
      // The grid's ends as DequantizeLinear computes them: (q - zero_point) * scale in float32.
      const float lo[1] = {static_cast<float>(a.qmin - a.zero_point) * a.scale};
      const float hi[1] = {static_cast<float>(a.qmax - a.zero_point) * a.scale};
      const std::string lo_name = names_.make(x + "_clip_min"),
                        hi_name = names_.make(x + "_clip_max");
      *g_.add_initializer() = make_float_tensor(lo_name, {}, lo);
      *g_.add_initializer() = make_float_tensor(hi_name, {}, hi);
      out = names_.make(x + "_clipped");
      before.push_back(
          make_node("Clip", names_.make(x + "_Clip"), {dq_out, lo_name, hi_name}, {out}));
    }
    inputs_.emplace(key, out);
    return out;
  }

  std::string dequantize_weight(const planned_layer& p, std::vector<::onnx::NodeProto>& before) {
    const exported_layer& l = *p.layer;
    const std::string& w = l.weight_initializer;
    const std::string q = names_.make(w + "_quantized"), scale = names_.make(w + "_scale"),
                      zp = names_.make(w + "_zero_point"), out = names_.make(w + "_dequantized");
    *g_.add_initializer() =
        make_integer_tensor(q, p.weight_type.onnx_type, p.weight_dims, p.weight_q);
    *g_.add_initializer() = make_float_tensor(scale, p.param_dims, p.weight_scale);
    *g_.add_initializer() =
        make_integer_tensor(zp, p.weight_type.onnx_type, p.param_dims, p.weight_zero_point);
    ::onnx::NodeProto dq =
        make_node("DequantizeLinear", names_.make(w + "_DequantizeLinear"), {q, scale, zp}, {out});
    set_int_attribute(dq, "axis", p.weight_axis);
    if (p.block_size > 0) set_int_attribute(dq, "block_size", p.block_size);
    before.push_back(std::move(dq));
    return out;
  }

  void write_bias(const exported_layer& l, ::onnx::NodeProto& n, int i) {
    const std::int64_t channels[1] = {static_cast<std::int64_t>(l.bias.size())};
    const std::string& b = l.bias_initializer;
    if (!b.empty() && count_uses(g_, b) == 1) {  // only this layer reads it: rewrite in place
      set_float_values(*g_.mutable_initializer(find_initializer(g_, b)), l.bias);
      return;
    }
    const std::string name = names_.make((b.empty() ? l.node : b) + "_bias");
    *g_.add_initializer() = make_float_tensor(name, channels, l.bias);
    if (n.op_type() != "MatMul") {
      while (n.input_size() < 3) n.add_input();
      n.set_input(2, name);
    } else if (!b.empty()) {
      for (auto& c : *g_.mutable_node())
        if (c.op_type() == "Add")
          for (int k = 0; k < c.input_size(); ++k)
            if (c.input(k) == b && c.input(1 - k) == n.output(0)) c.set_input(k, name);
    } else {  // MatMul without a bias: y = MatMul(x, W) + b
      const std::string y = n.output(0), product = names_.make(y + "_matmul");
      n.set_output(0, product);
      after_[static_cast<std::size_t>(i)].push_back(
          make_node("Add", names_.make(l.node + "_bias_add"), {product, name}, {y}));
    }
    if (!b.empty()) replaced_.insert(b);
  }

  void remove_batch_norm(const exported_layer& l, ::onnx::NodeProto& n) {
    const int b = index_.at(l.folded_batch_norm);
    const ::onnx::NodeProto& bn = g_.node(b);
    const std::string old = n.output(0);
    n.set_output(0, bn.output(0));
    removed_.insert(b);
    for (int k = 1; k < bn.input_size(); ++k) replaced_.insert(bn.input(k));
    auto* vi = g_.mutable_value_info();
    for (int k = 0; k < vi->size(); ++k)
      if (vi->Get(k).name() == old) {
        vi->DeleteSubrange(k, 1);
        break;
      }
  }

  ::onnx::GraphProto& g_;
  unique_names& names_;
  std::map<std::string, int> index_;
  std::vector<std::vector<::onnx::NodeProto>> before_, after_;
  std::set<int> removed_;
  std::set<std::string> replaced_;  // initializers to drop once nothing reads them
  std::map<std::tuple<std::string, std::uint32_t, std::int32_t, std::int32_t, std::int32_t,
                      std::int32_t>,
           std::string>
      inputs_;
};

}  // namespace adaquant::onnx::detail::exporting
