#pragma once
// QDQ export: write a quantized network back into its ONNX model as QuantizeLinear /
// DequantizeLinear pairs that any ONNX runtime executes (part of the optional adaquant::onnx
// component; the core headers never include it).
//
//   std::vector<adaquant::onnx::exported_layer> layers = ...;  // make_exported_layer(q, names)
//   onnx::ModelProto out;
//   adaquant::onnx::export_qdq(original, layers, {}, out);
//   adaquant::onnx::write_model(out, "model_w4a8.onnx");
//
// What the graph computes, per exported layer (ONNX operator semantics):
//   weight  W = (Wq - zero_point[c]) * scale[c]                     DequantizeLinear, axis c
//           or per block of B inputs (exported_layer::weight_blocks): blocked DequantizeLinear
//           (opset 21, block_size B) along the weight's input axis; a Gemm with transB = 1 is
//           then written with transB = 0 and a [K, N] weight (what ONNX Runtime fuses into
//           MatMulNBits)
//   input   q = saturate(round_half_even(x / scale) + zero_point)   QuantizeLinear
//           x' = (q - zero_point) * scale                           DequantizeLinear
//           x'' = Clip(x', (qmin - zero_point) * scale, (qmax - zero_point) * scale)
//                 only when [qmin, qmax] is narrower than the storage type's range
// Per exported product (a MatMul of two activations, exported_product): the same input chain on
// each of its two inputs, always in 8-bit types (with the Clip for 2-4-bit grids).
// Storage: weights of 2-4 bits as INT4/UINT4 packed two per byte (element 2i in the low
// nibble), 5-8 bits as INT8/UINT8; unsigned types when qmin >= 0; scales float32; zero points
// of the weight's/input's type. Activations: UINT8/INT8 at 5-8 bits, UINT4/INT4 at 2-4 bits,
// with the Clip for grids such as [0, 7] that no type expresses. Any 4-bit type raises the
// default-domain opset to 21 (IR 10), as do block-wise weights; otherwise at least 13 (per-axis
// DequantizeLinear). Other nodes are upgraded to the new opset or refused (export/opset.hpp).
//
// Exactness. QuantizeLinear divides by the scale and rounds ties to even: adaquant's round_onnx
// policy (quant/rounding.hpp). The Clip bounds are computed in float32 exactly as
// DequantizeLinear computes the grid's ends, and (q - z) * s is monotonic in q, so the exported
// graph reproduces a simulation run with rounding_mode::onnx exactly: the dequantized weights
// are the layer's weights bit for bit and every quantized input equals fake_quant_per_tensor
// <round_onnx>. A simulation run with round_pytorch (x * (1/s)) can differ by one step where
// x / s is within an ulp of a tie.
//
// The rest of the layer: its bias is written as float32 (no int32 bias quantization); a Gemm's
// alpha (and beta, when a bias is given) become 1 because exported_layer holds the effective
// parameters; a folded BatchNormalization is removed and the layer writes its output tensor.
//
// Errors (adaquant::error, thrown before `out` is touched): unknown or ambiguous node names
// and initializers, a layer whose node is not a Conv/Gemm/MatMul or does not read the named
// weight/bias, a batch norm that is not the layer's only reader (errc::invalid_argument); sizes
// or channel counts that disagree with the initializer (errc::shape_mismatch); bits outside
// [2, 8] or grids that do not fit them (errc::invalid_argument); non-finite weights or biases
// (errc::non_finite); dequantized weights that are not exactly on their grid
// (errc::invalid_argument, naming the element and channel); opsets outside [9, 21] and nodes
// that cannot be upgraded (errc::invalid_argument, naming the node).

#include <adaquant/onnx/export/embedding.hpp>
#include <adaquant/onnx/export/layer.hpp>
#include <adaquant/onnx/export/opset.hpp>
#include <adaquant/onnx/export/plan.hpp>
#include <adaquant/onnx/export/rewrite.hpp>
#include <adaquant/onnx/export/write.hpp>

#include <filesystem>
#include <span>
#include <string>

namespace adaquant::onnx {

// What one export writes, each list possibly empty: the layers (exported_layer: quantized weights,
// Q/DQ on the input), embedding tables quantized per row (export/embedding.hpp: each Gather reads
// its table through a per-row DequantizeLinear) and input quantizers on both operands of products
// of two activations (exported_product).
struct export_parts {
  std::span<const exported_layer> layers{};
  std::span<const exported_embedding> embeddings{};
  std::span<const exported_product> products{};
};

inline void export_qdq(const ::onnx::ModelProto& original, const export_parts& parts,
                       const export_options& options, ::onnx::ModelProto& out) {
  using namespace detail::exporting;
  export_plan plan = plan_export(original, parts.layers, options, parts.products);
  const std::vector<planned_embedding> tables =
      plan_embeddings(original, parts.embeddings, options, plan);
  ::onnx::ModelProto m = original;
  ::onnx::GraphProto& g = *m.mutable_graph();
  unique_names names(g);
  upgrade_opset(g, plan.opset_from, plan.opset_to, names);
  qdq_rewriter(g, names).run(plan);
  rewrite_embeddings(g, names, tables);
  for (auto& o : *m.mutable_opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") o.set_version(plan.opset_to);
  m.set_ir_version(plan.ir_version);
  out = std::move(m);
}

// Layers only.
inline void export_qdq(const ::onnx::ModelProto& original, std::span<const exported_layer> layers,
                       const export_options& options, ::onnx::ModelProto& out) {
  export_qdq(original, export_parts{.layers = layers}, options, out);
}

// Serializes `model` and writes it to `path` atomically (write_file_atomically).
inline void write_model(const ::onnx::ModelProto& model, const std::filesystem::path& path) {
  std::string bytes;
  if (!model.SerializeToString(&bytes))
    adaquant::detail::fail(errc::invalid_argument, "write_model",
                           "the model does not serialize (larger than protobuf's 2 GiB?)");
  write_file_atomically(path, bytes, "write_model");
}

}  // namespace adaquant::onnx
