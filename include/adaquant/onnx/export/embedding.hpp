#pragma once
// Export of embedding tables quantized per row (onnx/embedding.hpp has the maths):
//   <table>_quantized [V, D] (int8/uint8, or int4/uint4 at 2-4 bits)
//     -> DequantizeLinear(axis 0, <table>_scale [V], <table>_zero_point [V]) -> Gather
// The float table is dropped. DequantizeLinear computes (q - z_r) * s_r in float32, the
// simulated table bit for bit (the integers are recovered from it and checked, as for weights).
// Errors (adaquant::error, before the output is touched): no such Gather, a node that is not a
// Gather along axis 0 of the named float [V, D] initializer read by it alone, the same Gather
// twice (errc::invalid_argument); parameters that do not give one scale per row or a table of
// another size (errc::shape_mismatch); bits outside [2, 8] and off-grid values as for weights.

#include <adaquant/onnx/embedding.hpp>
#include <adaquant/onnx/export/plan.hpp>
#include <adaquant/onnx/export/proto.hpp>

#include <set>
#include <span>
#include <string>
#include <vector>

namespace adaquant::onnx {

struct exported_embedding {
  std::string node;               // the Gather's name
  std::string table_initializer;  // its data input, a float [V, D] initializer
  int bits = 8;                   // 2..8: 2-4 stored as int4/uint4, 5-8 as int8/uint8
  std::vector<float> table;       // the dequantized table [V, D], on the grid of params
  channel_params params;          // one scale and zero point per row (axis 0)
};

// From quantize_embedding's result; the bit width is that of the grid.
[[nodiscard]] inline exported_embedding make_exported_embedding(const quantized_embedding& q) {
  return {q.node_name, q.initializer, grid_bits(q.params.qmin, q.params.qmax), q.table, q.params};
}

namespace detail::exporting {

struct planned_embedding {
  const exported_embedding* embedding = nullptr;
  std::vector<std::int64_t> dims;  // [V, D]
  storage_type type;
  std::vector<std::int32_t> q;  // [V, D] integers
};

// Checks every embedding against the model; raises plan.opset_to (and the IR version) to 21
// when a table is stored in 4 bits.
[[nodiscard]] inline std::vector<planned_embedding> plan_embeddings(
    const ::onnx::ModelProto& m, std::span<const exported_embedding> embeddings,
    const export_options& opt, export_plan& plan) {
  const ::onnx::GraphProto& g = m.graph();
  std::vector<planned_embedding> out;
  std::set<std::string> seen;
  for (const exported_embedding& e : embeddings) {
    const ::onnx::NodeProto* n = nullptr;
    int named = 0;
    for (const auto& c : g.node())
      if (c.name() == e.node) {
        n = &c;
        ++named;
      }
    if (named != 1)
      fail(errc::invalid_argument, "export_qdq: embedding",
           named ? "several nodes are named " + in_quotes(e.node)
                 : "no node named " + in_quotes(e.node));
    const std::string where = "export_qdq: " + node_label(*n);
    if (n->op_type() != "Gather" || !is_default_domain(*n))
      fail(errc::invalid_argument, where, "an embedding table is read by a Gather");
    if (!seen.insert(e.node).second)
      fail(errc::invalid_argument, where, "appears in two exported embeddings");
    if (const std::int64_t axis = int_attribute(*n, "axis", 0); axis != 0 && axis != -2)
      fail(errc::invalid_argument, where, "gathers along axis " + std::to_string(axis));
    if (n->input_size() < 2 || n->input(0) != e.table_initializer)
      fail(errc::invalid_argument, where,
           "does not read table " + in_quotes(e.table_initializer) + " as its data");
    const std::string twhere = where + ": table " + in_quotes(e.table_initializer);
    const ::onnx::TensorProto& t = float_initializer(g, e.table_initializer, twhere);
    if (t.dims_size() != 2)
      fail(errc::shape_mismatch, twhere, "has shape " + dims_string(t) + ", expected [V, D]");
    if (count_uses(g, e.table_initializer) != 1)
      fail(errc::invalid_argument, twhere, "is read by other nodes too");
    const auto rows = static_cast<std::size_t>(t.dims(0));
    e.params.validate((twhere + ": params").c_str());
    if (e.params.axis != 0 || e.params.channels() != rows)
      fail(errc::shape_mismatch, twhere,
           "has " + std::to_string(rows) + " rows " + dims_string(t) +
               ", params must give one per row along axis 0 (got " +
               std::to_string(e.params.channels()) + " along axis " +
               std::to_string(e.params.axis) + ")");
    if (e.table.size() != element_count(t))
      fail(errc::shape_mismatch, twhere,
           "has " + std::to_string(element_count(t)) + " elements " + dims_string(t) +
               ", the embedding gives " + std::to_string(e.table.size()));
    planned_embedding p;
    p.embedding = &e;
    p.dims.assign(t.dims().begin(), t.dims().end());
    p.type = choose_storage(e.bits, e.params.qmin, e.params.qmax, opt.allow_4bit_types, twhere);
    exported_layer as_weight;  // a [V, D] table per row is a weight per output channel
    as_weight.weight = e.table;
    as_weight.weight_params = e.params;
    p.q = weight_integers(as_weight, rows, twhere);
    if (p.type.bits == 4) {
      plan.opset_to = 21;
      plan.ir_version = std::max(plan.ir_version, ir_version_for(21));
    }
    out.push_back(std::move(p));
  }
  return out;
}

// Runs after qdq_rewriter (node names are unchanged by it).
inline void rewrite_embeddings(::onnx::GraphProto& g, unique_names& names,
                               std::span<const planned_embedding> plans) {
  for (const planned_embedding& p : plans) {
    const exported_embedding& e = *p.embedding;
    const std::string& t = e.table_initializer;
    const std::string q = names.make(t + "_quantized"), scale = names.make(t + "_scale"),
                      zp = names.make(t + "_zero_point"), out = names.make(t + "_dequantized");
    const std::int64_t rows[1] = {p.dims[0]};
    *g.add_initializer() = make_integer_tensor(q, p.type.onnx_type, p.dims, p.q);
    *g.add_initializer() = make_float_tensor(scale, rows, e.params.scale);
    *g.add_initializer() = make_integer_tensor(zp, p.type.onnx_type, rows, e.params.zero_point);
    ::onnx::NodeProto dq =
        make_node("DequantizeLinear", names.make(t + "_DequantizeLinear"), {q, scale, zp}, {out});
    set_int_attribute(dq, "axis", 0);
    std::vector<::onnx::NodeProto> nodes;
    for (auto& n : *g.mutable_node()) {
      if (n.name() == e.node) {
        n.set_input(0, out);
        nodes.push_back(dq);
      }
      nodes.push_back(std::move(n));
    }
    g.clear_node();
    for (auto& n : nodes) *g.add_node() = std::move(n);
    remove_initializer_if_unused(g, t);
  }
}

}  // namespace detail::exporting
}  // namespace adaquant::onnx
