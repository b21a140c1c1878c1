#pragma once
// The light pipeline (no backpropagation): one call over a network whose batch norms are folded.
//
//   light_pipeline(net, light_config, execution_context = {}) -> pipeline_report
//
//   1. ranges           round-to-nearest weights and activation ranges (the quantizers' range
//                       methods, config.quant) from full-precision calibration inputs
//   2. bit_allocation   (config.bit_allocation) per-layer weight bits by the exact integer
//                       program over measured loss increases (the network's calibration_loss),
//                       re-measured around each choice; never worse than a fitting uniform
//                       bit-width on that loss (pipeline/bit_allocation.hpp)
//   3. bn_tuning        (config.bn_tuning) batch-norm statistics re-estimated on the quantized
//                       network and refolded
//   4. bias_correction  (config.bias_correction) b += E[y_fp - y_q] per output channel, layer by
//                       layer
//
// light_config::naive(w, a) is the naive baseline (round-to-nearest, min/max ranges, every layer
// at the same bits, no further step). Errors, before the network is changed: bits outside
// [2, 16], quantizers the layers cannot take (weights neither per channel along axis 0 nor per
// block along axis 1, block-wise weights on a convolution other than 1x1, activations not per
// tensor, two rounding policies), a size ratio outside (0, 1] or below the smallest
// achievable one (errc::infeasible), bit allocation rounds below 1, bit allocation over a network
// without calibration_loss(), calibration caches larger than the memory limit
// (calibrate/memory.hpp; errc::infeasible), an empty calibration set or network
// (errc::empty_input); then whatever the steps throw.

#include <adaquant/pipeline/bit_allocation.hpp>
#include <adaquant/pipeline/steps.hpp>

namespace adaquant {

template <PipelineNetwork Net>
pipeline_report light_pipeline(Net& net, const light_config& cfg,
                               const execution_context& ctx = {}) {
  constexpr const char* fn = "light_pipeline";
  detail::pipeline_state st = detail::init_state(net, cfg.quant, fn);
  check_cache_memory(st.layers, net.calibration_size(), resolve_threads(ctx.threads), ctx, fn);
  if (cfg.bit_allocation) detail::check_bit_allocation<Net>(st, *cfg.bit_allocation, fn);
  pipeline_report rep;
  detail::timed_step(rep, "ranges", [&] {
    detail::range_step(net, st, ctx);
    return "weights " + std::string(to_string(cfg.quant.weights.range)) + ", activations " +
           (cfg.quant.activations ? std::string(to_string(cfg.quant.activations->range))
                                  : std::string("float (weight-only)"));
  });
  if (cfg.bit_allocation)
    detail::timed_step(rep, "bit_allocation", [&] {
      std::vector<detail::layer_options> options(st.layers.size());
      std::vector<int> bits(cfg.bit_allocation->weight_bits);
      bits.push_back(8);  // the base form
      for (std::size_t i = 0; i < st.layers.size(); ++i)
        for (int b : bits) {
          quantized_layer q = st.q[i];
          detail::quantize_weights(st.layers[i], cfg.quant.weights.with_bits(b), q);
          options[i][b] = std::move(q);
        }
      return detail::bit_allocation_step(net, st, *cfg.bit_allocation, options, ctx);
    });
  if (cfg.bn_tuning)
    detail::timed_step(rep, "bn_tuning",
                       [&] { return detail::bn_tuning_step(net, st, *cfg.bn_tuning, ctx); });
  if (cfg.bias_correction)
    detail::timed_step(rep, "bias_correction", [&] {
      return "largest correction " + std::to_string(detail::bias_correction_step(net, st, ctx));
    });
  detail::finish_report(st, rep);
  return rep;
}

}  // namespace adaquant
