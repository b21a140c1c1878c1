#pragma once
// One batch's forward pass that remembers where it stood. Calibration reruns the same batch many
// times, each time after changing one layer that lies at or after the previous target (layer by
// layer quantization, bit-allocation sensitivity sweeps). A rerun resumes from the state saved
// before the earliest node changed since, instead of recomputing the whole prefix: capturing
// every layer of an L-layer network costs O(L) layer evaluations instead of O(L^2).
//
// The caller reports changes with invalidate_from(node); results are bit-identical to a full
// forward, because each node's computation does not depend on where the pass started.

#include <adaquant_runtime/network.hpp>

#include <algorithm>
#include <limits>

namespace adaquant::examples {

class resumable_forward {
 public:
  resumable_forward() = default;
  explicit resumable_forward(tensor x) : x_(std::move(x)) {}

  // Node `node` (and maybe later ones) of the network changed since the last run.
  void invalidate_from(std::size_t node) noexcept { dirty_ = std::min(dirty_, node); }

  // Value `last` of net for this batch. Keeps the state before node `keep_before` (clamped to
  // [resume point, last]) for the next run; kept() shows it (a layer's input, with keep_before =
  // the layer, is kept().live.at(its input value)).
  tensor run(const network& net, std::size_t last, std::size_t keep_before) {
    const bool resume = has_state_ && state_.next <= std::min(dirty_, last);
    forward_state from = resume ? std::move(state_) : net.start(x_);
    keep_before = std::clamp(keep_before, from.next, last);
    has_state_ = false;
    tensor out = net.forward_from(std::move(from), last, keep_before, &state_);
    has_state_ = true;
    dirty_ = std::numeric_limits<std::size_t>::max();
    return out;
  }

  // The earliest node changed since the last run (max when none): a rerun starts there.
  [[nodiscard]] std::size_t dirty() const noexcept { return dirty_; }
  // The state kept by the last run (next = its keep_before).
  [[nodiscard]] const forward_state& kept() const noexcept { return state_; }

 private:
  tensor x_;
  forward_state state_;
  bool has_state_ = false;
  std::size_t dirty_ = std::numeric_limits<std::size_t>::max();
};

}  // namespace adaquant::examples
