#pragma once
// Which nodes are quantizable layers, batch-norm folding, and the activation after a layer.
//
// A node is a quantizable layer when its weight is a constant float initializer and
//   Conv:    1-D or 2-D, input [N, C, (H,) W] per sample (a 1-D conv is a 2-D one with H = 1);
//   Gemm:    transA = 0, input [N, K], C absent or a constant broadcast to [O]; the layer's weight
//            is alpha * (transB ? B : B^T) and its bias beta * C;
//   MatMul:  a constant 2-D right operand and a [N, K] input, or a [N, T, K] input (a token-wise
//            projection of a transformer block: T rows per sample, linear_geometry::rows); the
//            weight is B^T. MatMul on rank > 3 inputs stays float: see layer_report(). A
//            token-wise MatMul whose output is read only by an Add of a constant with one value
//            per output (how exporters write nn.Linear) takes that constant as its bias, and the
//            Add becomes an Identity (fold_matmul_biases), as for a Gemm's C.
// ConvTranspose runs in float and is never a layer. A BatchNormalization whose input is a layer's
// output read by nothing else is folded into that layer (adaquant::fold_batch_norm) and becomes an
// Identity; the layer remembers it. The activation after a layer (through Identity nodes, when
// the layer's output has one reader): Relu or Clip(0, inf) -> relu, Clip(0, 6) -> relu6, else
// none.

#include <adaquant/onnx/graph.hpp>

#include <algorithm>
#include <limits>
#include <string>

namespace adaquant::onnx {

inline void graph::detect_layers(const compile_options&) {
  const auto const_float = [&](int v) -> const tensor* {
    if (v < 0 || !is_constant(v) || !slopes_[static_cast<std::size_t>(v)].empty()) return nullptr;
    const tensor& t = *constants_[static_cast<std::size_t>(v)];
    return t.floating() ? &t : nullptr;
  };
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    node& n = nodes_[i];
    const std::string& op = n.op_type;
    if (op != "Conv" && op != "Gemm" && op != "MatMul" && op != "ConvTranspose") continue;
    layer_report_entry r{n.name, op, false, i, {}};
    const auto no = [&](std::string why) { r.reason = std::move(why); };
    const int x = n.inputs.empty() ? -1 : n.inputs[0];
    const tensor* w = n.inputs.size() > 1 ? const_float(n.inputs[1]) : nullptr;
    const shape_t xs = x >= 0 ? probe_shapes_[static_cast<std::size_t>(x)] : shape_t{};
    const bool ps = x >= 0 && batch_axis_ && per_sample_[static_cast<std::size_t>(x)];
    layer_params l;
    if (op == "ConvTranspose") {
      no("ConvTranspose runs in float (not quantized)");
    } else if (!w) {
      no("the weight is not a constant float initializer");
    } else if (!ps) {
      no("the input " + shape_string(xs) + " is not [samples, ...] with fixed per-sample extents");
    } else if (op == "Conv") {
      const std::int64_t groups = n.attr_int("group", 1);
      const tensor* b = n.inputs.size() > 2 && n.inputs[2] >= 0 ? const_float(n.inputs[2]) : nullptr;
      if (!(xs.size() == 3 || xs.size() == 4)) no("only 1-D and 2-D convs are layers");
      else if (n.inputs.size() > 2 && n.inputs[2] >= 0 && !b) no("the bias is not a constant");
      else {
        l.weight = *w;
        l.weight_initializer = names_[static_cast<std::size_t>(n.inputs[1])];
        if (b) {
          l.bias = b->f;
          l.bias_initializer = names_[static_cast<std::size_t>(n.inputs[2])];
        } else {
          l.bias.assign(static_cast<std::size_t>(w->shape[0]), 0.0f);
        }
        (void)groups;
        r.quantizable = true;
      }
    } else if (op == "Gemm") {
      const tensor* c = n.inputs.size() > 2 && n.inputs[2] >= 0 ? const_float(n.inputs[2]) : nullptr;
      const bool tb = n.attr_int("transB", 0) != 0;
      if (n.attr_int("transA", 0) != 0) no("transA = 1");
      else if (xs.size() != 2 || w->rank() != 2) no("the input is not [samples, features]");
      else if (n.inputs.size() > 2 && n.inputs[2] >= 0 && !c) no("C is not a constant");
      else {
        const std::int64_t o = tb ? w->shape[0] : w->shape[1], k = tb ? w->shape[1] : w->shape[0];
        if (c && !(c->size() == 1 || (c->size() == static_cast<std::size_t>(o) && c->shape.back() == o && c->rank() <= 2 && (c->rank() < 2 || c->shape[0] == 1)))) {
          no("C does not broadcast per output");
        } else {
          const float alpha = n.attr_float("alpha", 1.0f), beta = n.attr_float("beta", 1.0f);
          l.weight = tensor({o, k}, tb ? w->f : detail::transposed(w->f.data(), static_cast<std::size_t>(k), static_cast<std::size_t>(o)));
          if (alpha != 1.0f) for (float& v : l.weight.f) v *= alpha;
          l.weight_scale = alpha;
          l.weight_transposed = !tb;
          l.weight_initializer = names_[static_cast<std::size_t>(n.inputs[1])];
          l.bias.assign(static_cast<std::size_t>(o), 0.0f);
          if (c) {
            for (std::size_t j = 0; j < l.bias.size(); ++j) l.bias[j] = beta * c->f[c->size() == 1 ? 0 : j];
            l.bias_initializer = names_[static_cast<std::size_t>(n.inputs[2])];
          }
          r.quantizable = true;
        }
      }
    } else {  // MatMul
      if (w->rank() != 2) no("the weight is not a matrix");
      else if (xs.size() > 3)
        no("MatMul on a rank-" + std::to_string(xs.size()) +
           " input stays float (only [samples, features] and [samples, tokens, features])");
      else if (xs.size() < 2)
        no("the input is not [samples, features]");
      else {
        const std::int64_t k = w->shape[0], o = w->shape[1];
        l.weight = tensor({o, k}, detail::transposed(w->f.data(), static_cast<std::size_t>(k), static_cast<std::size_t>(o)));
        l.weight_transposed = true;
        l.weight_initializer = names_[static_cast<std::size_t>(n.inputs[1])];
        l.bias.assign(static_cast<std::size_t>(o), 0.0f);
        r.quantizable = true;
      }
    }
    if (r.quantizable) n.layer = std::move(l);
    report_.push_back(std::move(r));
  }
}

inline void graph::fold_matmul_biases() {
  for (node& n : nodes_) {
    if (!n.layer || n.op_type != "MatMul" ||
        probe_shapes_[static_cast<std::size_t>(n.inputs[0])].size() != 3)
      continue;
    const int y = n.outputs.empty() ? -1 : n.outputs[0];
    if (y < 0) continue;
    const auto r = readers(y);
    if (r.size() != 1 || std::count(outputs_.begin(), outputs_.end(), y)) continue;
    node& add = nodes_[r[0]];
    if (add.op_type != "Add" || add.inputs.size() != 2 || add.inputs[0] == add.inputs[1] ||
        add.outputs.empty() || add.outputs[0] < 0)
      continue;
    const int b = add.inputs[add.inputs[0] == y ? 1 : 0];
    layer_params& l = *n.layer;
    if (b < 0 || !is_constant(b) || !slopes_[static_cast<std::size_t>(b)].empty()) continue;
    const tensor& c = *constants_[static_cast<std::size_t>(b)];
    const auto o = l.weight.shape[0];
    if (!c.floating() || c.size() != static_cast<std::size_t>(o) || c.rank() < 1 ||
        c.shape.back() != o ||
        probe_shapes_[static_cast<std::size_t>(add.outputs[0])] !=
            probe_shapes_[static_cast<std::size_t>(y)])
      continue;
    l.bias = c.f;
    l.bias_initializer = names_[static_cast<std::size_t>(b)];
    add.op_type = "Identity";  // keeps its name and index: layer ids stay stable
    add.inputs = {y};
    add.attrs.clear();
  }
}

inline void graph::fold_batch_norms_into_layers() {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    node& bn = nodes_[i];
    if (bn.op_type != "BatchNormalization" || bn.inputs.size() < 5) continue;
    const int x = bn.inputs[0];
    std::size_t src = npos;
    for (std::size_t j = 0; j < i; ++j)
      if (nodes_[j].outputs[0] == x) src = j;
    if (src == npos || !nodes_[src].layer) continue;
    if (readers(x).size() != 1 || std::count(outputs_.begin(), outputs_.end(), x)) continue;
    if (bn.attr_int("training_mode", 0) != 0) continue;
    bool extra = false;  // training-mode outputs
    for (std::size_t k = 1; k < bn.outputs.size(); ++k) extra = extra || bn.outputs[k] >= 0;
    if (extra) continue;
    batch_norm_params p;
    std::vector<float>* dst[4] = {&p.gamma, &p.beta, &p.mean, &p.var};
    bool ok = true;
    for (std::size_t k = 0; k < 4; ++k) {
      const int v = bn.inputs[k + 1];
      if (v < 0 || !is_constant(v) || !constants_[static_cast<std::size_t>(v)]->floating()) {
        ok = false;
        break;
      }
      *dst[k] = constants_[static_cast<std::size_t>(v)]->f;
    }
    layer_params& l = *nodes_[src].layer;
    const std::size_t o = static_cast<std::size_t>(l.weight.shape[0]);
    if (!ok || p.gamma.size() != o) continue;
    p.eps = bn.attr_float("epsilon", 1e-5f);
    fold_batch_norm(tensor_view<float>(l.weight.f.data(), {o, l.weight.size() / o}), l.bias, p);
    l.folded_batch_norm_node = bn.name;
    folded_[src] = std::move(p);
    bn.op_type = "Identity";  // keeps its name and index: layer ids stay stable
    bn.inputs.resize(1);
    bn.attrs.clear();
  }
}

inline output_activation graph::activation_after(std::size_t layer) const {
  int v = nodes_.at(layer).outputs[0];
  while (true) {
    if (std::count(outputs_.begin(), outputs_.end(), v)) return output_activation::none;
    const auto r = readers(v);
    if (r.size() != 1) return output_activation::none;
    const node& n = nodes_[r[0]];
    if (n.op_type == "Identity" || n.op_type == "Dropout") {
      v = n.outputs[0];
      continue;
    }
    if (n.op_type == "Relu") return output_activation::relu;
    if (n.op_type != "Clip") return output_activation::none;
    float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
    if (opset_ < 11) {
      lo = n.attr_float("min", lo);
      hi = n.attr_float("max", hi);
    } else {
      for (std::size_t k = 1; k < 3 && k < n.inputs.size(); ++k) {
        const int b = n.inputs[k];
        if (b < 0) continue;
        if (!is_constant(b) || !constants_[static_cast<std::size_t>(b)]->floating() ||
            constants_[static_cast<std::size_t>(b)]->size() != 1)
          return output_activation::none;
        (k == 1 ? lo : hi) = constants_[static_cast<std::size_t>(b)]->f[0];
      }
    }
    if (lo == 0.0f && hi == 6.0f) return output_activation::relu6;
    if (lo == 0.0f && hi == std::numeric_limits<float>::infinity()) return output_activation::relu;
    return output_activation::none;
  }
}


}  // namespace adaquant::onnx
