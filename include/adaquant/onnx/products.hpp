#pragma once
// Products of two activations: attention's Q K^T and softmax(...) V, i.e. MatMul nodes whose two
// inputs are both per-sample activations of the same rank >= 3 ([N, heads, T, d] in a
// transformer). They have no weight, so they are not layers; onnx_network can put a per-tensor
// input quantizer on each operand (network_options::activation_products), as the paper's BERT
// code does:
//
//   y = fq_a(A) . fq_b(B),   fq(x) = (clamp(to_grid(x) + z, qmin, qmax) - z) * s
//
// with the activation quantizer_spec given (affine unsigned per tensor by default, as the layers'
// inputs; to_grid as its rounding). Each operand's (s, z) comes from the spec's range method
// (min/max, percentile or MSE) over every calibration sample's operand values, computed by the
// *quantized* network as it stands when the range is first needed (see onnx_network).
//
// Padding. With a token mask of T tokens per sample (onnx/network.hpp), values at padded token
// positions count nowhere in the range:
//   A [..., M, K]: the rows m of padded tokens, when M = T (queries of Q K^T, query rows of the
//                  softmax output);
//   B [..., K, P]: the padded keys along its token axis: the columns p when B is the output of a
//                  Transpose and P = T (K^T), else the rows k when K = T (V); when both extents
//                  equal T the Transpose decides, when neither does nothing is masked.
// The softmax output's padded key *columns* are not masked: the model's additive mask bias
// already drives them to 0. Without a token mask every value counts.
//
// When (onnx_network). An operand's range is estimated on every calibration sample by the
// quantized network as it stands, the first time a quantized capture, the calibration loss or a
// quantized forward needs a value past the product; set_quantized of an earlier layer drops the
// estimates after it, so the next need re-estimates them. Sequential pipelines thus calibrate
// every layer after a product with its operand quantizers in place, and the ranges always
// describe the final network. Estimation runs chunks of 16 samples across the threads and
// concatenates them in sample order: the same bits for any thread count. The const
// forward()/evaluate() refuse a quantized pass over a product not yet estimated (call
// estimate_activation_products(), or the non-const overloads, which do). Errors: a spec that is
// not per tensor or bits outside [2, 16], a model without any such product, an eight_bit part
// that no product's name ends with (errc::invalid_argument).

#include <adaquant/onnx/export/layer.hpp>
#include <adaquant/onnx/graph.hpp>
#include <adaquant/range/quantizer_spec.hpp>

#include <algorithm>
#include <string>
#include <vector>

namespace adaquant::onnx {

struct activation_products_options {
  // The operands' quantizer: per tensor; bits, scheme, range method (and its settings) and
  // rounding as for the layers' inputs.
  quantizer_spec spec = quantizer_spec::activations(8);
  // Products whose ONNX node name ends with one of these keep 8-bit operands (each must match
  // at least one product).
  std::vector<std::string> eight_bit;
};

// One product and, once estimated, its operands' quantizers.
struct activation_product {
  std::size_t node = 0;  // index in graph::nodes()
  std::string name;      // the ONNX node's name
  int bits = 8;
  // Operand axes along which padded tokens are left out of the range (npos: none).
  std::size_t token_axis_a = graph::npos, token_axis_b = graph::npos;
  bool estimated = false;
  quant_params a, b;  // valid when estimated
};

// What the QDQ exporter writes for an estimated product.
[[nodiscard]] inline exported_product make_exported_product(const activation_product& p) {
  if (!p.estimated)
    adaquant::detail::fail(errc::invalid_argument,
                           "make_exported_product: product \"" + p.name + "\"",
                           "its operand ranges are not estimated yet");
  return {p.name, {p.a, grid_bits(p.a.qmin, p.a.qmax)}, {p.b, grid_bits(p.b.qmin, p.b.qmax)}};
}

namespace detail {

// The MatMuls of two per-sample activations of equal rank >= 3, with their token axes for a mask
// of `tokens` positions per sample (0: no mask).
inline std::vector<activation_product> find_activation_products(const graph& g,
                                                                std::int64_t tokens) {
  std::vector<activation_product> out;
  for (std::size_t i = 0; i < g.nodes().size(); ++i) {
    const node& n = g.at(i);
    if (n.op_type != "MatMul" || n.layer || n.inputs.size() != 2 || n.inputs[0] < 0 ||
        n.inputs[1] < 0 || !g.per_sample(n.inputs[0]) || !g.per_sample(n.inputs[1]))
      continue;
    const shape_t& a = g.probe_shape(n.inputs[0]);
    const shape_t& b = g.probe_shape(n.inputs[1]);
    if (a.size() < 3 || a.size() != b.size()) continue;
    activation_product p;
    p.node = i;
    p.name = n.name;
    const std::size_t r = a.size();
    if (tokens > 0) {
      if (a[r - 2] == tokens) p.token_axis_a = r - 2;
      bool transposed = false;
      for (const node& m : g.nodes())
        transposed = transposed || (m.op_type == "Transpose" && m.outputs[0] == n.inputs[1]);
      const bool rows = b[r - 2] == tokens, cols = b[r - 1] == tokens;
      if (cols && (transposed || !rows))
        p.token_axis_b = r - 1;
      else if (rows)
        p.token_axis_b = r - 2;
    }
    out.push_back(std::move(p));
  }
  return out;
}

// Appends the values of x [count, ...] whose index along `axis` is a real token of their sample
// (mask: count * tokens values, sample-major, nonzero = token); every value when axis is npos.
inline void append_valid(const tensor& x, std::size_t axis, const std::int64_t* mask,
                         std::size_t tokens, std::vector<float>& out) {
  if (axis == graph::npos || !mask) {
    out.insert(out.end(), x.f.begin(), x.f.end());
    return;
  }
  const auto count = static_cast<std::size_t>(x.shape[0]);
  const auto extent = static_cast<std::size_t>(x.shape[axis]);
  std::size_t inner = 1;
  for (std::size_t d = axis + 1; d < x.rank(); ++d) inner *= static_cast<std::size_t>(x.shape[d]);
  const std::size_t outer = x.size() / (inner * extent), per_sample = outer / count;
  for (std::size_t o = 0; o < outer; ++o) {
    const std::int64_t* m = mask + (o / per_sample) * tokens;
    for (std::size_t t = 0; t < extent; ++t)
      if (m[t] != 0) {
        const auto at = x.f.begin() + static_cast<std::ptrdiff_t>((o * extent + t) * inner);
        out.insert(out.end(), at, at + static_cast<std::ptrdiff_t>(inner));
      }
  }
}

}  // namespace detail
}  // namespace adaquant::onnx
