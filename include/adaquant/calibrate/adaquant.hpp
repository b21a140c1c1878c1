#pragma once
// AdaQuant for one layer: minimise layer_objective (objectives/layer_objective.hpp) with Adam over
// mini-batches of the cached calibration samples, starting from round-to-nearest.
//
//   adaquant_layer(geometry, W, b, X, Y, activation, quantizers, options [, initial params])
//   adaquant_optimize(objective, options, initial params)           -> layer_result
//
// What the layer is quantized to is `layer_quantizers`: a quantizer_spec (range/quantizer_spec.hpp)
// for the weights (per output channel, axis 0 of W [out, k]; or per block of inputs, axis 1:
// linear layers and 1x1 convolutions) and, unless activations stay float (weight-only), one for
// the layer's input (per tensor); both with the same rounding policy. Their range methods give
// the starting parameters (estimate_initial_params; the defaults are MSE-optimal clipping of W
// per channel or block and of X per tensor). adaquant_options holds only how the optimisation
// runs.
//
// Learning rates (adaquant_learning_rates). Two modes:
//   relative (our default): a rate is a fraction of the size of what it moves, per iteration:
//     V: rate * s_w[g] (a fraction of the step of the weight's group: its channel or block),
//     s_w: rate * s_w[g],
//     z_w, z_a: rate grid units, s_a: rate * s_a, b': rate * RMS of the channel's target output.
//     Adam's step is about the rate in magnitude, so these transfer across layers and models.
//     Defaults (weight 2e-3, bias 1e-2, weight quantizer 1e-3, act quantizer 1e-3, cosine decay
//     to 0) let V travel up to about one quantization step over 1000 iterations. Measured on
//     real-data layers (docs/adaquant.md): 2e-3 to 5e-3 works best; much larger rates let the
//     straight-through gradient park many weights on rounding ties, where they oscillate; the
//     cosine decay lets that settle.
//   absolute: the paper's code (adaquant_options::paper(): weights 1e-5, bias 1e-3, activation
//     quantizer 1e-1, weight quantizer 1e-3, batch 50, 1000 iterations). Measured with PyTorch
//     fake-quant simulations of small Fashion-MNIST CNNs, weights moved by an absolute 1e-5 travel
//     only 3-8% of a 4-bit step over 1000 iterations (1e-4 worked best there), hence the relative
//     default: absolute rates do not transfer across models.
// Beyond the paper: a held-out split (holdout_fraction) evaluated every eval_every steps; the
// parameters with the lowest held-out MSE (the initial ones included, so never worse than
// round-to-nearest on held-out data) are returned; optionally optimisation stops after `patience`
// evaluations without improvement. bounded_offset keeps |V| <= s_w/2 (learn the rounding only,
// AdaRound-style). Scales are kept >= 1e-3 of their initial value, zero points inside the grid.
// QDrop (qdrop; objectives/input_drop.hpp): training steps keep each input element float with
// probability p; by default (default_qdrop) p = 0.5 on inputs below 4 bits, else 0
// (docs/lowbit.md).
// AdaRound (rounding = weight_rounding::adaround; objectives/adaround.hpp has the maths): W stays
// fixed and V holds rounding logits, started at round-to-nearest, trained with Adam at the
// constant rate adaround.lr plus the annealed regulariser; evaluations and the result use the
// hardened rounding. Bias and quantizers train as above. By default (default_rounding) every layer
// keeps AdaQuant's learned step.
// Deterministic: the seed fixes the split and the mini-batches; the same run gives bit-identical
// results. Errors: those of layer_objective, plus options out of their domain
// (errc::invalid_argument: batch_size, iterations, a zero or negative rate for a trained group,
// holdout_fraction outside [0, 0.9], eval_every 0, qdrop outside [0, 1] or NaN, adaround's settings
// outside their domains: adaround_options::validate, named options.adaround.<member>), quantizers
// the objective cannot take (errc::invalid_argument: weights neither per channel along axis 0 nor
// per block along axis 1, block-wise weights on a convolution other than 1x1, inputs not per
// tensor, two rounding policies), a non-finite loss during optimisation (errc::non_finite).

#include <adaquant/calibrate/chunked_gradient.hpp>
#include <adaquant/calibrate/report.hpp>
#include <adaquant/core/error.hpp>
#include <adaquant/objectives/layer_objective.hpp>
#include <adaquant/optim/adam.hpp>
#include <adaquant/range/quantizer_spec.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

enum class lr_mode { relative, absolute };
// Rate over the run: constant, or cosine decay from the rate to 0 at the last step.
enum class lr_schedule { constant, cosine };

struct adaquant_learning_rates {
  lr_mode mode = lr_mode::relative;
  float weight = 2e-3f;        // V
  float bias = 1e-2f;          // b'
  float weight_quant = 1e-3f;  // s_w, z_w
  float act_quant = 1e-3f;     // s_a, z_a
  lr_schedule schedule = lr_schedule::cosine;

  // The paper's official code: absolute rates.
  [[nodiscard]] static constexpr adaquant_learning_rates paper() noexcept {
    return {lr_mode::absolute, 1e-5f, 1e-3f, 1e-3f, 1e-1f, lr_schedule::constant};
  }
};

// How one layer is quantized: its weight quantizer and, unless `inputs` is empty (activations stay
// float), the quantizer of its input.
struct layer_quantizers {
  quantizer_spec weights = quantizer_spec::weights(4);
  std::optional<quantizer_spec> activations = quantizer_spec::activations(4);

  // The objective's view (grids, weight groups, rounding, whether inputs are quantized) for a
  // layer followed by `activation`. Throws errc::invalid_argument (naming `where`) for bits
  // outside [2, 16], weights neither per channel along axis 0 nor per block along axis 1 (W is
  // [out, k]), inputs not per tensor, or two different rounding policies. Whether the layer can
  // take block-wise weights is check_weight_blocks' (objectives/layer_state.hpp) to say.
  [[nodiscard]] layer_quant_config objective_config(output_activation activation,
                                                    const std::string& where) const {
    weights.validate(where + ".weights");
    const bool blocks = weights.gran.type == granularity::kind::per_block;
    if (!(weights.gran == granularity::per_channel(0) || (blocks && weights.gran.axis == 1)))
      detail::fail(errc::invalid_argument, where + ".weights.gran",
                   "AdaQuant's objective quantizes weights per output channel (axis 0) or per "
                   "block of inputs (axis 1)");
    layer_quant_config c;
    c.weight_scheme = weights.scheme;
    c.weight_block = blocks ? weights.gran.block_size : 0;
    c.rounding = weights.rounding;
    c.activation = activation;
    c.quantize_activations = activations.has_value();
    if (activations) {
      activations->validate(where + ".activations");
      if (!(activations->gran == granularity::per_tensor()))
        detail::fail(errc::invalid_argument, where + ".activations.gran",
                     "AdaQuant's objective quantizes a layer's input per tensor");
      if (!(activations->rounding == weights.rounding))
        detail::fail(errc::invalid_argument, where + ".activations.rounding",
                     "must equal weights.rounding (one rounding policy per layer)");
      c.act_scheme = activations->scheme;
    }
    return c;
  }
};

// How AdaQuant optimises one layer (not what it quantizes to: layer_quantizers).
struct adaquant_options {
  trainable_groups train{};
  adaquant_learning_rates lr{};
  adam_config adam{};
  std::size_t batch_size = 50;  // samples per step (the whole train split if smaller)
  // Bound on one step's cost: the multiply-adds of the layer's forward pass over the step's
  // samples (a step costs about three: forward, dW, dX). A layer whose batch_size samples would
  // exceed it takes floor(step_macs / MACs per sample) samples per step, at least 1
  // (step_samples); 0: no bound. Each step is still a uniform draw of samples from the train
  // split, so the step's loss and gradient stay unbiased estimates of the objective's; only
  // their variance grows. The default leaves every layer up to 2.5 MMAC per sample at 50
  // samples (the Fashion-MNIST models' largest is 0.6 MMAC); an ImageNet-size 3x3 convolution
  // at 56x56 (116 MMAC per sample) gets 1 sample per step (docs/scale.md).
  double step_macs = 1.28e8;
  // How a step splits for threads (calibrate/chunked_gradient.hpp): chunks of floor(chunk_macs /
  // MACs per sample) samples, at least 1, whose gradients are computed in parallel and summed in
  // chunk order; bit-identical for any thread count. A step within chunk_macs is one chunk (the
  // Fashion-MNIST models' steps, up to 0.64 MMAC per sample at 50 samples); 0: never split.
  double chunk_macs = 3.2e7;
  std::size_t iterations = 1000;
  std::uint64_t seed = 0;
  bool bounded_offset = false;    // |V| <= s_w / 2
  float holdout_fraction = 0.1f;  // 0: no held-out split, no early stopping
  std::size_t eval_every = 50;    // held-out evaluation period, in steps
  std::size_t patience = 0;       // evaluations without improvement before stopping; 0: never
  // QDrop (objectives/input_drop.hpp): in each training step every element of the layer's input
  // keeps its float value with this probability, from a stream of the seed and the step number.
  // In [0, 1]; std::nullopt: default_qdrop(the layer's bits). No effect on weight-only layers.
  std::optional<float> qdrop{};
  // How the weights are learned (objectives/adaround.hpp); std::nullopt: default_rounding(the
  // layer's bits). adaround: AdaRound's settings, validated whatever the rounding.
  std::optional<weight_rounding> rounding{};
  adaround_options adaround{};

  // The paper's settings (absolute rates, no held-out split).
  [[nodiscard]] static adaquant_options paper() {
    adaquant_options o;
    o.lr = adaquant_learning_rates::paper();
    o.holdout_fraction = 0.0f;
    return o;
  }
};

struct initial_quant_params {
  channel_params weight;                      // per output channel, axis 0
  std::optional<block_params> weight_blocks;  // block-wise weights: used instead of `weight`
  quant_params act;  // per tensor (ignored when activations are not quantized)
};

struct layer_result {
  layer_state state;           // V, b', scales and continuous zero points
  std::vector<float> weights;  // Q_w(W + V), dequantized, in W's layout
  std::vector<float> bias;     // b'
  // Integer-grid weight parameters: per channel, or (block-wise weights) weight_blocks, set,
  // with weight_params then holding the grid only (no channels).
  channel_params weight_params;
  std::optional<block_params> weight_blocks;
  quant_params act_params;  // input quantizer (meaningless if not quantized)
  layer_report report;
};

// The QDrop probability a layer gets when adaquant_options::qdrop is not set: 0.5 when its input
// is quantized to fewer than 4 bits, else 0. Measured with the advanced pipeline on the
// Fashion-MNIST reference models (docs/lowbit.md): p = 0.5 gained 0.5 points of top-1 at W2A2
// on both, 0.4 at MobileNetV2 W3A3 (ResNet W3A3 -0.1, noise); at W2A4 +0.1 (noise).
[[nodiscard]] inline float default_qdrop(const layer_quant_config& c) noexcept {
  return c.quantize_activations && c.act_scheme.bits < 4 ? 0.5f : 0.0f;
}

// The weight rounding a layer gets when adaquant_options::rounding is not set: AdaQuant's
// learned step (docs/lowbit.md has AdaRound's measurements).
[[nodiscard]] inline weight_rounding default_rounding(const layer_quant_config&) noexcept {
  return weight_rounding::learned_step;
}

// Samples per AdaQuant step of a layer with geometry g (per row, objectives/geometry.hpp) under
// options o: batch_size, or fewer when o.step_macs bounds the step (see adaquant_options).
[[nodiscard]] inline std::size_t step_samples(const adaquant_options& o, const layer_geometry& g) {
  const double per_sample =
      static_cast<double>(g.out_positions()) * static_cast<double>(g.weight_size());
  if (!(o.step_macs > 0.0) || per_sample * static_cast<double>(o.batch_size) <= o.step_macs)
    return o.batch_size;
  return std::max<std::size_t>(1, static_cast<std::size_t>(o.step_macs / per_sample));
}

namespace detail {
// SplitMix64: a tiny, portable generator, so results do not depend on the standard library.
struct splitmix64 {
  std::uint64_t state;
  std::uint64_t next() noexcept {
    std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t n) noexcept {  // n > 0; modulo bias < 2^-40 for our sizes
    return static_cast<std::size_t>(next() % n);
  }
};
inline float schedule_factor(lr_schedule s, std::size_t step, std::size_t steps) noexcept {
  if (s == lr_schedule::constant) return 1.0f;
  const double t = static_cast<double>(step) / static_cast<double>(steps);
  return static_cast<float>(0.5 * (1.0 + std::cos(3.14159265358979323846 * t)));
}
inline void shuffle(std::vector<std::size_t>& v, splitmix64& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

inline void validate_options(const adaquant_options& o) {
  const auto bad = [](const char* arg, const std::string& why) {
    fail(errc::invalid_argument, std::string("adaquant: options.") + arg, why);
  };
  if (!(o.batch_size > 0)) bad("batch_size", "must be > 0");
  if (!(o.step_macs >= 0.0 && std::isfinite(o.step_macs)))
    bad("step_macs", "must be finite and >= 0 (0: no bound), got " + std::to_string(o.step_macs));
  if (!(o.chunk_macs >= 0.0 && std::isfinite(o.chunk_macs)))
    bad("chunk_macs",
        "must be finite and >= 0 (0: never split), got " + std::to_string(o.chunk_macs));
  if (!(o.iterations > 0)) bad("iterations", "must be > 0");
  if (!(o.eval_every > 0)) bad("eval_every", "must be > 0");
  if (o.qdrop) input_drop{*o.qdrop, 0}.validate("adaquant: options.qdrop");
  o.adaround.validate("adaquant: options.adaround");
  if (!(o.holdout_fraction >= 0.0f && o.holdout_fraction <= 0.9f))
    bad("holdout_fraction", "must be in [0, 0.9], got " + std::to_string(o.holdout_fraction));
  const auto rate = [&](bool on, float r, const char* name) {
    if (on && !(r > 0.0f && is_finite(r)))
      bad(name, "learning rate of a trained group must be finite and > 0, got " +
                    std::to_string(r) + " (freeze the group in options.train instead)");
  };
  rate(o.train.weight_offset, o.lr.weight, "lr.weight");
  rate(o.train.bias, o.lr.bias, "lr.bias");
  rate(o.train.weight_quant, o.lr.weight_quant, "lr.weight_quant");
  rate(o.train.act_quant, o.lr.act_quant, "lr.act_quant");
}
}  // namespace detail

// The quantizers an objective's configuration stands for, with the given range methods (for
// callers that build a layer_objective themselves).
[[nodiscard]] inline layer_quantizers quantizers_of(const layer_quant_config& c,
                                                    range_method weights = range_method::mse,
                                                    range_method activations = range_method::mse) {
  layer_quantizers q;
  q.weights = {
      c.weight_scheme,
      c.weight_block ? granularity::per_block(1, c.weight_block) : granularity::per_channel(0),
      c.rounding,
      weights,
      {}};
  if (c.quantize_activations)
    q.activations =
        quantizer_spec{c.act_scheme, granularity::per_tensor(), c.rounding, activations, {}};
  else
    q.activations.reset();
  return q;
}

// Starting parameters from the quantizers' range methods (range/quantizer_spec.hpp): per output
// channel or per block on W, per tensor on all cached inputs X. An all-zero channel or block
// gets scale FLT_EPSILON.
[[nodiscard]] inline initial_quant_params estimate_initial_params(const layer_objective& obj,
                                                                  const layer_quantizers& q) {
  const layer_quant_config& cfg = obj.config();
  const layer_quant_config qc =
      q.objective_config(cfg.activation, "estimate_initial_params: quantizers");
  if (!(qc.weight_scheme == cfg.weight_scheme && qc.weight_block == cfg.weight_block &&
        qc.rounding == cfg.rounding && qc.quantize_activations == cfg.quantize_activations &&
        (!q.activations || qc.act_scheme == cfg.act_scheme)))
    detail::fail(errc::invalid_argument, "estimate_initial_params: quantizers",
                 "differ from the objective's configuration");
  const std::size_t oc = obj.geometry().out_channels(), k = obj.geometry().weights_per_channel();
  const tensor_view<const float> w(obj.weight().data(), {oc, k});
  initial_quant_params p;
  if (cfg.weight_block) {
    p.weight = {{}, {}, cfg.weight_scheme.qmin(), cfg.weight_scheme.qmax(), 0};
    p.weight_blocks = estimate_block_params(w, q.weights, zero_range::use_epsilon);
  } else {
    p.weight = estimate_channel_params(w, q.weights, zero_range::use_epsilon);
  }
  if (q.activations)
    p.act = estimate_tensor_params(tensor_view<const float>(obj.inputs()), *q.activations,
                                   zero_range::use_epsilon);
  else
    p.act = quant_params{1.0f, 0, cfg.act_scheme.qmin(), cfg.act_scheme.qmax()};
  return p;
}

// Optimises one layer from the starting parameters `init` (e.g. estimate_initial_params). The
// objective's config (grids, rounding, activation) is used. threads (0: every core) compute a
// step's chunks (options.chunk_macs) in parallel; the result does not depend on it.
inline layer_result adaquant_optimize(layer_objective& obj, const adaquant_options& opt,
                                      const initial_quant_params& init, std::size_t threads = 1) {
  detail::validate_options(opt);
  const auto t0 = std::chrono::steady_clock::now();
  const layer_quant_config& cfg = obj.config();
  const layer_geometry& g = obj.geometry();
  const std::size_t oc = g.out_channels(), k = g.weights_per_channel();
  const std::size_t N = obj.samples();
  const weight_grouping& wg = obj.weight_groups();

  layer_state state = init.weight_blocks ? obj.initial_state(*init.weight_blocks, init.act)
                                         : obj.initial_state(init.weight, init.act);
  const bool ada = opt.rounding.value_or(default_rounding(cfg)) == weight_rounding::adaround;
  if (ada) obj.use_adaround(state, opt.adaround.zeta, opt.adaround.gamma);
  if (!ada && obj.adaround())
    detail::fail(errc::invalid_argument, "adaquant: objective",
                 "uses AdaRound (use_adaround) but options.rounding is learned_step");
  const std::vector<float> scale0 = state.weight_scale;
  const float act_scale0 = state.act_scale;

  // Split.
  detail::splitmix64 rng{opt.seed};
  std::vector<std::size_t> order(N);
  for (std::size_t i = 0; i < N; ++i) order[i] = i;
  detail::shuffle(order, rng);
  std::size_t n_hold =
      static_cast<std::size_t>(static_cast<double>(N) * static_cast<double>(opt.holdout_fraction));
  if (n_hold >= N) n_hold = N - 1;
  std::vector<std::size_t> hold(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_hold));
  std::vector<std::size_t> train(order.begin() + static_cast<std::ptrdiff_t>(n_hold), order.end());
  std::sort(hold.begin(), hold.end());  // evaluation order independent of the shuffle
  std::vector<std::size_t> train_sorted = train;
  std::sort(train_sorted.begin(), train_sorted.end());

  layer_report rep;
  rep.train_samples = train.size();
  rep.heldout_samples = hold.size();
  rep.mse_before = obj.value(state, train_sorted);
  if (!hold.empty()) rep.heldout_before = obj.value(state, hold);

  // Per-channel RMS of the targets: the unit of the relative bias rate.
  std::vector<float> bias_unit(oc, 1.0f);
  if (opt.lr.mode == lr_mode::relative) {
    const auto y = obj.targets();
    const std::size_t P = g.out_positions();
    std::vector<double> acc(oc, 0.0);
    for (std::size_t n = 0; n < N; ++n)
      for (std::size_t c = 0; c < oc; ++c)
        for (std::size_t p = 0; p < P; ++p) {
          const double v = y[(n * oc + c) * P + p];
          acc[c] += v * v;
        }
    for (std::size_t c = 0; c < oc; ++c)
      bias_unit[c] = static_cast<float>(std::sqrt(acc[c] / static_cast<double>(N * P))) + 1e-6f;
  }

  const trainable_groups& tr = opt.train;
  const bool train_act = tr.act_quant && cfg.quantize_activations;
  const bool w_zp = tr.weight_quant && !cfg.weight_scheme.symmetric;
  const bool a_zp = train_act && !cfg.act_scheme.symmetric;
  adam opt_v(tr.weight_offset ? state.weight_offset.size() : 0, opt.adam);
  adam opt_b(tr.bias ? oc : 0, opt.adam);
  adam opt_ws(tr.weight_quant ? wg.groups() : 0, opt.adam);
  adam opt_wz(w_zp ? wg.groups() : 0, opt.adam);
  adam opt_as(train_act ? 1 : 0, opt.adam);
  adam opt_az(a_zp ? 1 : 0, opt.adam);
  const bool rel = opt.lr.mode == lr_mode::relative;
  std::vector<float> lr_v(wg.groups()), lr_b(oc), lr_ws(wg.groups());

  layer_state grad, best = state;
  double best_hold = rep.heldout_before;
  std::size_t since_best = 0;
  const std::size_t B = std::min(step_samples(opt, g), train.size());
  std::vector<std::size_t> perm = train;
  std::size_t cursor = perm.size();  // forces a shuffle on the first step
  std::vector<std::size_t> batch(B);
  detail::chunked_gradient step_gradient(obj, detail::chunk_samples(opt.chunk_macs, g, B), threads);
  const float wqmin = static_cast<float>(cfg.weight_scheme.qmin());
  const float wqmax = static_cast<float>(cfg.weight_scheme.qmax());
  const float aqmin = static_cast<float>(cfg.act_scheme.qmin());
  const float aqmax = static_cast<float>(cfg.act_scheme.qmax());
  const float qdrop = opt.qdrop ? *opt.qdrop : default_qdrop(cfg);

  std::size_t it = 0;
  while (it < opt.iterations) {
    for (std::size_t j = 0; j < B; ++j) {
      if (cursor == perm.size()) {
        detail::shuffle(perm, rng);
        cursor = 0;
      }
      batch[j] = perm[cursor++];
    }
    const double loss =
        step_gradient(state, batch, grad, tr, {qdrop, detail::mix_seed(opt.seed, it)});
    if (!std::isfinite(loss))
      detail::fail(errc::non_finite, "adaquant: loss",
                   "became " + std::to_string(loss) + " at step " + std::to_string(it + 1));
    const float f = detail::schedule_factor(opt.lr.schedule, it, opt.iterations);
    if (ada && tr.weight_offset) {
      const float beta = opt.adaround.beta(it, opt.iterations);
      if (beta > 0.0f && opt.adaround.lambda > 0.0f)
        detail::adaround_regulariser(
            state.weight_offset, beta, opt.adaround.zeta, opt.adaround.gamma,
            opt.adaround.lambda / static_cast<float>(oc), grad.weight_offset);
    }
    ++it;
    const float r_v = f * opt.lr.weight, r_b = f * opt.lr.bias;
    const float r_wq = f * opt.lr.weight_quant, r_aq = f * opt.lr.act_quant;
    for (std::size_t c = 0; c < oc; ++c) lr_b[c] = rel ? r_b * bias_unit[c] : r_b;
    for (std::size_t gr = 0; gr < wg.groups(); ++gr) {
      lr_v[gr] = ada ? opt.adaround.lr : rel ? r_v * state.weight_scale[gr] : r_v;
      lr_ws[gr] = rel ? r_wq * state.weight_scale[gr] : r_wq;
    }
    if (tr.weight_offset) opt_v.step(state.weight_offset, grad.weight_offset, lr_v, wg.size, k);
    if (tr.bias) opt_b.step(state.bias, grad.bias, lr_b, 1);
    if (tr.weight_quant) {
      opt_ws.step(state.weight_scale, grad.weight_scale, lr_ws, 1);
      for (std::size_t gr = 0; gr < wg.groups(); ++gr)
        state.weight_scale[gr] = std::max(state.weight_scale[gr], 1e-3f * scale0[gr]);
    }
    if (w_zp) {
      opt_wz.step(state.weight_zero_point, grad.weight_zero_point,
                  std::span<const float>(&r_wq, 1));
      for (float& z : state.weight_zero_point) z = std::clamp(z, wqmin, wqmax);
    }
    if (train_act) {
      opt_as.step(state.act_scale, grad.act_scale, rel ? r_aq * state.act_scale : r_aq);
      state.act_scale = std::max(state.act_scale, 1e-3f * act_scale0);
    }
    if (a_zp) {
      opt_az.step(state.act_zero_point, grad.act_zero_point, r_aq);
      state.act_zero_point = std::clamp(state.act_zero_point, aqmin, aqmax);
    }
    if (opt.bounded_offset && tr.weight_offset && !ada)
      for (std::size_t gr = 0; gr < wg.groups(); ++gr) {
        const float h = 0.5f * state.weight_scale[gr];
        float* v = state.weight_offset.data() + wg.first(gr);
        for (std::size_t j = 0; j < wg.length(gr); ++j) v[j] = std::clamp(v[j], -h, h);
      }
    if (!hold.empty() && (it % opt.eval_every == 0 || it == opt.iterations)) {
      const double h = obj.value(state, hold);
      if (h < best_hold) {
        best_hold = h;
        best = state;
        rep.best_iteration = it;
        since_best = 0;
      } else if (opt.patience > 0 && ++since_best >= opt.patience) {
        rep.stopped_early = true;
        break;
      }
    }
  }
  rep.iterations = it;
  if (!hold.empty())
    state = best;
  else
    rep.best_iteration = it;

  layer_result res;
  res.report = rep;
  res.report.mse_after = obj.value(state, train_sorted);
  if (!hold.empty()) res.report.heldout_after = obj.value(state, hold);
  res.weights = obj.quantized_weights(state);
  res.bias = state.bias;
  if (cfg.weight_block) {
    res.weight_blocks = obj.weight_block_params(state);
    res.weight_params = {{}, {}, res.weight_blocks->qmin, res.weight_blocks->qmax, 0};
  } else {
    res.weight_params = obj.weight_params(state);
  }
  res.act_params = obj.act_params(state);
  res.state = std::move(state);
  res.report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

// Convenience: builds the objective from cached data (X [N, ...], Y [N, ...]; see
// objectives/geometry.hpp) for `quantizers` and the given activation, and optimises it from
// `init`, or from the quantizers' estimated ranges when init is null.
inline layer_result adaquant_layer(const layer_geometry& geometry, std::span<const float> weight,
                                   std::span<const float> bias, std::span<const float> inputs,
                                   std::span<const float> targets, output_activation activation,
                                   const layer_quantizers& quantizers, const adaquant_options& opt,
                                   const initial_quant_params* init = nullptr) {
  detail::validate_options(opt);
  layer_objective obj(geometry, weight, bias, inputs, targets,
                      quantizers.objective_config(activation, "adaquant_layer: quantizers"));
  return adaquant_optimize(obj, opt, init ? *init : estimate_initial_params(obj, quantizers));
}

}  // namespace adaquant
