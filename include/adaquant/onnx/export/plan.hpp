#pragma once
// First phase of the export: check every exported_layer against the model and decide what to
// write (storage types, integer weights in the initializer's layout, the target opset). Nothing
// is modified here, so a bad layer throws before any output exists.

#include <adaquant/core/error.hpp>
#include <adaquant/onnx/export/layer.hpp>
#include <adaquant/onnx/export/proto.hpp>
#include <adaquant/quant/rounding.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace adaquant::onnx::detail::exporting {

using adaquant::detail::fail;

// The integer type a grid is stored in.
struct storage_type {
  std::int32_t onnx_type = onnx_int8;
  int bits = 8;  // of the type: 4 or 8
  bool is_signed = true;

  [[nodiscard]] std::int32_t lowest() const noexcept {
    return is_signed ? -(std::int32_t{1} << (bits - 1)) : 0;
  }
  [[nodiscard]] std::int32_t highest() const noexcept {
    return is_signed ? (std::int32_t{1} << (bits - 1)) - 1 : (std::int32_t{1} << bits) - 1;
  }
  [[nodiscard]] const char* name() const noexcept {
    if (bits == 4) return is_signed ? "int4" : "uint4";
    return is_signed ? "int8" : "uint8";
  }
};

inline constexpr int min_export_bits = 2, max_export_bits = 8;

// 2-4 bits: int4/uint4 (when allowed), 5-8 bits: int8/uint8; signed when the grid has negative
// values. The grid must fit `bits` and the type.
inline storage_type choose_storage(int bits, std::int32_t qmin, std::int32_t qmax, bool allow_4bit,
                                   const std::string& where) {
  if (!(bits >= min_export_bits && bits <= max_export_bits))
    fail(errc::invalid_argument, where,
         "bits must be in [2, 8] for ONNX export, got " + std::to_string(bits));
  const std::string grid = "[" + std::to_string(qmin) + ", " + std::to_string(qmax) + "]";
  if (std::int64_t{qmax} - qmin >= (std::int64_t{1} << bits))
    fail(errc::invalid_argument, where,
         "grid " + grid + " has more than 2^" + std::to_string(bits) + " levels");
  storage_type t;
  t.is_signed = qmin < 0;
  t.bits = bits <= 4 && allow_4bit ? 4 : 8;
  t.onnx_type =
      t.bits == 4 ? (t.is_signed ? onnx_int4 : onnx_uint4) : (t.is_signed ? onnx_int8 : onnx_uint8);
  if (qmin < t.lowest() || qmax > t.highest())
    fail(errc::invalid_argument, where,
         "grid " + grid + " does not fit " + t.name() + " [" + std::to_string(t.lowest()) + ", " +
             std::to_string(t.highest()) + "]");
  return t;
}

// An input quantizer as written: its grid's type, its Q/DQ type, and whether a Clip narrows it.
struct planned_operand {
  storage_type grid;  // the type the grid fits (the encodings')
  storage_type type;  // the Q/DQ type in the file
  bool clip = false;
};

struct planned_layer {
  const exported_layer* layer = nullptr;
  int node = -1;  // index in the original graph
  std::string op;
  std::vector<std::int64_t> weight_dims;  // of the initializer
  // The initializer's axis DequantizeLinear quantizes along: the output channels, or for
  // block-wise weights the input dimension (block_size > 0, opset 21).
  std::int64_t weight_axis = 0;
  std::int64_t block_size = 0;
  // DequantizeLinear's scale and zero point (weight_offset included) and their shape: [channels],
  // or for blocks the initializer's shape with ceil(extent / block_size) along weight_axis.
  std::vector<std::int64_t> param_dims;
  std::vector<float> weight_scale;
  std::vector<std::int32_t> weight_zero_point;
  storage_type weight_grid;  // the type adaquant's weight grid fits (what the encodings report)
  storage_type weight_type;  // the initializer's type: weight_grid, or UINT8 for a signed 8-bit one
  std::int32_t weight_offset = 0;          // added to the integers and zero points (128 or 0)
  std::vector<std::int32_t> weight_q;      // in the initializer's layout, offset included
  bool flip_gemm = false;  // a Gemm transB = 1 written as transB = 0 (weight_dims then [K, N])
  std::optional<storage_type> input_grid;  // the type the input grid fits (the encodings')
  std::optional<storage_type> input_type;  // the input's Q/DQ type in the file
  bool input_clip = false;                 // the input grid is narrower than its type's range
  int batch_norm = -1;                     // node index of the folded batch norm
};

// An exported product: both operands in 8-bit types (with a Clip for 2-4-bit grids).
struct planned_product {
  const exported_product* product = nullptr;
  int node = -1;
  planned_operand a, b;
};

struct export_plan {
  std::int64_t opset_from = 0, opset_to = 0, ir_version = 0;
  std::vector<planned_layer> layers;      // in node order
  std::vector<planned_product> products;  // in node order
};

[[nodiscard]] inline std::int64_t default_opset(const ::onnx::ModelProto& m) {
  for (const auto& o : m.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") return o.version();
  fail(errc::corrupt_data, "export_qdq: model", "imports no default-domain opset");
}

// The lowest IR version that may carry a default-domain opset.
[[nodiscard]] constexpr std::int64_t ir_version_for(std::int64_t opset) noexcept {
  return opset <= 14 ? 7 : opset <= 18 ? 8 : opset <= 20 ? 9 : 10;
}

inline const ::onnx::TensorProto& float_initializer(const ::onnx::GraphProto& g,
                                                    const std::string& name,
                                                    const std::string& where) {
  const int i = find_initializer(g, name);
  if (i < 0) fail(errc::invalid_argument, where, "no initializer " + in_quotes(name));
  const auto& t = g.initializer(i);
  if (t.data_type() != onnx_float)
    fail(errc::invalid_argument, where,
         "initializer " + in_quotes(name) + " has element type " + std::to_string(t.data_type()) +
             ", expected FLOAT (1)");
  return t;
}

// A weight's quantization parameters, one (scale, zero point) per channel or per block, over one
// grid: a view of channel_params or block_params.
struct weight_grid_view {
  std::span<const float> scale;
  std::span<const std::int32_t> zero_point;
  std::int32_t qmin = 0, qmax = 0;
  std::size_t block_size = 0;  // 0: per output channel

  // The parameter index of element k of output channel c.
  [[nodiscard]] std::size_t index(std::size_t c, std::size_t k, std::size_t per) const noexcept {
    if (block_size == 0) return c;
    const std::size_t blocks = (per + block_size - 1) / block_size;
    return c * blocks + k / block_size;
  }
  [[nodiscard]] std::string name(std::size_t c, std::size_t k) const {
    if (block_size == 0) return "channel " + std::to_string(c);
    return "block " + std::to_string(k / block_size) + " of channel " + std::to_string(c);
  }
};

[[nodiscard]] inline weight_grid_view grid_of(const exported_layer& l) {
  if (l.weight_blocks) {
    const block_params& b = *l.weight_blocks;
    return {b.scale, b.zero_point, b.qmin, b.qmax, b.block_size};
  }
  const channel_params& p = l.weight_params;
  return {p.scale, p.zero_point, p.qmin, p.qmax, 0};
}

// The integers of the weights, in adaquant's layout [channels, per_channel].
inline std::vector<std::int32_t> weight_integers(const exported_layer& l, std::size_t channels,
                                                 const std::string& where) {
  const weight_grid_view p = grid_of(l);
  const std::size_t n = l.weight.empty() ? l.weight_integers.size() : l.weight.size();
  const std::size_t per = n / channels;
  std::vector<std::int32_t> q(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t c = i / per, j = p.index(c, i % per, per);
    if (!l.weight.empty()) {
      const float w = l.weight[i];
      if (!adaquant::detail::is_finite(w))
        fail(errc::non_finite, where, "weight[" + std::to_string(i) + "] is " + exact_float(w));
      const float s = p.scale[j];
      const float g =
          adaquant::detail::round_half_even(w / s) + static_cast<float>(p.zero_point[j]);
      const bool in_grid = g >= static_cast<float>(p.qmin) && g <= static_cast<float>(p.qmax);
      q[i] = in_grid ? static_cast<std::int32_t>(g) : p.qmin;
      const float back = static_cast<float>(q[i] - p.zero_point[j]) * s;
      if (!in_grid || !(std::bit_cast<std::uint32_t>(back) == std::bit_cast<std::uint32_t>(w) ||
                        (back == 0.0f && w == 0.0f)))
        fail(errc::invalid_argument, where,
             "weight[" + std::to_string(i) + "] = " + exact_float(w) + " is not on the grid of " +
                 p.name(c, i % per) + " (scale " + exact_float(s) + ", zero point " +
                 std::to_string(p.zero_point[j]) + ", [" + std::to_string(p.qmin) + ", " +
                 std::to_string(p.qmax) + "])");
    } else {
      q[i] = l.weight_integers[i];
      if (q[i] < p.qmin || q[i] > p.qmax)
        fail(errc::invalid_argument, where,
             "weight_integers[" + std::to_string(i) + "] = " + std::to_string(q[i]) +
                 " is outside [" + std::to_string(p.qmin) + ", " + std::to_string(p.qmax) + "]");
    }
  }
  return q;
}

class layer_planner {
 public:
  layer_planner(const ::onnx::GraphProto& g, const export_options& opt) : g_(g), opt_(opt) {
    for (int i = 0; i < g.node_size(); ++i) {
      const auto [it, fresh] = nodes_.emplace(g.node(i).name(), i);
      if (!fresh) it->second = -1;  // ambiguous
    }
  }

  planned_layer plan(const exported_layer& l) {
    planned_layer p;
    p.layer = &l;
    std::string where;
    p.node = claim_node(l.node, "node", where);
    const ::onnx::NodeProto& n = g_.node(p.node);
    p.op = n.op_type();
    if (!is_default_domain(n) || (p.op != "Conv" && p.op != "Gemm" && p.op != "MatMul"))
      fail(errc::invalid_argument, where, "only Conv, Gemm and MatMul layers can be exported");
    if (n.input_size() < 2 || n.input(0).empty() || n.output_size() < 1)
      fail(errc::corrupt_data, where, "lacks an input or output");
    const std::size_t channels = plan_weight(l, n, p, where);
    plan_bias(l, n, channels, where);
    if (l.input) {
      // 2-4-bit inputs take 4-bit types only when asked for, and only for layers with 4-bit
      // weights (export_options::four_bit_activation_types says why).
      const planned_operand o = plan_operand(
          *l.input, where + ": input quantizer",
          opt_.allow_4bit_types && opt_.four_bit_activation_types && p.weight_type.bits == 4);
      p.input_grid = o.grid;
      p.input_type = o.type;
      p.input_clip = o.clip;
    }
    if (!l.folded_batch_norm.empty()) p.batch_norm = plan_batch_norm(l, n, where);
    return p;
  }

  planned_product plan(const exported_product& e) {
    planned_product p;
    p.product = &e;
    std::string where;
    p.node = claim_node(e.node, "product", where);
    const ::onnx::NodeProto& n = g_.node(p.node);
    if (!is_default_domain(n) || n.op_type() != "MatMul")
      fail(errc::invalid_argument, where, "a product's node must be a MatMul");
    if (n.input_size() != 2 || n.input(0).empty() || n.input(1).empty() || n.output_size() < 1)
      fail(errc::corrupt_data, where, "lacks an input or output");
    for (int k = 0; k < 2; ++k)
      if (find_initializer(g_, n.input(k)) >= 0)
        fail(errc::invalid_argument, where,
             "input " + in_quotes(n.input(k)) +
                 " is an initializer: a product quantizes two activations (a MatMul with a "
                 "constant weight is a layer)");
    p.a = plan_operand(e.a, where + ": operand A", false);
    p.b = plan_operand(e.b, where + ": operand B", false);
    return p;
  }

 private:
  // An input quantizer's grid type and its type in the file (4-bit only when four_bit_type).
  static planned_operand plan_operand(const input_quantizer& q, const std::string& w,
                                      bool four_bit_type) {
    q.params.validate(w.c_str());
    planned_operand o;
    o.grid = choose_storage(q.bits, q.params.qmin, q.params.qmax, true, w);
    o.type = choose_storage(q.bits, q.params.qmin, q.params.qmax, four_bit_type, w);
    o.clip = q.params.qmin != o.type.lowest() || q.params.qmax != o.type.highest();
    return o;
  }

  // The node `name` names, for one exported layer or product (a node serves one); `where` receives
  // its label for messages.
  int claim_node(const std::string& name, const char* what, std::string& where) {
    const int i = find_node(name, what);
    where = "export_qdq: " + node_label(g_.node(i));
    if (!used_.insert(i).second)
      fail(errc::invalid_argument, where, "appears in two exported layers or products");
    return i;
  }

  int find_node(const std::string& name, const char* what) const {
    const auto it = nodes_.find(name);
    if (name.empty() || it == nodes_.end())
      fail(errc::invalid_argument, std::string("export_qdq: ") + what,
           "no node named " + in_quotes(name));
    if (it->second < 0)
      fail(errc::invalid_argument, std::string("export_qdq: ") + what,
           "several nodes are named " + in_quotes(name));
    return it->second;
  }

  // Resolves the weight's layout and computes its integers and DequantizeLinear's parameters;
  // returns the output channel count.
  std::size_t plan_weight(const exported_layer& l, const ::onnx::NodeProto& n, planned_layer& p,
                          const std::string& where) {
    if (l.weight_initializer != n.input(1))
      fail(errc::invalid_argument, where,
           "reads its weight from " + in_quotes(n.input(1)) + ", not " +
               in_quotes(l.weight_initializer));
    const std::string wwhere = where + ": weight " + in_quotes(l.weight_initializer);
    const auto& w = float_initializer(g_, l.weight_initializer, wwhere);
    p.weight_dims.assign(w.dims().begin(), w.dims().end());
    const bool transposed =
        p.op == "MatMul" || (p.op == "Gemm" && int_attribute(n, "transB", 0) == 0);
    if (p.op == "Conv" ? w.dims_size() < 3 : w.dims_size() != 2)
      fail(errc::shape_mismatch, wwhere, "has unexpected shape " + dims_string(w));
    const std::int64_t channel_axis = transposed ? 1 : 0;
    const auto channels = static_cast<std::size_t>(w.dims(static_cast<int>(channel_axis)));
    const std::size_t count = element_count(w);
    if (l.weight.empty() == l.weight_integers.empty())
      fail(errc::invalid_argument, wwhere, "give exactly one of weight and weight_integers");
    const std::size_t given = l.weight.empty() ? l.weight_integers.size() : l.weight.size();
    if (given != count || channels == 0)
      fail(errc::shape_mismatch, wwhere,
           "has " + std::to_string(count) + " elements " + dims_string(w) + ", the layer gives " +
               std::to_string(given));
    const std::size_t per = count / channels;
    if (l.weight_blocks)
      check_blocks(*l.weight_blocks, l, p.op == "Conv", channels, per, w, wwhere);
    else
      check_channels(l.weight_params, channels, w, wwhere);
    const weight_grid_view grid = grid_of(l);
    p.weight_grid =
        choose_storage(l.weight_bits, grid.qmin, grid.qmax, opt_.allow_4bit_types, wwhere);
    p.weight_type = p.weight_grid;
    if (!opt_.signed_8bit_weights && p.weight_type.bits == 8 && p.weight_type.is_signed) {
      p.weight_type.is_signed = false;  // [-128, 127] + 128 = [0, 255]: the same values
      p.weight_type.onnx_type = onnx_uint8;
      p.weight_offset = 128;
    }
    std::vector<std::int32_t> q = weight_integers(l, channels, wwhere);
    for (std::int32_t& v : q) v += p.weight_offset;
    // Block-wise Gemm transB = 1 is written as transB = 0 with a [K, N] weight: ONNX Runtime fuses
    // DequantizeLinear into MatMulNBits only with blocks along axis 0 of the weight.
    p.flip_gemm = l.weight_blocks && p.op == "Gemm" && !transposed;
    const bool write_transposed = transposed || p.flip_gemm;
    if (p.flip_gemm) p.weight_dims = {p.weight_dims[1], p.weight_dims[0]};
    p.weight_q = write_transposed ? transpose(q, channels, per) : std::move(q);
    // DequantizeLinear's parameters: ours are [channels] or [channels, blocks] (row-major).
    std::vector<std::int32_t> z(grid.zero_point.begin(), grid.zero_point.end());
    for (std::int32_t& v : z) v += p.weight_offset;
    std::vector<float> s(grid.scale.begin(), grid.scale.end());
    if (!l.weight_blocks) {
      p.weight_axis = channel_axis;
      p.param_dims = {static_cast<std::int64_t>(channels)};
    } else {
      const std::size_t blocks = grid.scale.size() / channels;
      p.weight_axis = write_transposed ? 0 : 1;  // the input dimension of the weight written
      p.block_size = static_cast<std::int64_t>(grid.block_size);
      p.param_dims = p.weight_dims;
      p.param_dims[static_cast<std::size_t>(p.weight_axis)] = static_cast<std::int64_t>(blocks);
      if (write_transposed) {  // [channels, blocks] -> [blocks, channels]
        s = transpose(s, channels, blocks);
        z = transpose(z, channels, blocks);
      }
    }
    p.weight_scale = std::move(s);
    p.weight_zero_point = std::move(z);
    return channels;
  }

  template <class T>
  static std::vector<T> transpose(const std::vector<T>& v, std::size_t rows, std::size_t cols) {
    std::vector<T> t(v.size());
    for (std::size_t r = 0; r < rows; ++r)
      for (std::size_t c = 0; c < cols; ++c) t[c * rows + r] = v[r * cols + c];
    return t;
  }

  static void check_channels(const channel_params& cp, std::size_t channels,
                             const ::onnx::TensorProto& w, const std::string& wwhere) {
    cp.validate((wwhere + ": weight_params").c_str());
    if (cp.axis != 0)
      fail(errc::invalid_argument, wwhere,
           "weight_params.axis must be 0 (output channels of adaquant's layout), got " +
               std::to_string(cp.axis));
    if (cp.channels() != channels)
      fail(errc::shape_mismatch, wwhere,
           "has " + std::to_string(channels) + " output channels " + dims_string(w) +
               ", weight_params has " + std::to_string(cp.channels()));
  }

  static void check_blocks(const block_params& b, const exported_layer& l, bool conv,
                           std::size_t channels, std::size_t per, const ::onnx::TensorProto& w,
                           const std::string& wwhere) {
    b.validate((wwhere + ": weight_blocks").c_str());
    if (!l.weight_params.scale.empty())
      fail(errc::invalid_argument, wwhere,
           "give either weight_params (per channel) or weight_blocks, not both");
    if (b.axis != 1)
      fail(errc::invalid_argument, wwhere,
           "weight_blocks.axis must be 1 (the input dimension of adaquant's layout), got " +
               std::to_string(b.axis));
    if (conv && per != static_cast<std::size_t>(w.dims(1)))
      fail(errc::invalid_argument, wwhere,
           "block-wise weights need a kernel of 1 (shape " + dims_string(w) +
               "): blocks run along the input channels");
    const std::size_t blocks = (per + b.block_size - 1) / b.block_size;
    if (b.blocks() != channels * blocks)
      fail(errc::shape_mismatch, wwhere,
           "has " + std::to_string(channels) + " output channels of " + std::to_string(per) +
               " inputs " + dims_string(w) + ", i.e. " + std::to_string(channels * blocks) +
               " blocks of " + std::to_string(b.block_size) + "; weight_blocks has " +
               std::to_string(b.blocks()));
  }

  void plan_bias(const exported_layer& l, const ::onnx::NodeProto& n, std::size_t channels,
                 const std::string& where) {
    std::string bias;  // what the node reads today
    if (has_bias_input(n))
      bias = n.input_size() > 2 ? n.input(2) : std::string{};
    else
      bias = matmul_add_bias(n, l.bias_initializer, where);
    if (bias != l.bias_initializer)
      fail(errc::invalid_argument, where,
           bias.empty() ? "has no bias " + in_quotes(l.bias_initializer)
                        : "reads its bias from " + in_quotes(bias) + ", not " +
                              in_quotes(l.bias_initializer));
    const std::string bwhere = where + ": bias " + in_quotes(l.bias_initializer);
    if (!bias.empty()) {
      const auto& b = float_initializer(g_, bias, bwhere);
      if (element_count(b) != channels)
        fail(errc::shape_mismatch, bwhere,
             "has shape " + dims_string(b) + ", the layer has " + std::to_string(channels) +
                 " output channels");
    }
    if (!l.folded_batch_norm.empty() && l.bias.empty())
      fail(errc::invalid_argument, where, "folds a batch norm, so its bias must be given");
    if (!l.bias.empty() && l.bias.size() != channels)
      fail(errc::shape_mismatch, where + ": bias",
           "has " + std::to_string(l.bias.size()) + " values, the layer has " +
               std::to_string(channels) + " output channels");
    for (std::size_t c = 0; c < l.bias.size(); ++c)
      if (!adaquant::detail::is_finite(l.bias[c]))
        fail(errc::non_finite, where + ": bias",
             "bias[" + std::to_string(c) + "] is " + exact_float(l.bias[c]));
  }

  static bool has_bias_input(const ::onnx::NodeProto& n) { return n.op_type() != "MatMul"; }

  // A MatMul's bias: the constant input of the one Add reading its output (empty: none named).
  std::string matmul_add_bias(const ::onnx::NodeProto& n, const std::string& named,
                              const std::string& where) const {
    if (named.empty()) return {};
    const std::string& y = n.output(0);
    if (count_uses(g_, y) != 1)
      fail(errc::invalid_argument, where,
           "bias " + in_quotes(named) + ": the MatMul's output must feed exactly one Add");
    for (const auto& c : g_.node())
      for (int k = 0; k < c.input_size(); ++k)
        if (c.input(k) == y && c.op_type() == "Add" && c.input_size() == 2 &&
            c.input(1 - k) == named)
          return named;
    fail(errc::invalid_argument, where,
         "bias " + in_quotes(named) +
             " is not the other input of an Add reading the MatMul's output");
  }

  int plan_batch_norm(const exported_layer& l, const ::onnx::NodeProto& n,
                      const std::string& where) {
    const int b = find_node(l.folded_batch_norm, "folded_batch_norm");
    const ::onnx::NodeProto& bn = g_.node(b);
    const std::string bwhere = where + ": folded " + node_label(bn);
    if (bn.op_type() != "BatchNormalization" || !is_default_domain(bn))
      fail(errc::invalid_argument, bwhere, "is not a BatchNormalization");
    if (bn.input_size() < 1 || bn.input(0) != n.output(0))
      fail(errc::invalid_argument, bwhere,
           "does not read the layer's output " + in_quotes(n.output(0)));
    if (count_uses(g_, n.output(0)) != 1)
      fail(errc::invalid_argument, bwhere,
           "the layer's output " + in_quotes(n.output(0)) +
               " has other readers than the batch norm");
    if (int_attribute(bn, "training_mode", 0) != 0)
      fail(errc::invalid_argument, bwhere, "is in training mode");
    for (int k = 1; k < bn.output_size(); ++k)  // before opset 14 they mean training mode
      if (!bn.output(k).empty())
        fail(errc::invalid_argument, bwhere,
             "has training output " + in_quotes(bn.output(k)) + ": not an inference batch norm");
    if (!used_.insert(b).second) fail(errc::invalid_argument, bwhere, "is folded into two layers");
    return b;
  }

  const ::onnx::GraphProto& g_;
  const export_options& opt_;
  std::map<std::string, int> nodes_;
  std::set<int> used_;
};

inline export_plan plan_export(const ::onnx::ModelProto& m, std::span<const exported_layer> layers,
                               const export_options& opt,
                               std::span<const exported_product> products = {}) {
  export_plan plan;
  plan.opset_from = default_opset(m);
  if (plan.opset_from < 9 || plan.opset_from > 21)
    fail(errc::invalid_argument, "export_qdq: model",
         "default-domain opset must be in [9, 21], got " + std::to_string(plan.opset_from));
  layer_planner planner(m.graph(), opt);
  bool opset21 = false;  // 4-bit types and blocked DequantizeLinear need opset 21
  for (const exported_layer& l : layers) {
    plan.layers.push_back(planner.plan(l));
    const planned_layer& p = plan.layers.back();
    opset21 |=
        p.weight_type.bits == 4 || (p.input_type && p.input_type->bits == 4) || p.block_size > 0;
  }
  for (const exported_product& e : products) plan.products.push_back(planner.plan(e));
  const auto by_node = [](const auto& a, const auto& b) { return a.node < b.node; };
  std::sort(plan.layers.begin(), plan.layers.end(), by_node);
  std::sort(plan.products.begin(), plan.products.end(), by_node);
  plan.opset_to = opset21 ? 21 : std::max<std::int64_t>(plan.opset_from, 13);
  plan.ir_version = std::max<std::int64_t>(m.ir_version(), ir_version_for(plan.opset_to));
  return plan;
}

}  // namespace adaquant::onnx::detail::exporting
