#pragma once
// What the pipelines need of a network: the calibration driver's interface
// (calibrate/network.hpp) plus, for batch-norm tuning, the batch norm that was folded into a layer:
//
//   const batch_norm_params* folded_batch_norm(std::size_t layer_id) const;   // nullptr: none
//
// The pipelines expect batch norms already folded into the preceding layers (the deployed form),
// and layer_desc::weight/bias to be the folded full-precision parameters.

#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/calibrate/network.hpp>

namespace adaquant {

template <class N>
concept PipelineNetwork = QuantizableNetwork<N> && requires(const N& n, std::size_t id) {
  { n.folded_batch_norm(id) } -> std::convertible_to<const batch_norm_params*>;
};

}  // namespace adaquant
