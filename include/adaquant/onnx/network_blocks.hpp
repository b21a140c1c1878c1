#pragma once
// onnx_network as a BlockNetwork (calibrate/block_network.hpp has the contract): blocks found on
// the graph, their programs, and captures of their inputs and outputs.
//
// Ops a block program takes: the layer nodes (Conv, Gemm, MatMul with constant weights, batch
// norms folded), Relu, Clip(0, 6) and Clip(0, inf), Add of two per-sample values of the same
// size, Identity and Dropout (and folded batch norms, which are Identity); nodes computing only
// constants are skipped. A conv whose input the network pads explicitly (asymmetric pads) is not
// supported in a block. Automatic blocks are the runs between the points of the node order where
// exactly one per-sample value is live (calibrate/automatic_blocks.hpp).

#include <adaquant/calibrate/automatic_blocks.hpp>
#include <adaquant/onnx/network.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace adaquant::onnx {

namespace detail {
// Floats per sample of value v (its probe shape without the sample axis).
inline std::size_t per_sample_size(const graph& g, int v) {
  const shape_t& s = g.probe_shape(v);
  std::size_t n = 1;
  for (std::size_t i = 1; i < s.size(); ++i) n *= static_cast<std::size_t>(s[i]);
  return n;
}
// Clip's bounds when they are constants (opset >= 11 inputs, else attributes).
inline bool clip_bounds(const graph& g, const node& n, float& lo, float& hi) {
  lo = -std::numeric_limits<float>::infinity();
  hi = std::numeric_limits<float>::infinity();
  if (g.opset() < 11) {
    lo = n.attr_float("min", lo);
    hi = n.attr_float("max", hi);
    return true;
  }
  for (std::size_t k = 1; k < 3 && k < n.inputs.size(); ++k) {
    if (n.inputs[k] < 0) continue;
    const tensor* c = g.constant_value(n.inputs[k]);
    if (!c || !c->floating() || c->size() != 1) return false;
    (k == 1 ? lo : hi) = c->f[0];
  }
  return true;
}
}  // namespace detail

// Nodes [a, b]: external inputs are the per-sample values read there and produced before a (or
// graph inputs); the output is the one per-sample value produced there and read after b (or a
// graph output).
inline block_desc onnx_network::block_of_nodes(std::size_t a, std::size_t b) const {
  const graph& g = fp_;
  const std::string where =
      g.source() + ": block of nodes \"" + g.at(a).name + "\" .. \"" + g.at(b).name + "\"";
  block_desc d;
  d.name = g.at(a).name + " .. " + g.at(b).name;
  d.first_node = a;
  d.last_node = b;
  std::map<int, std::size_t> slot;
  const auto dynamic = [&](int v) { return v >= 0 && g.per_sample(v) && !g.constant_value(v); };
  std::set<int> produced;
  for (std::size_t i = a; i <= b; ++i)
    for (int v : g.at(i).outputs)
      if (v >= 0) produced.insert(v);
  for (std::size_t i = a; i <= b; ++i)
    for (int v : g.at(i).inputs)
      if (dynamic(v) && !produced.count(v) && !slot.count(v)) {
        slot[v] = d.program.input_sizes.size();
        d.program.input_sizes.push_back(detail::per_sample_size(g, v));
        d.input_values.push_back(v);
      }
  std::vector<layer_geometry> geoms;
  for (std::size_t i = a; i <= b; ++i) {
    const node& n = g.at(i);
    bool any = false;
    for (int v : n.outputs) any = any || dynamic(v);
    if (!any) continue;
    const auto arg = [&](std::size_t k) {
      const int v = k < n.inputs.size() ? n.inputs[k] : -1;
      if (!dynamic(v) || !slot.count(v))
        adaquant::detail::fail(errc::invalid_argument, where,
                               "node \"" + n.name + "\" (" + n.op_type + ") reads input " +
                                   std::to_string(k) + " that is not a per-sample value");
      return slot.at(v);
    };
    const auto unsupported = [&](const std::string& why) {
      adaquant::detail::fail(errc::invalid_argument, where,
                             "node \"" + n.name + "\" (" + n.op_type + ") " + why +
                                 "; a block program takes layers, Relu, Clip(0, 6), Add of two "
                                 "values and Identity");
    };
    block_op op;
    if (n.layer) {
      const layer_desc& l = desc(i);
      if (l.geometry.input_per_sample() != detail::per_sample_size(g, n.inputs[0]))
        unsupported("pads its input asymmetrically");
      op = block_op::layer_of(d.layers.size(), arg(0));
      d.layers.push_back(i);
      geoms.push_back(l.geometry);
    } else if (n.op_type == "Relu") {
      op = block_op::relu(arg(0));
    } else if (n.op_type == "Clip") {
      float lo = 0.0f, hi = 0.0f;
      if (!detail::clip_bounds(g, n, lo, hi) || lo != 0.0f ||
          !(hi == 6.0f || hi == std::numeric_limits<float>::infinity()))
        unsupported("is not Clip(0, 6) or Clip(0, inf)");
      op = hi == 6.0f ? block_op::relu6(arg(0)) : block_op::relu(arg(0));
    } else if (n.op_type == "Add") {
      const std::size_t x = arg(0), y = arg(1);
      if (g.probe_shape(n.inputs[0]) != g.probe_shape(n.inputs[1]))
        unsupported("adds values of different shapes");
      op = block_op::add(x, y);
    } else if (n.op_type == "Identity" || n.op_type == "Dropout") {
      op = block_op::identity(arg(0));
    } else {
      unsupported("is not supported in a block");
    }
    slot[n.outputs[0]] = d.program.input_sizes.size() + d.program.ops.size();
    d.program.ops.push_back(op);
  }
  // The output: produced here, used after b or a graph output.
  const auto& outs = g.output_values();
  for (int v : produced) {
    if (!dynamic(v) || !slot.count(v)) continue;
    bool used = std::count(outs.begin(), outs.end(), v) > 0;
    for (std::size_t r : g.readers(v)) used = used || r > b;
    if (!used) continue;
    if (d.output_value >= 0)
      adaquant::detail::fail(errc::invalid_argument, where,
                             "values \"" + g.value_name(d.output_value) + "\" and \"" +
                                 g.value_name(v) +
                                 "\" are both used after it; a block has one output");
    d.output_value = v;
  }
  if (d.output_value < 0)
    adaquant::detail::fail(errc::invalid_argument, where, "no value of it is used after it");
  d.program.output = slot.at(d.output_value);
  (void)d.program.slot_sizes(geoms, where + ": program");
  return d;
}

inline block_desc onnx_network::block_of(std::size_t first_layer_id,
                                         std::size_t last_layer_id) const {
  const std::string where = fp_.source() + ": block_of(" + std::to_string(first_layer_id) + ", " +
                            std::to_string(last_layer_id) + ")";
  std::size_t kf = layers_.size(), kl = layers_.size();
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    if (layers_[k].id == first_layer_id) kf = k;
    if (layers_[k].id == last_layer_id) kl = k;
  }
  if (kf == layers_.size() || kl == layers_.size() || kf > kl)
    adaquant::detail::fail(errc::invalid_argument, where,
                           "the ids must be quantizable layers, the first not after the last");
  const std::size_t end = kl + 1 < layers_.size() ? layers_[kl + 1].id : fp_.nodes().size();
  return block_through(first_layer_id, last_layer_id, end,
                       [&](std::size_t a, std::size_t b) { return block_of_nodes(a, b); });
}

inline std::vector<block_desc> onnx_network::blocks() const {
  const graph& g = fp_;
  const std::size_t N = g.nodes().size();
  // Per value: producer (graph inputs: before node 0) and last reader (graph outputs: the end).
  std::map<int, std::pair<std::size_t, std::size_t>> span;  // v -> [produced at + 1, last read]
  for (int v : g.input_values()) span[v] = {0, 0};
  for (std::size_t i = 0; i < N; ++i)
    for (int v : g.at(i).outputs)
      if (v >= 0) span[v] = {i + 1, i};
  for (std::size_t i = 0; i < N; ++i)
    for (int v : g.at(i).inputs)
      if (v >= 0 && span.count(v)) span[v].second = std::max(span[v].second, i);
  for (int v : g.output_values()) span[v].second = N;
  // Cut before node i: exactly one per-sample value live.
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < N; ++i) {
    std::size_t live = 0;
    for (const auto& [v, s] : span)
      if (g.per_sample(v) && !g.constant_value(v) && s.first <= i && s.second >= i) ++live;
    if (live == 1) cuts.push_back(i);
  }
  cuts.push_back(N);
  const auto layers_in = [&](std::size_t a, std::size_t c) {
    std::size_t n = 0;
    for (std::size_t i = a; i < c; ++i) n += g.at(i).layer.has_value();
    return n;
  };
  return automatic_blocks(0, cuts, layers_in,
                          [&](std::size_t a, std::size_t b) { return block_of_nodes(a, b); });
}

inline block_io onnx_network::capture_block(const block_desc& b, std::size_t first,
                                            std::size_t count) {
  if (!(first <= samples_ && count <= samples_ - first))
    adaquant::detail::fail(errc::invalid_argument, "onnx_network::capture_block: first, count",
                           "samples beyond the " + std::to_string(samples_) + " held");
  if (!(b.last_node < fp_.nodes().size() && b.input_values.size() == b.program.inputs()))
    adaquant::detail::fail(errc::invalid_argument, "onnx_network::capture_block: b",
                           "is not a block of this network");
  estimate_activation_products(b.first_node);
  block_io io;
  io.inputs.resize(b.input_values.size());
  for (std::size_t i = 0; i < io.inputs.size(); ++i)
    io.inputs[i].resize(count * b.program.input_sizes[i]);
  const std::size_t out_per = detail::per_sample_size(fp_, b.output_value);
  io.outputs.resize(count * out_per);
  if (count == 0) return io;
  const std::size_t parts = std::max<std::size_t>(1, std::min(threads_, count));
  std::vector<std::size_t> begin(parts + 1);
  for (std::size_t p = 0; p <= parts; ++p) begin[p] = first + count * p / parts;
  std::vector<resumable_pass*> qpass(parts), fpass(parts);
  for (std::size_t p = 0; p < parts; ++p) {
    qpass[p] = &passes_[{capture_mode::quantized, begin[p], begin[p + 1] - begin[p]}];
    fpass[p] = &passes_[{capture_mode::full_precision, begin[p], begin[p + 1] - begin[p]}];
  }
  const auto& graph_inputs = q_.input_values();
  parallel_for(parts, threads_, [&](std::size_t p) {
    const auto items = [&] { return calibration_items(begin[p], begin[p + 1]); };
    const std::size_t at = begin[p] - first;
    std::vector<tensor> ins;
    if (b.first_node > 0)
      ins = qpass[p]->run(q_, b.first_node - 1, b.input_values, b.first_node - 1, items);
    for (std::size_t i = 0; i < b.input_values.size(); ++i) {
      const auto gi = std::find(graph_inputs.begin(), graph_inputs.end(), b.input_values[i]);
      const tensor t = b.first_node == 0
                           ? items().at(static_cast<std::size_t>(gi - graph_inputs.begin()))
                           : std::move(ins.at(i));
      std::copy(t.f.begin(), t.f.end(),
                io.inputs[i].begin() + static_cast<std::ptrdiff_t>(at * b.program.input_sizes[i]));
    }
    const tensor out = fpass[p]->run(fp_, b.last_node, {b.output_value}, b.last_node, items).at(0);
    std::copy(out.f.begin(), out.f.end(),
              io.outputs.begin() + static_cast<std::ptrdiff_t>(at * out_per));
  });
  return io;
}

}  // namespace adaquant::onnx
