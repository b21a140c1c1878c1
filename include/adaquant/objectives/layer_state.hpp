#pragma once
// What AdaQuant's layer objective (objectives/layer_objective.hpp) quantizes and optimises: the
// layer's quantization (layer_quant_config), the variables (layer_state, also the shape of their
// gradients) and which of them move (trainable_groups).
//
// Weight groups. The weight W, viewed as [out, k] (k = in for linear, in_c / groups * kh * kw
// for conv2d), has one scale s_w and zero point z_w per group: per output channel (k weights),
// or, with weight_block = B, per block of B consecutive weights of each output channel (the last
// one partial when k % B != 0), i.e. granularity::per_block(1, B) of W (quant/scheme.hpp) with
// groups [out, ceil(k / B)] in row-major order. Blocks run along W's innermost axis and are
// blocks of the layer's inputs only for linear layers and 1x1 convolutions; other convolutions
// are rejected (check_weight_blocks).

#include <adaquant/core/error.hpp>
#include <adaquant/core/numeric.hpp>
#include <adaquant/objectives/geometry.hpp>
#include <adaquant/quant/rounding.hpp>
#include <adaquant/quant/scheme.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

// How a layer is quantized.
struct layer_quant_config {
  quant_scheme weight_scheme{4, true, true, false};  // symmetric signed
  quant_scheme act_scheme{4, false, false, false};   // per tensor, affine unsigned
  bool quantize_activations = true;                  // false: Q_a is the identity (weight-only)
  rounding_mode rounding = rounding_mode::pytorch;
  output_activation activation = output_activation::none;  // f in the objective
  // 0: weights per output channel; B >= 1: per block of B consecutive inputs of each output
  // channel (see the file comment).
  std::size_t weight_block = 0;
};

// The optimised variables (and, with the same shapes, their gradients).
struct layer_state {
  std::vector<float> weight_offset;      // V, same size and layout as W
  std::vector<float> bias;               // b', one per output channel
  std::vector<float> weight_scale;       // s_w, one per weight group (file comment)
  std::vector<float> weight_zero_point;  // z_w, one per group, continuous; the forward rounds it
  float act_scale = 1.0f;                // s_a
  float act_zero_point = 0.0f;           // z_a, continuous; the forward uses round(z_a)
};

// Which groups of variables move. A frozen group keeps its value bit for bit.
struct trainable_groups {
  bool weight_offset = true;
  bool bias = true;
  bool weight_quant = true;  // s_w (and z_w when the weight scheme is asymmetric)
  bool act_quant = true;     // s_a (and z_a when the activation scheme is asymmetric)
};

// The weight groups of a layer: `per_channel` of them along each output channel's k weights,
// each `size` long (the last one shorter when k % size != 0).
struct weight_grouping {
  std::size_t channels = 0;     // output channels
  std::size_t k = 0;            // weights per output channel
  std::size_t size = 0;         // weights per group: k, or the block size
  std::size_t per_channel = 1;  // groups per output channel: ceil(k / size)

  [[nodiscard]] static constexpr weight_grouping of(const layer_geometry& g,
                                                    std::size_t weight_block) noexcept {
    const std::size_t k = g.weights_per_channel();
    const std::size_t size = weight_block ? weight_block : k;
    return {g.out_channels(), k, size, size ? (k + size - 1) / size : 0};
  }
  [[nodiscard]] constexpr std::size_t groups() const noexcept { return channels * per_channel; }
  // The group of weight (c, j), j < k.
  [[nodiscard]] constexpr std::size_t group(std::size_t c, std::size_t j) const noexcept {
    return c * per_channel + j / size;
  }
  // Group g's first weight (an index into W) and its length.
  [[nodiscard]] constexpr std::size_t first(std::size_t g) const noexcept {
    return g / per_channel * k + g % per_channel * size;
  }
  [[nodiscard]] constexpr std::size_t length(std::size_t g) const noexcept {
    const std::size_t j = g % per_channel * size;
    return k - j < size ? k - j : size;
  }
};

// Throws errc::invalid_argument (naming `where`) unless a layer of geometry g can take weights
// in blocks of `weight_block` (0: per channel, always fine): blocks along W's innermost axis are
// blocks of inputs only for linear layers and 1x1 convolutions.
inline void check_weight_blocks(const layer_geometry& g, std::size_t weight_block,
                                const std::string& where) {
  if (weight_block == 0 || g.kind == layer_kind::linear) return;
  if (g.conv.kernel_h == 1 && g.conv.kernel_w == 1) return;
  detail::fail(errc::invalid_argument, where,
               "block-wise weights need blocks along the weight's innermost axis: a linear layer "
               "or a 1x1 convolution, got a " +
                   std::to_string(g.conv.kernel_h) + "x" + std::to_string(g.conv.kernel_w) +
                   " convolution (its input channels are strided by the kernel taps); quantize "
                   "it per channel");
}

namespace detail {
inline std::int32_t round_zero_point(float z, std::int32_t qmin, std::int32_t qmax) noexcept {
  const float r = round_half_even(z);
  if (!(r >= static_cast<float>(qmin))) return qmin;  // also NaN
  if (r > static_cast<float>(qmax)) return qmax;
  return static_cast<std::int32_t>(r);
}
// offset: the index of v[0] in the array `where` names (v may be one run of it).
inline void check_all_finite(std::span<const float> v, const std::string& where,
                             std::size_t offset = 0) {
  for (std::size_t i = 0; i < v.size(); ++i)
    if (!is_finite(v[i]))
      fail(errc::non_finite, where,
           "element " + std::to_string(offset + i) + " is " +
               (v[i] != v[i] ? std::string("NaN") : std::string("infinite")));
}
}  // namespace detail

}  // namespace adaquant
