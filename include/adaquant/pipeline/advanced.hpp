#pragma once
// The advanced pipeline: one call over a network whose batch norms are folded.
//
//   1. adaquant         every layer calibrated by AdaQuant (calibrate/driver.hpp) at its bits,
//                       in cfg.calibration.order (parallel or sequential)
//      with cfg.max_size_ratio: every layer is calibrated (parallel order, on full-precision
//      inputs, so options can be mixed) at each entry of cfg.weight_bit_options below 8 bits;
//      8-bit options are round-to-nearest. 2. bit_allocation then picks one option per layer by
//      the exact integer program over the measured loss increases.
//   3. bn_tuning        batch-norm statistics re-estimated on the quantized network, refolded
//   4. bias_tuning      per layer, in order, only the bias is refitted (bias/bias_tuning.hpp:
//                       AdaQuant's objective with everything else frozen, solved per channel)
//                       against the full-precision outputs, with inputs from the quantized
//                       network. This is the per-layer form of the paper's bias tuning; the
//                       end-to-end form would need a backward pass through the whole network,
//                       which the network interface does not ask for.
// Errors: as light_pipeline, plus whatever AdaQuant throws.

#include <adaquant/pipeline/steps.hpp>

namespace adaquant {

template <PipelineNetwork Net>
pipeline_report advanced_pipeline(Net& net, const pipeline_config& cfg) {
  constexpr const char* fn = "advanced_pipeline";
  detail::pipeline_state st = detail::init_state(net, cfg, fn);
  detail::check_size_budget(st, cfg, fn);
  pipeline_report rep;
  auto t = std::chrono::steady_clock::now();
  const auto layer_summary = [](const calibration_report& r) {
    double before = 0, after = 0;
    for (const auto& l : r.layers) {
      before += l.mse_before;
      after += l.mse_after;
    }
    char buf[160];
    std::snprintf(buf, sizeof buf, "%zu layers, summed output MSE %.4g -> %.4g", r.layers.size(),
                  before, after);
    return std::string(buf);
  };
  if (!cfg.max_size_ratio) {
    if (cfg.adaquant) {
      const calibration_report r =
          detail::adaquant_step(net, st, cfg, cfg.calibration.order, st.wbits);
      rep.steps.push_back({"adaquant", detail::seconds_since(t), layer_summary(r)});
    } else {
      detail::range_step(net, st, cfg);
      rep.steps.push_back({"ranges", detail::seconds_since(t), "round-to-nearest"});
    }
  } else {
    // Round-to-nearest forms first: the 8-bit options and the base configuration.
    detail::range_step(net, st, cfg);
    const std::size_t n = st.layers.size();
    std::vector<detail::layer_options> options(n);
    const std::vector<quantized_layer> rtn = st.q;  // round-to-nearest, original bias
    std::vector<int> rtn_bits(cfg.weight_bit_options);
    rtn_bits.push_back(8);
    std::string summary;
    for (int b : cfg.weight_bit_options) {
      if (b >= 8 || !cfg.adaquant) continue;
      std::vector<int> wb(n);
      for (std::size_t i = 0; i < n; ++i) wb[i] = detail::layer_bits(cfg, i, n, b);
      const calibration_report r =
          detail::adaquant_step(net, st, cfg, calibration_order::parallel, wb);
      summary += (summary.empty() ? "" : "; ") + std::to_string(b) + " bits: " + layer_summary(r);
      for (std::size_t i = 0; i < n; ++i) options[i][wb[i]] = st.q[i];
    }
    // Round-to-nearest forms where AdaQuant did not run (8 bits, and the fixed layers' base).
    for (std::size_t i = 0; i < n; ++i)
      for (int b : rtn_bits)
        if (!options[i].count(b)) {
          quantized_layer q = rtn[i];
          detail::quantize_weights(st.layers[i], b, cfg, q);
          options[i][b] = std::move(q);
        }
    rep.steps.push_back({"adaquant", detail::seconds_since(t), summary});
    t = std::chrono::steady_clock::now();
    const std::string chosen = detail::bit_allocation_step(net, st, cfg, options);
    rep.steps.push_back({"bit_allocation", detail::seconds_since(t), chosen});
  }
  if (cfg.bn_tuning)
    detail::timed_step(rep, "bn_tuning", [&] { return detail::bn_tuning_step(net, st, cfg); });
  if (cfg.bias_correction)
    detail::timed_step(rep, "bias_tuning", [&] {
      const auto [before, after] = detail::bias_tuning_step(net, st, cfg);
      char buf[120];
      std::snprintf(buf, sizeof buf, "summed output MSE %.4g -> %.4g", before, after);
      return std::string(buf);
    });
  detail::finish_report(st, rep);
  return rep;
}

}  // namespace adaquant
