#pragma once
// How AdaQuant's calibration drivers (calibrate/driver.hpp) see a user's network: four members.
//
//   std::size_t calibration_size() const;
//       number of calibration samples the network holds (indices 0 .. size-1).
//   std::vector<layer_desc> quantizable_layers() const;
//       the layers to calibrate, in execution order (a layer's inputs depend only on earlier
//       ones). Weight/bias spans must stay valid while the driver runs.
//   layer_io capture(std::size_t layer_id, std::size_t first, std::size_t count, capture_mode m);
//       run calibration samples [first, first + count) up to layer `layer_id` and return what it
//       sees: inputs (count * input_per_sample floats, before the layer's own input quantizer)
//       and its pre-activation outputs (count * output_per_sample floats), in the layouts of
//       objectives/geometry.hpp. full_precision: every layer runs with its original parameters.
//       quantized: every layer already given to set_quantized runs quantized (its quantized
//       weights and bias, its input fake-quantized with act_params when quantize_input).
//       A linear layer with geometry.linear.rows = T > 1 (a token-wise projection of a
//       transformer: x [count, T, in] -> y [count, T, out]) may mark padding tokens in row_mask:
//       count * T bytes, sample-major, nonzero = a real token. Padding rows then count nowhere:
//       the driver keeps only the valid rows of inputs and outputs, so AdaQuant's loss, range
//       estimation, bias correction and bias tuning see a linear layer over the valid tokens
//       (geometry.per_row()). Empty row_mask: every row is valid. Other layers leave it empty.
//   void set_quantized(const quantized_layer& q);
//       remember q for layer q.id (used by later captures in quantized mode, and by the user).
//
// Optionally, `layer_io capture(id, first, count, mode, capture_parts want)`: the same, filling
// only the parts `want` names (the other vector may stay empty); the drivers call it when the
// network has it, so a step that needs only outputs does not hold a copy of the inputs.
//
// Optionally, `std::optional<std::vector<std::span<const float>>> held_inputs(std::size_t id,
// std::size_t first, std::size_t count)`: right after capture(id, first, count,
// capture_mode::quantized, ...), the inputs that capture returns, as views of memory the network
// holds anyway (e.g. the state its quantized passes resume from): runs of whole samples in sample
// order. std::nullopt when it does not hold them in that form (a layer with a row_mask must
// return it); the driver then asks capture for a copy. The views must stay valid until the
// network's next set_quantized call or quantized capture of any of those samples: the sequential
// driver reads them while it optimises that one layer, and so does not hold the layer's inputs
// twice (calibrate/driver.hpp).
//
// Optionally, `double calibration_loss()` (LossNetwork below): the loss of the network in its
// current quantized state (every layer given to set_quantized quantized, the others in full
// precision) on calibration data; lower is better. Bit allocation minimises it
// (pipeline/bit_allocation.hpp), and block reconstruction's trial run (adaquant_options::
// trial_iterations) keeps the run that gives the lower value.
//
// Any framework can implement this with per-layer hooks: record a layer's input/output, replace
// its weights, transform its input. See tests/adaquant/test_driver.cpp for a 40-line example.

#include <adaquant/objectives/geometry.hpp>
#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/rounding.hpp>

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace adaquant {

enum class capture_mode { full_precision, quantized };

struct layer_desc {
  std::size_t id = 0;
  layer_geometry geometry{};
  output_activation activation = output_activation::none;  // the activation that follows it
  std::span<const float> weight;                           // W, layout of geometry.hpp
  std::span<const float> bias;                             // empty: no bias
};

struct layer_io {
  std::vector<float> inputs;
  std::vector<float> outputs;
  std::vector<std::uint8_t> row_mask = {};  // empty, or one per row of a linear layer: 0 = padding
};

struct quantized_layer {
  std::size_t id = 0;
  std::vector<float> weight;  // Q_w(W + V), dequantized (exactly on the grid of its parameters)
  std::vector<float> bias;    // b', one per output channel
  // The weight's parameters: per output channel (axis 0 of W [out, k]), or, for block-wise
  // weights (granularity::per_block(1, B)), weight_blocks, set, with weight_params then holding
  // the grid only (qmin, qmax; no channels).
  channel_params weight_params;
  std::optional<block_params> weight_blocks;
  quant_params act_params;
  bool quantize_input = true;  // fake-quantize the layer's input with act_params (false:
                               // weight-only, the input stays float)
  // How the input's fake-quant rounds: the activation quantizer_spec's rounding, which the
  // calibration objective used (a network must simulate the same).
  rounding_mode act_rounding = rounding_mode::pytorch;
};

// Which parts of a capture the caller uses (the optional capture overload above).
struct capture_parts {
  bool inputs = true;
  bool outputs = true;
};

template <class N>
concept QuantizableNetwork = requires(N& net, const N& cnet, std::size_t id, capture_mode mode,
                                      const quantized_layer& q) {
  { cnet.calibration_size() } -> std::convertible_to<std::size_t>;
  { cnet.quantizable_layers() } -> std::convertible_to<std::vector<layer_desc>>;
  { net.capture(id, id, id, mode) } -> std::convertible_to<layer_io>;
  net.set_quantized(q);
};

template <class N>
concept LossNetwork = requires(N& n) {
  { n.calibration_loss() } -> std::convertible_to<double>;
};

}  // namespace adaquant
