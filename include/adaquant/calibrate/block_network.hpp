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
//       and the ops between them; throws errc::invalid_argument naming the node for an op the
//       program does not support, and naming the ids when they are not layers in that order, or
//       when the run has more than one value used after it.
//   block_io capture_block(const block_desc& b, std::size_t first, std::size_t count);
//       for calibration samples [first, first + count): every external input of b as the network
//       computes it with the layers given to set_quantized quantized (capture_mode::quantized),
//       and b's output slot in full precision (capture_mode::full_precision); layouts per sample
//       as b.program's slots (block_program: floats per sample, objectives/geometry.hpp's
//       layouts for layer inputs).
//
// block_desc::layers are the layer ids of the block's layer ops: program op layer_of(k) applies
// layer id layers[k], with the weights, bias and geometry quantizable_layers() gives for it.

#include <adaquant/calibrate/network.hpp>
#include <adaquant/objectives/block_program.hpp>

#include <concepts>
#include <cstddef>
#include <string>
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
};

template <class N>
concept BlockNetwork = QuantizableNetwork<N> &&
    requires(N& n, const N& cn, const block_desc& b, std::size_t i) {
  { cn.blocks() } -> std::same_as<std::vector<block_desc>>;
  { cn.block_of(i, i) } -> std::same_as<block_desc>;
  { n.capture_block(b, i, i) } -> std::same_as<block_io>;
};

}  // namespace adaquant
