#pragma once
// Per-layer and per-network reports of AdaQuant calibration.

#include <cstddef>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

namespace adaquant {

struct layer_report {
  std::size_t layer_id = 0;
  std::size_t train_samples = 0;
  std::size_t heldout_samples = 0;  // 0: no held-out split
  double mse_before = 0.0;          // round-to-nearest with the initial parameters, train split
  double mse_after = 0.0;           // returned parameters, train split
  double heldout_before = 0.0;      // same on the held-out split (0 without one)
  double heldout_after = 0.0;
  std::size_t iterations = 0;      // optimisation steps run
  std::size_t best_iteration = 0;  // step whose parameters were returned (0: the initial ones)
  bool stopped_early = false;      // held-out MSE stopped improving for `patience` evaluations
  double seconds = 0.0;            // wall time of the optimisation

  // mse_before / mse_after (inf when mse_after is 0).
  [[nodiscard]] double improvement() const noexcept {
    return mse_after > 0.0 ? mse_before / mse_after
                           : (mse_before > 0.0 ? std::numeric_limits<double>::infinity() : 1.0);
  }
};

struct calibration_report {
  std::vector<layer_report> layers;
  double seconds = 0.0;
};

// One line per layer, for logs and examples.
[[nodiscard]] inline std::string to_string(const layer_report& r) {
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "layer %zu: mse %.4g -> %.4g (x%.2f), held-out %.4g -> %.4g, %zu it (best %zu%s), "
                "%.3f s",
                r.layer_id, r.mse_before, r.mse_after, r.improvement(), r.heldout_before,
                r.heldout_after, r.iterations, r.best_iteration,
                r.stopped_early ? ", stopped early" : "", r.seconds);
  return buf;
}

}  // namespace adaquant
