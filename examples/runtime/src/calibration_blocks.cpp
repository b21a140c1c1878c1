// calibration_network as a BlockNetwork: blocks found on the node list, their programs, and
// captures of their inputs (quantized network) and outputs (full precision).
#include <adaquant_runtime/calibration.hpp>

#include <adaquant/calibrate/automatic_blocks.hpp>
#include <adaquant/core/parallel.hpp>

#include <algorithm>
#include <map>

namespace adaquant::examples {
namespace {

std::string node_label(const network& net, std::size_t i) {
  return "node " + std::to_string(i) + " \"" + net.at(i).name + "\" (" +
         std::string(to_string(net.at(i).kind)) + ")";
}

}  // namespace

block_desc calibration_network::block_of_nodes(std::size_t a, std::size_t b) const {
  const std::size_t N = net_.size();
  const std::string where =
      "calibration_network: block of nodes " + std::to_string(a) + " .. " + std::to_string(b);
  if (!(a >= 1 && a <= b && b < N))
    detail::fail(errc::invalid_argument, where,
                 "is not a run of the nodes 1 .. " + std::to_string(N - 1));
  block_desc d;
  d.name = net_.at(a).name + " .. " + net_.at(b).name;
  d.first_node = a;
  d.last_node = b;
  std::map<std::size_t, std::size_t> slot;  // value -> program slot
  for (std::size_t i = a; i <= b; ++i)
    for (const std::size_t v : net_.at(i).inputs)
      if (v < a && !slot.count(v)) {
        slot[v] = d.program.input_sizes.size();
        d.program.input_sizes.push_back(per_sample(v));
        d.input_values.push_back(static_cast<int>(v));
      }
  std::vector<layer_geometry> geoms;
  for (std::size_t i = a; i <= b; ++i) {
    const node& n = net_.at(i);
    const auto unsupported = [&](const std::string& why) {
      detail::fail(errc::invalid_argument, where,
                   node_label(net_, i) + " " + why +
                       "; a block program takes conv2d/linear layers, relu, relu6, add of two "
                       "values of one shape and identity (folded batch norms)");
    };
    const auto arg = [&](std::size_t k) { return slot.at(n.inputs.at(k)); };
    block_op op;
    switch (n.kind) {
      case op_kind::conv2d:
      case op_kind::linear: {
        const auto it = std::find_if(layers_.begin(), layers_.end(),
                                     [&](const layer_desc& l) { return l.id == i; });
        op = block_op::layer_of(d.layers.size(), arg(0));
        d.layers.push_back(i);
        geoms.push_back(it->geometry);
        break;
      }
      case op_kind::relu:
        op = block_op::relu(arg(0));
        break;
      case op_kind::relu6:
        op = block_op::relu6(arg(0));
        break;
      case op_kind::identity:
        op = block_op::identity(arg(0));
        break;
      case op_kind::add:
        if (shapes_[n.inputs.at(0)] != shapes_[n.inputs.at(1)])
          unsupported("adds values of different shapes");
        op = block_op::add(arg(0), arg(1));
        break;
      case op_kind::batch_norm:
        unsupported("is not folded (fold_batch_norms)");
        break;
      default:
        unsupported("is not supported in a block");
    }
    slot[i] = d.program.slots();
    d.program.ops.push_back(op);
  }
  for (std::size_t v = a; v <= b; ++v) {
    if (!(last_read_[v] > b)) continue;
    if (d.output_value >= 0)
      detail::fail(errc::invalid_argument, where,
                   "the values of " + node_label(net_, static_cast<std::size_t>(d.output_value)) +
                       " and " + node_label(net_, v) +
                       " are both used after it; a block has one output");
    d.output_value = static_cast<int>(v);
  }
  if (d.output_value < 0)
    detail::fail(errc::invalid_argument, where, "no value of it is used after it");
  d.program.output = slot.at(static_cast<std::size_t>(d.output_value));
  (void)d.program.slot_sizes(geoms, where + ": program");
  return d;
}

block_desc calibration_network::block_of(std::size_t first_layer_id,
                                         std::size_t last_layer_id) const {
  const std::string where = "calibration_network::block_of(" + std::to_string(first_layer_id) +
                            ", " + std::to_string(last_layer_id) + ")";
  std::size_t kf = layers_.size(), kl = layers_.size();
  for (std::size_t k = 0; k < layers_.size(); ++k) {
    if (layers_[k].id == first_layer_id) kf = k;
    if (layers_[k].id == last_layer_id) kl = k;
  }
  if (kf == layers_.size() || kl == layers_.size() || kf > kl)
    detail::fail(errc::invalid_argument, where,
                 "the ids must be quantizable layers, the first not after the last");
  const std::size_t end = kl + 1 < layers_.size() ? layers_[kl + 1].id : net_.size();
  return block_through(first_layer_id, last_layer_id, end,
                       [&](std::size_t a, std::size_t b) { return block_of_nodes(a, b); });
}

std::vector<block_desc> calibration_network::blocks() const {
  const std::size_t N = net_.size();
  // Cut before node i: exactly one value produced before i is read at or after i.
  std::vector<std::size_t> cuts;
  for (std::size_t i = 2; i < N; ++i) {
    std::size_t live = 0;
    for (std::size_t v = 0; v < i; ++v) live += last_read_[v] >= i;
    if (live == 1) cuts.push_back(i);
  }
  cuts.push_back(N);
  const auto layers_in = [&](std::size_t a, std::size_t c) {
    std::size_t n = 0;
    for (std::size_t i = a; i < c; ++i) n += net_.at(i).quantizable();
    return n;
  };
  return automatic_blocks(1, cuts, layers_in,
                          [&](std::size_t a, std::size_t b) { return block_of_nodes(a, b); });
}

block_io calibration_network::capture_block(const block_desc& b, std::size_t first,
                                            std::size_t count) {
  if (!(first <= calibration_size() && count <= calibration_size() - first))
    detail::fail(errc::invalid_argument, "calibration_network::capture_block: first, count",
                 "samples beyond the " + std::to_string(calibration_size()) + " held");
  const auto out_node = static_cast<std::size_t>(b.output_value);
  bool fits = b.first_node >= 1 && b.last_node < net_.size() && b.output_value >= 0 &&
              out_node >= b.first_node && out_node <= b.last_node &&
              b.input_values.size() == b.program.inputs();
  for (std::size_t i = 0; fits && i < b.input_values.size(); ++i) {
    const auto v = static_cast<std::size_t>(b.input_values[i]);
    fits = b.input_values[i] >= 0 && v < b.first_node && b.program.input_sizes[i] == per_sample(v);
  }
  if (!fits)
    detail::fail(errc::invalid_argument, "calibration_network::capture_block: b",
                 "is not a block of this network");
  block_io io;
  io.inputs.resize(b.input_values.size());
  for (std::size_t i = 0; i < io.inputs.size(); ++i)
    io.inputs[i].resize(count * b.program.input_sizes[i]);
  const std::size_t out_per = per_sample(out_node);
  io.outputs.resize(count * out_per);
  if (count == 0) return io;
  const sample_split q = passes_for(capture_mode::quantized, first, count);
  const sample_split fp = passes_for(capture_mode::full_precision, first, count);
  parallel_for(q.pass.size(), threads_, [&](std::size_t p) {
    const std::size_t at = q.begin[p] - first;
    // The state before the block's first node holds every value the block reads from before it.
    (void)q.pass[p]->run(quantized_net_, b.first_node, b.first_node);
    for (std::size_t i = 0; i < b.input_values.size(); ++i) {
      const tensor& t = q.pass[p]->kept().live.at(static_cast<std::size_t>(b.input_values[i]));
      std::copy(t.data(), t.data() + t.size(),
                io.inputs[i].begin() + static_cast<std::ptrdiff_t>(at * b.program.input_sizes[i]));
    }
    const tensor out = fp.pass[p]->run(net_, out_node, out_node);
    std::copy(out.data(), out.data() + out.size(),
              io.outputs.begin() + static_cast<std::ptrdiff_t>(at * out_per));
  });
  return io;
}

}  // namespace adaquant::examples
