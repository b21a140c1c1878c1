#pragma once
// What the light and advanced pipelines compute (pipeline/light.hpp, pipeline/advanced.hpp), each
// setting in one place:
//
//   quantization_spec     the numerics: the weight and the activation quantizer (scheme,
//                         granularity, rounding, range method: range/quantizer_spec.hpp; no
//                         activation quantizer: weight-only) and the paper's first/last-layer
//                         convention
//   light_config          + the light steps: bit allocation, BN tuning, bias correction
//   advanced_config       + the advanced steps: AdaQuant (its optimisation options live only
//                         here), bit allocation, BN tuning, bias tuning
//
// How the work runs (threads, capture batch, progress) is the execution_context
// (core/execution.hpp) passed beside the config; it never changes a result. The loss bit
// allocation minimises is the network's own (pipeline/network.hpp, LossNetwork).
//
//   adaquant::advanced_config cfg;
//   cfg.quant.weights = adaquant::quantizer_spec::weights(4);          // per channel, MSE ranges
//   cfg.quant.activations = adaquant::quantizer_spec::activations(4);  // per tensor, affine
//   cfg.adaquant->layer.iterations = 200;
//   cfg.bit_allocation = adaquant::bit_allocation_budget{0.13, {2, 4, 8}};
//   adaquant::execution_context ctx{.threads = 0};
//   adaquant::pipeline_report r = adaquant::advanced_pipeline(net, cfg, ctx);

#include <adaquant/calibrate/driver.hpp>
#include <adaquant/core/execution.hpp>
#include <adaquant/range/quantizer_spec.hpp>

#include <optional>
#include <string>
#include <vector>

namespace adaquant {

// The numerics of a quantized network.
struct quantization_spec {
  // Weights per output channel (granularity::per_channel(0) of W [out, k]) or per block of
  // inputs (granularity::per_block(1, B): linear layers and 1x1 convolutions only, others are
  // rejected before the network is changed), symmetric signed by default; activations (each
  // layer's input) per tensor, affine unsigned (which covers signed inputs through the zero
  // point). MSE-optimal ranges.
  quantizer_spec weights = quantizer_spec::weights(4);
  // std::nullopt: weight-only, every layer's input stays float (pipeline_report::act_bits 32).
  std::optional<quantizer_spec> activations = quantizer_spec::activations(4);
  // The paper's convention: the first and the last quantizable layer stay at 8 bits.
  bool first_last_8bit = true;
  // Further layers held at 8 bits (weights and activations), by position in
  // quantizable_layers(): to measure which layers a low bit-width hurts.
  std::vector<std::size_t> fixed_8bit_layers{};
};

// Bit allocation (pipeline/bit_allocation.hpp): choose each layer's weight bits among
// weight_bits so that weight storage is at most max_size_ratio of FP32 and the network's
// calibration loss is smallest. Round 1 measures each layer's loss increase with the others at
// 8 bits (the paper's table); each further round re-measures it with the others at the previous
// round's choice and solves again, until a choice repeats or `rounds` rounds ran. The result is
// the lowest measured loss among the rounds' choices and every uniform bit-width that fits.
struct bit_allocation_budget {
  double max_size_ratio = 0.13;
  std::vector<int> weight_bits{2, 3, 4, 8};
  int rounds = 4;  // >= 1; each round costs one loss table (README: Bit allocation)
};

// What BN tuning matches each quantized layer's output statistics to: the trained running
// statistics (the paper's Eq. 6-8) or the full-precision layer's statistics on the calibration
// set (bn/retune.hpp, match_output_moments).
enum class bn_reference { running_statistics, full_precision };
struct bn_tuning_options {
  bn_reference target = bn_reference::running_statistics;
};

// The light pipeline (no backpropagation). The naive baseline: min/max ranges, every step off,
// first_last_8bit false (light_config::naive).
struct light_config {
  quantization_spec quant{};
  std::optional<bit_allocation_budget> bit_allocation{};
  std::optional<bn_tuning_options> bn_tuning = bn_tuning_options{};
  bool bias_correction = true;  // b += E[y_fp - y_q] per output channel, layer by layer

  // Round-to-nearest with min/max ranges, every layer at the given bits, no further step.
  [[nodiscard]] static light_config naive(int weight_bits, int act_bits) {
    light_config c;
    c.quant.weights = quantizer_spec::weights(weight_bits);
    c.quant.activations = quantizer_spec::activations(act_bits);
    c.quant.weights.range = c.quant.activations->range = range_method::min_max;
    c.quant.first_last_8bit = false;
    c.bn_tuning.reset();
    c.bias_correction = false;
    return c;
  }
};

// The advanced pipeline.
struct advanced_config {
  quantization_spec quant{};
  // AdaQuant per layer (nullopt: round-to-nearest from the quantizers' ranges instead). Its
  // bit-width-dependent defaults (measured in docs/lowbit.md): QDrop (adaquant_options::qdrop
  // unset) with p = 0.5 on every layer with a quantized input when any layer's weights or
  // inputs are quantized to fewer than 4 bits (default_qdrop);
  // AdaRound (adaquant_options::rounding unset) on layers whose weights are quantized to fewer
  // than 4 bits (default_rounding); block reconstruction (calibration_options::reconstruction
  // unset) of the selected blocks holding such a layer, or of every selected block when the
  // network's input (the first layer's) is quantized to 4 bits or fewer, in sequential order on a
  // network with blocks (default_block_reconstruction); on blocks of more than 3 layers (the whole
  // network at inputs below 3 bits) the inner term (default_inner_weight) and, on a network with
  // calibration_loss(), a trial run of twice the iterations, kept when it lowers that loss
  // (default_trial_iterations).
  std::optional<calibration_options> adaquant = calibration_options{};
  std::optional<bit_allocation_budget> bit_allocation{};
  // With bit allocation and AdaQuant in sequential order: the chosen bits are calibrated again in
  // sequential order (each layer on the quantized inputs of the ones before it, as a uniform run
  // is; the candidate forms were calibrated on full-precision inputs), and the result is kept
  // only when it lowers the calibration loss bit allocation chose by; else the chosen forms stay.
  bool recalibrate_allocation = true;
  std::optional<bn_tuning_options> bn_tuning = bn_tuning_options{};
  bool bias_tuning = true;  // per layer, only the bias refitted to AdaQuant's objective
};

struct step_report {
  std::string name;
  double seconds = 0.0;
  std::string summary;
  double cpu_seconds = 0.0;  // the process's CPU time over the step (every thread; std::clock)
};

struct pipeline_report {
  std::vector<step_report> steps;
  std::vector<int> weight_bits;  // per quantizable layer, in layer order
  std::vector<int> act_bits;     // 32: the input stays float (weight-only)
  // Storage of the quantized layers' weights: the integers at each layer's bits (what
  // size_ratio() and bit allocation's budgets count), and their float32 scales and zero points at
  // the weight's bits, one per output channel or one per block (1 + bits/32 bits per B weights:
  // 1.1 bits per weight for 4-bit blocks of 32), beside the FP32 weights.
  double weight_bytes = 0.0, fp32_weight_bytes = 0.0, param_bytes = 0.0;
  [[nodiscard]] double size_ratio() const noexcept {
    return fp32_weight_bytes > 0 ? weight_bytes / fp32_weight_bytes : 0.0;
  }
  [[nodiscard]] double size_ratio_with_params() const noexcept {
    return fp32_weight_bytes > 0 ? (weight_bytes + param_bytes) / fp32_weight_bytes : 0.0;
  }
};

}  // namespace adaquant
