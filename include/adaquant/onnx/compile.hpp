#pragma once
// graph::compile: from a loaded model to an executable graph.
//
// Folding. A node that does not depend on the input *values* (only on initializers, Constants
// and input *shapes*, through Shape) is evaluated at compile time. The first input axis is the
// sample axis and stays free: the graph is probed with batches of 2 and 3 samples (and 5 when a
// Shape node exists) of the per-sample shapes the caller gives; a folded integer value may be
// affine in the batch size (Shape -> Gather(0) gives N), a folded float value must not depend on
// it. Everything else runs per batch. The probes also check every shape once, so a model whose
// shapes do not fit an op fails here, naming the node.

#include <adaquant/onnx/graph.hpp>

#include <map>
#include <string>
#include <vector>

namespace adaquant::onnx {

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

}  // namespace detail

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
  // Given shapes must fit the declared ones where those are fixed (as ONNX Runtime requires):
  // e.g. token ids longer than a transformer's positions fail here, naming the input.
  for (std::size_t k = 0; k < m.inputs.size(); ++k) {
    const shape_t declared = m.declared_input_shape(k);
    if (declared.empty()) continue;  // no shape declared
    shape_t given = sample[k];
    if (opt.batch_axis) given.insert(given.begin(), -1);
    bool fits = declared.size() == given.size();
    for (std::size_t d = 0; fits && d < given.size(); ++d)
      fits = declared[d] < 0 || given[d] < 0 || declared[d] == given[d];
    if (!fits) {
      std::string decl = "[";
      for (std::size_t d = 0; d < declared.size(); ++d)
        decl += (d ? ", " : "") + (declared[d] < 0 ? std::string("?") : std::to_string(declared[d]));
      adaquant::detail::fail(errc::shape_mismatch, src + ": input \"" + m.inputs[k] + "\"",
                             (opt.batch_axis ? "per-sample shape " : "shape ") +
                                 shape_string(sample[k]) + " does not fit the declared shape " +
                                 decl + "]");
    }
  }
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
      op_env env{n, m.opset, opt.limits, src, nullptr};
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
  g.fold_matmul_biases();
  if (opt.fold_batch_norms) g.fold_batch_norms_into_layers();
  g.last_use_.assign(nv, 0);
  for (std::size_t i = 0; i < g.nodes_.size(); ++i)
    for (const int v : g.nodes_[i].inputs)
      if (v >= 0) g.last_use_[static_cast<std::size_t>(v)] = i;
  for (const int v : g.outputs_) g.last_use_[static_cast<std::size_t>(v)] = npos;
  // A weight or bias read only by layer nodes lives on in their layer_params (folded): the
  // initializer's copy is dropped for an empty [0] placeholder, which layer nodes never read.
  std::vector<bool> read_as_value(nv, false);
  for (const node& n : g.nodes_)
    for (std::size_t k = 0; k < n.inputs.size(); ++k)
      if (n.inputs[k] >= 0 && !(n.layer && k > 0))
        read_as_value[static_cast<std::size_t>(n.inputs[k])] = true;
  for (const int v : g.outputs_) read_as_value[static_cast<std::size_t>(v)] = true;
  for (std::size_t v = 0; v < nv; ++v)
    if (g.constants_[v] && !read_as_value[v] && g.slopes_[v].empty())
      g.constants_[v] = tensor({0}, {});
  return g;
}


}  // namespace adaquant::onnx
