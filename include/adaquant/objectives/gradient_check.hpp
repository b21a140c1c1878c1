#pragma once
// Central-difference check of layer_objective::gradient against an independent evaluation of the
// same surrogate.
//
// The surrogate L~(theta; anchor) is the straight-through linearisation of the objective at
// `anchor` (kernels/fake_quant_backward.hpp): for every weight and input element the rounding
// residual r = round(u) - u (u = value / scale) and the clamp decision (inside, below, above) are
// taken at the anchor and then held fixed, and the continuous zero points carry their anchor
// rounding residual, so
//   inside: q(theta) = (u(theta) + r) * s(theta)      clamped: q(theta) = (bound - z(theta) - rz) *
//   s(theta)
// L~(anchor; anchor) equals value(anchor); the STE/LSQ gradient is the exact gradient of L~ at the
// anchor. straight_through_surrogate() evaluates L~ in double with direct loops (no GEMM, no
// im2col), so the check also cross-validates the forward. Central differences of L~ are smooth
// except at the ReLU kinks of the outputs, which a small step does not cross in practice.

#include <adaquant/objectives/layer_objective.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

struct gradient_check_result {
  double max_error = 0.0;  // max over checked coordinates of |analytic - numeric| / group scale
  std::string worst;       // "group[index]" of the worst coordinate
  std::size_t checked = 0;
};

namespace detail {
// Per-element frozen linearisation of one fake quantizer at the anchor.
struct frozen_quant {
  std::vector<double> residual;     // r (inside elements)
  std::vector<signed char> region;  // 0 inside, -1 below, +1 above
  double zero_residual = 0.0;       // round(z0) - z0
};

template <class R>
void freeze(const float* v, std::size_t n, float s, float z_cont, std::int32_t qmin,
            std::int32_t qmax, frozen_quant& f, std::size_t offset) {
  const std::int32_t zr = round_zero_point(z_cont, qmin, qmax);
  const float zf = static_cast<float>(zr);
  f.zero_residual = static_cast<double>(zr) - static_cast<double>(z_cont);
  for (std::size_t i = 0; i < n; ++i) {
    const float g = R::to_grid(v[i], s, 1.0f / s) + zf;
    const std::size_t o = offset + i;
    f.region[o] = g < static_cast<float>(qmin) ? -1 : (g > static_cast<float>(qmax) ? 1 : 0);
    f.residual[o] = static_cast<double>(g - zf) - static_cast<double>(v[i]) / s;
  }
}

inline double frozen_value(double v, double s, double z, std::int32_t qmin, std::int32_t qmax,
                           signed char region, double residual, double zero_residual) {
  if (region == 0) return (v / s + residual) * s;
  const double bound = region < 0 ? qmin : qmax;
  return (bound - (z + zero_residual)) * s;
}
}  // namespace detail

namespace detail {
// The frozen weight quantizer of a layer at `anchor`, and the surrogate weights at s.
struct frozen_weights {
  frozen_quant f;
  std::vector<double> zero_residual;  // per group
  std::size_t len = 0, per = 0;       // weights per group, groups per channel
};
inline frozen_weights freeze_layer_weights(const layer_objective& obj, const layer_state& anchor) {
  const layer_geometry& g = obj.geometry();
  const layer_quant_config& cfg = obj.config();
  const std::size_t oc = g.out_channels(), k = g.weights_per_channel();
  // Weight groups from the configuration alone: channel c's weights j in [q * len, (q + 1) * len)
  // share scale and zero point c * per + q.
  frozen_weights fw;
  fw.len = cfg.weight_block ? cfg.weight_block : k;
  fw.per = (k + fw.len - 1) / fw.len;
  const auto W = obj.weight();
  fw.f.residual.resize(oc * k);
  fw.f.region.resize(oc * k);
  fw.zero_residual.resize(oc * fw.per);
  std::vector<float> wf0(k);
  const std::int32_t wqmin = cfg.weight_scheme.qmin(), wqmax = cfg.weight_scheme.qmax();
  with_rounding(cfg.rounding, [&](auto r) {
    using R = decltype(r);
    for (std::size_t c = 0; c < oc; ++c) {
      for (std::size_t j = 0; j < k; ++j) wf0[j] = W[c * k + j] + anchor.weight_offset[c * k + j];
      for (std::size_t q = 0; q < fw.per; ++q) {
        const std::size_t first = q * fw.len, gr = c * fw.per + q;
        freeze<R>(wf0.data() + first, std::min(fw.len, k - first), anchor.weight_scale[gr],
                  anchor.weight_zero_point[gr], wqmin, wqmax, fw.f, c * k + first);
        fw.zero_residual[gr] = fw.f.zero_residual;
      }
    }
  });
  return fw;
}
inline std::vector<double> surrogate_weights(const layer_objective& obj, const frozen_weights& fw,
                                             const layer_state& s) {
  const layer_quant_config& cfg = obj.config();
  const std::size_t oc = obj.geometry().out_channels(), k = obj.geometry().weights_per_channel();
  const auto W = obj.weight();
  std::vector<double> wq(oc * k);
  for (std::size_t c = 0; c < oc; ++c)
    for (std::size_t j = 0; j < k; ++j) {
      const std::size_t i = c * k + j, gr = c * fw.per + j / fw.len;
      const double v = static_cast<double>(W[i]) + static_cast<double>(s.weight_offset[i]);
      wq[i] = frozen_value(v, s.weight_scale[gr], s.weight_zero_point[gr], cfg.weight_scheme.qmin(),
                           cfg.weight_scheme.qmax(), fw.f.region[i], fw.f.residual[i],
                           fw.zero_residual[gr]);
    }
  return wq;
}
// One sample of the layer in double with direct loops: y = wq * x + bias.
inline void direct_layer_forward(const layer_geometry& g, const std::vector<double>& wq,
                                 std::span<const float> bias, const double* x, double* y) {
  const std::size_t oc = g.out_channels(), k = g.weights_per_channel();
  if (g.kind == layer_kind::linear) {
    for (std::size_t o = 0; o < oc; ++o) {
      double a = bias[o];
      for (std::size_t j = 0; j < k; ++j) a += wq[o * k + j] * x[j];
      y[o] = a;
    }
    return;
  }
  const conv2d_geometry& c = g.conv;
  const std::size_t cin = c.in_channels / c.groups, cg = oc / c.groups;
  const std::size_t oh = c.out_h(), ow = c.out_w();
  for (std::size_t o = 0; o < oc; ++o) {
    const std::size_t gr = o / cg;
    for (std::size_t oy = 0; oy < oh; ++oy)
      for (std::size_t ox = 0; ox < ow; ++ox) {
        double a = bias[o];
        for (std::size_t ci = 0; ci < cin; ++ci)
          for (std::size_t i = 0; i < c.kernel_h; ++i)
            for (std::size_t j = 0; j < c.kernel_w; ++j) {
              const auto iy = static_cast<std::ptrdiff_t>(oy * c.stride_h + i * c.dilation_h) -
                              static_cast<std::ptrdiff_t>(c.pad_h);
              const auto ix = static_cast<std::ptrdiff_t>(ox * c.stride_w + j * c.dilation_w) -
                              static_cast<std::ptrdiff_t>(c.pad_w);
              if (iy < 0 || ix < 0 || iy >= static_cast<std::ptrdiff_t>(c.in_h) ||
                  ix >= static_cast<std::ptrdiff_t>(c.in_w))
                continue;
              a += wq[((o * cin + ci) * c.kernel_h + i) * c.kernel_w + j] *
                   x[((gr * cin + ci) * c.in_h + static_cast<std::size_t>(iy)) * c.in_w +
                     static_cast<std::size_t>(ix)];
            }
        y[(o * oh + oy) * ow + ox] = a;
      }
  }
}
}  // namespace detail

// L~(s; anchor) over `batch` (all samples when empty), in double. With drop (QDrop,
// objectives/input_drop.hpp), the input elements it keeps stay float.
inline double straight_through_surrogate(const layer_objective& obj, const layer_state& s,
                                         const layer_state& anchor,
                                         std::span<const std::size_t> batch = {},
                                         const input_drop& drop = {}) {
  const layer_geometry& g = obj.geometry();
  const layer_quant_config& cfg = obj.config();
  std::vector<std::size_t> all;
  if (batch.empty()) {
    all.resize(obj.samples());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    batch = all;
  }
  const std::size_t in = g.input_per_sample(), out = g.output_per_sample(), B = batch.size();
  const sample_rows& X = obj.inputs();
  const auto Y = obj.targets();

  // Anchor decisions.
  const detail::frozen_weights fw = detail::freeze_layer_weights(obj, anchor);
  detail::frozen_quant fa;
  std::vector<float> xb0(B * in);
  const std::int32_t aqmin = cfg.act_scheme.qmin(), aqmax = cfg.act_scheme.qmax();
  if (cfg.quantize_activations)
    with_rounding(cfg.rounding, [&](auto r) {
      using R = decltype(r);
      for (std::size_t n = 0; n < B; ++n)
        std::copy_n(X.row(batch[n]), in, xb0.data() + n * in);
      fa.residual.resize(B * in);
      fa.region.resize(B * in);
      detail::freeze<R>(xb0.data(), B * in, anchor.act_scale, anchor.act_zero_point, aqmin, aqmax,
                        fa, 0);
    });

  std::vector<std::uint8_t> keep;
  if (cfg.quantize_activations) detail::input_drop_mask(drop, batch, in, keep);

  // Surrogate weights and inputs at s.
  const std::vector<double> wq = detail::surrogate_weights(obj, fw, s);
  std::vector<double> xq(B * in);
  for (std::size_t n = 0; n < B; ++n)
    for (std::size_t e = 0; e < in; ++e) {
      const double v = X.row(batch[n])[e];
      const bool quantized = cfg.quantize_activations && (keep.empty() || !keep[n * in + e]);
      xq[n * in + e] = quantized ? detail::frozen_value(v, s.act_scale, s.act_zero_point, aqmin,
                                                        aqmax, fa.region[n * in + e],
                                                        fa.residual[n * in + e], fa.zero_residual)
                                 : v;
    }

  // Direct evaluation of the layer.
  const auto act = [&](double v) {
    switch (cfg.activation) {
      case output_activation::relu:
        return v > 0.0 ? v : 0.0;
      case output_activation::relu6:
        return v > 0.0 ? (v < 6.0 ? v : 6.0) : 0.0;
      case output_activation::none:
        break;
    }
    return v;
  };
  double total = 0.0;
  std::vector<double> y(out);
  for (std::size_t n = 0; n < B; ++n) {
    detail::direct_layer_forward(g, wq, s.bias, xq.data() + n * in, y.data());
    for (std::size_t e = 0; e < out; ++e) {
      const double d = act(y[e]) - act(static_cast<double>(Y[batch[n] * out + e]));
      total += d * d;
    }
  }
  return total / static_cast<double>(B * out);
}

namespace detail {
// Central differences of `surrogate()` (evaluated at probes) against the analytic grads for up to
// per_group coordinates of every trainable group of every layer state; `anchors` give the steps
// (see check_gradient), configs the groups. Names get `prefix(i)` for layer i.
template <class Surrogate, class Prefix>
gradient_check_result check_state_gradients(std::span<layer_state> probes,
                                            std::span<const layer_state> grads,
                                            std::span<const layer_state> anchors,
                                            std::span<const layer_objective* const> layers,
                                            const trainable_groups& which, double rel_step,
                                            std::size_t per_group, Surrogate surrogate,
                                            Prefix prefix) {
  struct coord {
    float* value;
    float analytic;
    double step;
    std::string name;
  };
  struct outcome {
    double analytic, numeric, group_scale;
    std::string name;
  };
  std::vector<outcome> results;
  double overall = 0.0;
  const auto run_group = [&](std::vector<coord> coords) {
    std::vector<double> numeric(coords.size());
    double scale = 0.0;
    for (std::size_t i = 0; i < coords.size(); ++i) {
      float* p = coords[i].value;
      const float orig = *p;
      const double h = coords[i].step;
      *p = static_cast<float>(orig + h);
      const double hp = static_cast<double>(*p) - orig;
      const double fp = surrogate();
      *p = static_cast<float>(orig - h);
      const double hm = orig - static_cast<double>(*p);
      const double fm = surrogate();
      *p = orig;
      numeric[i] = (fp - fm) / (hp + hm);
      scale = std::max(scale, std::abs(numeric[i]));
    }
    for (std::size_t i = 0; i < coords.size(); ++i)
      results.push_back({coords[i].analytic, numeric[i], scale, coords[i].name});
    overall = std::max(overall, scale);
  };
  const auto spread = [&](std::size_t n) {
    std::vector<std::size_t> idx;
    const std::size_t m = std::min(n, per_group);
    for (std::size_t i = 0; i < m; ++i) idx.push_back(i * n / m);
    return idx;
  };
  for (std::size_t l = 0; l < probes.size(); ++l) {
    layer_state& probe = probes[l];
    const layer_state& s = anchors[l];
    const layer_state& grad = grads[l];
    const layer_quant_config& cfg = layers[l]->config();
    const std::size_t k = layers[l]->geometry().weights_per_channel();
    const std::size_t len = cfg.weight_block ? cfg.weight_block : k, per = (k + len - 1) / len;
    const std::string pre = prefix(l);
    if (which.weight_offset) {
      std::vector<coord> cs;
      for (std::size_t i : spread(probe.weight_offset.size()))
        cs.push_back({&probe.weight_offset[i], grad.weight_offset[i],
                      rel_step * s.weight_scale[i / k * per + i % k / len],
                      pre + "weight_offset[" + std::to_string(i) + "]"});
      run_group(cs);
    }
    if (which.bias) {
      std::vector<coord> cs;
      for (std::size_t i : spread(probe.bias.size()))
        cs.push_back({&probe.bias[i], grad.bias[i],
                      rel_step * std::max(1.0, std::abs(static_cast<double>(s.bias[i]))),
                      pre + "bias[" + std::to_string(i) + "]"});
      run_group(cs);
    }
    if (which.weight_quant) {
      std::vector<coord> cs;
      for (std::size_t i : spread(probe.weight_scale.size()))
        cs.push_back({&probe.weight_scale[i], grad.weight_scale[i], rel_step * s.weight_scale[i],
                      pre + "weight_scale[" + std::to_string(i) + "]"});
      run_group(cs);
      if (!cfg.weight_scheme.symmetric) {
        cs.clear();
        for (std::size_t i : spread(probe.weight_zero_point.size()))
          cs.push_back({&probe.weight_zero_point[i], grad.weight_zero_point[i], rel_step,
                        pre + "weight_zero_point[" + std::to_string(i) + "]"});
        run_group(cs);
      }
    }
    if (which.act_quant && cfg.quantize_activations) {
      run_group({{&probe.act_scale, grad.act_scale, rel_step * s.act_scale, pre + "act_scale"}});
      if (!cfg.act_scheme.symmetric)
        run_group({{&probe.act_zero_point, grad.act_zero_point, rel_step, pre + "act_zero_point"}});
    }
  }
  // A group whose gradient is tiny next to the others is judged on the others' scale (float
  // round-off in the analytic gradient is relative to the largest terms).
  gradient_check_result res;
  for (const outcome& o : results) {
    const double e =
        std::abs(o.analytic - o.numeric) / (std::max(o.group_scale, 1e-3 * overall) + 1e-30);
    ++res.checked;
    if (e > res.max_error) {
      res.max_error = e;
      res.worst = o.name;
    }
  }
  return res;
}
}  // namespace detail

// Compares obj.gradient(s, batch, ., which, drop) with central differences of
// straight_through_surrogate around s, for up to `per_group` evenly spread coordinates of every
// trainable group. The step for a coordinate is rel_step times its natural size (a quantization
// step for V, the scale for scales, one grid unit for zero points, max(|b|, 1) for biases). Errors
// are normalised by the group's largest |numeric gradient| (at least 1e-3 of the largest over all
// groups).
inline gradient_check_result check_gradient(layer_objective& obj, const layer_state& s,
                                            std::span<const std::size_t> batch = {},
                                            const trainable_groups& which = {},
                                            double rel_step = 1e-3, std::size_t per_group = 48,
                                            const input_drop& drop = {}) {
  layer_state grad;
  obj.gradient(s, batch, grad, which, drop);
  layer_state probe = s;
  const layer_objective* layers[] = {&obj};
  return detail::check_state_gradients(
      std::span<layer_state>(&probe, 1), std::span<const layer_state>(&grad, 1),
      std::span<const layer_state>(&s, 1), layers, which, rel_step, per_group,
      [&] { return straight_through_surrogate(obj, probe, s, batch, drop); },
      [](std::size_t) { return std::string(); });
}

}  // namespace adaquant
