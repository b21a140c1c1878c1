#pragma once
// A loaded model compiled for execution: values numbered, constant and shape sub-graphs folded
// (compile.hpp), batch norms folded into the preceding layers and quantizable layers marked
// (layers.hpp), and the executor (here).
//
// Execution is single-threaded per call; a sample's result never depends on the other samples of
// its batch (see gemm.hpp), so callers split samples across threads freely. A pass can stop after
// any node and resume later from a saved run_state (captures, calibration loss).

#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/objectives/geometry.hpp>
#include <adaquant/onnx/load.hpp>
#include <adaquant/onnx/ops/dispatch.hpp>

#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
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
  // A value folded to a constant (an initializer or a constant sub-graph's result), or nullptr.
  [[nodiscard]] const tensor* constant_value(int v) const {
    const auto& c = constants_.at(static_cast<std::size_t>(v));
    return c && slopes_[static_cast<std::size_t>(v)].empty() ? &*c : nullptr;
  }
  // Replaces constant v's values (same type and shape; errc::shape_mismatch otherwise), e.g. a
  // quantized embedding table (onnx/embedding.hpp).
  void set_constant_values(int v, std::vector<float> values);

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
  // Hands t's float storage to this thread's pool, which the next runs on the thread draw their
  // outputs from (op_env::recycle's rule), and empties t: for a run's output the caller has
  // copied.
  static void recycle(tensor& t) { recycle_into(&storage_pool(), t); }

 private:
  // Storage of released values, for make_for_overwrite; per thread and kept across runs, so the
  // next batch's first outputs reuse the last batch's (recycle_into keeps a few).
  static std::vector<std::vector<float>>& storage_pool() {
    thread_local std::vector<std::vector<float>> pool;
    return pool;
  }
  [[nodiscard]] tensor constant(int v, std::int64_t batch) const;
  [[nodiscard]] bool is_constant(int v) const { return constants_[static_cast<std::size_t>(v)].has_value(); }
  void detect_layers(const compile_options& opt);
  void fold_batch_norms_into_layers();
  void fold_matmul_biases();

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

inline void graph::set_constant_values(int v, std::vector<float> values) {
  auto& c = constants_.at(static_cast<std::size_t>(v));
  if (!c || !c->floating() || c->f.size() != values.size())
    adaquant::detail::fail(
        errc::shape_mismatch, source_ + ": value \"" + names_[static_cast<std::size_t>(v)] + "\"",
        "is not a float constant of " + std::to_string(values.size()) + " values");
  c->f = std::move(values);
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
  // The saved state takes the values live before save_before; they are pinned (neither released
  // nor overwritten in place) and moved into it at the end, not copied.
  std::vector<bool> pinned;
  const auto is_pinned = [&](std::size_t v) { return !pinned.empty() && pinned[v]; };
  const auto save = [&](std::size_t i) {
    saved->next = i;
    saved->batch = s.batch;
    saved->live.clear();
    pinned.assign(nv, false);
    for (std::size_t v = 0; v < nv; ++v) pinned[v] = have[v] && (last_use_[v] >= i || wanted[v]);
  };
  std::vector<tensor> outs;
  std::vector<const tensor*> in;
  std::vector<std::vector<float>>& recycled = storage_pool();
  const std::size_t end = nodes_.empty() ? 0 : last + 1;
  for (std::size_t i = s.next; i < end; ++i) {
    if (saved && i == save_before) save(i);
    const node& n = nodes_[i];
    op_env env{n, opset_, limits_, source_, &recycled};
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
      if (!constants_[u] && have[u] && last_use_[u] == i && !wanted[u] && !is_pinned(u) &&
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
      if (v >= 0 && last_use_[static_cast<std::size_t>(v)] == i &&
          !wanted[static_cast<std::size_t>(v)] && !is_pinned(static_cast<std::size_t>(v))) {
        env.recycle(values[static_cast<std::size_t>(v)]);
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
    const auto u = static_cast<std::size_t>(v);
    if (!constants_[u] && !is_pinned(u) && std::count(want.begin(), want.end(), v) == 1)
      result.push_back(std::move(values[u]));
    else
      result.push_back(*t);
  }
  // The saved state holds storage of its own size: a value in pooled storage may sit in up to
  // twice its size (make_for_overwrite), and a pass keeps its state while the others run (a
  // capture keeps every pass's state before a layer: ResNet-50's stride-2 blocks, whose outputs
  // are half their inputs, would keep 400 MB more).
  for (std::size_t v = 0; v < nv; ++v)
    if (is_pinned(v)) {
      tensor& t = values[v];
      if (t.f.capacity() > t.f.size()) {
        tensor larger;
        larger.f = std::exchange(t.f, std::vector<float>(t.f.begin(), t.f.end()));
        recycle_into(&recycled, larger);
      }
      saved->live.emplace(static_cast<int>(v), std::move(t));
    }
  return result;
}


}  // namespace adaquant::onnx

// The definitions of graph::compile and of the layer analysis.
#include <adaquant/onnx/compile.hpp>
#include <adaquant/onnx/layers.hpp>
