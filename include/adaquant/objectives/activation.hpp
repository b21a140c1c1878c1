#pragma once
// The output activation that follows a layer (output_activation, objectives/geometry.hpp) as the
// policy type of kernels/reference_loss.hpp (act_none, act_relu, act_relu6), so loops over outputs
// compile without a switch per element: with_activation(a, f) calls f with a's policy.
// Internal: namespace adaquant::detail.

#include <adaquant/kernels/reference_loss.hpp>
#include <adaquant/objectives/geometry.hpp>

namespace adaquant::detail {

template <class F>
decltype(auto) with_activation(output_activation a, F&& f) {
  switch (a) {
    case output_activation::relu:
      return f(act_relu{});
    case output_activation::relu6:
      return f(act_relu6{});
    case output_activation::none:
      break;
  }
  return f(act_none{});
}

}  // namespace adaquant::detail
