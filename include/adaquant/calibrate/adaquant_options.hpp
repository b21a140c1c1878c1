#pragma once
// What AdaQuant's per-layer and block optimisers (calibrate/adaquant.hpp, calibrate/block.hpp)
// are given and return: adaquant_options (how a layer is optimised; the meaning of every option,
// the learning-rate modes and the defaults are documented in calibrate/adaquant.hpp),
// layer_quantizers (what it is quantized to), initial_quant_params and layer_result, the
// bit-width-dependent defaults (default_qdrop, default_rounding, default_weight_rate; their
// defaults_revision), step_samples, and the starting parameters from the quantizers' ranges
// (quantizers_of, estimate_initial_params).

#include <adaquant/calibrate/report.hpp>
#include <adaquant/core/error.hpp>
#include <adaquant/objectives/layer_objective.hpp>
#include <adaquant/optim/adam.hpp>
#include <adaquant/range/quantizer_spec.hpp>

#include <algorithm>
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
  std::optional<float> weight{};  // V; std::nullopt: default_weight_rate(the layer, mode)
  float bias = 1e-2f;             // b'
  float weight_quant = 1e-3f;     // s_w, z_w
  float act_quant = 1e-3f;        // s_a, z_a
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
  // at 56x56 (116 MMAC per sample) gets 1 sample per step (docs/scale.md). A block of L layers
  // is bounded by L * step_macs (block_step_samples, calibrate/block.hpp).
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
  // Block reconstruction only (calibrate/block.hpp): the weight mu of the inner term, each layer's
  // error against its full-precision output inside the block (deep supervision;
  // objectives/block_objective.hpp has the maths). Finite and >= 0, 0: the block output's error
  // alone; std::nullopt: default_inner_weight(the block's layer count).
  std::optional<float> inner_weight{};
  // Block reconstruction only, on a network with calibration_loss() (LossNetwork,
  // calibrate/network.hpp): after the block's run, a second run from the same start with this
  // many iterations (the same seed, split and batches; the schedules stretched to its length);
  // the network's calibration_loss() with each run's layers quantized (the layers after the
  // block in full precision) decides which run is kept, the first on a tie. It costs the trial's
  // steps and two evaluations of the loss; it never keeps a run whose loss is higher. 0: no
  // trial; std::nullopt: default_trial_iterations(the block's layer count, iterations). Ignored
  // for layers optimised alone and on networks without calibration_loss().
  std::optional<std::size_t> trial_iterations{};

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

// The revision of what an option left unset resolves to: default_qdrop, default_rounding,
// default_weight_rate, default_inner_weight, default_block_reconstruction and
// default_block_selection (calibrate/calibration_options.hpp) and the constant defaults of
// adaquant_options. A run that leaves them unset computes other results under another revision, so
// whoever identifies a run for a checkpoint store records it with the run's settings (the example
// CLIs' checkpoint manifest does: a folder made under another revision is refused). Raised with
// every change to what one of them returns (1: QDrop on every layer of a network below 4 bits,
// AdaRound and whole blocks below 4 weight bits; 2: with an input below 3 bits, the longest runs of
// layers as blocks; 3: default_weight_rate, a larger rate of V for weights above 4 bits with inputs
// below 4 bits, and step_macs bounding a block's step per layer, block_step_samples in
// calibrate/block.hpp; 4: default_inner_weight, the inner term on blocks of more than 3 layers; 5:
// default_trial_iterations, a trial run of twice the iterations on blocks of more than 3 layers;
// 6: default_block_reconstruction, whole blocks also when the network's input is quantized to 4
// bits or fewer).
inline constexpr std::uint32_t defaults_revision = 6;

// The QDrop probability a layer gets when adaquant_options::qdrop is not set: 0.5 when its input
// is quantized and the network it belongs to is quantized below 4 bits somewhere (weights or
// inputs of any layer: network_below_4_bits; adaquant_calibrate passes it), or the layer itself
// is (its weights or its input); else 0. So below 4 bits every layer with a quantized input drops,
// the first/last layers at 8 bits included. Measured with the advanced pipeline on the
// Fashion-MNIST reference models (docs/lowbit.md): p = 0.5 gained 0.5 points of top-1 at W2A2 on
// both, 0.4 at MobileNetV2 W3A3 (ResNet W3A3 -0.1, noise); later, over 3-5 seeds, dropping on
// every layer gained MobileNetV2 0.33 at W2A4 (on each of 4 seeds; dropping only on the 2-bit
// layers: 0.18), 0.42 at W2A2 and 0.12 at W3A3, ResNet 0.02 / 0.08 at W2A4 / W3A3, and lost ResNet
// W2A2 0.22.
[[nodiscard]] inline float default_qdrop(const layer_quant_config& c,
                                         bool network_below_4_bits = false) noexcept {
  const bool low = network_below_4_bits || c.act_scheme.bits < 4 || c.weight_scheme.bits < 4;
  return c.quantize_activations && low ? 0.5f : 0.0f;
}

// The weight rounding a layer gets when adaquant_options::rounding is not set: AdaRound when its
// weights are quantized to fewer than 4 bits, else AdaQuant's learned step. Measured with the
// advanced pipeline on the Fashion-MNIST reference models (docs/lowbit.md): AdaRound gained
// 0.17-0.86 points of top-1 in five of six settings below 4 weight bits (ResNet W2A2: -0.20).
[[nodiscard]] inline weight_rounding default_rounding(const layer_quant_config& c) noexcept {
  return c.weight_scheme.bits < 4 ? weight_rounding::adaround : weight_rounding::learned_step;
}

// The rate of V a learned-step layer gets when adaquant_learning_rates::weight is not set: 2e-3,
// times 2^min(4, w - 4) in relative mode when the layer's weights have w > 4 bits and its input
// is quantized below 4 bits. The relative rate is a fraction of the weight's own step (see
// calibrate/adaquant.hpp), which lets V travel about one step over 1000 iterations: at 8 bits that
// is 1/16 of a 4-bit step, too little to absorb the error of a 2- or 3-bit input; the factor lets
// V travel about one 4-bit step. Measured with the advanced pipeline on the Fashion-MNIST
// reference models (docs/lowbit.md): at W8A2 MobileNetV2 went from -17.04 to -7.59 points of
// top-1 and ResNet from -2.00 to -1.45 (seed 0; seed 1 alike), and W8A3 and W6A2 gained too (in
// 12 of 13 runs); with 4-bit inputs a larger rate was not consistently better, at W4A2 four times
// the rate lost, and past 16 times it got worse again, hence the bounds.
[[nodiscard]] inline float default_weight_rate(const layer_quant_config& c,
                                               lr_mode mode = lr_mode::relative) noexcept {
  constexpr float base = 2e-3f;
  const int w = c.weight_scheme.bits;
  if (mode != lr_mode::relative || w <= 4 || !c.quantize_activations || c.act_scheme.bits >= 4)
    return base;
  return base * static_cast<float>(1 << std::min(4, w - 4));
}

// The inner term's weight a block of `layers` layers gets when adaquant_options::inner_weight is
// not set: 1 for blocks of more than 3 layers, else 0. Over a long block (the whole network, the
// default selection at inputs below 3 bits) the output's error alone lets the inner layers drift
// from their full-precision values and over-fit the calibration images; keeping each layer near
// them tested better. Measured with the advanced pipeline on the Fashion-MNIST reference models
// (docs/lowbit.md, "Deep supervision"): the whole network as one block at W2A2 gained ResNet-style
// 0.2-0.4 points of top-1 and MobileNetV2-style 1.8-1.9 (seeds 0 / 1), and at W3A3 / W2A4 (with
// --blocks 100) ResNet-style 0.2 / 0.1; on blocks of 2-3 layers (residual blocks) it was no better
// (ResNet W3A3 at weight 0.1: -0.01 / +0.18 at seeds 0 / 1; MobileNetV2 W3A3: -0.24).
[[nodiscard]] inline float default_inner_weight(std::size_t layers) noexcept {
  return layers > 3 ? 1.0f : 0.0f;
}

// The trial run a block of `layers` layers gets when adaquant_options::trial_iterations is not
// set: twice `iterations` for blocks of more than 3 layers (the whole network at inputs below 3
// bits), else none (0). How long a long block should train is not the same for every network, and
// the block's own loss does not tell: measured with the advanced pipeline on the Fashion-MNIST
// reference models at W2A2 (docs/lowbit.md, "The trial run"), 2000 iterations instead of 1000
// lowered the whole-network block's held-out error on both models, but gained ResNet-style test
// top-1 (at 4 of 5 seeds) and lost MobileNetV2-style 0.4 (2 of 2); the network's output error
// followed the test top-1 in each case.
[[nodiscard]] inline std::size_t default_trial_iterations(std::size_t layers,
                                                          std::size_t iterations) noexcept {
  return layers > 3 ? 2 * iterations : 0;
}

namespace detail {
// Multiply-adds of one sample through a layer with geometry g.
[[nodiscard]] inline double macs_per_sample(const layer_geometry& g) noexcept {
  return static_cast<double>(g.out_positions()) * static_cast<double>(g.weight_size());
}
// batch_size, or as many samples of per_sample multiply-adds as fit in bound (at least 1); a bound
// <= 0 does not bound.
[[nodiscard]] inline std::size_t samples_within(std::size_t batch_size, double per_sample,
                                                double bound) noexcept {
  if (!(bound > 0.0) || per_sample * static_cast<double>(batch_size) <= bound) return batch_size;
  return std::max<std::size_t>(1, static_cast<std::size_t>(bound / per_sample));
}
}  // namespace detail

// Samples per AdaQuant step of a layer with geometry g (per row, objectives/geometry.hpp) under
// options o: batch_size, or fewer when o.step_macs bounds the step (see adaquant_options).
[[nodiscard]] inline std::size_t step_samples(const adaquant_options& o, const layer_geometry& g) {
  return detail::samples_within(o.batch_size, detail::macs_per_sample(g), o.step_macs);
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
  if (o.inner_weight && !(*o.inner_weight >= 0.0f && is_finite(*o.inner_weight)))
    bad("inner_weight", "must be finite and >= 0 (0: the block output's error alone), got " +
                            std::to_string(*o.inner_weight));
  o.adaround.validate("adaquant: options.adaround");
  if (!(o.holdout_fraction >= 0.0f && o.holdout_fraction <= 0.9f))
    bad("holdout_fraction", "must be in [0, 0.9], got " + std::to_string(o.holdout_fraction));
  const auto rate = [&](bool on, float r, const char* name) {
    if (on && !(r > 0.0f && is_finite(r)))
      bad(name, "learning rate of a trained group must be finite and > 0, got " +
                    std::to_string(r) + " (freeze the group in options.train instead)");
  };
  if (o.lr.weight) rate(o.train.weight_offset, *o.lr.weight, "lr.weight");
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
    p.act = estimate_tensor_params(obj.inputs(), *q.activations, zero_range::use_epsilon);
  else
    p.act = quant_params{1.0f, 0, cfg.act_scheme.qmin(), cfg.act_scheme.qmax()};
  return p;
}

}  // namespace adaquant
