#pragma once
// The optional capability a network offers for block reconstruction (calibrate/block.hpp), on top
// of QuantizableNetwork (calibrate/network.hpp): three members.
//
//   std::vector<block_desc> blocks() const;
//       the automatic blocks: maximal runs of two or more quantizable layers between points of
//       the execution order where a single value is live (a residual block, an inverted-residual
//       block), whose ops the block program supports; a run with any other op is left out (its
//       layers are calibrated one at a time). In execution order, not overlapping.
//   block_desc block_of(std::size_t first_layer_id, std::size_t last_layer_id) const;
//       the block of the layers first .. last (ids of quantizable_layers(), in execution order)
//       and the ops between them, and after the last as many of the ops before the next layer
//       as make a block (a residual block's add and ReLU); throws errc::invalid_argument naming the
//       node for an op the program does not support, and naming the ids when they are not layers in
//       that order, or when the run has more than one value used after it.
//   block_io capture_block(const block_desc& b, std::size_t first, std::size_t count);
//       for calibration samples [first, first + count): every external input of b as the network
//       computes it with the layers given to set_quantized quantized (capture_mode::quantized),
//       and b's output slot in full precision (capture_mode::full_precision); layouts per sample
//       as b.program's slots (block_program: floats per sample, objectives/geometry.hpp's
//       layouts for layer inputs). Optionally also output_weights: a weight >= 0 per sample and
//       output element for the block's loss (block_objective::set_output_weights; e.g. BRECQ's
//       squared gradient of the network's loss w.r.t. the block's output, from a framework
//       that can run the network backward); left empty, every output error counts the same.
//
// block_desc::layers are the layer ids of the block's layer ops: program op layer_of(k) applies
// layer id layers[k], with the weights, bias and geometry quantizable_layers() gives for it.
//
// Which blocks are optimised is the caller's choice (block_selection, select_blocks below): the
// automatic ones, runs of up to N layers, or blocks named by their first and last layer.

#include <adaquant/calibrate/network.hpp>
#include <adaquant/objectives/block_program.hpp>

#include <adaquant/core/error.hpp>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace adaquant {

struct block_desc {
  std::string name;                 // for reports: the first and last node
  std::vector<std::size_t> layers;  // layer ids, program's layer k = layers[k]
  block_program program;
  // The network's own references (e.g. node range and value ids), for capture_block.
  std::size_t first_node = 0, last_node = 0;
  std::vector<int> input_values;
  int output_value = -1;
};

struct block_io {
  std::vector<std::vector<float>> inputs;  // one per external input slot
  std::vector<float> outputs;              // the output slot, full precision
  std::vector<float> output_weights;       // empty, or one weight per element of outputs
};

template <class N>
concept BlockNetwork = QuantizableNetwork<N> &&
    requires(N& n, const N& cn, const block_desc& b, std::size_t i) {
  { cn.blocks() } -> std::same_as<std::vector<block_desc>>;
  { cn.block_of(i, i) } -> std::same_as<block_desc>;
  { n.capture_block(b, i, i) } -> std::same_as<block_io>;
};

// Which blocks block reconstruction optimises (calibration_options::blocks); layers outside
// them are calibrated one at a time.
struct block_selection {
  // 0: the network's automatic blocks, blocks(). N >= 2: runs of up to N consecutive layers,
  // formed greedily in execution order: from the first layer not yet placed, the longest run of
  // at most N layers that block_of accepts (none: that layer alone, and the next one starts).
  // Automatic blocks are such runs too, so N at least a residual block's layers keeps them whole
  // and joins the plain layers between them (MobileNetV2's blocks without a residual add).
  std::size_t max_layers = 0;
  // When not empty: exactly these blocks, each by its first and last layer id (block_of's
  // arguments), in execution order and not overlapping. max_layers must then be 0.
  std::vector<std::pair<std::size_t, std::size_t>> named;

  [[nodiscard]] bool automatic() const noexcept { return max_layers == 0 && named.empty(); }

  // Throws errc::invalid_argument naming `where`.<member>: max_layers 1, or both set.
  void validate(const std::string& where) const {
    if (max_layers == 1)
      detail::fail(errc::invalid_argument, where + ".max_layers",
                   "must be 0 (the automatic blocks) or >= 2, got 1 (one layer: reconstruction "
                   "by layer)");
    if (max_layers != 0 && !named.empty())
      detail::fail(errc::invalid_argument, where,
                   "max_layers and named blocks are alternatives; set one");
  }

  // A short text that differs between selections (checkpoint records of block reconstruction
  // are kept apart by it): "" (automatic), "-runs<N>", "-named-<FNV-1a of the ids, hex>".
  [[nodiscard]] std::string key() const {
    if (max_layers) return "-runs" + std::to_string(max_layers);
    if (named.empty()) return "";
    std::uint64_t h = 0xcbf29ce484222325ull;
    const auto mix = [&](std::uint64_t v) {
      for (int b = 0; b < 8; ++b) h = (h ^ ((v >> (8 * b)) & 0xff)) * 0x100000001b3ull;
    };
    for (const auto& [a, b] : named) {
      mix(a);
      mix(b);
    }
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return std::string("-named-") + buf;
  }
};

// The blocks s selects on net, in execution order; layers: net.quantizable_layers(). Errors
// (errc::invalid_argument, named by `where`): s invalid, a named block that block_of refuses (its
// message names the node or ids), named blocks out of order or overlapping.
template <BlockNetwork N>
std::vector<block_desc> select_blocks(const N& net, const block_selection& s,
                                      std::span<const layer_desc> layers,
                                      const std::string& where) {
  s.validate(where);
  if (s.automatic()) return net.blocks();
  const auto position = [&](std::size_t id) {
    for (std::size_t k = 0; k < layers.size(); ++k)
      if (layers[k].id == id) return k;
    return layers.size();
  };
  std::vector<block_desc> out;
  if (!s.named.empty()) {
    std::size_t next = 0;  // first position a block may start at
    for (std::size_t i = 0; i < s.named.size(); ++i) {
      const auto [a, b] = s.named[i];
      const std::string at = where + ".named[" + std::to_string(i) + "]";
      block_desc d;
      try {
        d = net.block_of(a, b);
      } catch (const error& e) {
        std::string why = e.what();
        if (why.rfind("adaquant: ", 0) == 0) why.erase(0, 10);
        detail::fail(errc::invalid_argument, at, why);
      }
      const std::size_t pa = position(a), pb = position(b);
      if (pa < next)
        detail::fail(errc::invalid_argument, at,
                     "layers " + std::to_string(a) + " .. " + std::to_string(b) +
                         " start before the end of the block before; blocks must be in "
                         "execution order and not overlap");
      next = pb + 1;
      out.push_back(std::move(d));
    }
    return out;
  }
  for (std::size_t k = 0; k < layers.size();) {
    std::size_t taken = 1;
    for (std::size_t m = std::min(s.max_layers, layers.size() - k); m >= 2; --m) {
      try {
        out.push_back(net.block_of(layers[k].id, layers[k + m - 1].id));
        taken = m;
        break;
      } catch (const error&) {  // not a block: try a shorter run
      }
    }
    k += taken;
  }
  return out;
}

}  // namespace adaquant
