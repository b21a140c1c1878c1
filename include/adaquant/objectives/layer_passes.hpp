#pragma once
// The passes of one quantized layer that AdaQuant's objectives share (the per-layer
// objectives/layer_objective.hpp and the block objective objectives/block_objective.hpp): weight
// fake quantization (learned step or AdaRound), input fake quantization, and the backward pieces
// (bias, dWq and dXq products, straight-through backward into V, s_w, z_w). The maths is documented
// once, on layer_objective. Internal: namespace adaquant::detail.

#include <adaquant/core/parallel.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/kernels/fake_quant_backward.hpp>
#include <adaquant/objectives/adaround.hpp>
#include <adaquant/objectives/direct_conv.hpp>
#include <adaquant/objectives/forward.hpp>
#include <adaquant/objectives/layer_state.hpp>
#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/rounding.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace adaquant::detail {

// Throws errc::invalid_argument naming `fn: batch` for a sample index >= n.
inline void check_sample_indices(std::span<const std::size_t> batch, std::size_t n,
                                 const char* fn) {
  for (std::size_t i : batch)
    if (!(i < n))
      fail(errc::invalid_argument, std::string(fn) + ": batch",
           "sample index " + std::to_string(i) + " >= " + std::to_string(n) + " samples");
}

inline std::vector<std::int32_t> rounded_zero_points(const layer_quant_config& cfg,
                                                     const layer_state& s) {
  std::vector<std::int32_t> z(s.weight_zero_point.size());
  for (std::size_t g = 0; g < z.size(); ++g)
    z[g] = round_zero_point(s.weight_zero_point[g], cfg.weight_scheme.qmin(),
                            cfg.weight_scheme.qmax());
  return z;
}

inline quant_params input_params(const layer_quant_config& cfg, const layer_state& s) {
  return {s.act_scale,
          round_zero_point(s.act_zero_point, cfg.act_scheme.qmin(), cfg.act_scheme.qmax()),
          cfg.act_scheme.qmin(), cfg.act_scheme.qmax()};
}

// AdaRound's state of a layer (objectives/adaround.hpp): floor(W / s0) once use_adaround ran.
struct adaround_weights_state {
  bool on = false;
  float zeta = 1.1f, gamma = -0.1f;
  std::vector<float> floor;
};

// The buffers of one layer's quantized weights: W + V (AdaRound: 0, so that the straight-through
// backward gives dw_q/ds = w_q / s), Q_w(W + V), its straight-through mask and (AdaRound) s h'(V).
struct quantized_weight_buffers {
  std::vector<float> wf, wq, dvdw;
  std::vector<std::uint8_t> mask;
};

// Starts AdaRound on state s: fixes floor(W / s0), replaces V by the logits (layer_objective).
inline void start_adaround(const layer_quant_config& cfg, const weight_grouping& wg,
                           std::span<const float> w, layer_state& s, float zeta, float gamma,
                           adaround_weights_state& a) {
  a.on = true;
  a.zeta = zeta;
  a.gamma = gamma;
  a.floor.resize(w.size());
  for (std::size_t gr = 0; gr < wg.groups(); ++gr) {
    const std::size_t o = wg.first(gr);
    adaround_start(w.data() + o, wg.length(gr), s.weight_scale[gr],
                   cfg.rounding == rounding_mode::onnx, zeta, gamma, a.floor.data() + o,
                   s.weight_offset.data() + o);
  }
}

// f(first, last) over [0, groups) in up to `threads` contiguous ranges run in parallel; one range
// below parallel_min_elements weights (objectives/direct_conv.hpp). The weight passes below are
// element-wise or per group, so the split never changes a bit.
template <class F>
void over_weight_groups(std::size_t groups, std::size_t weights, std::size_t threads, F&& f) {
  const std::size_t parts =
      weights >= parallel_min_elements ? std::min(std::max<std::size_t>(threads, 1), groups) : 1;
  if (parts <= 1) {
    f(std::size_t{0}, groups);
    return;
  }
  parallel_for(parts, parts,
               [&](std::size_t p) { f(groups * p / parts, groups * (p + 1) / parts); });
}

// threads: at most this many (over_weight_groups; per-block weights stay on one).
inline void quantize_layer_weights(const layer_geometry& g, const layer_quant_config& cfg,
                                   const weight_grouping& wg, std::span<const float> w,
                                   const adaround_weights_state& a, const layer_state& s,
                                   bool want_mask, bool relaxed, quantized_weight_buffers& b,
                                   std::size_t threads = 1) {
  const std::size_t nw = g.weight_size();
  b.wf.resize(nw);
  b.wq.resize(nw);
  b.mask.resize(want_mask ? nw : 0);
  const std::vector<std::int32_t> zp = rounded_zero_points(cfg, s);
  if (a.on) {
    const adaround_grid grid{static_cast<float>(cfg.weight_scheme.qmin()),
                             static_cast<float>(cfg.weight_scheme.qmax()), a.zeta, a.gamma,
                             relaxed};
    b.dvdw.resize(want_mask ? nw : 0);
    std::fill(b.wf.begin(), b.wf.end(), 0.0f);
    over_weight_groups(wg.groups(), nw, threads, [&](std::size_t first, std::size_t last) {
      for (std::size_t gr = first; gr < last; ++gr) {
        const std::size_t o = wg.first(gr);
        adaround_group(grid, a.floor.data() + o, s.weight_offset.data() + o, wg.length(gr),
                       s.weight_scale[gr], static_cast<float>(zp[gr]), b.wq.data() + o,
                       want_mask ? b.mask.data() + o : nullptr,
                       want_mask ? b.dvdw.data() + o : nullptr);
      }
    });
    return;
  }
  const auto oc = g.out_channels(), k = g.weights_per_channel();
  if (cfg.weight_block) {
    for (std::size_t i = 0; i < nw; ++i) b.wf[i] = w[i] + s.weight_offset[i];
    with_rounding(cfg.rounding, [&](auto r) {
      const block_params p{s.weight_scale,           zp, cfg.weight_scheme.qmin(),
                           cfg.weight_scheme.qmax(), 1,  cfg.weight_block};
      fake_quant_per_block<decltype(r)>(tensor_view<const float>(b.wf.data(), {oc, k}),
                                        tensor_view<float>(b.wq.data(), {oc, k}), p,
                                        std::span<std::uint8_t>(b.mask));
    });
    return;
  }
  over_weight_groups(oc, nw, threads, [&](std::size_t c0, std::size_t c1) {
    for (std::size_t i = c0 * k; i < c1 * k; ++i) b.wf[i] = w[i] + s.weight_offset[i];
    channel_params p;
    p.qmin = cfg.weight_scheme.qmin();
    p.qmax = cfg.weight_scheme.qmax();
    p.axis = 0;
    p.scale.assign(s.weight_scale.begin() + c0, s.weight_scale.begin() + c1);
    p.zero_point.assign(zp.begin() + c0, zp.begin() + c1);
    const std::span<std::uint8_t> mask =
        want_mask ? std::span<std::uint8_t>(b.mask).subspan(c0 * k, (c1 - c0) * k)
                  : std::span<std::uint8_t>();
    with_rounding(cfg.rounding, [&](auto r) {
      fake_quant_per_channel<decltype(r)>(
          tensor_view<const float>(b.wf.data() + c0 * k, {c1 - c0, k}),
          tensor_view<float>(b.wq.data() + c0 * k, {c1 - c0, k}), p, mask);
    });
  });
}

// xq = Q_a(x) over n elements (mask: straight-through mask, sized n or empty).
inline void quantize_layer_input(const layer_quant_config& cfg, const layer_state& s,
                                 const float* x, float* xq, std::size_t n,
                                 std::span<std::uint8_t> mask) {
  const quant_params ap = input_params(cfg, s);
  with_rounding(cfg.rounding, [&](auto r) {
    fake_quant_per_tensor<decltype(r)>(tensor_view<const float>(x, {n}),
                                       tensor_view<float>(xq, {n}), ap, mask);
  });
}

// dL/db' from dy [B, oc, P].
inline void bias_gradient(const float* dy, std::size_t B, std::size_t oc, std::size_t P,
                          float* grad) {
  std::vector<double> acc(oc, 0.0);
  if (P == 1) {  // linear: float partial sums across channels, flushed every 64 rows
    std::vector<float> part(oc, 0.0f);
    for (std::size_t n = 0; n < B; ++n) {
      const float* d = dy + n * oc;
      for (std::size_t c = 0; c < oc; ++c) part[c] += d[c];
      if ((n + 1) % 64 == 0 || n + 1 == B)
        for (std::size_t c = 0; c < oc; ++c) {
          acc[c] += static_cast<double>(part[c]);
          part[c] = 0.0f;
        }
    }
  } else {
    // Eight partial sums per (sample, channel), position p into sum p % 8, added in lane order:
    // one chain of P dependent double additions was latency-bound (about 5 % of a conv step).
    constexpr std::size_t L = 8;
    for (std::size_t n = 0; n < B; ++n)
      for (std::size_t c = 0; c < oc; ++c) {
        const float* d = dy + (n * oc + c) * P;
        double part[L] = {};
        std::size_t p = 0;
        for (; p + L <= P; p += L)
          for (std::size_t j = 0; j < L; ++j) part[j] += static_cast<double>(d[p + j]);
        for (std::size_t j = 0; p < P; ++p, ++j) part[j] += static_cast<double>(d[p]);
        double a = 0.0;
        for (std::size_t j = 0; j < L; ++j) a += part[j];
        acc[c] += a;
      }
  }
  for (std::size_t c = 0; c < oc; ++c) grad[c] = static_cast<float>(acc[c]);
}

// dWq [oc, k] = dY^T Xq (linear), or for conv2d the direct product over (sample, position)
// (objectives/direct_conv.hpp) where direct_weight_grad_applies, else the sum over samples of
// dY C^T per group (C the im2col columns the forward kept). ws: scratch of the direct product;
// threads: the direct product's; xq_padded: xq already padded (padded_batch), or null.
inline void weight_product_gradient(const layer_geometry& g, std::size_t B, const float* dy,
                                    const float* xq, const float* cols, float* dwq,
                                    std::vector<float>& ws, std::size_t threads = 1,
                                    const float* xq_padded = nullptr) {
  using Eigen::Index;
  const std::size_t oc = g.out_channels(), k = g.weights_per_channel(), P = g.out_positions();
  if (g.kind == layer_kind::linear) {
    row_map(dwq, static_cast<Index>(oc), static_cast<Index>(k)).noalias() =
        const_row_map(dy, static_cast<Index>(B), static_cast<Index>(oc)).transpose() *
        const_row_map(xq, static_cast<Index>(B), static_cast<Index>(k));
    return;
  }
  if (xq_padded && direct_weight_grad_applies(g.conv, B, true)) {
    direct_conv2d_weight_grad(g.conv, B, xq_padded, dy, dwq, ws, threads, true);
    return;
  }
  if (direct_weight_grad_applies(g.conv, B)) {
    direct_conv2d_weight_grad(g.conv, B, xq, dy, dwq, ws, threads);
    return;
  }
  const std::size_t groups = g.conv.groups, cg = oc / groups;
  for (std::size_t gr = 0; gr < groups; ++gr) {
    row_map dW(dwq + gr * cg * k, static_cast<Index>(cg), static_cast<Index>(k));
    for (std::size_t n = 0; n < B; ++n) {
      const_row_map dY(dy + (n * oc + gr * cg) * P, static_cast<Index>(cg), static_cast<Index>(P));
      const_row_map C(cols + (n * groups + gr) * k * P, static_cast<Index>(k),
                      static_cast<Index>(P));
      if (n == 0)
        dW.noalias() = dY * C.transpose();
      else
        dW.noalias() += dY * C.transpose();
    }
  }
}

// dXq [B, in] = dY Wq (linear), or for conv2d the direct adjoint convolution where
// direct_adjoint_applies (objectives/direct_conv.hpp; wt, ws: its flipped weights and scratch),
// else col2im of Wq^T dY (dcols: workspace). threads: the direct adjoint's; dy_padded: dy already
// padded at the adjoint's padding (padded_batch), or null.
inline void input_product_gradient(const layer_geometry& g, std::size_t B, const float* dy,
                                   const float* wq, float* dxq, std::vector<float>& dcols,
                                   std::vector<float>& wt, std::vector<float>& ws,
                                   std::size_t threads = 1, const float* dy_padded = nullptr) {
  using Eigen::Index;
  const std::size_t oc = g.out_channels(), k = g.weights_per_channel(), P = g.out_positions();
  const std::size_t in = g.input_per_sample();
  if (g.kind == layer_kind::linear) {
    row_map(dxq, static_cast<Index>(B), static_cast<Index>(in)).noalias() =
        const_row_map(dy, static_cast<Index>(B), static_cast<Index>(oc)) *
        const_row_map(wq, static_cast<Index>(oc), static_cast<Index>(k));
    return;
  }
  if (direct_adjoint_applies(g.conv)) {
    if (dy_padded)
      direct_conv2d_adjoint(g.conv, B, dy_padded, wq, dxq, wt, ws, threads, true);
    else
      direct_conv2d_adjoint(g.conv, B, dy, wq, dxq, wt, ws, threads);
    return;
  }
  const std::size_t groups = g.conv.groups, cg = oc / groups;
  dcols.resize(k * P);
  std::fill(dxq, dxq + B * in, 0.0f);
  for (std::size_t n = 0; n < B; ++n)
    for (std::size_t gr = 0; gr < groups; ++gr) {
      row_map(dcols.data(), static_cast<Index>(k), static_cast<Index>(P)).noalias() =
          const_row_map(wq + gr * cg * k, static_cast<Index>(cg), static_cast<Index>(k))
              .transpose() *
          const_row_map(dy + (n * oc + gr * cg) * P, static_cast<Index>(cg), static_cast<Index>(P));
      col2im_add(g.conv, dcols.data(), gr, dxq + n * in);
    }
}

// Straight-through backward of the weight quantizer from dWq into grad's V, s_w and z_w (each
// only when trained; grad's vectors already sized).
// threads: at most this many (over_weight_groups).
inline void weight_quant_backward(const layer_quant_config& cfg, const weight_grouping& wg,
                                  const layer_state& s, const quantized_weight_buffers& b,
                                  bool adaround, const float* dwq, const trainable_groups& which,
                                  layer_state& grad, std::size_t threads = 1) {
  over_weight_groups(wg.groups(), b.wf.size(), threads, [&](std::size_t first, std::size_t last) {
    for (std::size_t gr = first; gr < last; ++gr) {
      double gs = 0.0, gz = 0.0;
      const std::size_t o = wg.first(gr);
      fq_backward_run(b.wf.data() + o, b.wq.data() + o, b.mask.data() + o, dwq + o, wg.length(gr),
                      s.weight_scale[gr],
                      which.weight_offset ? grad.weight_offset.data() + o : nullptr, gs, gz);
      if (adaround && which.weight_offset)
        for (std::size_t i = o, e = o + wg.length(gr); i < e; ++i)
          grad.weight_offset[i] *= b.dvdw[i];
      if (which.weight_quant) {
        grad.weight_scale[gr] = static_cast<float>(gs);
        if (!cfg.weight_scheme.symmetric) grad.weight_zero_point[gr] = static_cast<float>(gz);
      }
    }
  });
}

}  // namespace adaquant::detail
