#pragma once
// resumable_pass: a forward pass over one batch of calibration samples that keeps the values live
// before a node, so the next capture of a later layer resumes there (onnx/network.hpp, "Captures"
// and "Memory").

#include <adaquant/onnx/graph.hpp>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

namespace adaquant::onnx {

// One batch's forward pass that remembers where it stood (see the runtime's resumable_forward).
// It holds no copy of its inputs: run() asks for them (make_inputs()) only when it starts over.
class resumable_pass {
 public:
  void invalidate_from(std::size_t node) noexcept { dirty_ = std::min(dirty_, node); }
  [[nodiscard]] std::size_t dirty() const noexcept { return dirty_; }
  [[nodiscard]] const run_state& kept() const noexcept { return state_; }
  [[nodiscard]] bool has_state() const noexcept { return has_state_; }
  // The node run(g, last, ...) starts at: the kept state's, or 0 when it starts over.
  [[nodiscard]] std::size_t start_point(std::size_t last) const noexcept {
    return has_state_ && state_.next <= std::min(dirty_, last) ? state_.next : 0;
  }
  // Forgets the kept state (its memory); the next run starts over.
  void release() noexcept {
    state_ = {};
    has_state_ = false;
  }

  // Values `want` after running through node `last`; keeps the state before node keep_before
  // (clamped to [resume point, last]).
  template <class MakeInputs>
  std::vector<tensor> run(const graph& g, std::size_t last, const std::vector<int>& want,
                          std::size_t keep_before, MakeInputs&& make_inputs) {
    const bool resume = has_state_ && state_.next <= std::min(dirty_, last);
    run_state from = resume ? std::move(state_) : g.start(make_inputs());
    keep_before = std::clamp(keep_before, from.next, last);
    has_state_ = false;
    std::vector<tensor> out = g.run_from(std::move(from), last, want, keep_before, &state_);
    has_state_ = true;
    dirty_ = graph::npos;
    return out;
  }

 private:
  run_state state_;
  bool has_state_ = false;
  std::size_t dirty_ = graph::npos;
};

}  // namespace adaquant::onnx
