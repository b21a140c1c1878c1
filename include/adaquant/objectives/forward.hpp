#pragma once
// Full-precision forward passes of the layers AdaQuant optimises (geometry.hpp for the layouts),
// linear as one Eigen GEMM over the batch, conv2d as a direct convolution (objectives/
// direct_conv.hpp: every output summed in tap order, independent of the batch) or, for groups of
// fewer than 8 output channels (depthwise), im2col + one GEMM per sample and group. The same code
// computes the quantized forward inside the objectives, so a benchmark of one AdaQuant step
// against these is like for like.
//
// linear_forward(g, x, w, b, y, act) / conv2d_forward(g, x, w, b, y, act):
//   batch = x.size() / input_per_sample; b may be empty (no bias).
// Errors: invalid geometry (errc::invalid_argument), sizes that disagree with the geometry or
// each other (errc::shape_mismatch), empty input (errc::empty_input).

#include <adaquant/core/error.hpp>
#include <adaquant/kernels/loss.hpp>
#include <adaquant/objectives/activation.hpp>
#include <adaquant/objectives/direct_conv.hpp>
#include <adaquant/objectives/geometry.hpp>
#include <adaquant/objectives/im2col.hpp>

#include <Eigen/Core>

#include <algorithm>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace adaquant {
namespace detail {

using row_matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using row_map = Eigen::Map<row_matrix>;
using const_row_map = Eigen::Map<const row_matrix>;

inline float apply_activation(output_activation a, float v) noexcept {
  return with_activation(a, [v](auto act) { return act.value(v); });
}

// y[B, out] = x[B, in] w^T + b.
inline void linear_forward_raw(const linear_geometry& g, std::size_t batch, const float* x,
                               const float* w, const float* b, float* y) {
  const auto bi = static_cast<Eigen::Index>(batch);
  const auto in = static_cast<Eigen::Index>(g.in_features);
  const auto out = static_cast<Eigen::Index>(g.out_features);
  row_map Y(y, bi, out);
  Y.noalias() = const_row_map(x, bi, in) * const_row_map(w, out, in).transpose();
  if (b) Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(b, out);
}

// y[B, out_c, P]. cols: the im2col columns, K * P floats per (sample, group) when keep_cols (kept
// for the backward pass), else scratch of K * P floats for the GEMM path (unused by the direct
// path). direct: scratch of the direct path (a local buffer when null); threads: the direct
// path's (the results do not depend on them).
inline void conv2d_forward_raw(const conv2d_geometry& g, std::size_t batch, const float* x,
                               const float* w, const float* b, float* y, float* cols,
                               bool keep_cols, std::vector<float>* direct = nullptr,
                               std::size_t threads = 1) {
  const std::size_t cout = g.out_channels / g.groups;
  const std::size_t K = g.in_channels / g.groups * g.kernel_h * g.kernel_w;
  const std::size_t P = g.out_h() * g.out_w();
  const std::size_t in_n = g.in_channels * g.in_h * g.in_w;
  if (direct_conv_applies(g)) {
    std::vector<float> local;
    direct_conv2d(g, batch, x, w, b, y, direct ? *direct : local, threads);
    if (keep_cols)
      for (std::size_t n = 0; n < batch; ++n)
        for (std::size_t gr = 0; gr < g.groups; ++gr)
          im2col(g, x + n * in_n, gr, cols + (n * g.groups + gr) * K * P);
    return;
  }
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t gr = 0; gr < g.groups; ++gr) {
      float* c = keep_cols ? cols + (n * g.groups + gr) * K * P : cols;
      im2col(g, x + n * in_n, gr, c);
      row_map Y(y + (n * g.out_channels + gr * cout) * P, static_cast<Eigen::Index>(cout),
                static_cast<Eigen::Index>(P));
      Y.noalias() = const_row_map(w + gr * cout * K, static_cast<Eigen::Index>(cout),
                                  static_cast<Eigen::Index>(K)) *
                    const_row_map(c, static_cast<Eigen::Index>(K), static_cast<Eigen::Index>(P));
      if (b)
        Y.colwise() +=
            Eigen::Map<const Eigen::VectorXf>(b + gr * cout, static_cast<Eigen::Index>(cout));
    }
}

// Checks the sizes of a forward call and returns the batch.
inline std::size_t check_forward_sizes(const layer_geometry& lg, std::size_t x, std::size_t w,
                                       std::size_t b, std::size_t y, const char* fn) {
  const std::string f(fn);
  lg.validate(f + ": geometry");
  if (!(x > 0)) fail(errc::empty_input, f + ": x", "no samples");
  if (!(x % lg.input_per_sample() == 0))
    fail(errc::shape_mismatch, f + ": x",
         std::to_string(x) + " elements is not a multiple of the " +
             std::to_string(lg.input_per_sample()) + " inputs per sample");
  const std::size_t batch = x / lg.input_per_sample();
  if (!(w == lg.weight_size()))
    fail(errc::shape_mismatch, f + ": w",
         "has " + std::to_string(w) + " elements, the geometry needs " +
             std::to_string(lg.weight_size()));
  if (!(b == 0 || b == lg.out_channels()))
    fail(errc::shape_mismatch, f + ": b",
         "has " + std::to_string(b) + " elements, expected 0 or " +
             std::to_string(lg.out_channels()));
  if (!(y == batch * lg.output_per_sample()))
    fail(errc::shape_mismatch, f + ": y",
         "has " + std::to_string(y) + " elements, expected " +
             std::to_string(batch * lg.output_per_sample()));
  return batch;
}
}  // namespace detail

inline void linear_forward(const linear_geometry& g, std::span<const float> x,
                           std::span<const float> w, std::span<const float> b, std::span<float> y,
                           output_activation act = output_activation::none) {
  const std::size_t batch = detail::check_forward_sizes(layer_geometry::of(g), x.size(), w.size(),
                                                        b.size(), y.size(), "linear_forward");
  detail::linear_forward_raw(g, batch, x.data(), w.data(), b.empty() ? nullptr : b.data(),
                             y.data());
  if (act != output_activation::none)
    for (float& v : y) v = detail::apply_activation(act, v);
}

// workspace: reused between calls to avoid reallocating scratch buffers (may be null).
inline void conv2d_forward(const conv2d_geometry& g, std::span<const float> x,
                           std::span<const float> w, std::span<const float> b, std::span<float> y,
                           output_activation act = output_activation::none,
                           std::vector<float>* workspace = nullptr) {
  const std::size_t batch = detail::check_forward_sizes(layer_geometry::of(g), x.size(), w.size(),
                                                        b.size(), y.size(), "conv2d_forward");
  std::vector<float> local;
  std::vector<float>& ws = workspace ? *workspace : local;
  const float* bias = b.empty() ? nullptr : b.data();
  if (detail::direct_conv_applies(g)) {
    detail::conv2d_forward_raw(g, batch, x.data(), w.data(), bias, y.data(), nullptr, false, &ws);
  } else {
    const std::size_t need =
        g.in_channels / g.groups * g.kernel_h * g.kernel_w * g.out_h() * g.out_w();
    if (ws.size() < need) ws.resize(need);
    detail::conv2d_forward_raw(g, batch, x.data(), w.data(), bias, y.data(), ws.data(), false);
  }
  if (act != output_activation::none)
    for (float& v : y) v = detail::apply_activation(act, v);
}

}  // namespace adaquant
