#pragma once
// What the QDQ exporter needs to know about one quantized layer (see onnx/export.hpp for the
// graph it writes).
//
// Weights are in adaquant's layout, output channel first (objectives/geometry.hpp): for Conv the
// ONNX layout [M, C/group, k...]; for Gemm and MatMul [N, K], i.e. the ONNX initializer for
// Gemm transB = 1 and its transpose for Gemm transB = 0 and MatMul (the exporter transposes
// back and quantizes along axis 1 there). weight and bias are the layer's effective parameters
// (y = x W^T + b, a Gemm's alpha and beta folded in; the exporter writes alpha = beta = 1).

#include <adaquant/calibrate/network.hpp>
#include <adaquant/quant/quant_params.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace adaquant::onnx {

// The per-tensor quantizer on a layer's input: grid [params.qmin, params.qmax] of `bits` bits.
struct input_quantizer {
  quant_params params;
  int bits = 8;
};

struct exported_layer {
  std::string node;                // the Conv, Gemm or MatMul node's name
  std::string weight_initializer;  // the node's weight input (Conv W, Gemm B, MatMul B)
  // Conv/Gemm: the node's bias input (empty: the node has none; one is added when `bias` is
  // given). MatMul: the constant input of the single Add that consumes the MatMul's output
  // (empty: an Add is inserted when `bias` is given).
  std::string bias_initializer;
  // A BatchNormalization folded into this layer (empty: none). The exporter removes it and the
  // layer writes the batch norm's output tensor; `bias` is then required.
  std::string folded_batch_norm;

  int weight_bits = 8;  // 2..8: 2-4 stored as int4/uint4 (packed), 5-8 as int8/uint8
  // Exactly one of these two, in adaquant's layout: the dequantized weights, exactly on the grid
  // of weight_params (the exporter recovers the integers and checks them bit for bit), or the
  // integers themselves, in [weight_params.qmin, weight_params.qmax].
  std::vector<float> weight;
  std::vector<std::int32_t> weight_integers;
  channel_params weight_params;  // per output channel: axis 0 of adaquant's layout
  // Block-wise weights instead (granularity::per_block(1, B), quant/quant_params.hpp's
  // block_params, axis 1 of adaquant's layout, i.e. the input dimension): written as a blocked
  // DequantizeLinear (opset 21, `block_size` = B) along the initializer's input axis. The grid is
  // the blocks' [qmin, qmax]; weight_params must then hold no channels. Gemm, MatMul and convs
  // whose kernel is 1 (x 1) only.
  std::optional<block_params> weight_blocks;

  std::vector<float> bias;  // one per output channel; empty: the node's bias stays as it is
  std::optional<input_quantizer> input;  // empty: the layer's input stays float
};

// Input quantizers on both operands of a MatMul of two activations (onnx/products.hpp): written
// as QuantizeLinear/DequantizeLinear [+ Clip] on each input, in 8-bit types (UINT8/INT8; a Clip to
// the grid's ends for 2-4-bit grids).
struct exported_product {
  std::string node;  // the MatMul node's name
  input_quantizer a, b;
};

// The smallest bit width whose range holds the grid [qmin, qmax] (3 for [0, 7] and for [-4, 3]).
[[nodiscard]] constexpr int grid_bits(std::int32_t qmin, std::int32_t qmax) noexcept {
  const std::int64_t levels = std::int64_t{qmax} - qmin + 1;
  int bits = 1;
  while ((std::int64_t{1} << bits) < levels) ++bits;
  return bits;
}

// An exported_layer from a pipeline's result and the names of the layer in the ONNX file (e.g.
// from the importer's layer_origins()); bit widths are those of the grids. Block-wise weights
// (q.weight_blocks) are carried over as weight_blocks.
[[nodiscard]] inline exported_layer make_exported_layer(const quantized_layer& q, std::string node,
                                                        std::string weight_initializer,
                                                        std::string bias_initializer = {},
                                                        std::string folded_batch_norm = {}) {
  exported_layer l;
  l.node = std::move(node);
  l.weight_initializer = std::move(weight_initializer);
  l.bias_initializer = std::move(bias_initializer);
  l.folded_batch_norm = std::move(folded_batch_norm);
  l.weight = q.weight;
  if (q.weight_blocks) {
    l.weight_bits = grid_bits(q.weight_blocks->qmin, q.weight_blocks->qmax);
    l.weight_blocks = q.weight_blocks;
  } else {
    l.weight_bits = grid_bits(q.weight_params.qmin, q.weight_params.qmax);
    l.weight_params = q.weight_params;
  }
  l.bias = q.bias;
  if (q.quantize_input)
    l.input = input_quantizer{q.act_params, grid_bits(q.act_params.qmin, q.act_params.qmax)};
  return l;
}

struct export_options {
  // false: 8-bit storage for every grid, so the model stays at opset 13 for runtimes without
  // INT4/UINT4 (a 2-4-bit grid then costs a byte per weight and needs a Clip on activations).
  bool allow_4bit_types = true;
  // false: signed weight grids stored in 8 bits (5-8-bit weights) are written as UINT8, integers
  // and zero points shifted by 128, which dequantize to the same values. ONNX Runtime fuses
  // DequantizeLinear + Conv into integer convolutions; with INT8 weights (U8S8) its x86 kernels
  // without VNNI add pairs of products in saturating 16-bit arithmetic, and the exported model
  // then disagrees with the simulation (measured: naive W8A8 ResNet-style 93.16% simulated, 91.93%
  // in ONNX Runtime 1.30 with all optimizations; 93.17% with UINT8 weights). true: INT8, which
  // ONNX Runtime runs faster on such machines and exactly with VNNI or on ARM.
  bool signed_8bit_weights = false;
  // false: 2-4-bit activation grids are written as UINT8/INT8 QuantizeLinear/DequantizeLinear
  // with a Clip to the grid's ends (the same values; the encodings JSON still says 4 bits). true:
  // UINT4/INT4 (opset 21) for layers with 4-bit weights. ONNX Runtime 1.30 runs UINT4/INT4
  // activations only with graph optimizations off: its ClipQuantFusion throws on a Clip (ReLU6)
  // before a UINT4 QuantizeLinear ("Unexpected data type for QuantizeLinear"), and its QDQ
  // selectors fuse a UINT4 input with 8-bit weights into a QLinearConv it then rejects.
  bool four_bit_activation_types = false;
};

}  // namespace adaquant::onnx
