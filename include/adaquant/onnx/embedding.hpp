#pragma once
// Embedding tables quantized per row, as the paper's BERT code quantizes nn.Embedding.
//
// An embedding table is the data input of a Gather node (default domain, axis 0) that is a float
// initializer of rank 2, [V, D] (V rows of D values: a token or position embedding), read by that
// Gather only, whose indices are computed at run time. Every row r gets its own quantizer
// (granularity::per_channel(0) of the table; scheme, rounding and range method from a
// quantizer_spec, e.g. the run's weight spec at another bit width):
//
//   q[r, j] = clamp(to_grid(T[r, j]; s_r) + z_r, qmin, qmax)      T_hat[r, j] = (q[r, j] - z_r) s_r
//
// with s_r, z_r from the spec's range estimator on row r alone (z_r = 0 when symmetric; an
// all-zero row, e.g. a padding token's, gets scale FLT_EPSILON and stays zero). Round to nearest
// only: a lookup has no input to fit, so there is nothing for AdaQuant to learn. The quantized
// network's Gather then reads T_hat (onnx_network::set_embedding); the QDQ export writes the
// integers q as an int8 / int4 initializer with DequantizeLinear(axis 0, per-row scale and zero
// point) feeding the Gather, which computes T_hat exactly (onnx/export/embedding.hpp).
//
// Other Gathers of a constant float tensor (rank other than 2, axis other than 0, a table that
// other nodes read too, or a constant folded from nodes rather than an initializer) stay float:
// find_embedding_tables() lists them with the reason (not an error).

#include <adaquant/core/error.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/onnx/graph.hpp>
#include <adaquant/range/quantizer_spec.hpp>

#include <string>
#include <vector>

namespace adaquant::onnx {

struct embedding_table {
  std::size_t node = 0;            // the Gather's index in graph::nodes()
  std::string node_name;           // the Gather's name
  std::string initializer;         // the table's initializer name
  int value = -1;                  // the table's value id in the graph
  std::size_t rows = 0, cols = 0;  // [V, D]
};

// A Gather of a constant float tensor that is not quantized, and why.
struct embedding_skip {
  std::string node, reason;
};

struct embedding_scan {
  std::vector<embedding_table> tables;  // in node order
  std::vector<embedding_skip> skipped;
};

// The embedding tables of a compiled graph and the model file it came from (see the file comment).
[[nodiscard]] inline embedding_scan find_embedding_tables(const graph& g,
                                                          const ::onnx::ModelProto& proto) {
  embedding_scan out;
  const auto& gp = proto.graph();
  const auto is_initializer = [&](const std::string& name) {
    for (const auto& t : gp.initializer())
      if (t.name() == name) return true;
    return false;
  };
  const auto file_readers = [&](const std::string& name) {
    std::size_t n = 0;
    for (const auto& nd : gp.node())
      for (const auto& in : nd.input()) n += in == name;
    return n;
  };
  for (std::size_t i = 0; i < g.nodes().size(); ++i) {
    const node& n = g.at(i);
    if (n.op_type != "Gather" || n.inputs.size() < 2 || n.inputs[0] < 0) continue;
    const tensor* t = g.constant_value(n.inputs[0]);
    if (!t || !t->floating()) continue;  // not a table: data computed at run time, or integers
    const std::string& name = g.value_name(n.inputs[0]);
    const auto skip = [&](std::string why) { out.skipped.push_back({n.name, std::move(why)}); };
    const std::int64_t axis = n.attr_int("axis", 0);
    if (t->rank() != 2)
      skip("the table " + shape_string(t->shape) + " is not 2-D");
    else if (axis != 0 && axis != -2)
      skip("gathers along axis " + std::to_string(axis) + ", not the rows");
    else if (!is_initializer(name))
      skip("the table '" + name + "' is not an initializer");
    else if (file_readers(name) != 1 || g.readers(n.inputs[0]).size() != 1)
      skip("the table '" + name + "' is read by other nodes too");
    else
      out.tables.push_back({i, n.name, name, n.inputs[0], static_cast<std::size_t>(t->shape[0]),
                            static_cast<std::size_t>(t->shape[1])});
  }
  return out;
}

struct quantized_embedding {
  std::size_t node = 0;
  std::string node_name, initializer;
  std::size_t rows = 0, cols = 0;
  channel_params params;     // one scale and zero point per row (axis 0)
  std::vector<float> table;  // T_hat [rows, cols], row-major, on the grid of params
};

// Round-to-nearest per row of `values` (the table's float [rows, cols] data) with `spec`, which
// must be per channel along axis 0 (errc::invalid_argument naming the argument otherwise, and for
// bits outside [2, 16]).
[[nodiscard]] inline quantized_embedding quantize_embedding(const embedding_table& t,
                                                            const tensor& values,
                                                            const quantizer_spec& spec) {
  const std::string where = "quantize_embedding: spec";
  spec.validate(where);
  if (spec.gran.type != granularity::kind::per_channel || spec.gran.axis != 0)
    adaquant::detail::fail(errc::invalid_argument, where + ".gran",
                           "an embedding table is quantized per row: granularity::per_channel(0)");
  if (!values.floating() || values.rank() != 2 ||
      values.shape != shape_t{static_cast<std::int64_t>(t.rows), static_cast<std::int64_t>(t.cols)})
    adaquant::detail::fail(errc::shape_mismatch, "quantize_embedding: values",
                           "table '" + t.initializer + "' is [" + std::to_string(t.rows) + ", " +
                               std::to_string(t.cols) + "] float, got " +
                               shape_string(values.shape));
  quantized_embedding q{t.node, t.node_name, t.initializer, t.rows, t.cols, {}, {}};
  const tensor_view<const float> x(values.f.data(), {t.rows, t.cols});
  q.params = estimate_channel_params(x, spec, zero_range::use_epsilon);
  q.table.resize(values.f.size());
  with_rounding(spec.rounding, [&](auto r) {
    fake_quant_per_channel<decltype(r)>(x, tensor_view<float>(q.table.data(), {t.rows, t.cols}),
                                        q.params);
  });
  return q;
}

}  // namespace adaquant::onnx
