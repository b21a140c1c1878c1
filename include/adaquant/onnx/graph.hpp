#pragma once
// A loaded model compiled for execution: values numbered, constant and shape sub-graphs folded,
// batch norms folded into the preceding layers, quantizable layers marked.
//
// Folding. A node that does not depend on the input *values* (only on initializers, Constants
// and input *shapes*, through Shape) is evaluated at compile time. The first input axis is the
// sample axis and stays free: the graph is probed with batches of 2 and 3 samples (and 5 when a
// Shape node exists) of the per-sample shapes the caller gives; a folded integer value may be
// affine in the batch size (Shape -> Gather(0) gives N), a folded float value must not depend on
// it. Everything else runs per batch.
//
// Layers. A node is a quantizable layer when its weight is a constant float initializer and
//   Conv:    1-D or 2-D, input [N, C, (H,) W] per sample (a 1-D conv is a 2-D one with H = 1);
//   Gemm:    transA = 0, input [N, K], C absent or a constant broadcast to [O]; the layer's weight
//            is alpha * (transB ? B : B^T) and its bias beta * C;
//   MatMul:  a constant 2-D right operand and a [N, K] input (the weight is B^T). MatMul on rank
//            > 2 inputs (transformer blocks) stays float for now: see layer_report().
// ConvTranspose runs in float and is never a layer. A BatchNormalization whose input is a layer's
// output read by nothing else is folded into that layer (adaquant::fold_batch_norm) and becomes an
// Identity; the layer remembers it. The activation after a layer (through Identity nodes, when
// the layer's output has one reader): Relu -> relu, Clip(0, 6) -> relu6, else none.
//
// Execution is single-threaded per call; a sample's result never depends on the other samples of
// its batch (see gemm.hpp), so callers split samples across threads freely.

#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/objectives/geometry.hpp>
#include <adaquant/onnx/load.hpp>
#include <adaquant/onnx/ops/dispatch.hpp>

#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace adaquant::onnx {

struct compile_options {
  // Per-sample shapes of the graph inputs (model::inputs order), without the sample axis. Empty:
  // the declared input shapes without their first axis (every other extent must be declared).
  std::vector<shape_t> sample_shapes;
  // false: sample_shapes are the full input shapes and nothing is batched (fixed-size graphs).
  bool batch_axis = true;
  bool fold_batch_norms = true;
  exec_limits limits;
  // Without batch_axis: the values to probe with (default zeros). Give the real inputs when some
  // input feeds shape parameters (Reshape's shape, Slice's starts, ...), as test cases do.
  std::vector<tensor> probe_inputs;
};

// Why each Conv / ConvTranspose / Gemm / MatMul node is or is not a quantizable layer.
struct layer_report_entry {
  std::string node, op_type;
  bool quantizable = false;
  std::size_t id = 0;  // node index (the layer id) when quantizable
  std::string reason;  // when not quantizable
};

// Where a forward pass stands: the next node to run and every earlier value later nodes read.
struct run_state {
  std::size_t next = 0;
  std::int64_t batch = 0;
  std::map<int, tensor> live;  // value id -> value
};

class graph {
 public:
  static constexpr std::size_t npos = std::numeric_limits<std::size_t>::max();

  [[nodiscard]] static graph compile(const model& m, const compile_options& opt = {});

  // --- structure ---
  [[nodiscard]] const std::vector<node>& nodes() const noexcept { return nodes_; }
  [[nodiscard]] node& at(std::size_t i) { return nodes_.at(i); }
  [[nodiscard]] const node& at(std::size_t i) const { return nodes_.at(i); }
  [[nodiscard]] const std::string& value_name(int v) const { return names_.at(static_cast<std::size_t>(v)); }
  [[nodiscard]] const std::vector<int>& input_values() const noexcept { return inputs_; }
  [[nodiscard]] const std::vector<int>& output_values() const noexcept { return outputs_; }
  // A value's shape in the first probe (sample axis = probe_batch()); empty for unknown.
  [[nodiscard]] const shape_t& probe_shape(int v) const { return probe_shapes_.at(static_cast<std::size_t>(v)); }
  [[nodiscard]] std::int64_t probe_batch() const noexcept { return probe_batch_; }
  // Whether value v's first axis is the sample axis (its other extents fixed).
  [[nodiscard]] bool per_sample(int v) const { return per_sample_.at(static_cast<std::size_t>(v)); }
  [[nodiscard]] bool batch_axis() const noexcept { return batch_axis_; }
  [[nodiscard]] std::size_t layer_count() const;
  [[nodiscard]] const std::vector<layer_report_entry>& layer_report() const noexcept { return report_; }
  // Readers of value v (node indices).
  [[nodiscard]] std::vector<std::size_t> readers(int v) const;
  [[nodiscard]] const std::map<std::size_t, batch_norm_params>& folded_batch_norms() const noexcept {
    return folded_;
  }
  [[nodiscard]] output_activation activation_after(std::size_t layer) const;
  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  [[nodiscard]] std::int64_t opset() const noexcept { return opset_; }
  [[nodiscard]] const exec_limits& limits() const noexcept { return limits_; }

  // --- execution ---
  // The state before node 0 for one tensor per graph input (all with the same leading extent
  // when batch_axis()).
  [[nodiscard]] run_state start(std::vector<tensor> inputs) const;
  // Runs nodes [s.next, last] and returns the values `want`. When `saved` is given it receives
  // the state before node save_before (in [s.next, last + 1]).
  [[nodiscard]] std::vector<tensor> run_from(run_state s, std::size_t last,
                                             const std::vector<int>& want,
                                             std::size_t save_before = npos,
                                             run_state* saved = nullptr) const;
  // The graph outputs for the inputs.
  [[nodiscard]] std::vector<tensor> forward(std::vector<tensor> inputs) const {
    return run_from(start(std::move(inputs)), nodes_.empty() ? 0 : nodes_.size() - 1, outputs_);
  }

 private:
  [[nodiscard]] tensor constant(int v, std::int64_t batch) const;
  [[nodiscard]] bool is_constant(int v) const { return constants_[static_cast<std::size_t>(v)].has_value(); }
  void detect_layers(const compile_options& opt);
  void fold_batch_norms_into_layers();

  std::string source_;
  std::int64_t opset_ = 0;
  bool batch_axis_ = true;
  std::int64_t probe_batch_ = 2;
  exec_limits limits_;
  std::vector<node> nodes_;
  std::vector<std::string> names_;
  std::vector<std::optional<tensor>> constants_;
  std::vector<std::vector<std::int64_t>> slopes_;  // int constants affine in the batch size
  std::vector<shape_t> probe_shapes_;
  std::vector<bool> per_sample_;
  std::vector<int> inputs_, outputs_;
  std::vector<std::size_t> last_use_;  // per value: the last node reading it (npos: an output)
  std::vector<layer_report_entry> report_;
  std::map<std::size_t, batch_norm_params> folded_;
};

namespace detail {

inline attribute convert_attribute(const ::onnx::AttributeProto& a, const std::string& where) {
  attribute r;
  using A = ::onnx::AttributeProto;
  switch (a.type()) {
    case A::FLOAT: r.type = attribute::kind::f; r.f = a.f(); break;
    case A::INT: r.type = attribute::kind::i; r.i = a.i(); break;
    case A::STRING: r.type = attribute::kind::s; r.s = a.s(); break;
    case A::TENSOR:
      r.type = attribute::kind::t;
      r.t = decode_tensor(a.t(), where + ": attribute " + a.name());
      break;
    case A::FLOATS: r.type = attribute::kind::floats; r.floats.assign(a.floats().begin(), a.floats().end()); break;
    case A::INTS: r.type = attribute::kind::ints; r.ints.assign(a.ints().begin(), a.ints().end()); break;
    default: break;  // strings, sparse tensors, type protos: no supported op reads them
  }
  return r;
}

// Two's complement arithmetic on int64 (ONNX integer ops wrap; no signed overflow).
inline std::int64_t wrap_add(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) + static_cast<std::uint64_t>(b));
}
inline std::int64_t wrap_mul(std::int64_t a, std::int64_t b) {
  return static_cast<std::int64_t>(static_cast<std::uint64_t>(a) * static_cast<std::uint64_t>(b));
}


}  // namespace detail

inline std::size_t graph::layer_count() const {
  std::size_t n = 0;
  for (const node& nd : nodes_) n += nd.layer.has_value();
  return n;
}

inline std::vector<std::size_t> graph::readers(int v) const {
  std::vector<std::size_t> r;
  for (std::size_t i = 0; i < nodes_.size(); ++i)
    for (const int u : nodes_[i].inputs)
      if (u == v) {
        r.push_back(i);
        break;
      }
  return r;
}

inline tensor graph::constant(int v, std::int64_t batch) const {
  tensor t = *constants_[static_cast<std::size_t>(v)];
  const auto& sl = slopes_[static_cast<std::size_t>(v)];
  for (std::size_t k = 0; k < sl.size(); ++k) t.i[k] = detail::wrap_add(t.i[k], detail::wrap_mul(sl[k], batch));
  return t;
}

inline graph graph::compile(const model& m, const compile_options& opt) {
  graph g;
  g.source_ = m.source;
  g.opset_ = m.opset;
  g.batch_axis_ = opt.batch_axis;
  g.limits_ = opt.limits;
  const std::string& src = m.source;
  std::map<std::string, int> ids;
  const auto add_value = [&](const std::string& name) {
    const int id = static_cast<int>(g.names_.size());
    g.names_.push_back(name);
    g.constants_.emplace_back();
    ids[name] = id;
    return id;
  };
  for (const auto& [name, t] : m.initializers) {
    const int id = add_value(name);
    g.constants_[static_cast<std::size_t>(id)] = t;
  }
  for (const std::string& name : m.inputs) g.inputs_.push_back(add_value(name));
  // Nodes in file order (ONNX requires a topological order).
  const auto& gp = m.graph();
  std::vector<node> all;
  for (int k = 0; k < gp.node_size(); ++k) {
    const auto& np = gp.node(k);
    node n;
    n.op_type = np.op_type();
    n.name = np.name().empty() ? np.op_type() + "_" + std::to_string(k) : np.name();
    const std::string where = src + ": node \"" + n.name + "\" (" + n.op_type + ")";
    for (const auto& a : np.attribute()) n.attrs[a.name()] = detail::convert_attribute(a, where);
    for (const auto& in : np.input()) {
      if (in.empty()) {
        n.inputs.push_back(-1);
        continue;
      }
      const auto it = ids.find(in);
      if (it == ids.end())
        adaquant::detail::fail(errc::corrupt_data, where,
                               "reads \"" + in + "\", which no graph input, initializer or earlier "
                               "node defines (nodes must be in topological order)");
      n.inputs.push_back(it->second);
    }
    for (const auto& out : np.output()) {
      if (out.empty()) {
        n.outputs.push_back(-1);
        continue;
      }
      if (ids.count(out))
        adaquant::detail::fail(errc::corrupt_data, where, "redefines value \"" + out + "\"");
      n.outputs.push_back(add_value(out));
    }
    if (n.outputs.empty() || n.outputs[0] < 0)
      adaquant::detail::fail(errc::corrupt_data, where, "has no output");
    all.push_back(std::move(n));
  }
  for (const auto& vi : gp.output()) {
    const auto it = ids.find(vi.name());
    if (it == ids.end())
      adaquant::detail::fail(errc::corrupt_data, src, "graph output \"" + vi.name() + "\" is never defined");
    g.outputs_.push_back(it->second);
  }
  const std::size_t nv = g.names_.size();
  g.slopes_.assign(nv, {});

  // Dynamic: depends on input values (Shape only reads its input's shape).
  std::vector<bool> dynamic(nv, false);
  for (const int v : g.inputs_) dynamic[static_cast<std::size_t>(v)] = true;
  for (const node& n : all) {
    bool d = false;
    if (n.op_type != "Shape")
      for (const int v : n.inputs) d = d || (v >= 0 && dynamic[static_cast<std::size_t>(v)]);
    for (const int v : n.outputs)
      if (v >= 0) dynamic[static_cast<std::size_t>(v)] = d;
  }

  // Input shapes.
  std::vector<shape_t> sample = opt.sample_shapes;
  if (sample.empty())
    for (std::size_t k = 0; k < m.inputs.size(); ++k) {
      shape_t s = m.declared_input_shape(k);
      if (opt.batch_axis && !s.empty()) s.erase(s.begin());
      for (const auto d : s)
        if (d < 0)
          adaquant::detail::fail(errc::invalid_argument, src,
                                 "input \"" + m.inputs[k] + "\" has a symbolic extent besides the "
                                 "sample axis: give its per-sample shape (compile_options::sample_shapes)");
      sample.push_back(s);
    }
  if (sample.size() != m.inputs.size())
    adaquant::detail::fail(errc::shape_mismatch, src,
                           "expected " + std::to_string(m.inputs.size()) + " input shapes, got " +
                               std::to_string(sample.size()));
  const auto input_type = [&](std::size_t k) {
    for (const auto& vi : gp.input())
      if (vi.name() == m.inputs[k] && vi.type().has_tensor_type()) {
        const std::int32_t t = vi.type().tensor_type().elem_type();
        if (!is_supported_dtype(t))
          detail::fail_unsupported(src + ": input \"" + m.inputs[k] + "\"", "element type " + std::to_string(t));
        return is_float(static_cast<dtype>(t)) ? dtype::float32 : static_cast<dtype>(t);
      }
    return dtype::float32;
  };

  // Probes: run everything on zero inputs; record shapes and the values of static nodes.
  bool has_shape = false;
  for (const node& n : all) has_shape = has_shape || n.op_type == "Shape";
  std::vector<std::int64_t> probes = {0};
  if (opt.batch_axis) probes = has_shape ? std::vector<std::int64_t>{2, 3, 5} : std::vector<std::int64_t>{2, 3};
  g.probe_batch_ = probes[0];
  std::vector<std::vector<shape_t>> shapes(probes.size(), std::vector<shape_t>(nv));
  std::vector<std::vector<std::optional<tensor>>> statics(probes.size(), std::vector<std::optional<tensor>>(nv));
  for (std::size_t p = 0; p < probes.size(); ++p) {
    std::vector<tensor> vals(nv);
    std::vector<bool> have(nv, false);
    for (std::size_t v = 0; v < nv; ++v)
      if (g.constants_[v]) {
        shapes[p][v] = g.constants_[v]->shape;
      }
    for (std::size_t k = 0; k < g.inputs_.size(); ++k) {
      shape_t s = sample[k];
      if (opt.batch_axis) s.insert(s.begin(), probes[p]);
      const std::size_t v = static_cast<std::size_t>(g.inputs_[k]);
      const std::size_t cnt = onnx::detail::checked_count(s, src + ": input \"" + m.inputs[k] + "\"");
      if (cnt > opt.limits.max_elements)
        adaquant::detail::fail(errc::invalid_argument, src + ": input \"" + m.inputs[k] + "\"",
                               "shape " + shape_string(s) + " exceeds the element limit");
      if (!opt.batch_axis && k < opt.probe_inputs.size()) {
        vals[v] = opt.probe_inputs[k];
        if (vals[v].shape != s)
          adaquant::detail::fail(errc::shape_mismatch, src + ": input \"" + m.inputs[k] + "\"",
                                 "probe input shape " + shape_string(vals[v].shape) + " differs from " + shape_string(s));
      } else {
        vals[v] = tensor::zeros(input_type(k), s);
      }
      have[v] = true;
      shapes[p][v] = s;
    }
    // Last reader of each value in this probe, to free memory as we go.
    std::vector<std::size_t> last(nv, 0);
    for (std::size_t i = 0; i < all.size(); ++i)
      for (const int v : all[i].inputs)
        if (v >= 0) last[static_cast<std::size_t>(v)] = i;
    std::vector<tensor> outs;
    for (std::size_t i = 0; i < all.size(); ++i) {
      const node& n = all[i];
      op_env env{n, m.opset, opt.limits, src};
      std::vector<const tensor*> in;
      for (const int v : n.inputs) {
        if (v < 0) {
          in.push_back(nullptr);
          continue;
        }
        const auto u = static_cast<std::size_t>(v);
        in.push_back(g.constants_[u] ? &*g.constants_[u] : have[u] ? &vals[u] : nullptr);
        if (!in.back()) env.fail(errc::corrupt_data, "input \"" + g.names_[u] + "\" is not available");
      }
      detail::run_node(env, in, outs);
      for (std::size_t k = 0; k < n.outputs.size(); ++k) {
        const int v = n.outputs[k];
        if (v < 0) continue;
        const auto u = static_cast<std::size_t>(v);
        shapes[p][u] = outs[k].shape;
        if (!dynamic[u]) statics[p][u] = outs[k];
        vals[u] = std::move(outs[k]);
        have[u] = true;
      }
      for (const int v : n.inputs)
        if (v >= 0 && last[static_cast<std::size_t>(v)] == i) vals[static_cast<std::size_t>(v)] = tensor();
    }
  }
  // Fold static node outputs that agree across probes (int values affine in the batch size).
  std::vector<bool> folded(nv, false);
  for (std::size_t v = 0; v < nv; ++v) {
    if (dynamic[v] || g.constants_[v] || !statics[0][v]) continue;
    const tensor& a = *statics[0][v];
    bool ok = true;
    std::vector<std::int64_t> slope;
    for (std::size_t p = 1; p < probes.size() && ok; ++p) {
      const tensor& b = *statics[p][v];
      if (!(b.type == a.type && b.shape == a.shape)) ok = false;
      else if (a.floating()) ok = a.f == b.f;
      else {
        const std::int64_t db = probes[p] - probes[0];
        if (slope.empty()) slope.assign(a.size(), 0);
        for (std::size_t k = 0; k < a.size() && ok; ++k) {
          const std::int64_t d = detail::wrap_add(b.i[k], detail::wrap_mul(a.i[k], -1));
          if (p == 1) {
            if (d % db != 0) ok = false;
            else slope[k] = d / db;
          } else if (d != detail::wrap_mul(slope[k], db)) {
            ok = false;
          }
        }
      }
    }
    if (!ok) continue;
    tensor c = a;
    bool any = false;
    for (std::size_t k = 0; k < slope.size(); ++k) {
      c.i[k] = detail::wrap_add(c.i[k], detail::wrap_mul(slope[k], -probes[0]));
      any = any || slope[k] != 0;
    }
    g.constants_[v] = std::move(c);
    if (any) g.slopes_[v] = std::move(slope);
    folded[v] = true;
  }
  for (node& n : all) {
    bool all_folded = true;
    for (const int v : n.outputs) all_folded = all_folded && (v < 0 || folded[static_cast<std::size_t>(v)]);
    if (!all_folded) {
      for (const int v : n.outputs)  // a partly folded node computes all its outputs at run time
        if (v >= 0 && folded[static_cast<std::size_t>(v)]) {
          g.constants_[static_cast<std::size_t>(v)].reset();
          g.slopes_[static_cast<std::size_t>(v)].clear();
        }
      g.nodes_.push_back(std::move(n));
    }
  }
  g.probe_shapes_ = shapes[0];
  g.per_sample_.assign(nv, false);
  if (opt.batch_axis)
    for (std::size_t v = 0; v < nv; ++v) {
      bool ok = !g.constants_[v] && !shapes[0][v].empty();
      for (std::size_t p = 0; p < probes.size() && ok; ++p) {
        const shape_t& s = shapes[p][v];
        ok = !s.empty() && s[0] == probes[p] && s.size() == shapes[0][v].size() &&
             std::equal(s.begin() + 1, s.end(), shapes[0][v].begin() + 1);
      }
      g.per_sample_[v] = ok;
    }
  g.detect_layers(opt);
  if (opt.fold_batch_norms) g.fold_batch_norms_into_layers();
  g.last_use_.assign(nv, 0);
  for (std::size_t i = 0; i < g.nodes_.size(); ++i)
    for (const int v : g.nodes_[i].inputs)
      if (v >= 0) g.last_use_[static_cast<std::size_t>(v)] = i;
  for (const int v : g.outputs_) g.last_use_[static_cast<std::size_t>(v)] = npos;
  return g;
}

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
      else if (xs.size() > 2) no("MatMul on a rank-" + std::to_string(xs.size()) + " input (transformer-style) stays float for now");
      else if (xs.size() != 2) no("the input is not [samples, features]");
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

inline run_state graph::start(std::vector<tensor> inputs) const {
  if (inputs.size() != inputs_.size())
    adaquant::detail::fail(errc::shape_mismatch, source_ + ": inputs",
                           "expected " + std::to_string(inputs_.size()) + " input tensors, got " +
                               std::to_string(inputs.size()));
  run_state s;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const int v = inputs_[k];
    const shape_t& want = probe_shapes_[static_cast<std::size_t>(v)];
    tensor& t = inputs[k];
    if (t.floating()) t.type = dtype::float32;
    const bool ok = batch_axis_ ? t.rank() == want.size() && t.rank() >= 1 &&
                                      std::equal(t.shape.begin() + 1, t.shape.end(), want.begin() + 1)
                                : t.shape == want;
    if (!ok || t.size() != onnx::detail::checked_count(t.shape, source_))
      adaquant::detail::fail(errc::shape_mismatch, source_ + ": input \"" + names_[static_cast<std::size_t>(v)] + "\"",
                             "expected shape " + shape_string(want) +
                                 (batch_axis_ ? " (any leading extent)" : "") + ", got " + shape_string(t.shape));
    if (k == 0) s.batch = batch_axis_ ? t.shape[0] : 0;
    if (batch_axis_ && t.shape[0] != s.batch)
      adaquant::detail::fail(errc::shape_mismatch, source_ + ": inputs", "inputs differ in their sample counts");
    s.live.emplace(v, std::move(t));
  }
  return s;
}

inline std::vector<tensor> graph::run_from(run_state s, std::size_t last, const std::vector<int>& want,
                                           std::size_t save_before, run_state* saved) const {
  const std::size_t nv = names_.size();
  if (!(nodes_.empty() || (s.next <= last + 1 && last < nodes_.size())))
    adaquant::detail::fail(errc::invalid_argument, source_ + ": run_from",
                           "node " + std::to_string(last) + " is not in [" + std::to_string(s.next) + ", " +
                               std::to_string(nodes_.size()) + ")");
  std::vector<tensor> values(nv);
  std::vector<bool> have(nv, false), wanted(nv, false);
  for (const int v : want) wanted[static_cast<std::size_t>(v)] = true;
  std::map<int, tensor> batch_consts;  // affine constants for this batch size
  for (auto& [v, t] : s.live) {
    values[static_cast<std::size_t>(v)] = std::move(t);
    have[static_cast<std::size_t>(v)] = true;
  }
  const auto get = [&](int v) -> const tensor* {
    const auto u = static_cast<std::size_t>(v);
    if (constants_[u]) {
      if (slopes_[u].empty()) return &*constants_[u];
      auto it = batch_consts.find(v);
      if (it == batch_consts.end()) it = batch_consts.emplace(v, constant(v, s.batch)).first;
      return &it->second;
    }
    return have[u] ? &values[u] : nullptr;
  };
  const auto save = [&](std::size_t i) {
    saved->next = i;
    saved->batch = s.batch;
    saved->live.clear();
    for (std::size_t v = 0; v < nv; ++v)
      if (have[v] && (last_use_[v] >= i || wanted[v])) saved->live.emplace(static_cast<int>(v), values[v]);
  };
  std::vector<tensor> outs;
  std::vector<const tensor*> in;
  const std::size_t end = nodes_.empty() ? 0 : last + 1;
  for (std::size_t i = s.next; i < end; ++i) {
    if (saved && i == save_before) save(i);
    const node& n = nodes_[i];
    op_env env{n, opset_, limits_, source_};
    in.clear();
    for (const int v : n.inputs) {
      if (v < 0) {
        in.push_back(nullptr);
        continue;
      }
      in.push_back(get(v));
      if (!in.back())
        env.fail(errc::invalid_argument, "value \"" + names_[static_cast<std::size_t>(v)] + "\" is not in the run state");
    }
    // Input 0 read for the last time (and once): its storage may become the output.
    tensor* mv = nullptr;
    if (!n.inputs.empty() && n.inputs[0] >= 0) {
      const auto u = static_cast<std::size_t>(n.inputs[0]);
      if (!constants_[u] && have[u] && last_use_[u] == i && !wanted[u] &&
          std::count(n.inputs.begin(), n.inputs.end(), n.inputs[0]) == 1)
        mv = &values[u];
    }
    detail::run_node(env, in, outs, mv);
    for (std::size_t k = 0; k < n.outputs.size(); ++k) {
      const int v = n.outputs[k];
      if (v < 0) continue;
      values[static_cast<std::size_t>(v)] = std::move(outs[k]);
      have[static_cast<std::size_t>(v)] = true;
    }
    for (const int v : n.inputs)
      if (v >= 0 && last_use_[static_cast<std::size_t>(v)] == i && !wanted[static_cast<std::size_t>(v)]) {
        values[static_cast<std::size_t>(v)] = tensor();
        have[static_cast<std::size_t>(v)] = false;
      }
  }
  if (saved && save_before == end) save(end);
  std::vector<tensor> result;
  for (const int v : want) {
    const tensor* t = get(v);
    if (!t)
      adaquant::detail::fail(errc::invalid_argument, source_ + ": run_from",
                             "value \"" + names_[static_cast<std::size_t>(v)] + "\" was not computed");
    result.push_back(*t);
  }
  return result;
}

}  // namespace adaquant::onnx
