#pragma once
// Configuration and reports of the light and advanced pipelines (pipeline/light.hpp,
// pipeline/advanced.hpp).

#include <adaquant/calibrate/driver.hpp>
#include <adaquant/range/estimator.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace adaquant {

// Progress of a long step: `done` of `total` units (layers, options) of step `step`.
struct pipeline_progress {
  std::string step;
  std::size_t done = 0, total = 0;
};

enum class bn_reference { running_statistics, full_precision };

struct pipeline_config {
  int weight_bits = 4;  // per output channel, symmetric signed
  int act_bits = 4;     // per tensor, affine unsigned (covers signed inputs through the zero point)
  // The paper's convention: the first and the last quantizable layer stay at 8 bits.
  bool first_last_8bit = true;
  rounding_mode rounding = rounding_mode::pytorch;
  range_method weight_range = range_method::mse;
  range_method act_range = range_method::mse;
  estimate_options range_options{};

  // Bit allocation (when set): choose each layer's weight bits among weight_bit_options so that
  // weight storage is at most max_size_ratio of FP32 and the summed loss increase is smallest.
  std::optional<double> max_size_ratio;
  std::vector<int> weight_bit_options{2, 3, 4, 8};
  // Loss of the network in its current quantized state on calibration data (needed for bit
  // allocation; lower is better). The pipeline calls it once per (layer, option) and once for
  // the base configuration.
  std::function<double()> calibration_loss;

  bool bn_tuning = true;
  // What BN tuning matches the quantized layer's output statistics to: the trained running
  // statistics (the paper's Eq. 6-8) or the full-precision layer's statistics on the calibration
  // set (bn/retune.hpp, match_output_moments).
  bn_reference bn_target = bn_reference::running_statistics;
  bool bias_correction = true;  // light: empirical bias correction; advanced: per-layer bias tuning
  bool adaquant = true;         // advanced only
  calibration_options calibration{};  // advanced: AdaQuant driver settings (bits are set here)

  std::size_t capture_batch = 100;  // samples per capture call
  // Threads (0: the hardware's) for work that is independent per layer: range estimation
  // (`threads` layers at a time) and AdaQuant in parallel order (at least `threads` layers at a
  // time, or calibration.threads if larger). Results never depend on the thread count.
  std::size_t threads = 1;
  std::function<void(const pipeline_progress&)> progress;
};

struct step_report {
  std::string name;
  double seconds = 0.0;
  std::string summary;
};

struct pipeline_report {
  std::vector<step_report> steps;
  std::vector<int> weight_bits;  // per quantizable layer, in layer order
  std::vector<int> act_bits;
  double weight_bytes = 0.0, fp32_weight_bytes = 0.0;
  [[nodiscard]] double size_ratio() const noexcept {
    return fp32_weight_bytes > 0 ? weight_bytes / fp32_weight_bytes : 0.0;
  }
};

}  // namespace adaquant
