#pragma once
// Backward pieces of fake quantization for quantization-aware training (straight-through estimator
// for the rounding, LSQ gradients for the scale and zero point). The forward is the fake-quant
// kernel with its STE mask output (kernels/fake_quant.hpp):
//
//   g = to_grid(x; s) + z      q = clamp(g, qmin, qmax)      y = (q - z) * s
//   mask = [qmin <= g <= qmax]
//
// Surrogate. The gradients below are the exact gradients of the "straight-through linearisation"
// of y at the evaluation point: the rounding residual r = round(x/s) - x/s (and round(z) - z for a
// continuous zero point) and the clamp decision (inside / below / above) are held fixed, so
//
//   inside:          y = (x/s + r) * s           dy/dx = 1   dy/ds = r = (y - x)/s   dy/dz = 0
//   clamped (below): y = (qmin - z) * s          dy/dx = 0   dy/ds = qmin - z = y/s  dy/dz = -s
//   clamped (above): y = (qmax - z) * s          dy/dx = 0   dy/ds = qmax - z = y/s  dy/dz = -s
//
// i.e. dy/dx = mask, dy/ds = (y - mask * x) / s, dy/dz = (mask - 1) * s (Esser et al., LSQ; the
// zero-point term as in LSQ+). Computing dy/ds from the forward output y keeps it consistent with
// whatever rounding policy produced y. No gradient-scaling factor is applied: scale the learning
// rate instead (optim/adam.hpp takes per-group rates).
//
// fake_quant_backward_per_tensor(x, y, mask, grad_y, p, grad_x) -> {grad_scale, grad_zero_point}
// fake_quant_backward_per_channel(x, y, mask, grad_y, p, grad_x, grad_scale, grad_zero_point)
// fake_quant_backward_per_block(x, y, mask, grad_y, p, grad_x, grad_scale, grad_zero_point)
//   per channel / per block: dL/ds and dL/dz summed over each channel's / block's elements.
//   x, y, mask: the forward's input, output and STE mask; grad_y: dL/dy. grad_x may be empty (not
//   wanted). Sums run in a fixed order (float partial sums per lane flushed into double, see
//   kernels/reference.hpp), so results are deterministic for a given ISA. Each entry point has a
//   scalar twin *_ref with the same results bit for bit.
// Errors: sizes that disagree (errc::shape_mismatch), invalid params (as the forward).

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/fake_quant_backward.hpp>
#include <adaquant/kernels/validate.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

// dL/ds and dL/dz of a per-tensor fake quantizer.
struct quantizer_grad {
  float scale = 0.0f;
  float zero_point = 0.0f;
};

namespace detail {
// Backward of a run of n elements sharing the scale s: adds dL/ds to gs and dL/dz to gz, writes
// grad_x if gx is non-null. The SIMD body or its scalar twin.
template <bool Simd = true>
void fq_backward_run(const float* x, const float* y, const std::uint8_t* mask, const float* gy,
                     std::size_t n, float s, float* gx, double& gs, double& gz) noexcept {
  backward_sums a;
  if constexpr (Simd) {
    if (gx)
      simd::fake_quant_backward<true>(x, y, mask, gy, n, s, gx, a);
    else
      simd::fake_quant_backward<false>(x, y, mask, gy, n, s, gx, a);
  } else {
    if (gx)
      fake_quant_backward_ref<true>(x, y, mask, gy, n, s, gx, a);
    else
      fake_quant_backward_ref<false>(x, y, mask, gy, n, s, gx, a);
  }
  gs += a.scale;
  gz -= a.outside * static_cast<double>(s);
}

// Backward of every run of a per-channel layout: channel c's runs use scale[c] and add to gs[c],
// gz[c] (in the order of the runs).
template <bool Simd>
void fq_backward_channels(const float* x, const float* y, const std::uint8_t* mask, const float* gy,
                          const channel_layout& l, const float* scale, float* gx, double* gs,
                          double* gz) noexcept {
  std::size_t o = 0;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = 0; c < l.channels; ++c, o += l.inner)
      fq_backward_run<Simd>(x + o, y + o, mask + o, gy + o, l.inner, scale[c],
                            gx ? gx + o : nullptr, gs[c], gz[c]);
}

inline void store_grads(const std::vector<double>& gs, const std::vector<double>& gz,
                        std::span<float> grad_scale, std::span<float> grad_zero_point) noexcept {
  for (std::size_t c = 0; c < gs.size(); ++c) {
    grad_scale[c] = static_cast<float>(gs[c]);
    grad_zero_point[c] = static_cast<float>(gz[c]);
  }
}

inline void check_len(std::size_t got, std::size_t want, const char* fn, const char* name) {
  if (!(got == want))
    fail(errc::shape_mismatch, arg(fn, name),
         "has " + std::to_string(got) + " elements, input has " + std::to_string(want));
}

inline void check_backward_args(std::size_t n, std::size_t y, std::size_t mask, std::size_t gy,
                                std::span<float> grad_x, const char* fn) {
  check_len(y, n, fn, "y");
  check_len(mask, n, fn, "mask");
  check_len(gy, n, fn, "grad_y");
  if (!grad_x.empty()) check_len(grad_x.size(), n, fn, "grad_x");
}

template <bool Simd>
quantizer_grad fake_quant_backward_per_tensor_impl(tensor_view<const float> x,
                                                   tensor_view<const float> y,
                                                   std::span<const std::uint8_t> mask,
                                                   tensor_view<const float> gy,
                                                   const quant_params& p, std::span<float> grad_x) {
  constexpr const char* fn = "fake_quant_backward_per_tensor";
  p.validate(arg(fn, "params").c_str());
  check_backward_args(x.size(), y.size(), mask.size(), gy.size(), grad_x, fn);
  double gs = 0.0, gz = 0.0;
  fq_backward_run<Simd>(x.data(), y.data(), mask.data(), gy.data(), x.size(), p.scale,
                        grad_x.empty() ? nullptr : grad_x.data(), gs, gz);
  return {static_cast<float>(gs), static_cast<float>(gz)};
}

template <bool Simd>
void fake_quant_backward_per_channel_impl(tensor_view<const float> x, tensor_view<const float> y,
                                          std::span<const std::uint8_t> mask,
                                          tensor_view<const float> gy, const channel_params& p,
                                          std::span<float> grad_x, std::span<float> grad_scale,
                                          std::span<float> grad_zero_point) {
  constexpr const char* fn = "fake_quant_backward_per_channel";
  const channel_layout l = check_channels(x.shape(), p, fn);
  check_backward_args(x.size(), y.size(), mask.size(), gy.size(), grad_x, fn);
  check_len(grad_scale.size(), p.channels(), fn, "grad_scale");
  check_len(grad_zero_point.size(), p.channels(), fn, "grad_zero_point");
  std::vector<double> gs(p.channels(), 0.0), gz(p.channels(), 0.0);
  fq_backward_channels<Simd>(x.data(), y.data(), mask.data(), gy.data(), l, p.scale.data(),
                             grad_x.empty() ? nullptr : grad_x.data(), gs.data(), gz.data());
  store_grads(gs, gz, grad_scale, grad_zero_point);
}

template <bool Simd>
void fake_quant_backward_per_block_impl(tensor_view<const float> x, tensor_view<const float> y,
                                        std::span<const std::uint8_t> mask,
                                        tensor_view<const float> gy, const block_params& p,
                                        std::span<float> grad_x, std::span<float> grad_scale,
                                        std::span<float> grad_zero_point) {
  constexpr const char* fn = "fake_quant_backward_per_block";
  const block_layout l = check_blocks(x.shape(), p, fn);
  check_backward_args(x.size(), y.size(), mask.size(), gy.size(), grad_x, fn);
  check_len(grad_scale.size(), p.blocks(), fn, "grad_scale");
  check_len(grad_zero_point.size(), p.blocks(), fn, "grad_zero_point");
  std::vector<double> gs(p.blocks(), 0.0), gz(p.blocks(), 0.0);
  l.for_each_chunk([&](std::size_t o, const channel_layout& c, std::size_t first) {
    fq_backward_channels<Simd>(x.data() + o, y.data() + o, mask.data() + o, gy.data() + o, c,
                               p.scale.data() + first, grad_x.empty() ? nullptr : grad_x.data() + o,
                               gs.data() + first, gz.data() + first);
  });
  store_grads(gs, gz, grad_scale, grad_zero_point);
}
}  // namespace detail

// Backward of y = fake_quant_per_tensor(x, p) (see the file comment for the surrogate).
inline quantizer_grad fake_quant_backward_per_tensor(
    const FloatTensor auto& x, const FloatTensor auto& y, std::span<const std::uint8_t> mask,
    const FloatTensor auto& grad_y, const quant_params& p, std::span<float> grad_x = {}) {
  return detail::fake_quant_backward_per_tensor_impl<true>(view(x), view(y), mask, view(grad_y), p,
                                                           grad_x);
}

inline quantizer_grad fake_quant_backward_per_tensor_ref(
    const FloatTensor auto& x, const FloatTensor auto& y, std::span<const std::uint8_t> mask,
    const FloatTensor auto& grad_y, const quant_params& p, std::span<float> grad_x = {}) {
  return detail::fake_quant_backward_per_tensor_impl<false>(view(x), view(y), mask, view(grad_y), p,
                                                            grad_x);
}

// Backward of y = fake_quant_per_channel(x, p): one (dL/ds, dL/dz) per channel along p.axis.
inline void fake_quant_backward_per_channel(const FloatTensor auto& x, const FloatTensor auto& y,
                                            std::span<const std::uint8_t> mask,
                                            const FloatTensor auto& grad_y, const channel_params& p,
                                            std::span<float> grad_x, std::span<float> grad_scale,
                                            std::span<float> grad_zero_point) {
  detail::fake_quant_backward_per_channel_impl<true>(view(x), view(y), mask, view(grad_y), p,
                                                     grad_x, grad_scale, grad_zero_point);
}

inline void fake_quant_backward_per_channel_ref(
    const FloatTensor auto& x, const FloatTensor auto& y, std::span<const std::uint8_t> mask,
    const FloatTensor auto& grad_y, const channel_params& p, std::span<float> grad_x,
    std::span<float> grad_scale, std::span<float> grad_zero_point) {
  detail::fake_quant_backward_per_channel_impl<false>(view(x), view(y), mask, view(grad_y), p,
                                                      grad_x, grad_scale, grad_zero_point);
}

// Backward of y = fake_quant_per_block(x, p): one (dL/ds, dL/dz) per block, in the order of
// p.scale, each summed over the block's elements.
inline void fake_quant_backward_per_block(const FloatTensor auto& x, const FloatTensor auto& y,
                                          std::span<const std::uint8_t> mask,
                                          const FloatTensor auto& grad_y, const block_params& p,
                                          std::span<float> grad_x, std::span<float> grad_scale,
                                          std::span<float> grad_zero_point) {
  detail::fake_quant_backward_per_block_impl<true>(view(x), view(y), mask, view(grad_y), p, grad_x,
                                                   grad_scale, grad_zero_point);
}

inline void fake_quant_backward_per_block_ref(const FloatTensor auto& x, const FloatTensor auto& y,
                                              std::span<const std::uint8_t> mask,
                                              const FloatTensor auto& grad_y, const block_params& p,
                                              std::span<float> grad_x, std::span<float> grad_scale,
                                              std::span<float> grad_zero_point) {
  detail::fake_quant_backward_per_block_impl<false>(view(x), view(y), mask, view(grad_y), p, grad_x,
                                                    grad_scale, grad_zero_point);
}

}  // namespace adaquant
