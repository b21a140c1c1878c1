#pragma once
// The checkpoint payloads of calibration results (core/checkpoint.hpp): a quantized_layer and a
// layer_report, field by field, floats as raw bits. Each struct is unpacked with a structured
// binding, so a member added to it stops the build here until it is written and read too.

#include <adaquant/calibrate/network.hpp>
#include <adaquant/calibrate/report.hpp>
#include <adaquant/core/checkpoint.hpp>

#include <optional>
#include <string>
#include <vector>

namespace adaquant::detail {

inline void put_quant_params(record_writer& w, const quant_params& p) {
  const auto& [scale, zero_point, qmin, qmax] = p;
  w.f32(scale);
  w.i32(zero_point);
  w.i32(qmin);
  w.i32(qmax);
}
inline quant_params get_quant_params(record_reader& r) {
  quant_params p;
  auto& [scale, zero_point, qmin, qmax] = p;
  scale = r.f32();
  zero_point = r.i32();
  qmin = r.i32();
  qmax = r.i32();
  return p;
}

inline void put_channel_params(record_writer& w, const channel_params& p) {
  const auto& [scale, zero_point, qmin, qmax, axis] = p;
  w.values(scale);
  w.values(zero_point);
  w.i32(qmin);
  w.i32(qmax);
  w.u64(axis);
}
inline channel_params get_channel_params(record_reader& r) {
  channel_params p;
  auto& [scale, zero_point, qmin, qmax, axis] = p;
  scale = r.values<float>();
  zero_point = r.values<std::int32_t>();
  qmin = r.i32();
  qmax = r.i32();
  axis = r.u64();
  return p;
}

inline void put_block_params(record_writer& w, const block_params& p) {
  const auto& [scale, zero_point, qmin, qmax, axis, block_size] = p;
  w.values(scale);
  w.values(zero_point);
  w.i32(qmin);
  w.i32(qmax);
  w.u64(axis);
  w.u64(block_size);
}
inline block_params get_block_params(record_reader& r) {
  block_params p;
  auto& [scale, zero_point, qmin, qmax, axis, block_size] = p;
  scale = r.values<float>();
  zero_point = r.values<std::int32_t>();
  qmin = r.i32();
  qmax = r.i32();
  axis = r.u64();
  block_size = r.u64();
  return p;
}

inline void put_quantized_layer(record_writer& w, const quantized_layer& q) {
  const auto& [id, weight, bias, weight_params, weight_blocks, act_params, quantize_input,
               act_rounding] = q;
  w.u64(id);
  w.values(weight);
  w.values(bias);
  put_channel_params(w, weight_params);
  w.u8(weight_blocks ? 1 : 0);
  if (weight_blocks) put_block_params(w, *weight_blocks);
  put_quant_params(w, act_params);
  w.u8(quantize_input ? 1 : 0);
  w.u8(static_cast<std::uint8_t>(act_rounding));
}

// The layer saved for `d`; a record of another layer or of other sizes is refused.
inline quantized_layer get_quantized_layer(record_reader& r, const layer_desc& d) {
  quantized_layer q;
  auto& [id, weight, bias, weight_params, weight_blocks, act_params, quantize_input,
         act_rounding] = q;
  id = r.u64();
  weight = r.values<float>();
  bias = r.values<float>();
  weight_params = get_channel_params(r);
  const std::uint8_t blocked = r.u8();
  if (blocked > 1) r.bad("not a quantized layer (block flag " + std::to_string(blocked) + ")");
  if (blocked == 1) weight_blocks = get_block_params(r);
  act_params = get_quant_params(r);
  const std::uint8_t input = r.u8(), rounding = r.u8();
  if (input > 1 || rounding > static_cast<std::uint8_t>(rounding_mode::half_away))
    r.bad("not a quantized layer (flags " + std::to_string(input) + ", " +
          std::to_string(rounding) + ")");
  quantize_input = input == 1;
  act_rounding = static_cast<rounding_mode>(rounding);
  if (id != d.id || weight.size() != d.weight.size() || bias.size() != d.geometry.out_channels())
    r.bad("holds layer " + std::to_string(id) + " with " + std::to_string(weight.size()) +
          " weights and " + std::to_string(bias.size()) + " biases; layer " + std::to_string(d.id) +
          " has " + std::to_string(d.weight.size()) + " and " +
          std::to_string(d.geometry.out_channels()));
  return q;
}

inline void put_layer_report(record_writer& w, const layer_report& l) {
  const auto& [layer_id, train_samples, heldout_samples, mse_before, mse_after, heldout_before,
               heldout_after, iterations, best_iteration, stopped_early, seconds, adaround, qdrop,
               weight_rate, step_samples, block_layers, block_first, inner_weight, trial_iterations,
               loss_first, loss_trial, trial_kept] = l;
  w.u64(layer_id);
  w.u64(train_samples);
  w.u64(heldout_samples);
  for (const double v : {mse_before, mse_after, heldout_before, heldout_after}) w.f64(v);
  w.u64(iterations);
  w.u64(best_iteration);
  w.u8(stopped_early ? 1 : 0);
  w.f64(seconds);
  w.u8(adaround ? 1 : 0);
  w.f32(qdrop);
  w.f32(weight_rate);
  w.u64(step_samples);
  w.u64(block_layers);
  w.u64(block_first);
  w.f32(inner_weight);
  w.u64(trial_iterations);
  w.f64(loss_first);
  w.f64(loss_trial);
  w.u8(trial_kept ? 1 : 0);
}
inline layer_report get_layer_report(record_reader& r) {
  layer_report l;
  auto& [layer_id, train_samples, heldout_samples, mse_before, mse_after, heldout_before,
         heldout_after, iterations, best_iteration, stopped_early, seconds, adaround, qdrop,
         weight_rate, step_samples, block_layers, block_first, inner_weight, trial_iterations,
         loss_first, loss_trial, trial_kept] = l;
  layer_id = r.u64();
  train_samples = r.u64();
  heldout_samples = r.u64();
  for (double* v : {&mse_before, &mse_after, &heldout_before, &heldout_after}) *v = r.f64();
  iterations = r.u64();
  best_iteration = r.u64();
  stopped_early = r.u8() != 0;
  seconds = r.f64();
  adaround = r.u8() != 0;
  qdrop = r.f32();
  weight_rate = r.f32();
  step_samples = r.u64();
  block_layers = r.u64();
  block_first = r.u64();
  inner_weight = r.f32();
  trial_iterations = r.u64();
  loss_first = r.f64();
  loss_trial = r.f64();
  trial_kept = r.u8() != 0;
  return l;
}

// Key of layer `id` in checkpoint unit `unit` ("ranges", "adaquant", ...).
inline std::string layer_key(const std::string& unit, std::size_t id) {
  return unit + ".layer-" + std::to_string(id);
}

// A pipeline step's result for one layer: its quantized form and the figures the step reports.
struct layer_record {
  quantized_layer layer;
  std::vector<double> figures;
};

// The record of layer d in `unit`, with `figures` figures; nothing when absent.
[[nodiscard]] inline std::optional<layer_record> load_layer(checkpoint_store* store,
                                                            const std::string& unit,
                                                            const layer_desc& d,
                                                            std::size_t figures = 0) {
  auto r = load_record(store, layer_key(unit, d.id));
  if (!r) return std::nullopt;
  layer_record rec{get_quantized_layer(*r, d), r->values<double>()};
  r->done();
  if (rec.figures.size() != figures)
    r->bad("holds " + std::to_string(rec.figures.size()) + " figures, " + unit + " saves " +
           std::to_string(figures));
  return rec;
}

inline void save_layer(checkpoint_store* store, const std::string& unit, const quantized_layer& q,
                       const std::vector<double>& figures = {}) {
  if (!store) return;
  record_writer w;
  put_quantized_layer(w, q);
  w.values(figures);
  save_record(store, layer_key(unit, q.id), w);
}

}  // namespace adaquant::detail
