#pragma once
// What the pipelines need of a network: the calibration driver's interface
// (calibrate/network.hpp) plus, for batch-norm tuning, the batch norm that was folded into a layer:
//
//   const batch_norm_params* folded_batch_norm(std::size_t layer_id) const;   // nullptr: none
//
// and, only when bit allocation runs, the loss it minimises (LossNetwork, calibrate/network.hpp):
//
//   double calibration_loss();
//       the loss of the network in its current quantized state (every layer given to
//       set_quantized) on calibration data; lower is better. Called once per configuration
//       bit allocation measures: about one per (layer, bit option) per round, plus the uniform
//       bit-widths (pipeline/bit_allocation.hpp); and twice per block with a trial run
//       (adaquant_options::trial_iterations).
//
// The pipelines expect batch norms already folded into the preceding layers (the deployed form),
// and layer_desc::weight/bias to be the folded full-precision parameters.

#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/calibrate/network.hpp>

#include <concepts>

namespace adaquant {

template <class N>
concept PipelineNetwork = QuantizableNetwork<N> && requires(const N& n, std::size_t id) {
  { n.folded_batch_norm(id) } -> std::convertible_to<const batch_norm_params*>;
};

}  // namespace adaquant
