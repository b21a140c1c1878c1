#pragma once
// Block reconstruction (BRECQ-style) with AdaQuant's optimiser: minimise block_objective
// (objectives/block_objective.hpp, which has the maths) with Adam over mini-batches of the cached
// samples, every layer's trainable groups jointly, starting from round-to-nearest.
//
//   estimate_block_initial_params(objective, quantizers)   -> initial_quant_params per layer
//   block_optimize(objective, options, initial params, threads = 1)        -> block_result
//
// Each layer's groups move exactly as in adaquant_optimize (calibrate/adaquant.hpp): the same
// relative (or absolute) learning rates, schedule, AdaRound (options.rounding, or
// default_rounding of the layer), clamps and bounded offsets, with the relative bias rate in units
// of the RMS of the layer's own full-precision outputs inside the block; QDrop per layer
// (options.qdrop, or default_qdrop of the layer); the inner term's weight (options.inner_weight, or
// default_inner_weight of its layer count) is set on the objective. The split, mini-batches,
// held-out selection (every eval_every steps on the block's held-out MSE, the starting point
// included, so never worse than round-to-nearest on held-out data) and early stopping are
// adaquant_optimize's. options.step_macs, times the number of layers, bounds the samples per step
// by the sum of the layers' multiply-adds (block_step_samples). Deterministic: the seed fixes the
// split, the batches and the QDrop streams. `threads` splits each layer's direct convolutions
// inside a step (block_objective::set_threads): same bits for any count. Errors: those of
// block_objective and adaquant_optimize's option checks; an init list whose length is not the
// number of layers (errc::shape_mismatch); a non-finite loss (errc::non_finite).

#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/objectives/block_objective.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

struct block_result {
  // Per layer: weights, bias, grids, state; each report is the block's (below).
  std::vector<layer_result> layers;
  layer_report report;  // MSE of the block output before/after, iterations, seconds
};

// Starting parameters of every layer from its quantizers' range methods, on the layer's
// full-precision inputs inside the block (block_objective::layer). quantizers: one for all layers
// or one per layer.
[[nodiscard]] inline std::vector<initial_quant_params> estimate_block_initial_params(
    block_objective& obj, std::span<const layer_quantizers> quantizers) {
  if (!(quantizers.size() == 1 || quantizers.size() == obj.layers()))
    detail::fail(errc::shape_mismatch, "estimate_block_initial_params: quantizers",
                 std::to_string(quantizers.size()) + " for " + std::to_string(obj.layers()) +
                     " layers (1 or one per layer)");
  std::vector<initial_quant_params> init;
  for (std::size_t k = 0; k < obj.layers(); ++k)
    init.push_back(
        estimate_initial_params(obj.layer(k), quantizers[quantizers.size() == 1 ? 0 : k]));
  return init;
}

// Samples per step of a block of L layers under o: batch_size, or fewer when the block's
// multiply-adds per sample times batch_size exceed L * o.step_macs (then floor(L * step_macs /
// MACs per sample), at least 1). The bound is per layer, as for one layer (step_samples): a block
// step costs no more than one step of each of its layers on its own. Measured (docs/lowbit.md):
// bounding a whole-network block by one layer's step_macs cut its steps to 22 (ResNet) and 31
// (MobileNetV2) samples at W2A2; 50 samples gained MobileNetV2 1.09 points of top-1 on the mean
// of seeds 0-4 (better on each), ResNet -0.09.
[[nodiscard]] inline std::size_t block_step_samples(const adaquant_options& o,
                                                    const block_objective& obj) {
  double per_sample = 0.0;
  for (std::size_t k = 0; k < obj.layers(); ++k)
    per_sample += detail::macs_per_sample(obj.layer(k).geometry());
  return detail::samples_within(o.batch_size, per_sample,
                                o.step_macs * static_cast<double>(obj.layers()));
}

inline block_result block_optimize(block_objective& obj, const adaquant_options& opt,
                                   std::span<const initial_quant_params> init,
                                   std::size_t threads = 1) {
  detail::validate_options(opt);
  const detail::scoped_threads conv_threads(obj, threads);
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t K = obj.layers();
  if (!(init.size() == K))
    detail::fail(
        errc::shape_mismatch, "block_optimize: init",
        std::to_string(init.size()) + " initial parameters for " + std::to_string(K) + " layers");
  std::vector<layer_state> state(K);
  std::vector<float> qdrop(K);
  std::vector<char> ada(K);
  const float inner = opt.inner_weight ? *opt.inner_weight : default_inner_weight(K);
  obj.set_inner_weight(inner);
  for (std::size_t k = 0; k < K; ++k) {
    const layer_objective& L = obj.layer(k);
    ada[k] = detail::start_state(L, opt, init[k], state[k], [&](layer_state& s) {
      obj.use_adaround(k, s, opt.adaround.zeta, opt.adaround.gamma);
    });
    qdrop[k] = opt.qdrop ? *opt.qdrop : default_qdrop(L.config());
  }

  detail::splitmix64 rng{opt.seed};
  const detail::sample_split split =
      detail::split_samples(obj.samples(), opt.holdout_fraction, rng);
  const std::vector<std::size_t>& hold = split.hold;
  layer_report rep = detail::report_before(
      split, [&](std::span<const std::size_t> samples) { return obj.value(state, samples); });

  std::vector<detail::layer_trainer> trainers;
  trainers.reserve(K);
  for (std::size_t k = 0; k < K; ++k)
    trainers.emplace_back(obj.layer(k), opt, state[k], ada[k], threads);
  std::vector<layer_state> grad;
  const std::size_t B = std::min(block_step_samples(opt, obj), split.train.size());
  detail::run_steps(
      opt, split, B, rng, state, rep, "block_optimize: loss",
      [&](std::vector<layer_state>& st, std::span<const std::size_t> batch, std::size_t it) {
        const double loss =
            obj.gradient(st, batch, grad, opt.train, qdrop, detail::mix_seed(opt.seed, it));
        if (std::isfinite(loss))
          for (std::size_t k = 0; k < K; ++k) trainers[k].step(st[k], grad[k], it);
        return loss;
      },
      [&](const std::vector<layer_state>& st) { return obj.value(st, hold); });
  rep.mse_after = obj.value(state, split.train_sorted);
  if (!hold.empty()) rep.heldout_after = obj.value(state, hold);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  rep.step_samples = B;
  rep.block_layers = K;
  block_result res;
  res.report = rep;
  res.layers.resize(K);
  for (std::size_t k = 0; k < K; ++k) {
    layer_report& r = res.layers[k].report;
    r = rep;
    r.adaround = ada[k] != 0;
    r.qdrop = qdrop[k];
    r.weight_rate = trainers[k].weight_rate();
    r.inner_weight = inner;
    detail::fill_result(obj.layer(k), std::move(state[k]), res.layers[k]);
  }
  return res;
}

}  // namespace adaquant
