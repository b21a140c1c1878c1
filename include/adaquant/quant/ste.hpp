#pragma once
// Backward pieces of fake quantization for quantization-aware training (straight-through estimator
// for the rounding, LSQ gradients for the scale and zero point). The forward is the fake-quant
// kernel with its STE mask output (kernels/fake_quant.hpp):
//
//   g = to_grid(x; s) + z      q = clamp(g, qmin, qmax)      y = (q - z) * s      mask = [qmin <= g
//   <= qmax]
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
//   x, y, mask: the forward's input, output and STE mask; grad_y: dL/dy. grad_x may be empty (not
//   wanted). Sums over elements run in a fixed order in double, so results are deterministic.
// Errors: sizes that disagree (errc::shape_mismatch), invalid params (as the forward).

#include <adaquant/core/concepts.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/kernels/validate.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <xsimd/xsimd.hpp>

namespace adaquant {

// dL/ds and dL/dz of a per-tensor fake quantizer.
struct quantizer_grad {
  float scale = 0.0f;
  float zero_point = 0.0f;
};

namespace detail {
// Accumulates dL/ds and dL/dz for a run of n elements sharing (s); writes grad_x if non-null.
// SIMD lanes accumulate in float and are flushed into double every 512 elements; the order is
// fixed for a given build (results are deterministic, not identical across ISAs).
template <bool WithGx>
void fq_backward_body(const float* x, const float* y, const std::uint8_t* mask, const float* gy,
                      std::size_t n, float s, float* gx, double& gs, double& gz) noexcept {
  using B = xsimd::batch<float>;
  constexpr std::size_t L = B::size, flush = 512;
  const float inv = 1.0f / s;
  const B vinv(inv);
  double acc_s = 0.0, acc_out = 0.0;
  std::size_t i = 0;
  alignas(64) float m[L];
  alignas(64) float lane[L];
  while (i + L <= n) {
    B ls(0.0f), lo(0.0f);
    const std::size_t end = std::min(n - (n - i) % L, i + flush);
    for (; i < end; i += L) {
      for (std::size_t j = 0; j < L; ++j) m[j] = static_cast<float>(mask[i + j]);
      const B in = B::load_aligned(m), g = B::load_unaligned(gy + i);
      const B gin = g * in;
      if constexpr (WithGx) gin.store_unaligned(gx + i);
      ls += g * ((B::load_unaligned(y + i) - in * B::load_unaligned(x + i)) * vinv);
      lo += g - gin;
    }
    ls.store_aligned(lane);
    for (std::size_t j = 0; j < L; ++j) acc_s += static_cast<double>(lane[j]);
    lo.store_aligned(lane);
    for (std::size_t j = 0; j < L; ++j) acc_out += static_cast<double>(lane[j]);
  }
  for (; i < n; ++i) {
    const float in = static_cast<float>(mask[i]);
    if constexpr (WithGx) gx[i] = gy[i] * in;
    acc_s += static_cast<double>(gy[i] * ((y[i] - in * x[i]) * inv));
    acc_out += static_cast<double>(gy[i] - gy[i] * in);
  }
  gs += acc_s;
  gz -= acc_out * static_cast<double>(s);
}

inline void fq_backward_run(const float* x, const float* y, const std::uint8_t* mask,
                            const float* gy, std::size_t n, float s, float* gx, double& gs,
                            double& gz) noexcept {
  if (gx)
    fq_backward_body<true>(x, y, mask, gy, n, s, gx, gs, gz);
  else
    fq_backward_body<false>(x, y, mask, gy, n, s, gx, gs, gz);
}

inline void check_len(std::size_t got, std::size_t want, const char* fn, const char* name) {
  if (!(got == want))
    fail(errc::shape_mismatch, arg(fn, name),
         "has " + std::to_string(got) + " elements, input has " + std::to_string(want));
}
}  // namespace detail

// Backward of y = fake_quant_per_tensor(x, p) (see the file comment for the surrogate).
inline quantizer_grad fake_quant_backward_per_tensor(
    const FloatTensor auto& x, const FloatTensor auto& y, std::span<const std::uint8_t> mask,
    const FloatTensor auto& grad_y, const quant_params& p, std::span<float> grad_x = {}) {
  constexpr const char* fn = "fake_quant_backward_per_tensor";
  const auto xv = view(x);
  const auto yv = view(y);
  const auto gv = view(grad_y);
  p.validate(detail::arg(fn, "params").c_str());
  detail::check_len(yv.size(), xv.size(), fn, "y");
  detail::check_len(mask.size(), xv.size(), fn, "mask");
  detail::check_len(gv.size(), xv.size(), fn, "grad_y");
  if (!grad_x.empty()) detail::check_len(grad_x.size(), xv.size(), fn, "grad_x");
  double gs = 0.0, gz = 0.0;
  detail::fq_backward_run(xv.data(), yv.data(), mask.data(), gv.data(), xv.size(), p.scale,
                          grad_x.empty() ? nullptr : grad_x.data(), gs, gz);
  return {static_cast<float>(gs), static_cast<float>(gz)};
}

// Backward of y = fake_quant_per_channel(x, p): one (dL/ds, dL/dz) per channel along p.axis.
inline void fake_quant_backward_per_channel(const FloatTensor auto& x, const FloatTensor auto& y,
                                            std::span<const std::uint8_t> mask,
                                            const FloatTensor auto& grad_y, const channel_params& p,
                                            std::span<float> grad_x, std::span<float> grad_scale,
                                            std::span<float> grad_zero_point) {
  constexpr const char* fn = "fake_quant_backward_per_channel";
  const auto xv = view(x);
  const auto yv = view(y);
  const auto gv = view(grad_y);
  const channel_layout l = detail::check_channels(xv.shape(), p, fn);
  detail::check_len(yv.size(), xv.size(), fn, "y");
  detail::check_len(mask.size(), xv.size(), fn, "mask");
  detail::check_len(gv.size(), xv.size(), fn, "grad_y");
  if (!grad_x.empty()) detail::check_len(grad_x.size(), xv.size(), fn, "grad_x");
  detail::check_len(grad_scale.size(), p.channels(), fn, "grad_scale");
  detail::check_len(grad_zero_point.size(), p.channels(), fn, "grad_zero_point");
  std::vector<double> gs(p.channels(), 0.0), gz(p.channels(), 0.0);
  std::size_t o = 0;
  for (std::size_t b = 0; b < l.outer; ++b)
    for (std::size_t c = 0; c < l.channels; ++c, o += l.inner)
      detail::fq_backward_run(xv.data() + o, yv.data() + o, mask.data() + o, gv.data() + o, l.inner,
                              p.scale[c], grad_x.empty() ? nullptr : grad_x.data() + o, gs[c],
                              gz[c]);
  for (std::size_t c = 0; c < p.channels(); ++c) {
    grad_scale[c] = static_cast<float>(gs[c]);
    grad_zero_point[c] = static_cast<float>(gz[c]);
  }
}

}  // namespace adaquant
