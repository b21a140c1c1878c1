#pragma once
// The AdaQuant layer objective (Hubara et al., "Accurate Post Training Quantization With Small
// Calibration Sets"): for cached calibration inputs X and full-precision outputs Y of one linear or
// conv2d layer (geometry.hpp),
//
//   L(V, b', s_w, z_w, s_a, z_a) = mean over samples and output elements of
//                                  ( f(Y) - f( Q_w(W + V) * Q_a(X) + b' ) )^2
//
// where * is the layer's operator (matmul or convolution), f the activation that follows the layer
// (none, ReLU or ReLU6; the paper's code compares after the ReLU), Q_w the weight fake quantizer
// with one scale s_w[g] and zero point round(z_w[g]) per weight group g (an output channel, or a
// block of its inputs: objectives/layer_state.hpp) and Q_a the per-tensor input fake quantizer
// (s_a, round(z_a)), or the identity when activations stay float (weight-only); both as
// kernels/fake_quant.hpp with the configured rounding. Symmetric schemes fix the zero point (0
// signed, midpoint unsigned) and its gradient is 0.
//
// Gradients (gradient()) are the exact gradients of the straight-through linearisation described
// in kernels/fake_quant_backward.hpp: rounding residuals and clamp decisions are frozen at the
// evaluation point, so
//   dL/dV = dL/dWq * mask_w,     dL/ds_w[g] = sum_{i in g} dL/dWq * (Wq - mask_w (W+V)) / s_w[g],
//   dL/dz_w[g] = sum_{i in g} dL/dWq * (mask_w - 1) s_w[g],  likewise s_a, z_a through dL/dXq,
//   dL/db' = sum over samples (and positions) of dL/dY.
// objectives/gradient_check.hpp evaluates that surrogate independently (double precision, direct
// loops instead of GEMM/im2col) and compares with central differences.
//
// AdaRound (use_adaround; the maths in objectives/adaround.hpp): W stays fixed and V holds the
// rounding logits; gradient() differentiates the relaxed weights s (clamp(floor(W / s0) + h(V) +
// z) - z), relaxed_value() is what it differentiates, and value() and quantized_weights() use the
// hardened rounding (up where h(V) >= 0.5).
//
// X may be given as one array or as several runs of whole samples (objectives/sample_rows.hpp:
// e.g. the chunks a network holds anyway); every result is the same bit for bit either way.
// The objective references X, Y, W and the bias (the caller keeps them alive) and owns scratch
// buffers: use one objective per thread (set_threads lets one objective's convolutions use
// several; the results do not depend on it). Layout: X [N, in] / [N, C, H, W], Y [N, out] /
// [N, out_c, out_h, out_w] (PyTorch's). A linear geometry with rows > 1 is taken per row
// (geometry.per_row()): every token is a sample, X [N * rows, in], Y [N * rows, out]. Cost of
// gradient() per sample: the forward GEMM, dWq and (when the activation quantizer is trained) dXq:
// three GEMMs.
//
// The convolution Q_w(W + V) * Q_a(X) itself: where both operands lie on their integer grids (a
// conv with one group, inputs of at most 8 bits, per-channel weight codes within 8 signed bits;
// not with QDrop's float inputs or AdaRound's relaxed weights) and the CPU has AVX-512 VNNI, it
// is summed exactly on the integer codes and scaled once, mul_add(float(A), s_w s_a, b')
// (objectives/integer_conv.hpp), elsewhere in float, one fused multiply-add per tap. The two
// differ in the last bits of an output; the integer sum is the closer to the exact one. The
// gradients' products stay in float.
//
// Errors: invalid geometry or schemes, or block-wise weights on a convolution other than 1x1
// (errc::invalid_argument); sizes that disagree
// (errc::shape_mismatch); no samples (errc::empty_input); NaN/inf in W, bias, X or Y
// (errc::non_finite); a state whose sizes do not match (errc::shape_mismatch) or whose scales are
// not positive (errc::invalid_argument); a sample index >= N (errc::invalid_argument).

#include <adaquant/core/error.hpp>
#include <adaquant/core/parallel.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/kernels/fake_quant_backward.hpp>
#include <adaquant/objectives/adaround.hpp>
#include <adaquant/objectives/forward.hpp>
#include <adaquant/objectives/input_drop.hpp>
#include <adaquant/objectives/integer_conv.hpp>
#include <adaquant/objectives/layer_passes.hpp>
#include <adaquant/objectives/layer_state.hpp>
#include <adaquant/objectives/sample_rows.hpp>
#include <adaquant/quant/quant_params.hpp>
#include <adaquant/quant/rounding.hpp>
#include <adaquant/quant/scheme.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

class layer_objective {
 public:
  // weight: W in the layout of geometry.hpp; bias: empty or one per output channel (empty means
  // a zero bias, which AdaQuant may still learn); inputs/targets: N samples each.
  layer_objective(const layer_geometry& geometry, std::span<const float> weight,
                  std::span<const float> bias, std::span<const float> inputs,
                  std::span<const float> targets, const layer_quant_config& config)
      : layer_objective(geometry, weight, bias, std::vector<std::span<const float>>{inputs},
                        targets, config) {}
  // The same with X in runs of whole samples, in sample order.
  layer_objective(const layer_geometry& geometry, std::span<const float> weight,
                  std::span<const float> bias, std::vector<std::span<const float>> input_runs,
                  std::span<const float> targets, const layer_quant_config& config)
      : g_(geometry.per_row()), cfg_(config), w_(weight), b0_(bias), y_(targets) {
    constexpr const char* fn = "layer_objective";
    const std::string f(fn);
    g_.validate(f + ": geometry");
    cfg_.weight_scheme.validate("layer_objective: config.weight_scheme.bits");
    cfg_.act_scheme.validate("layer_objective: config.act_scheme.bits");
    check_weight_blocks(g_, cfg_.weight_block, f + ": config.weight_block");
    wg_ = weight_grouping::of(g_, cfg_.weight_block);
    if (!(w_.size() == g_.weight_size()))
      detail::fail(errc::shape_mismatch, f + ": weight",
                   "has " + std::to_string(w_.size()) + " elements, the geometry needs " +
                       std::to_string(g_.weight_size()));
    if (!(b0_.empty() || b0_.size() == g_.out_channels()))
      detail::fail(errc::shape_mismatch, f + ": bias",
                   "has " + std::to_string(b0_.size()) + " elements, expected 0 or " +
                       std::to_string(g_.out_channels()));
    std::size_t total = 0;
    for (std::span<const float> r : input_runs) total += r.size();
    if (!(total > 0)) detail::fail(errc::empty_input, f + ": inputs", "no calibration samples");
    for (std::size_t r = 0; r < input_runs.size(); ++r)
      if (!(input_runs[r].size() % g_.input_per_sample() == 0))
        detail::fail(errc::shape_mismatch,
                     f + ": inputs" + (input_runs.size() > 1 ? "[" + std::to_string(r) + "]" : ""),
                     std::to_string(input_runs[r].size()) + " elements is not a multiple of the " +
                         std::to_string(g_.input_per_sample()) + " inputs per sample");
    x_ = sample_rows(std::move(input_runs), g_.input_per_sample());
    n_ = x_.samples();
    if (!(y_.size() == n_ * g_.output_per_sample()))
      detail::fail(errc::shape_mismatch, f + ": targets",
                   "has " + std::to_string(y_.size()) + " elements, " + std::to_string(n_) +
                       " samples of " + std::to_string(g_.output_per_sample()) + " outputs need " +
                       std::to_string(n_ * g_.output_per_sample()));
    detail::check_all_finite(w_, f + ": weight");
    detail::check_all_finite(b0_, f + ": bias");
    for (std::size_t r = 0, at = 0; r < x_.runs().size(); at += x_.runs()[r++].size())
      detail::check_all_finite(x_.runs()[r], f + ": inputs", at);
    detail::check_all_finite(y_, f + ": targets");
  }

  [[nodiscard]] const layer_geometry& geometry() const noexcept { return g_; }
  [[nodiscard]] const layer_quant_config& config() const noexcept { return cfg_; }
  [[nodiscard]] std::size_t samples() const noexcept { return n_; }
  [[nodiscard]] std::span<const float> weight() const noexcept { return w_; }
  [[nodiscard]] std::span<const float> bias() const noexcept { return b0_; }
  [[nodiscard]] const sample_rows& inputs() const noexcept { return x_; }
  [[nodiscard]] std::span<const float> targets() const noexcept { return y_; }
  // The weight groups (one scale and zero point each): output channels or blocks of inputs.
  [[nodiscard]] const weight_grouping& weight_groups() const noexcept { return wg_; }

  // Execution only: the direct convolutions of value() and gradient() split their outputs over
  // up to `threads` threads (objectives/direct_conv.hpp; 0: every core), one per `grain`
  // multiply-adds of a pass (default 4e6). Same bits for any count.
  void set_threads(std::size_t threads) noexcept { threads_ = resolve_threads(threads); }
  void set_thread_grain(double macs) noexcept { grain_ = macs; }
  [[nodiscard]] std::size_t threads() const noexcept { return threads_; }

  // The state that reproduces plain round-to-nearest with the given quantization parameters:
  // V = 0, b' = bias, scales and zero points copied. act is ignored when activations are not
  // quantized. Per-channel parameters for per-channel weights, block_params (axis 1 of W
  // [out, k], blocks of config().weight_block) for block-wise ones.
  [[nodiscard]] layer_state initial_state(const channel_params& w, const quant_params& a) const {
    constexpr const char* fn = "layer_objective::initial_state";
    if (cfg_.weight_block)
      detail::fail(errc::invalid_argument, std::string(fn) + ": weight params",
                   "are per channel, the objective quantizes weights in blocks of " +
                       std::to_string(cfg_.weight_block) + " (pass block_params)");
    w.validate("layer_objective::initial_state: weight params");
    if (!(w.channels() == g_.out_channels()))
      detail::fail(errc::shape_mismatch, std::string(fn) + ": weight params",
                   std::to_string(w.channels()) + " channels, the layer has " +
                       std::to_string(g_.out_channels()));
    return initial_state(w.scale, w.zero_point, w.qmin, w.qmax, a);
  }
  [[nodiscard]] layer_state initial_state(const block_params& w, const quant_params& a) const {
    constexpr const char* fn = "layer_objective::initial_state";
    w.validate("layer_objective::initial_state: weight params");
    if (!(w.axis == 1 && w.block_size == cfg_.weight_block))
      detail::fail(errc::invalid_argument, std::string(fn) + ": weight params",
                   "are blocks of " + std::to_string(w.block_size) + " along axis " +
                       std::to_string(w.axis) + ", the objective quantizes weights " +
                       (cfg_.weight_block
                            ? "in blocks of " + std::to_string(cfg_.weight_block) + " along axis 1"
                            : std::string("per channel")));
    if (!(w.blocks() == wg_.groups()))
      detail::fail(
          errc::shape_mismatch, std::string(fn) + ": weight params",
          std::to_string(w.blocks()) + " blocks, the layer has " + std::to_string(wg_.groups()));
    return initial_state(w.scale, w.zero_point, w.qmin, w.qmax, a);
  }

  // The integer-grid parameters a state stands for (zero points rounded and clamped): per
  // channel, or per block (weight_block_params) for block-wise weights.
  [[nodiscard]] channel_params weight_params(const layer_state& s) const {
    check_state(s, "layer_objective::weight_params");
    if (cfg_.weight_block)
      detail::fail(errc::invalid_argument, "layer_objective::weight_params",
                   "weights are block-wise: use weight_block_params");
    channel_params p;
    p.qmin = cfg_.weight_scheme.qmin();
    p.qmax = cfg_.weight_scheme.qmax();
    p.axis = 0;
    p.scale = s.weight_scale;
    p.zero_point = rounded_zero_points(s);
    return p;
  }
  [[nodiscard]] block_params weight_block_params(const layer_state& s) const {
    check_state(s, "layer_objective::weight_block_params");
    if (!cfg_.weight_block)
      detail::fail(errc::invalid_argument, "layer_objective::weight_block_params",
                   "weights are per channel: use weight_params");
    return {s.weight_scale,
            rounded_zero_points(s),
            cfg_.weight_scheme.qmin(),
            cfg_.weight_scheme.qmax(),
            1,
            cfg_.weight_block};
  }
  [[nodiscard]] quant_params act_params(const layer_state& s) const {
    return detail::input_params(cfg_, s);
  }

  // From now on the weights are AdaRound's (objectives/adaround.hpp): the integer parts
  // floor(W / s0) with s0 = s.weight_scale are fixed here, and s.weight_offset is replaced by the
  // logits V with h(V) = frac(W / s0) (so the hardened weights start at round-to-nearest, ties
  // up). zeta > 1 and gamma < 0 (adaround_options::validate).
  void use_adaround(layer_state& s, float zeta, float gamma) {
    check_state(s, "layer_objective::use_adaround");
    adaround_options{.zeta = zeta, .gamma = gamma}.validate("layer_objective::use_adaround");
    detail::start_adaround(cfg_, wg_, w_, s, zeta, gamma, ar_);
  }
  [[nodiscard]] bool adaround() const noexcept { return ar_.on; }

  // Q_w(W + V) (AdaRound: hardened), dequantized, in W's layout.
  [[nodiscard]] std::vector<float> quantized_weights(const layer_state& s) {
    check_state(s, "layer_objective::quantized_weights");
    quantize_weights(s, false, false);
    return wb_.wq;
  }

  // MSE over the given samples (all samples when `batch` is empty); AdaRound: hardened weights.
  [[nodiscard]] double value(const layer_state& s, std::span<const std::size_t> batch = {}) {
    return evaluate(s, batch, false, "layer_objective::value");
  }
  // AdaRound: the MSE of the relaxed weights, the function gradient() differentiates (value()
  // otherwise).
  [[nodiscard]] double relaxed_value(const layer_state& s,
                                     std::span<const std::size_t> batch = {}) {
    return evaluate(s, batch, ar_.on, "layer_objective::relaxed_value");
  }

  // Gradient of value(s, batch) into grad (resized to s's shapes; frozen groups get 0); returns
  // value(s, batch) (AdaRound: of relaxed_value). The batch is processed in one piece. With
  // drop.keep_float > 0 (QDrop, objectives/input_drop.hpp), value and gradient are those of the
  // objective whose input keeps some float elements.
  double gradient(const layer_state& s, std::span<const std::size_t> batch, layer_state& grad,
                  const trainable_groups& which = {}, const input_drop& drop = {}) {
    check_state(s, "layer_objective::gradient");
    check_batch(batch, "layer_objective::gradient");
    drop.validate("layer_objective::gradient: drop.keep_float");
    std::vector<std::size_t> all;
    if (batch.empty()) {
      all.resize(n_);
      for (std::size_t i = 0; i < n_; ++i) all[i] = i;
      batch = all;
    }
    quantize_weights(s, true, ar_.on);
    if (cfg_.quantize_activations)
      detail::input_drop_mask(drop, batch, g_.input_per_sample(), keep_);
    else
      keep_.clear();
    const double sum = forward(s, batch, true);
    backward(s, batch.size(), grad, which);
    return sum / static_cast<double>(batch.size() * g_.output_per_sample());
  }

 private:
  double evaluate(const layer_state& s, std::span<const std::size_t> batch, bool relaxed,
                  const char* fn) {
    check_state(s, fn);
    check_batch(batch, fn);
    quantize_weights(s, false, relaxed);
    double total = 0.0;
    std::size_t count = 0;
    const std::size_t chunk = eval_chunk();
    std::vector<std::size_t> all;
    if (batch.empty()) {
      all.resize(n_);
      for (std::size_t i = 0; i < n_; ++i) all[i] = i;
      batch = all;
    }
    for (std::size_t first = 0; first < batch.size(); first += chunk) {
      const std::size_t m = std::min(chunk, batch.size() - first);
      total += forward(s, batch.subspan(first, m), false);
      count += m;
    }
    return total / static_cast<double>(count * g_.output_per_sample());
  }

  layer_state initial_state(const std::vector<float>& scale, const std::vector<std::int32_t>& zp,
                            std::int32_t qmin, std::int32_t qmax, const quant_params& a) const {
    constexpr const char* fn = "layer_objective::initial_state";
    if (!(qmin == cfg_.weight_scheme.qmin() && qmax == cfg_.weight_scheme.qmax()))
      detail::fail(errc::invalid_argument, std::string(fn) + ": weight params",
                   "grid [" + std::to_string(qmin) + ", " + std::to_string(qmax) +
                       "] differs from the weight scheme's");
    layer_state s;
    s.weight_offset.assign(g_.weight_size(), 0.0f);
    s.bias.assign(g_.out_channels(), 0.0f);
    if (!b0_.empty()) std::copy(b0_.begin(), b0_.end(), s.bias.begin());
    s.weight_scale = scale;
    s.weight_zero_point.resize(scale.size());
    for (std::size_t g = 0; g < scale.size(); ++g)
      s.weight_zero_point[g] = static_cast<float>(
          cfg_.weight_scheme.symmetric ? cfg_.weight_scheme.symmetric_zero_point() : zp[g]);
    if (cfg_.quantize_activations) {
      a.validate("layer_objective::initial_state: act params");
      if (!(a.qmin == cfg_.act_scheme.qmin() && a.qmax == cfg_.act_scheme.qmax()))
        detail::fail(errc::invalid_argument, std::string(fn) + ": act params",
                     "grid [" + std::to_string(a.qmin) + ", " + std::to_string(a.qmax) +
                         "] differs from the activation scheme's");
      s.act_scale = a.scale;
      s.act_zero_point = static_cast<float>(
          cfg_.act_scheme.symmetric ? cfg_.act_scheme.symmetric_zero_point() : a.zero_point);
    }
    return s;
  }
  std::vector<std::int32_t> rounded_zero_points(const layer_state& s) const {
    return detail::rounded_zero_points(cfg_, s);
  }

  void check_state(const layer_state& s, const char* fn) const {
    const auto need = [&](std::size_t got, std::size_t want, const char* name) {
      if (!(got == want))
        detail::fail(errc::shape_mismatch, std::string(fn) + ": state." + name,
                     "has " + std::to_string(got) + " elements, expected " + std::to_string(want));
    };
    need(s.weight_offset.size(), g_.weight_size(), "weight_offset");
    need(s.bias.size(), g_.out_channels(), "bias");
    need(s.weight_scale.size(), wg_.groups(), "weight_scale");
    need(s.weight_zero_point.size(), wg_.groups(), "weight_zero_point");
    for (float v : s.weight_scale)
      if (!(v > 0.0f && detail::is_finite(v)))
        detail::fail(errc::invalid_argument, std::string(fn) + ": state.weight_scale",
                     "scales must be finite and > 0, got " + std::to_string(v));
    if (cfg_.quantize_activations && !(s.act_scale > 0.0f && detail::is_finite(s.act_scale)))
      detail::fail(errc::invalid_argument, std::string(fn) + ": state.act_scale",
                   "must be finite and > 0, got " + std::to_string(s.act_scale));
  }
  void check_batch(std::span<const std::size_t> batch, const char* fn) const {
    detail::check_sample_indices(batch, n_, fn);
  }
  [[nodiscard]] std::size_t eval_chunk() const noexcept {
    std::size_t per = g_.input_per_sample() + 2 * g_.output_per_sample();
    if (g_.kind == layer_kind::conv2d)
      per += g_.conv.in_channels * g_.conv.kernel_h * g_.conv.kernel_w * g_.out_positions();
    return std::max<std::size_t>(1, (std::size_t{1} << 22) / per);
  }

  // The input grid's code of 0 counted from qmin (integer_conv's u_z).
  [[nodiscard]] std::int32_t act_zero_code(const layer_state& s) const {
    return detail::input_params(cfg_, s).zero_point - cfg_.act_scheme.qmin();
  }
  [[nodiscard]] std::size_t conv_threads(std::size_t batch) const noexcept {
    return detail::direct_conv_threads(g_, batch, threads_, grain_);
  }

  void quantize_weights(const layer_state& s, bool want_mask, bool relaxed) {
    detail::quantize_layer_weights(g_, cfg_, wg_, w_, ar_, s, want_mask, relaxed, wb_, threads_);
  }

  // Quantized forward over `batch` (weights already quantized); returns the sum of squared errors.
  // With keep (a training step), applies the QDrop mask keep_ and leaves dL/dY (for the sum,
  // times 2; scaled in backward) in dy_.
  double forward(const layer_state& s, std::span<const std::size_t> batch, bool keep) {
    const std::size_t B = batch.size(), in = g_.input_per_sample(), out = g_.output_per_sample();
    xb_.resize(B * in);
    for (std::size_t n = 0; n < B; ++n)
      std::memcpy(xb_.data() + n * in, x_.row(batch[n]), in * sizeof(float));
    const float* xq = xb_.data();
    if (cfg_.quantize_activations) {
      xq_.resize(B * in);
      xmask_.resize(keep ? B * in : 0);
      detail::quantize_layer_input(cfg_, s, xb_.data(), xq_.data(), B * in,
                                   std::span<std::uint8_t>(xmask_));
      if (keep) detail::apply_input_drop(keep_, xb_.data(), xq_.data(), xmask_.data());
      xq = xq_.data();
    }
    yq_.resize(B * out);
    if (g_.kind == layer_kind::linear) {
      detail::linear_forward_raw(g_.linear, B, xq, wb_.wq.data(), s.bias.data(), yq_.data());
    } else {
      const conv2d_geometry& c = g_.conv;
      const std::size_t kp = g_.weights_per_channel() * g_.out_positions();
      // The im2col columns are kept for dW unless dW is a direct product too.
      const bool cols = keep && !detail::direct_weight_grad_applies(c, B);
      cols_.resize(cols ? B * c.groups * kp : kp);
      xq_padded_ = nullptr;
      // Padded once for the forward and dL/dW.
      if (keep && detail::direct_weight_grad_applies(c, B, true))
        xq_padded_ = xpad_.fill(xq, B, c.in_channels, c.in_h, c.in_w, c.pad_h, c.pad_w);
      // On the integer codes where inputs and weights lie on their grids (objectives/
      // integer_conv.hpp; not with QDrop's float elements, relaxed AdaRound weights, block-wise
      // weights or where im2col columns are kept for dL/dW).
      const bool on_codes =
          !cols && cfg_.quantize_activations && !cfg_.weight_block && !(keep && !keep_.empty()) &&
          detail::integer_conv::applies(c) &&
          int_conv_.run(c, B, xq, s.act_scale, act_zero_code(s),
                        cfg_.act_scheme.qmax() - cfg_.act_scheme.qmin() + 1, wb_.wq.data(),
                        s.weight_scale.data(), s.bias.data(), yq_.data(), conv_threads(B));
      if (!on_codes && xq_padded_)
        detail::direct_conv2d(c, B, xq_padded_, wb_.wq.data(), s.bias.data(), yq_.data(), conv_ws_,
                              conv_threads(B), true);
      else if (!on_codes)
        detail::conv2d_forward_raw(c, B, xq, wb_.wq.data(), s.bias.data(), yq_.data(), cols_.data(),
                                   cols, &conv_ws_, conv_threads(B));
    }
    if (keep) dy_.resize(B * out);
    const float dscale = 2.0f / static_cast<float>(B * out);
    double total = 0.0;
    for (std::size_t n = 0; n < B; ++n)
      total += detail::with_activation(cfg_.activation, [&](auto act) {
        return detail::squared_error_run(act, y_.data() + batch[n] * out, yq_.data() + n * out,
                                         keep ? dy_.data() + n * out : nullptr, dscale, out);
      });
    return total;
  }

  void backward(const layer_state& s, std::size_t B, layer_state& grad,
                const trainable_groups& which) {
    const std::size_t oc = g_.out_channels();
    const std::size_t P = g_.out_positions(), in = g_.input_per_sample();
    // dy_ already holds dL/dY (forward scaled it by 2 / (B * outputs)).

    // weight_offset is overwritten below when trained.
    if (which.weight_offset)
      grad.weight_offset.resize(g_.weight_size());
    else
      grad.weight_offset.assign(g_.weight_size(), 0.0f);
    grad.bias.assign(oc, 0.0f);
    grad.weight_scale.assign(wg_.groups(), 0.0f);
    grad.weight_zero_point.assign(wg_.groups(), 0.0f);
    grad.act_scale = 0.0f;
    grad.act_zero_point = 0.0f;

    if (which.bias) detail::bias_gradient(dy_.data(), B, oc, P, grad.bias.data());

    const bool want_w = which.weight_offset || which.weight_quant;
    const bool want_a = which.act_quant && cfg_.quantize_activations;
    const float* xq = cfg_.quantize_activations ? xq_.data() : xb_.data();
    if (want_w) {
      dwq_.resize(g_.weight_size());
      detail::weight_product_gradient(g_, B, dy_.data(), xq, cols_.data(), dwq_.data(), conv_ws_,
                                      conv_threads(B), xq_padded_);
      detail::weight_quant_backward(cfg_, wg_, s, wb_, ar_.on, dwq_.data(), which, grad, threads_);
    }
    if (want_a) {
      dxq_.resize(B * in);
      const float* dy_padded = nullptr;
      if (g_.kind == layer_kind::conv2d && detail::direct_adjoint_applies(g_.conv)) {
        const conv2d_geometry a = detail::adjoint_geometry(g_.conv);
        dy_padded = dypad_.fill(dy_.data(), B, a.in_channels, a.in_h, a.in_w, a.pad_h, a.pad_w);
      }
      detail::input_product_gradient(g_, B, dy_.data(), wb_.wq.data(), dxq_.data(), dcols_, wt_,
                                     conv_ws_, conv_threads(B), dy_padded);
      double gs = 0.0, gz = 0.0;
      detail::fq_backward_run(xb_.data(), xq_.data(), xmask_.data(), dxq_.data(), B * in,
                              s.act_scale, nullptr, gs, gz);
      grad.act_scale = static_cast<float>(gs);
      if (!cfg_.act_scheme.symmetric) grad.act_zero_point = static_cast<float>(gz);
    }
  }

  layer_geometry g_;
  layer_quant_config cfg_;
  std::span<const float> w_, b0_;
  sample_rows x_;
  std::span<const float> y_;
  std::size_t n_ = 0, threads_ = 1;
  double grain_ = detail::direct_conv_grain;
  weight_grouping wg_;
  detail::quantized_weight_buffers wb_;
  detail::adaround_weights_state ar_;
  std::vector<float> xb_, xq_, yq_, dy_, cols_, dwq_, dxq_, dcols_;
  std::vector<float> wt_, conv_ws_;  // direct convolutions: flipped weights, scratch
  // A training step's padded inputs (null when the products are not direct) and padded dL/dY for
  // the adjoint (padded_batch returns its input itself where nothing is padded).
  detail::padded_batch xpad_, dypad_;
  const float* xq_padded_ = nullptr;
  std::vector<std::uint8_t> xmask_, keep_;
  detail::integer_conv int_conv_;
};

}  // namespace adaquant
