#pragma once
// The rules a BlockNetwork's blocks() and block_of follow (calibrate/block_network.hpp), for
// networks that are a list of nodes in execution order. automatic_blocks: given the cuts (the node
// indices before which exactly one per-sample value is live, ascending, ending with the node
// count), every run between two cuts with two or more layers is a block, extended through the
// layer-free runs after it as long as the program takes them (a residual block's final ReLU); a run
// whose block_of_nodes throws (an op the program does not take) is left out, its layers calibrated
// one at a time. block_through: the run of block_of.

#include <adaquant/calibrate/block_network.hpp>
#include <adaquant/core/error.hpp>

#include <cstddef>
#include <utility>
#include <vector>

namespace adaquant {

// layers_in(a, c): the layers among nodes [a, c); block_of_nodes(a, b): the block of nodes
// [a, b], throwing adaquant::error when the program does not take them. `first` is the first node
// a block may start at.
template <class LayersIn, class BlockOfNodes>
[[nodiscard]] std::vector<block_desc> automatic_blocks(std::size_t first,
                                                       const std::vector<std::size_t>& cuts,
                                                       LayersIn&& layers_in,
                                                       BlockOfNodes&& block_of_nodes) {
  std::vector<block_desc> out;
  for (std::size_t j = 0, a = first; j < cuts.size(); a = cuts[j++]) {
    if (layers_in(a, cuts[j]) < 2) continue;
    try {
      block_desc d = block_of_nodes(a, cuts[j] - 1);
      while (j + 1 < cuts.size() && layers_in(cuts[j], cuts[j + 1]) == 0) try {
          d = block_of_nodes(a, cuts[j + 1] - 1);
          ++j;
        } catch (const error&) {
          break;
        }
      out.push_back(std::move(d));
    } catch (const error&) {  // an op the program does not take: per layer
    }
  }
  return out;
}

// The nodes first .. last (block_of's first and last layer) and, after last, as many of the nodes
// before `end` (the next layer's node, or the node count) as make a block: a residual block's add
// and ReLU, not the pooling after the network's last block. When none does, the error of the
// longest run, block_of_nodes(first, end - 1).
template <class BlockOfNodes>
[[nodiscard]] block_desc block_through(std::size_t first, std::size_t last, std::size_t end,
                                       BlockOfNodes&& block_of_nodes) {
  for (std::size_t b = end - 1;; --b) try {
      return block_of_nodes(first, b);
    } catch (const error&) {
      if (b == last) break;
    }
  return block_of_nodes(first, end - 1);  // throws
}

}  // namespace adaquant
