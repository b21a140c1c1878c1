#pragma once
// Encodings JSON: the quantization of an exported model for toolchains that do not read ONNX
// (format in docs/onnx_export.md). Written by hand, floats as "%.9g" (reads back to the same
// float32), so the component needs no JSON library.
//
//   {"format": "adaquant-encodings", "version": 1, "opset": 21,
//    "quantize": "q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)",
//    "dequantize": "x = (q - zero_point) * scale",
//    "layers": [{"node": "conv1", "op": "Conv", "weight": "conv1.weight", "weight_bits": 4,
//                "input": "x", "input_bits": 8, "input_encoding": "x",
//                "folded_batch_norm": "bn1"}, ...],
//    "tensors": {"conv1.weight": {"kind": "weight", "bits": 4, "signed": true,
//                                 "dtype": "int4", "qmin": -8, "qmax": 7, "axis": 0,
//                                 "scale": [...], "zero_point": [...]},
//                "x": {"kind": "activation", ..., "axis": null, "scale": [s], "zero_point": [z]}}}
//
// Embedding tables quantized per row (export/embedding.hpp) add "embeddings": [{"node": "/tok/
// Gather", "table": "tok.weight", "bits": 8}] before "tensors", and the table's entry there with
// "kind": "embedding", "axis": 0 and one scale and zero point per row.
// With exported products (exported_product: input quantizers on both operands of a MatMul of
// two activations) a "products" array comes before "tensors": {"node": ..., "op": "MatMul",
// "a": tensor, "a_bits": 8, "a_encoding": entry, "b": ..., "b_bits": ..., "b_encoding": ...};
// its operands are "activation" entries, named as the layers' inputs.
//
// Tensors are named as in the original model (weights by initializer, activations by the tensor
// the layer reads). A tensor that several layers read with different grids (e.g. a residual
// block's input, read by the block's first conv and by its projection shortcut, each calibrated
// on its own) gets one entry per reader, "<tensor>@<node>"; each layer row names its entry in
// "input_encoding". Validation is export_qdq's (same errors); a weight initializer shared by two
// layers with different grids throws errc::invalid_argument.

#include <adaquant/onnx/export.hpp>

#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant::onnx {
namespace detail::exporting {

inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

template <class T, class F>
std::string json_array(std::span<const T> v, F&& format) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + format(v[i]);
  return out + "]";
}

inline std::string json_int(std::int64_t v) { return std::to_string(v); }

// `blocks`: empty, or ", \"block_size\": B, \"scale_shape\": [...]" for block-wise weights.
inline std::string encoding_json(const char* kind, int bits, const storage_type& t,
                                 std::int32_t qmin, std::int32_t qmax, const std::string& axis,
                                 std::span<const float> scale, std::span<const std::int32_t> zp,
                                 const std::string& blocks = {}) {
  return std::string("{\"kind\": \"") + kind + "\", \"bits\": " + std::to_string(bits) +
         ", \"signed\": " + (qmin < 0 ? "true" : "false") + ", \"dtype\": \"" + t.name() +
         "\", \"qmin\": " + std::to_string(qmin) + ", \"qmax\": " + std::to_string(qmax) +
         ", \"axis\": " + axis + blocks + ", \"scale\": " + json_array(scale, exact_float) +
         ", \"zero_point\": " + json_array(zp, [](std::int32_t z) { return json_int(z); }) + "}";
}

}  // namespace detail::exporting

// The encodings of `parts` exported from `original` (see the file comment).
[[nodiscard]] inline std::string encodings_json(const ::onnx::ModelProto& original,
                                                const export_parts& parts,
                                                const export_options& options = {}) {
  using namespace detail::exporting;
  export_plan plan = plan_export(original, parts.layers, options, parts.products);
  const std::vector<planned_embedding> tables =
      plan_embeddings(original, parts.embeddings, options, plan);
  std::map<std::string, std::string> tensors;  // name -> encoding, sorted by name
  const auto add = [&](const ::onnx::NodeProto& n, const std::string& name, const std::string& e) {
    const auto [it, fresh] = tensors.emplace(name, e);
    if (!fresh && it->second != e)
      adaquant::detail::fail(
          errc::invalid_argument, "encodings_json: " + node_label(n),
          "tensor " + in_quotes(name) + " is quantized with two different grids");
  };
  // Activation encodings first: a tensor read with different grids gets one entry per reader.
  std::vector<std::string> input_encoding(plan.layers.size());
  std::map<std::string, std::map<std::string, int>> grids_of;  // tensor -> encoding -> readers
  const auto activation = [&](const planned_layer& p) {
    const quant_params& a = p.layer->input->params;
    const float s[1] = {a.scale};
    const std::int32_t z[1] = {a.zero_point};
    return encoding_json("activation", p.layer->input->bits, *p.input_grid, a.qmin, a.qmax, "null",
                         s, z);
  };
  const auto operand = [&](const input_quantizer& q, const planned_operand& o) {
    const float s[1] = {q.params.scale};
    const std::int32_t z[1] = {q.params.zero_point};
    return encoding_json("activation", q.bits, o.grid, q.params.qmin, q.params.qmax, "null", s, z);
  };
  for (const planned_layer& p : plan.layers)
    if (p.layer->input) ++grids_of[original.graph().node(p.node).input(0)][activation(p)];
  for (const planned_product& p : plan.products) {
    const ::onnx::NodeProto& n = original.graph().node(p.node);
    ++grids_of[n.input(0)][operand(p.product->a, p.a)];
    ++grids_of[n.input(1)][operand(p.product->b, p.b)];
  }
  for (std::size_t i = 0; i < plan.layers.size(); ++i) {
    const planned_layer& p = plan.layers[i];
    if (!p.layer->input) continue;
    const ::onnx::NodeProto& n = original.graph().node(p.node);
    const std::string& t = n.input(0);
    input_encoding[i] = grids_of[t].size() == 1 ? t : t + "@" + p.layer->node;
    add(n, input_encoding[i], activation(p));
  }
  std::string product_rows;
  for (const planned_product& p : plan.products) {
    const ::onnx::NodeProto& n = original.graph().node(p.node);
    std::string row = "    {\"node\": " + json_string(p.product->node) + ", \"op\": \"MatMul\"";
    for (int k = 0; k < 2; ++k) {
      const input_quantizer& q = k ? p.product->b : p.product->a;
      const std::string e = operand(q, k ? p.b : p.a), &t = n.input(k), side = k ? "b" : "a";
      const std::string name = grids_of[t].size() == 1 ? t : t + "@" + p.product->node;
      add(n, name, e);
      row += ", \"" + side + "\": " + json_string(t) + ", \"" + side +
             "_bits\": " + std::to_string(q.bits) + ", \"" + side +
             "_encoding\": " + json_string(name);
    }
    product_rows += std::string(product_rows.empty() ? "" : ",\n") + row + "}";
  }
  std::string layer_rows;
  for (std::size_t i = 0; i < plan.layers.size(); ++i) {
    const planned_layer& p = plan.layers[i];
    const exported_layer& l = *p.layer;
    const ::onnx::NodeProto& n = original.graph().node(p.node);
    layer_rows += std::string(layer_rows.empty() ? "" : ",\n") +
                  "    {\"node\": " + json_string(l.node) + ", \"op\": " + json_string(p.op) +
                  ", \"weight\": " + json_string(l.weight_initializer) +
                  ", \"weight_bits\": " + std::to_string(l.weight_bits) +
                  ", \"input\": " + (l.input ? json_string(n.input(0)) : "null") +
                  ", \"input_bits\": " + (l.input ? std::to_string(l.input->bits) : "null") +
                  ", \"input_encoding\": " + (l.input ? json_string(input_encoding[i]) : "null") +
                  ", \"folded_batch_norm\": " +
                  (l.folded_batch_norm.empty() ? "null" : json_string(l.folded_batch_norm)) + "}";
    // The grid's own zero points (without the UINT8 storage offset), in DequantizeLinear's layout.
    std::vector<std::int32_t> zp = p.weight_zero_point;
    for (std::int32_t& z : zp) z -= p.weight_offset;
    const std::string blocks =
        p.block_size == 0
            ? std::string{}
            : ", \"block_size\": " + std::to_string(p.block_size) + ", \"scale_shape\": " +
                  json_array(std::span<const std::int64_t>(p.param_dims), json_int);
    const weight_grid_view grid = grid_of(l);
    add(n, l.weight_initializer,
        encoding_json("weight", l.weight_bits, p.weight_grid, grid.qmin, grid.qmax,
                      std::to_string(p.weight_axis), p.weight_scale, zp, blocks));
  }
  std::string embedding_rows;
  for (const planned_embedding& p : tables) {
    const exported_embedding& e = *p.embedding;
    embedding_rows += std::string(embedding_rows.empty() ? "" : ",\n") +
                      "    {\"node\": " + json_string(e.node) +
                      ", \"table\": " + json_string(e.table_initializer) +
                      ", \"bits\": " + std::to_string(e.bits) + "}";
    tensors[e.table_initializer] =
        encoding_json("embedding", e.bits, p.type, e.params.qmin, e.params.qmax, "0",
                      e.params.scale, e.params.zero_point);
  }
  std::string tensor_rows;
  for (const auto& [name, e] : tensors)
    tensor_rows +=
        std::string(tensor_rows.empty() ? "" : ",\n") + "    " + json_string(name) + ": " + e;
  return "{\n  \"format\": \"adaquant-encodings\",\n  \"version\": 1,\n  \"opset\": " +
         std::to_string(plan.opset_to) +
         ",\n  \"quantize\": \"q = clamp(round_half_even(x / scale) + zero_point, qmin, qmax)\","
         "\n  \"dequantize\": \"x = (q - zero_point) * scale\",\n  \"layers\": [\n" +
         layer_rows + "\n  ],\n" +
         (embedding_rows.empty() ? std::string{}
                                 : "  \"embeddings\": [\n" + embedding_rows + "\n  ],\n") +
         (product_rows.empty() ? std::string{}
                               : "  \"products\": [\n" + product_rows + "\n  ],\n") +
         "  \"tensors\": {\n" + tensor_rows + "\n  }\n}\n";
}

// Layers only.
[[nodiscard]] inline std::string encodings_json(const ::onnx::ModelProto& original,
                                                std::span<const exported_layer> layers,
                                                const export_options& options = {}) {
  return encodings_json(original, export_parts{.layers = layers}, options);
}

// Writes encodings_json(original, parts, options) to `path` atomically.
inline void write_encodings(const ::onnx::ModelProto& original, const export_parts& parts,
                            const std::filesystem::path& path, const export_options& options = {}) {
  write_file_atomically(path, encodings_json(original, parts, options), "write_encodings");
}
// Layers only.
inline void write_encodings(const ::onnx::ModelProto& original,
                            std::span<const exported_layer> layers,
                            const std::filesystem::path& path, const export_options& options = {}) {
  write_encodings(original, export_parts{.layers = layers}, path, options);
}

}  // namespace adaquant::onnx
