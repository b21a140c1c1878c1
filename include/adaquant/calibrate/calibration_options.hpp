#pragma once
// How adaquant_calibrate (calibrate/driver.hpp) goes over a network: the order of the layers,
// the reconstruction unit (a layer, or a block of layers), which blocks, and per-layer settings;
// with the rules that decide the unit and the blocks when they are left unset.

#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/calibrate/block_network.hpp>
#include <adaquant/calibrate/network.hpp>

#include <algorithm>
#include <cstddef>
#include <functional>
#include <optional>
#include <span>

namespace adaquant {

enum class calibration_order { parallel, sequential };
// What one optimisation reconstructs: a layer (AdaQuant), or, in sequential order on a
// BlockNetwork (calibrate/block_network.hpp), each of the network's blocks as a whole
// (calibrate/block.hpp; BRECQ) and the layers outside blocks one at a time.
enum class reconstruction_unit { layer, block };

// Whether a block is reconstructed whole when calibration_options::reconstruction is not set:
// when one of its layers' weights is quantized to fewer than 4 bits (`weight_bits`: its layers'),
// or when the network's input is quantized to 4 bits or fewer (`network_input_bits`: the input
// bits of the network's first quantizable layer, 0 where it is not quantized); else its layers
// one at a time. Measured with the advanced pipeline on the Fashion-MNIST reference models
// (docs/block.md, docs/lowbit.md): whole blocks beat layers in every pair measured below 4 weight
// bits (W3A3, W2A4, W2A2; by 0.03-1.78 points of top-1); with every layer at W4A4 (the image at 4
// bits) they gained ResNet-style 0.15 on the mean of seeds 0-4 (on each seed) and moved
// MobileNetV2-style by -0.04 (noise), while at W4A4 with the first/last layer at 8 bits they were
// no better (-0.06 / +0.04 on the means of seeds 0-2).
[[nodiscard]] inline bool default_block_reconstruction(std::span<const int> weight_bits,
                                                       int network_input_bits = 0) noexcept {
  return (network_input_bits > 0 && network_input_bits <= 4) ||
         std::any_of(weight_bits.begin(), weight_bits.end(), [](int b) { return b < 4; });
}

// The blocks selected when calibration_options::blocks is left automatic and the reconstruction
// unit is left unset: the network's automatic blocks, or, when a layer's input is quantized to
// fewer than 3 bits (`input_bits`: each layer's, 0 where its input is not quantized), runs of up
// to `layer_count` layers: the longest runs the network's blocks allow, on the reference models the
// whole network before its pooling as one block. Measured with the advanced pipeline on the
// Fashion-MNIST reference models at W2A2 (docs/lowbit.md): ResNet-style 0.48 points of top-1
// better than its residual blocks on the mean of seeds 0-4 (better on each),
// MobileNetV2-style 0.16 worse on the mean of seeds 0-4 (better on 3 of 5; its seeds spread by
// 1.8 points); at W3A3 and W2A4 the whole network was no better than the residual blocks.
// adaquant_calibrate falls back to the automatic blocks when the runs' largest cache (a block
// caches every layer's inputs and outputs) does not fit the memory limit (calibrate/memory.hpp).
[[nodiscard]] inline block_selection default_block_selection(std::span<const int> input_bits,
                                                             std::size_t layer_count) {
  block_selection s;
  if (std::any_of(input_bits.begin(), input_bits.end(), [](int b) { return b > 0 && b < 3; }))
    s.max_layers = std::max<std::size_t>(2, layer_count);
  return s;
}

struct calibration_options {
  adaquant_options layer{};  // for every layer (its seed is mixed with the layer id)
  calibration_order order = calibration_order::sequential;
  // block: sequential order only, on a network offering blocks (else an error); checkpoint
  // records then go under "<unit>-block<blocks.key()>" (a block's layers are optimised together).
  // std::nullopt, by bits: in sequential order on a BlockNetwork, each selected block for which
  // default_block_reconstruction holds is reconstructed whole and every other layer alone (the
  // records go under "<unit>-block<blocks.key()>" when a block is); per layer otherwise.
  std::optional<reconstruction_unit> reconstruction{};
  // Which blocks, when blocks are reconstructed (calibrate/block_network.hpp); anything but the
  // automatic blocks with reconstruction_unit::layer, or when no block can be (parallel order, a
  // network without blocks), is an error. Left automatic with `reconstruction` unset, the
  // selection is by bits too (default_block_selection: runs of every layer when an input is below
  // 3 bits); with reconstruction_unit::block it is the automatic blocks.
  block_selection blocks{};
  // Optional per-layer override of the optimisation; return false to skip (keep full precision).
  std::function<bool(const layer_desc&, adaquant_options&)> configure;
  // Optional per-layer initial parameters (otherwise the quantizers' range methods). Called on
  // the worker threads in parallel order: it must be safe to call concurrently.
  std::function<std::optional<initial_quant_params>(const layer_desc&, const layer_objective&)>
      initial_params;
};

}  // namespace adaquant
