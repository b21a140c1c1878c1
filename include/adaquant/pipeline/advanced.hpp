#pragma once
// The advanced pipeline: one call over a network whose batch norms are folded.
//
//   advanced_pipeline(net, advanced_config, execution_context = {}) -> pipeline_report
//
//   1. adaquant         every layer calibrated by AdaQuant (calibrate/driver.hpp) at its bits with
//                       config.adaquant's options and order (parallel or sequential); without
//                       config.adaquant, round-to-nearest from the quantizers' ranges ("ranges")
//      with config.bit_allocation: every layer is calibrated (parallel order, on full-precision
//      inputs, so options can be mixed) at each of its weight_bits below 8; 8-bit options are
//      round-to-nearest. 2. bit_allocation then picks one option per layer by the exact integer
//      program over the measured loss increases (the network's calibration_loss), re-measured
//      around each choice and compared with the uniform bit-widths (pipeline/bit_allocation.hpp).
//   3. bn_tuning        (config.bn_tuning) batch-norm statistics re-estimated on the quantized
//                       network, refolded
//   4. bias_tuning      (config.bias_tuning) per layer, in order, only the bias is refitted
//                       (bias/bias_tuning.hpp: AdaQuant's objective with everything else frozen,
//                       solved per channel) against the full-precision outputs, with inputs from
//                       the quantized network. This is the per-layer form of the paper's bias
//                       tuning; the end-to-end form would need a backward pass through the whole
//                       network, which the network interface does not ask for.
// Errors: as light_pipeline, plus whatever AdaQuant throws.

#include <adaquant/pipeline/bit_allocation.hpp>
#include <adaquant/pipeline/steps.hpp>

namespace adaquant {

template <PipelineNetwork Net>
pipeline_report advanced_pipeline(Net& net, const advanced_config& cfg,
                                  const execution_context& ctx = {}) {
  constexpr const char* fn = "advanced_pipeline";
  detail::pipeline_state st = detail::init_state(net, cfg.quant, fn);
  check_cache_memory(st.layers, net.calibration_size(), resolve_threads(ctx.threads), ctx, fn);
  if (cfg.bit_allocation) detail::check_bit_allocation<Net>(st, *cfg.bit_allocation, fn);
  if (cfg.adaquant) {
    detail::validate_options(cfg.adaquant->layer);
    // Its errors, up front (the selection by bits, runs of layers, raises none of its own).
    (void)detail::selected_blocks(net, *cfg.adaquant, cfg.adaquant->blocks, st.layers);
  }
  pipeline_report rep;
  const auto layer_summary = [](const calibration_report& r) {
    double before = 0, after = 0;
    for (const auto& l : r.layers) {
      if (l.layer_id != l.block_first) continue;  // a block's output error counted once
      before += l.mse_before;
      after += l.mse_after;
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, "%zu layers, summed output MSE %.4g -> %.4g", r.layers.size(),
                  before, after);
    return std::string(buf) + " (" + settings_summary(r.layers) + ")";
  };
  if (!cfg.bit_allocation) {
    if (cfg.adaquant) {
      detail::timed_step(rep, "adaquant", [&] {
        return layer_summary(
            detail::adaquant_step(net, st, *cfg.adaquant, cfg.adaquant->order, st.wbits, ctx));
      });
    } else {
      detail::timed_step(rep, "ranges", [&] {
        detail::range_step(net, st, ctx);
        return std::string("round-to-nearest");
      });
    }
  } else {
    const bit_allocation_budget& ba = *cfg.bit_allocation;
    const std::size_t n = st.layers.size();
    std::vector<detail::layer_options> options(n);
    detail::timed_step(rep, "adaquant", [&] {
      // Round-to-nearest forms first: the 8-bit options and the base configuration.
      detail::range_step(net, st, ctx);
      const std::vector<quantized_layer> rtn = st.q;  // round-to-nearest, original bias
      std::vector<int> rtn_bits(ba.weight_bits);
      rtn_bits.push_back(8);
      std::string summary;
      for (int b : ba.weight_bits) {
        if (b >= 8 || !cfg.adaquant) continue;
        std::vector<int> wb(n);
        for (std::size_t i = 0; i < n; ++i) wb[i] = detail::layer_bits(st.quant, i, n, b);
        const calibration_report r =
            detail::adaquant_step(net, st, *cfg.adaquant, calibration_order::parallel, wb, ctx,
                                  "adaquant-w" + std::to_string(b));
        summary += (summary.empty() ? "" : "; ") + std::to_string(b) + " bits: " + layer_summary(r);
        for (std::size_t i = 0; i < n; ++i) options[i][wb[i]] = st.q[i];
      }
      // Round-to-nearest forms where AdaQuant did not run (8 bits, and the fixed layers' base).
      for (std::size_t i = 0; i < n; ++i)
        for (int b : rtn_bits)
          if (!options[i].count(b)) {
            quantized_layer q = rtn[i];
            detail::quantize_weights(st.layers[i], st.quant.weights.with_bits(b), q);
            options[i][b] = std::move(q);
          }
      return summary;
    });
    detail::timed_step(rep, "bit_allocation",
                       [&] { return detail::bit_allocation_step(net, st, ba, options, ctx); });
    if constexpr (LossNetwork<Net>) {
      if (cfg.recalibrate_allocation && cfg.adaquant &&
          cfg.adaquant->order == calibration_order::sequential)
        detail::timed_step(rep, "adaquant_chosen", [&] {
          const double chosen_loss = static_cast<double>(net.calibration_loss());
          const std::vector<quantized_layer> chosen = st.q;
          const calibration_report r =
              detail::adaquant_step(net, st, *cfg.adaquant, calibration_order::sequential, st.wbits,
                                    ctx, "adaquant-chosen");
          const double loss = static_cast<double>(net.calibration_loss());
          const bool keep = loss < chosen_loss;
          if (!keep) {
            st.q = chosen;
            for (const quantized_layer& q : st.q) net.set_quantized(q);
          }
          char buf[200];
          std::snprintf(buf, sizeof buf, "%s; loss %.5g -> %.5g: %s", layer_summary(r).c_str(),
                        chosen_loss, loss, keep ? "kept" : "not lower, the chosen forms restored");
          return std::string(buf);
        });
    }
  }
  if (cfg.bn_tuning)
    detail::timed_step(rep, "bn_tuning",
                       [&] { return detail::bn_tuning_step(net, st, *cfg.bn_tuning, ctx); });
  if (cfg.bias_tuning)
    detail::timed_step(rep, "bias_tuning", [&] {
      const auto [before, after] = detail::bias_tuning_step(net, st, ctx);
      char buf[120];
      std::snprintf(buf, sizeof buf, "summed output MSE %.4g -> %.4g", before, after);
      return std::string(buf);
    });
  detail::finish_report(st, rep);
  return rep;
}

}  // namespace adaquant
