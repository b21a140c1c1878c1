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
//     to 0) let V travel up to about one quantization step over 1000 iterations (weights above 4
//     bits with inputs below 4 bits: up to about one 4-bit step, default_weight_rate). Measured on
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
// probability p; by default (default_qdrop) p = 0.5 on layers with inputs or weights below 4
// bits, else 0 (adaquant_calibrate: p = 0.5 on every layer of a network below 4 bits somewhere)
// (docs/lowbit.md).
// AdaRound (rounding = weight_rounding::adaround; objectives/adaround.hpp has the maths): W stays
// fixed and V holds rounding logits, started at round-to-nearest, trained with Adam at the
// constant rate adaround.lr plus the annealed regulariser; evaluations and the result use the
// hardened rounding. Bias and quantizers train as above. By default (default_rounding) layers with
// weights below 4 bits use AdaRound, the others AdaQuant's learned step (docs/lowbit.md).
// Deterministic: the seed fixes the split and the mini-batches; the same run gives bit-identical
// results. Errors: those of layer_objective, plus options out of their domain
// (errc::invalid_argument: batch_size, iterations, a zero or negative rate for a trained group,
// holdout_fraction outside [0, 0.9], eval_every 0, qdrop outside [0, 1] or NaN, adaround's settings
// outside their domains: adaround_options::validate, named options.adaround.<member>), quantizers
// the objective cannot take (errc::invalid_argument: weights neither per channel along axis 0 nor
// per block along axis 1, block-wise weights on a convolution other than 1x1, inputs not per
// tensor, two rounding policies), a non-finite loss during optimisation (errc::non_finite).

#include <adaquant/calibrate/adaquant_options.hpp>
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

namespace detail {
// The pieces of an AdaQuant run that the per-layer (adaquant_optimize) and the block optimiser
// (calibrate/block.hpp) share.

// The held-out split of N samples (holdout_fraction of them, at most N - 1) and the training
// samples, from a shuffle by rng; hold and train_sorted sorted (evaluation order independent of
// the shuffle).
struct sample_split {
  std::vector<std::size_t> train, hold, train_sorted;
};
inline sample_split split_samples(std::size_t N, float holdout_fraction, splitmix64& rng) {
  std::vector<std::size_t> order(N);
  for (std::size_t i = 0; i < N; ++i) order[i] = i;
  shuffle(order, rng);
  std::size_t n_hold =
      static_cast<std::size_t>(static_cast<double>(N) * static_cast<double>(holdout_fraction));
  if (n_hold >= N) n_hold = N - 1;
  sample_split r;
  r.hold.assign(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_hold));
  r.train.assign(order.begin() + static_cast<std::ptrdiff_t>(n_hold), order.end());
  std::sort(r.hold.begin(), r.hold.end());
  r.train_sorted = r.train;
  std::sort(r.train_sorted.begin(), r.train_sorted.end());
  return r;
}

// Mini-batches: uniform draws without replacement from the training samples, reshuffled by rng
// whenever they run out.
struct batch_sampler {
  std::vector<std::size_t> perm;
  std::size_t cursor = 0;
  explicit batch_sampler(std::vector<std::size_t> train)
      : perm(std::move(train)), cursor(perm.size()) {}
  void draw(std::vector<std::size_t>& batch, splitmix64& rng) {
    for (std::size_t& b : batch) {
      if (cursor == perm.size()) {
        shuffle(perm, rng);
        cursor = 0;
      }
      b = perm[cursor++];
    }
  }
};

// AdaRound's regulariser weight per weight group (objectives/adaround.hpp): lambda s0_g^2 E[x^2] /
// C, E[x^2] the mean square of the layer's cached inputs.
inline std::vector<float> adaround_regulariser_weights(const layer_objective& obj,
                                                       std::span<const float> scale0,
                                                       float lambda) {
  double ex2 = 0.0;
  for (std::span<const float> run : obj.inputs().runs())
    for (float v : run) ex2 += static_cast<double>(v) * v;
  ex2 /= static_cast<double>(std::max<std::size_t>(obj.inputs().elements(), 1));
  const double c =
      static_cast<double>(lambda) * ex2 / static_cast<double>(obj.geometry().out_channels());
  std::vector<float> w(scale0.size());
  for (std::size_t g = 0; g < w.size(); ++g)
    w[g] = static_cast<float>(c * static_cast<double>(scale0[g]) * scale0[g]);
  return w;
}

// Adam over one layer's trainable groups with adaquant_options' learning rates (relative or
// absolute, scheduled), AdaRound's regulariser, and the clamps of scales, zero points and
// (bounded_offset) V.
class layer_trainer {
 public:
  // obj.targets() (full-precision outputs) give the unit of the relative bias rate.
  // threads: Adam's update of the weight offsets (adam::step; same bits for any count).
  layer_trainer(const layer_objective& obj, const adaquant_options& opt, const layer_state& state,
                bool adaround, std::size_t threads = 1)
      : opt_(opt),
        threads_(threads),
        cfg_(obj.config()),
        wg_(obj.weight_groups()),
        ada_(adaround),
        oc_(obj.geometry().out_channels()),
        k_(obj.geometry().weights_per_channel()),
        scale0_(state.weight_scale),
        act_scale0_(state.act_scale),
        bias_unit_(oc_, 1.0f) {
    const trainable_groups& tr = opt.train;
    train_act_ = tr.act_quant && cfg_.quantize_activations;
    w_zp_ = tr.weight_quant && !cfg_.weight_scheme.symmetric;
    a_zp_ = train_act_ && !cfg_.act_scheme.symmetric;
    opt_v_ = adam(tr.weight_offset ? state.weight_offset.size() : 0, opt.adam);
    opt_b_ = adam(tr.bias ? oc_ : 0, opt.adam);
    opt_ws_ = adam(tr.weight_quant ? wg_.groups() : 0, opt.adam);
    opt_wz_ = adam(w_zp_ ? wg_.groups() : 0, opt.adam);
    opt_as_ = adam(train_act_ ? 1 : 0, opt.adam);
    opt_az_ = adam(a_zp_ ? 1 : 0, opt.adam);
    lr_v_.resize(wg_.groups());
    lr_b_.resize(oc_);
    lr_ws_.resize(wg_.groups());
    weight_rate_ =
        ada_ ? opt.adaround.lr : opt.lr.weight.value_or(default_weight_rate(cfg_, opt.lr.mode));
    if (ada_) reg_weight_ = adaround_regulariser_weights(obj, scale0_, opt.adaround.lambda);
    // Per-channel RMS of the targets: the unit of the relative bias rate.
    if (opt.lr.mode == lr_mode::relative) {
      const auto y = obj.targets();
      const std::size_t P = obj.geometry().out_positions(), N = obj.samples();
      std::vector<double> acc(oc_, 0.0);
      for (std::size_t n = 0; n < N; ++n)
        for (std::size_t c = 0; c < oc_; ++c)
          for (std::size_t p = 0; p < P; ++p) {
            const double v = y[(n * oc_ + c) * P + p];
            acc[c] += v * v;
          }
      for (std::size_t c = 0; c < oc_; ++c)
        bias_unit_[c] = static_cast<float>(std::sqrt(acc[c] / static_cast<double>(N * P))) + 1e-6f;
    }
  }

  // The rate V moves with: the learned step's (its mode, before the schedule) or AdaRound's.
  [[nodiscard]] float weight_rate() const noexcept { return weight_rate_; }

  // One Adam step at step number it (0-based) of opt.iterations.
  void step(layer_state& state, layer_state& grad, std::size_t it) {
    const adaquant_options& opt = opt_;
    const trainable_groups& tr = opt.train;
    const float f = schedule_factor(opt.lr.schedule, it, opt.iterations);
    if (ada_ && tr.weight_offset) {
      const float beta = opt.adaround.beta(it, opt.iterations);
      if (beta > 0.0f && opt.adaround.lambda > 0.0f)
        for (std::size_t gr = 0; gr < wg_.groups(); ++gr) {
          const std::size_t at = wg_.first(gr), n = wg_.length(gr);
          adaround_regulariser(std::span<const float>(state.weight_offset).subspan(at, n), beta,
                               opt.adaround.zeta, opt.adaround.gamma, reg_weight_[gr],
                               std::span<float>(grad.weight_offset).subspan(at, n));
        }
    }
    const bool rel = opt.lr.mode == lr_mode::relative;
    const float r_v = f * weight_rate_, r_b = f * opt.lr.bias;
    const float r_wq = f * opt.lr.weight_quant, r_aq = f * opt.lr.act_quant;
    for (std::size_t c = 0; c < oc_; ++c) lr_b_[c] = rel ? r_b * bias_unit_[c] : r_b;
    for (std::size_t gr = 0; gr < wg_.groups(); ++gr) {
      lr_v_[gr] = ada_ ? weight_rate_ : rel ? r_v * state.weight_scale[gr] : r_v;
      lr_ws_[gr] = rel ? r_wq * state.weight_scale[gr] : r_wq;
    }
    if (tr.weight_offset)
      opt_v_.step(state.weight_offset, grad.weight_offset, lr_v_, wg_.size, k_, threads_);
    if (tr.bias) opt_b_.step(state.bias, grad.bias, lr_b_, 1);
    if (tr.weight_quant) {
      opt_ws_.step(state.weight_scale, grad.weight_scale, lr_ws_, 1);
      for (std::size_t gr = 0; gr < wg_.groups(); ++gr)
        state.weight_scale[gr] = std::max(state.weight_scale[gr], 1e-3f * scale0_[gr]);
    }
    if (w_zp_) {
      const float wqmin = static_cast<float>(cfg_.weight_scheme.qmin());
      const float wqmax = static_cast<float>(cfg_.weight_scheme.qmax());
      opt_wz_.step(state.weight_zero_point, grad.weight_zero_point,
                   std::span<const float>(&r_wq, 1));
      for (float& z : state.weight_zero_point) z = std::clamp(z, wqmin, wqmax);
    }
    if (train_act_) {
      opt_as_.step(state.act_scale, grad.act_scale, rel ? r_aq * state.act_scale : r_aq);
      state.act_scale = std::max(state.act_scale, 1e-3f * act_scale0_);
    }
    if (a_zp_) {
      opt_az_.step(state.act_zero_point, grad.act_zero_point, r_aq);
      state.act_zero_point =
          std::clamp(state.act_zero_point, static_cast<float>(cfg_.act_scheme.qmin()),
                     static_cast<float>(cfg_.act_scheme.qmax()));
    }
    if (opt.bounded_offset && tr.weight_offset && !ada_)
      for (std::size_t gr = 0; gr < wg_.groups(); ++gr) {
        const float h = 0.5f * state.weight_scale[gr];
        float* v = state.weight_offset.data() + wg_.first(gr);
        for (std::size_t j = 0; j < wg_.length(gr); ++j) v[j] = std::clamp(v[j], -h, h);
      }
  }

 private:
  const adaquant_options& opt_;
  std::size_t threads_ = 1;
  layer_quant_config cfg_;
  weight_grouping wg_;
  bool ada_ = false, train_act_ = false, w_zp_ = false, a_zp_ = false;
  std::size_t oc_ = 0, k_ = 0;
  std::vector<float> scale0_;
  float act_scale0_ = 1.0f, weight_rate_ = 0.0f;
  std::vector<float> bias_unit_, lr_v_, lr_b_, lr_ws_, reg_weight_;
  adam opt_v_, opt_b_, opt_ws_, opt_wz_, opt_as_, opt_az_;
};

// The starting state of obj from init, switched to AdaRound by use_adaround(state) when the
// options ask for it; returns whether AdaRound is on.
template <class UseAdaround>
bool start_state(const layer_objective& obj, const adaquant_options& opt,
                 const initial_quant_params& init, layer_state& state, UseAdaround use_adaround) {
  state = init.weight_blocks ? obj.initial_state(*init.weight_blocks, init.act)
                             : obj.initial_state(init.weight, init.act);
  const bool ada =
      opt.rounding.value_or(default_rounding(obj.config())) == weight_rounding::adaround;
  if (ada) use_adaround(state);
  if (!ada && obj.adaround())
    fail(errc::invalid_argument, "adaquant: objective",
         "uses AdaRound (use_adaround) but options.rounding is learned_step");
  return ada;
}

// The report's split sizes and MSEs before optimisation (value(samples): the objective there).
template <class Value>
layer_report report_before(const sample_split& split, Value value) {
  layer_report rep;
  rep.train_samples = split.train.size();
  rep.heldout_samples = split.hold.size();
  rep.mse_before = value(std::span<const std::size_t>(split.train_sorted));
  if (!split.hold.empty()) rep.heldout_before = value(std::span<const std::size_t>(split.hold));
  return rep;
}

// AdaQuant's loop: opt.iterations steps (step(state, batch, it) returns the loss of the
// step's batch, drawn from split.train, and moves state), the held-out selection every
// eval_every steps (held_out(state): the held-out MSE; the best state is kept, the initial one
// included, rep.heldout_before its value) and early stopping; a non-finite loss is an error
// naming `where`. state ends as the selected one; rep gets iterations, best_iteration and
// stopped_early.
template <class State, class Step, class HeldOut>
void run_steps(const adaquant_options& opt, const sample_split& split, std::size_t batch_size,
               splitmix64& rng, State& state, layer_report& rep, const char* where, Step step,
               HeldOut held_out) {
  const bool hold = !split.hold.empty();
  State best = state;
  double best_hold = rep.heldout_before;
  std::size_t since_best = 0;
  batch_sampler sampler(split.train);
  std::vector<std::size_t> batch(batch_size);
  std::size_t it = 0;
  while (it < opt.iterations) {
    sampler.draw(batch, rng);
    const double loss = step(state, std::span<const std::size_t>(batch), it);
    if (!std::isfinite(loss))
      fail(errc::non_finite, where,
           "became " + std::to_string(loss) + " at step " + std::to_string(it + 1));
    ++it;
    if (hold && (it % opt.eval_every == 0 || it == opt.iterations)) {
      const double h = held_out(state);
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
  if (hold)
    state = std::move(best);
  else
    rep.best_iteration = it;
}

// Weights, bias and integer grids of `state` into res (report untouched).
inline void fill_result(layer_objective& obj, layer_state state, layer_result& res) {
  res.weights = obj.quantized_weights(state);
  res.bias = state.bias;
  if (obj.config().weight_block) {
    res.weight_blocks = obj.weight_block_params(state);
    res.weight_params = {{}, {}, res.weight_blocks->qmin, res.weight_blocks->qmax, 0};
  } else {
    res.weight_params = obj.weight_params(state);
  }
  res.act_params = obj.act_params(state);
  res.state = std::move(state);
}
}  // namespace detail

// Optimises one layer from the starting parameters `init` (e.g. estimate_initial_params). The
// objective's config (grids, rounding, activation) is used. threads (0: every core) compute a
// step's chunks (options.chunk_macs) in parallel, and split each sample's convolutions where a
// step has fewer chunks than threads and in the evaluations; the result does not depend on it.
inline layer_result adaquant_optimize(layer_objective& obj, const adaquant_options& opt,
                                      const initial_quant_params& init, std::size_t threads = 1) {
  detail::validate_options(opt);
  const auto t0 = std::chrono::steady_clock::now();
  const layer_quant_config& cfg = obj.config();
  const layer_geometry& g = obj.geometry();
  const detail::scoped_threads eval_threads(obj, threads);  // value(); the steps set their own

  layer_state state;
  const bool ada = detail::start_state(obj, opt, init, state, [&](layer_state& s) {
    obj.use_adaround(s, opt.adaround.zeta, opt.adaround.gamma);
  });

  detail::splitmix64 rng{opt.seed};
  const detail::sample_split split =
      detail::split_samples(obj.samples(), opt.holdout_fraction, rng);
  const std::vector<std::size_t>& hold = split.hold;

  layer_report rep = detail::report_before(
      split, [&](std::span<const std::size_t> samples) { return obj.value(state, samples); });

  detail::layer_trainer trainer(obj, opt, state, ada, threads);
  layer_state grad;
  const std::size_t B = std::min(step_samples(opt, g), split.train.size());
  const float qdrop = opt.qdrop ? *opt.qdrop : default_qdrop(cfg);
  detail::chunked_gradient step_gradient(obj, detail::chunk_samples(opt.chunk_macs, g, B), threads);

  detail::run_steps(
      opt, split, B, rng, state, rep, "adaquant: loss",
      [&](layer_state& st, std::span<const std::size_t> batch, std::size_t it) {
        const double loss =
            step_gradient(st, batch, grad, opt.train, {qdrop, detail::mix_seed(opt.seed, it)});
        if (std::isfinite(loss)) trainer.step(st, grad, it);
        return loss;
      },
      [&](const layer_state& st) { return obj.value(st, hold); });

  rep.adaround = ada;
  rep.qdrop = qdrop;
  rep.weight_rate = trainer.weight_rate();
  rep.step_samples = B;
  layer_result res;
  res.report = rep;
  res.report.mse_after = obj.value(state, split.train_sorted);
  if (!hold.empty()) res.report.heldout_after = obj.value(state, hold);
  detail::fill_result(obj, std::move(state), res);
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
