#pragma once
// Central-difference check of block_objective::gradient against an independent evaluation of the
// same surrogate (objectives/gradient_check.hpp explains the surrogate for one layer).
//
// For a block the surrogate freezes, at the anchor states, every layer's weight quantizer and the
// input quantizer of every layer op on the values that reach it in the anchor's (double) forward:
// rounding residuals and clamp decisions per element are then held fixed while the states move,
// and so are the relu/relu6 decisions (inside, below, above) of every element, so the values
// flowing between layers stay differentiable and the STE/LSQ gradient chained through the
// program (with relu masks taken at the anchor, as backward does) is the exact gradient of the
// surrogate at the anchor; a step then never crosses a kink.
// block_straight_through_surrogate() runs the program in double with direct loops (no GEMM, no
// im2col), so the check also cross-validates the forward.

#include <adaquant/objectives/block_objective.hpp>
#include <adaquant/objectives/gradient_check.hpp>

#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

namespace detail {
// The frozen decisions of a block at the anchor: layer k's input quantizer, op i's relu region.
struct frozen_block {
  std::vector<frozen_quant> inputs;
  std::vector<std::vector<signed char>> relu;
};
// The program in double at states s, every slot's values; with `record`, f is filled from the
// values at s (then s must be the anchor).
inline std::vector<std::vector<double>> block_surrogate_pass(
    const block_objective& obj, std::span<const layer_state> s, std::span<const layer_state> anchor,
    const std::vector<frozen_weights>& fw, std::span<const std::size_t> batch,
    const input_drop& drop, bool record, frozen_block& f) {
  const block_program& prog = obj.program();
  const auto size = obj.slot_sizes();
  const std::size_t B = batch.size(), I = prog.inputs();
  std::vector<std::vector<double>> v(prog.slots());
  for (std::size_t i = 0; i < I; ++i) {
    const auto x = obj.input(i);
    v[i].resize(B * size[i]);
    for (std::size_t n = 0; n < B; ++n)
      for (std::size_t e = 0; e < size[i]; ++e) v[i][n * size[i] + e] = x[batch[n] * size[i] + e];
  }
  for (std::size_t i = 0; i < prog.ops.size(); ++i) {
    const block_op& op = prog.ops[i];
    const std::vector<double>& a = v[op.a];
    std::vector<double>& out = v[I + i];
    out.resize(B * size[I + i]);
    switch (op.kind) {
      case block_op_kind::layer: {
        const std::size_t k = op.layer;
        const layer_objective& L = obj.layer(k);
        const layer_quant_config& cfg = L.config();
        const std::size_t in = L.geometry().input_per_sample(), outn = size[I + i];
        std::vector<double> xq(a);
        if (cfg.quantize_activations) {
          const std::int32_t qmin = cfg.act_scheme.qmin(), qmax = cfg.act_scheme.qmax();
          if (record) {
            std::vector<float> x0(a.begin(), a.end());
            f.inputs[k].residual.resize(B * in);
            f.inputs[k].region.resize(B * in);
            with_rounding(cfg.rounding, [&](auto r) {
              freeze<decltype(r)>(x0.data(), B * in, anchor[k].act_scale, anchor[k].act_zero_point,
                                  qmin, qmax, f.inputs[k], 0);
            });
          }
          std::vector<std::uint8_t> keep;
          input_drop_mask({drop.keep_float, mix_seed(drop.seed, k)}, batch, in, keep);
          for (std::size_t e = 0; e < B * in; ++e)
            if (keep.empty() || !keep[e])
              xq[e] = frozen_value(a[e], s[k].act_scale, s[k].act_zero_point, qmin, qmax,
                                   f.inputs[k].region[e], f.inputs[k].residual[e],
                                   f.inputs[k].zero_residual);
        }
        const std::vector<double> wq = surrogate_weights(L, fw[k], s[k]);
        for (std::size_t n = 0; n < B; ++n)
          direct_layer_forward(L.geometry(), wq, s[k].bias, xq.data() + n * in,
                               out.data() + n * outn);
        break;
      }
      case block_op_kind::relu:
      case block_op_kind::relu6: {
        const double top = op.kind == block_op_kind::relu ? HUGE_VAL : 6.0;
        std::vector<signed char>& r = f.relu[i];
        if (record) {
          r.resize(out.size());
          for (std::size_t e = 0; e < out.size(); ++e)
            r[e] = a[e] > 0.0 ? (a[e] < top ? 0 : 1) : -1;
        }
        for (std::size_t e = 0; e < out.size(); ++e)
          out[e] = r[e] == 0 ? a[e] : (r[e] < 0 ? 0.0 : top);
        break;
      }
      case block_op_kind::add:
        for (std::size_t e = 0; e < out.size(); ++e) out[e] = a[e] + v[op.b][e];
        break;
      case block_op_kind::identity:
        out = a;
        break;
    }
  }
  return v;
}
}  // namespace detail

// L~(s; anchor) of a block over `batch` (all samples when empty), in double, with the
// objective's output weights and its inner term (block_objective's file comment), whose
// activations take the anchor's frozen relu decisions like the rest of the program.
inline double block_straight_through_surrogate(const block_objective& obj,
                                               std::span<const layer_state> s,
                                               std::span<const layer_state> anchor,
                                               std::span<const std::size_t> batch = {},
                                               const input_drop& drop = {}) {
  std::vector<std::size_t> all;
  if (batch.empty()) {
    all.resize(obj.samples());
    for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
    batch = all;
  }
  std::vector<detail::frozen_weights> fw;
  for (std::size_t k = 0; k < obj.layers(); ++k)
    fw.push_back(detail::freeze_layer_weights(obj.layer(k), anchor[k]));
  detail::frozen_block f{std::vector<detail::frozen_quant>(obj.layers()),
                         std::vector<std::vector<signed char>>(obj.program().ops.size())};
  (void)detail::block_surrogate_pass(obj, anchor, anchor, fw, batch, drop, true, f);
  const std::vector<std::vector<double>> v =
      detail::block_surrogate_pass(obj, s, anchor, fw, batch, drop, false, f);
  const std::vector<double>& q = v[obj.program().output];
  const std::size_t out = obj.slot_sizes()[obj.program().output];
  const auto t = obj.targets();
  const auto w = obj.output_weights();
  double total = 0.0;
  for (std::size_t n = 0; n < batch.size(); ++n)
    for (std::size_t e = 0; e < out; ++e) {
      const double d = q[n * out + e] - static_cast<double>(t[batch[n] * out + e]);
      total += (w.empty() ? 1.0 : static_cast<double>(w[batch[n] * out + e])) * d * d;
    }
  double inner = 0.0;
  const auto values = obj.inner_values();
  for (std::size_t j = 0; j < values.size() && obj.inner_weight() > 0.0f; ++j) {
    const std::size_t sz = obj.slot_sizes()[values[j].slot];
    double sum = 0.0;
    for (std::size_t n = 0; n < batch.size(); ++n)
      for (std::size_t e = 0; e < sz; ++e) {
        const double d = v[values[j].slot][n * sz + e] - obj.inner_target(j, batch[n], e);
        sum += d * d;
      }
    inner += values[j].scale * sum / static_cast<double>(batch.size() * sz);
  }
  return total / static_cast<double>(batch.size() * out) +
         static_cast<double>(obj.inner_weight()) * inner;
}

// check_gradient (objectives/gradient_check.hpp) for a block: every trainable group of every
// layer, coordinates named "layer k: group[index]".
inline gradient_check_result check_block_gradient(
    block_objective& obj, std::span<const layer_state> s, std::span<const std::size_t> batch = {},
    const trainable_groups& which = {}, double rel_step = 1e-3, std::size_t per_group = 24,
    const input_drop& drop = {}) {
  std::vector<layer_state> grads;
  obj.gradient(s, batch, grads, which, drop);
  std::vector<layer_state> probes(s.begin(), s.end());
  std::vector<const layer_objective*> layers;
  for (std::size_t k = 0; k < obj.layers(); ++k) layers.push_back(&obj.layer(k));
  return detail::check_state_gradients(
      std::span<layer_state>(probes), std::span<const layer_state>(grads), s, layers, which,
      rel_step, per_group,
      [&] { return block_straight_through_surrogate(obj, probes, s, batch, drop); },
      [](std::size_t k) { return "layer " + std::to_string(k) + ": "; });
}

}  // namespace adaquant
