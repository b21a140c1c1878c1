#pragma once
// Layer geometry for the objectives and the network interface, in PyTorch's layouts:
//   linear:  x [batch, in], W [out, in], y [batch, out]                     y = x W^T + b
//            with rows > 1 (tokens of a sequence): x [batch, rows, in], y [batch, rows, out],
//            the same map on every row; the objectives see it as a linear layer over
//            batch * rows rows (layer_geometry::per_row()).
//   conv2d:  x [batch, in_c, in_h, in_w], W [out_c, in_c / groups, kh, kw],
//            y [batch, out_c, out_h, out_w]  with zero padding, stride, dilation and groups
//            (groups == in_c == out_c is depthwise).
//   out_h = (in_h + 2 pad_h - dil_h (kh - 1) - 1) / stride_h + 1   (likewise out_w)

#include <adaquant/core/error.hpp>

#include <cstddef>
#include <string>

namespace adaquant {

enum class layer_kind { linear, conv2d };

// The activation that follows the layer. The objective compares outputs after it, as the paper's
// code does for layers followed by a ReLU.
enum class output_activation { none, relu, relu6 };

struct linear_geometry {
  std::size_t in_features = 0;
  std::size_t out_features = 0;
  std::size_t rows = 1;  // rows (tokens) per sample, each mapped alike
};

struct conv2d_geometry {
  std::size_t in_channels = 0, out_channels = 0;
  std::size_t in_h = 0, in_w = 0;
  std::size_t kernel_h = 1, kernel_w = 1;
  std::size_t stride_h = 1, stride_w = 1;
  std::size_t pad_h = 0, pad_w = 0;
  std::size_t dilation_h = 1, dilation_w = 1;
  std::size_t groups = 1;

  [[nodiscard]] constexpr std::size_t out_h() const noexcept {
    return (in_h + 2 * pad_h - dilation_h * (kernel_h - 1) - 1) / stride_h + 1;
  }
  [[nodiscard]] constexpr std::size_t out_w() const noexcept {
    return (in_w + 2 * pad_w - dilation_w * (kernel_w - 1) - 1) / stride_w + 1;
  }
};

// Either geometry, with the sizes every algorithm needs.
struct layer_geometry {
  layer_kind kind = layer_kind::linear;
  linear_geometry linear{};
  conv2d_geometry conv{};

  [[nodiscard]] static constexpr layer_geometry of(const linear_geometry& g) noexcept {
    return {layer_kind::linear, g, {}};
  }
  [[nodiscard]] static constexpr layer_geometry of(const conv2d_geometry& g) noexcept {
    return {layer_kind::conv2d, {}, g};
  }
  [[nodiscard]] constexpr std::size_t out_channels() const noexcept {
    return kind == layer_kind::linear ? linear.out_features : conv.out_channels;
  }
  // Weights per output channel: in (linear) or in_c / groups * kh * kw (conv).
  [[nodiscard]] constexpr std::size_t weights_per_channel() const noexcept {
    return kind == layer_kind::linear
               ? linear.in_features
               : conv.in_channels / conv.groups * conv.kernel_h * conv.kernel_w;
  }
  [[nodiscard]] constexpr std::size_t weight_size() const noexcept {
    return out_channels() * weights_per_channel();
  }
  [[nodiscard]] constexpr std::size_t input_per_sample() const noexcept {
    return kind == layer_kind::linear ? linear.rows * linear.in_features
                                      : conv.in_channels * conv.in_h * conv.in_w;
  }
  // Output positions per channel and sample of the layout [batch, C, positions] (1 for linear;
  // a linear layer with rows > 1 has the layout [batch, rows, out] instead: see per_row()).
  [[nodiscard]] constexpr std::size_t out_positions() const noexcept {
    return kind == layer_kind::linear ? 1 : conv.out_h() * conv.out_w();
  }
  [[nodiscard]] constexpr std::size_t output_per_sample() const noexcept {
    return kind == layer_kind::linear ? linear.rows * linear.out_features
                                      : out_channels() * out_positions();
  }
  // The geometry every algorithm works on: a linear layer's rows become samples (rows = 1);
  // a convolution is unchanged.
  [[nodiscard]] constexpr layer_geometry per_row() const noexcept {
    layer_geometry g = *this;
    g.linear.rows = 1;
    return g;
  }

  // Throws errc::invalid_argument (naming `where`) for zero sizes, groups that do not divide the
  // channels, or a kernel larger than the padded input.
  void validate(const std::string& where) const {
    const auto bad = [&](const std::string& why) {
      detail::fail(errc::invalid_argument, where, why);
    };
    if (kind == layer_kind::linear) {
      if (!(linear.in_features > 0 && linear.out_features > 0 && linear.rows > 0))
        bad("in_features, out_features and rows must be > 0, got " +
            std::to_string(linear.in_features) + ", " + std::to_string(linear.out_features) +
            " and " + std::to_string(linear.rows));
      return;
    }
    const conv2d_geometry& c = conv;
    if (!(c.in_channels > 0 && c.out_channels > 0 && c.in_h > 0 && c.in_w > 0))
      bad("channels and input size must be > 0");
    if (!(c.kernel_h > 0 && c.kernel_w > 0 && c.stride_h > 0 && c.stride_w > 0 &&
          c.dilation_h > 0 && c.dilation_w > 0 && c.groups > 0))
      bad("kernel, stride, dilation and groups must be > 0");
    if (!(c.in_channels % c.groups == 0 && c.out_channels % c.groups == 0))
      bad("groups " + std::to_string(c.groups) + " must divide in_channels " +
          std::to_string(c.in_channels) + " and out_channels " + std::to_string(c.out_channels));
    if (!(c.in_h + 2 * c.pad_h >= c.dilation_h * (c.kernel_h - 1) + 1 &&
          c.in_w + 2 * c.pad_w >= c.dilation_w * (c.kernel_w - 1) + 1))
      bad("the dilated kernel is larger than the padded input");
  }
};

}  // namespace adaquant
