#pragma once
// Per-layer and per-network reports of AdaQuant calibration.

#include <cstddef>
#include <cstdio>
#include <limits>
#include <map>
#include <string>
#include <vector>

namespace adaquant {

struct layer_report {
  std::size_t layer_id = 0;
  std::size_t train_samples = 0;
  std::size_t heldout_samples = 0;  // 0: no held-out split
  double mse_before = 0.0;          // round-to-nearest with the initial parameters, train split
  double mse_after = 0.0;           // returned parameters, train split
  double heldout_before = 0.0;      // same on the held-out split (0 without one)
  double heldout_after = 0.0;
  std::size_t iterations = 0;      // optimisation steps run
  std::size_t best_iteration = 0;  // step whose parameters were returned (0: the initial ones)
  bool stopped_early = false;      // held-out MSE stopped improving for `patience` evaluations
  double seconds = 0.0;            // wall time of the optimisation
  // How the layer was optimised, the bit-width defaults resolved (calibrate/adaquant_options.hpp:
  // default_rounding, default_qdrop, default_weight_rate; calibrate/block.hpp:
  // block_step_samples):
  bool adaround = false;  // AdaRound's rounding logits; false: AdaQuant's learned step
  float qdrop = 0.0f;     // probability that a training step keeps an input element float
  // The rate V moves with: the learned step's (in the options' lr mode, before the schedule),
  // or AdaRound's adaround.lr.
  float weight_rate = 0.0f;
  std::size_t step_samples = 0;  // samples per optimisation step
  // Block reconstruction: the block's layer count and its first layer's id (the report's MSEs
  // are then the block output's); 1 and layer_id when the layer was optimised alone.
  std::size_t block_layers = 1;
  std::size_t block_first = 0;
  float inner_weight = 0.0f;  // block reconstruction: the inner term's weight (0 alone)
  // Block reconstruction's trial run (adaquant_options::trial_iterations): its iterations (0: no
  // trial), the network's calibration_loss() after the first run and after the trial, and
  // whether the trial's parameters were kept (the figures above are then the trial's; seconds
  // counts both runs).
  std::size_t trial_iterations = 0;
  double loss_first = 0.0;
  double loss_trial = 0.0;
  bool trial_kept = false;

  // mse_before / mse_after (inf when mse_after is 0).
  [[nodiscard]] double improvement() const noexcept {
    return mse_after > 0.0 ? mse_before / mse_after
                           : (mse_before > 0.0 ? std::numeric_limits<double>::infinity() : 1.0);
  }
};

struct calibration_report {
  std::vector<layer_report> layers;
  double seconds = 0.0;
};

// One line per layer, for logs and examples.
[[nodiscard]] inline std::string to_string(const layer_report& r) {
  char buf[640];
  char block[240] = "";
  if (r.block_layers > 1) {
    const int n =
        std::snprintf(block, sizeof block, ", block of %zu from layer %zu, inner weight %g",
                      r.block_layers, r.block_first, static_cast<double>(r.inner_weight));
    if (r.trial_iterations > 0 && n > 0 && static_cast<std::size_t>(n) < sizeof block)
      std::snprintf(block + n, sizeof block - static_cast<std::size_t>(n),
                    ", trial of %zu it: network loss %.5g -> %.5g, %s", r.trial_iterations,
                    r.loss_first, r.loss_trial, r.trial_kept ? "kept" : "not kept");
  }
  std::snprintf(buf, sizeof buf,
                "layer %zu: mse %.4g -> %.4g (x%.2f), held-out %.4g -> %.4g, %zu it (best %zu%s), "
                "%.3f s; %s, V rate %g, QDrop %g, %zu samples per step%s",
                r.layer_id, r.mse_before, r.mse_after, r.improvement(), r.heldout_before,
                r.heldout_after, r.iterations, r.best_iteration,
                r.stopped_early ? ", stopped early" : "", r.seconds,
                r.adaround ? "AdaRound" : "learned step", static_cast<double>(r.weight_rate),
                static_cast<double>(r.qdrop), r.step_samples, block);
  return buf;
}

// The settings a calibration ran with, over its layers: its blocks, and each setting's values
// with their layer counts, e.g. "1 block of 16 layers; learned step (2), AdaRound (15); V rate
// 0.002 (2), 0.03 (15); QDrop 0.5; samples per step 50; inner weight 1" (a value every layer
// shares has no count; the inner weight counts the layers in blocks only, and is left out without
// blocks; with trial runs, "; trial kept in K of T blocks").
[[nodiscard]] inline std::string settings_summary(const std::vector<layer_report>& layers) {
  if (layers.empty()) return "no layers";
  const auto counts_of = [](const std::vector<layer_report>& of, auto key, auto print) {
    std::map<decltype(key(of[0])), std::size_t> n;
    for (const layer_report& l : of) ++n[key(l)];
    std::string out;
    for (const auto& [v, c] : n) {
      out += (out.empty() ? "" : ", ") + print(v);
      if (n.size() > 1) out += " (" + std::to_string(c) + ")";
    }
    return out;
  };
  const auto counts = [&](auto key, auto print) { return counts_of(layers, key, print); };
  const auto number = [](auto v) {
    char b[32];
    std::snprintf(b, sizeof b, "%g", static_cast<double>(v));
    return std::string(b);
  };
  std::map<std::size_t, std::size_t> blocks;  // first layer -> layers
  for (const layer_report& l : layers)
    if (l.block_layers > 1) blocks[l.block_first] = l.block_layers;
  std::size_t in_blocks = 0;
  for (const auto& b : blocks) in_blocks += b.second;
  std::string s;
  if (!blocks.empty())
    s = std::to_string(blocks.size()) + (blocks.size() == 1 ? " block of " : " blocks of ") +
        std::to_string(in_blocks) + " layers; ";
  s += counts([](const layer_report& l) { return l.adaround; },
              [](bool a) { return std::string(a ? "AdaRound" : "learned step"); });
  s += "; V rate " + counts([](const layer_report& l) { return l.weight_rate; }, number);
  s += "; QDrop " + counts([](const layer_report& l) { return l.qdrop; }, number);
  s += "; samples per step " + counts([](const layer_report& l) { return l.step_samples; }, number);
  if (!blocks.empty()) {
    std::vector<layer_report> in;
    for (const layer_report& l : layers)
      if (l.block_layers > 1) in.push_back(l);
    s += "; inner weight " + counts_of(
                                 in, [](const layer_report& l) { return l.inner_weight; }, number);
    std::size_t trials = 0, kept = 0;
    for (const layer_report& l : in)
      if (l.layer_id == l.block_first && l.trial_iterations > 0) {
        ++trials;
        kept += l.trial_kept ? 1 : 0;
      }
    if (trials > 0)
      s += "; trial kept in " + std::to_string(kept) + " of " + std::to_string(trials) +
           (trials == 1 ? " block" : " blocks");
  }
  return s;
}

}  // namespace adaquant
