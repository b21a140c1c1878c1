#pragma once
// The light pipeline (no backpropagation): one call over a network whose batch norms are folded.
//
//   1. ranges           round-to-nearest weights (per channel, cfg.weight_range) and activation
//                       ranges (per tensor, cfg.act_range) from full-precision calibration inputs
//   2. bit_allocation   (cfg.max_size_ratio) per-layer weight bits from cfg.weight_bit_options by
//                       the exact integer program over measured loss increases
//   3. bn_tuning        batch-norm statistics re-estimated on the quantized network and refolded
//   4. bias_correction  b += E[y_fp - y_q] per output channel, layer by layer
//
// Set bn_tuning/bias_correction false, weight_range/act_range min_max and first_last_8bit false
// for the naive baseline (round-to-nearest, min/max ranges, every layer at the same bits).
// Errors: bits outside [2, 16], max_size_ratio outside (0, 1] or below the smallest achievable
// ratio (errc::infeasible), an empty calibration set or network (errc::empty_input), bit
// allocation without a calibration_loss, and whatever the steps throw.

#include <adaquant/pipeline/steps.hpp>

namespace adaquant {

template <PipelineNetwork Net>
pipeline_report light_pipeline(Net& net, const pipeline_config& cfg) {
  constexpr const char* fn = "light_pipeline";
  detail::pipeline_state st = detail::init_state(net, cfg, fn);
  detail::check_size_budget(st, cfg, fn);
  pipeline_report rep;
  detail::timed_step(rep, "ranges", [&] {
    detail::range_step(net, st, cfg);
    return "weights " + std::string(to_string(cfg.weight_range)) + ", activations " +
           std::string(to_string(cfg.act_range));
  });
  if (cfg.max_size_ratio)
    detail::timed_step(rep, "bit_allocation", [&] {
      std::vector<detail::layer_options> options(st.layers.size());
      std::vector<int> bits(cfg.weight_bit_options);
      bits.push_back(8);  // the base form
      for (std::size_t i = 0; i < st.layers.size(); ++i)
        for (int b : bits) {
          quantized_layer q = st.q[i];
          detail::quantize_weights(st.layers[i], b, cfg, q);
          options[i][b] = std::move(q);
        }
      return detail::bit_allocation_step(net, st, cfg, options);
    });
  if (cfg.bn_tuning)
    detail::timed_step(rep, "bn_tuning", [&] { return detail::bn_tuning_step(net, st, cfg); });
  if (cfg.bias_correction)
    detail::timed_step(rep, "bias_correction", [&] {
      return "largest correction " + std::to_string(detail::bias_correction_step(net, st, cfg));
    });
  detail::finish_report(st, rep);
  return rep;
}

}  // namespace adaquant
