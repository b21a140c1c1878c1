#pragma once
// One layer's calibration inside adaquant_calibrate (calibrate/driver.hpp): capturing its inputs
// and outputs from the network (checked against the layer's geometry, padding rows left out) and
// optimising it (layer_job::run, adaquant_optimize). Internal: everything is in adaquant::detail.

#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/calibrate/network.hpp>
#include <adaquant/core/error.hpp>

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace adaquant::detail {

// Samples [first, first + m) of layer d in `mode`, the sizes the network returns checked.
template <QuantizableNetwork Net>
layer_io capture_checked(Net& net, const layer_desc& d, std::size_t first, std::size_t m,
                         capture_mode mode, bool want_inputs, bool want_outputs) {
  const std::size_t in = d.geometry.input_per_sample(), outn = d.geometry.output_per_sample();
  layer_io io;
  if constexpr (requires { net.capture(d.id, first, m, mode, capture_parts{}); })
    io = net.capture(d.id, first, m, mode, capture_parts{want_inputs, want_outputs});
  else
    io = net.capture(d.id, first, m, mode);
  const std::string where = "adaquant_calibrate: capture(layer " + std::to_string(d.id) + ")";
  if (want_inputs && !(io.inputs.size() == m * in))
    fail(errc::shape_mismatch, where + ".inputs",
         "returned " + std::to_string(io.inputs.size()) + " floats for " + std::to_string(m) +
             " samples of " + std::to_string(in));
  if (want_outputs && !(io.outputs.size() == m * outn))
    fail(errc::shape_mismatch, where + ".outputs",
         "returned " + std::to_string(io.outputs.size()) + " floats for " + std::to_string(m) +
             " samples of " + std::to_string(outn));
  return io;
}

// Appends the rows of src (per_row floats each) whose mask byte is nonzero (every row when the
// mask is empty) to dst.
inline void append_valid_rows(const std::vector<float>& src, const std::vector<std::uint8_t>& mask,
                              std::size_t per_row, std::vector<float>& dst) {
  if (mask.empty()) {
    dst.insert(dst.end(), src.begin(), src.end());
    return;
  }
  const auto valid = static_cast<std::size_t>(
      std::count_if(mask.begin(), mask.end(), [](std::uint8_t b) { return b != 0; }));
  dst.reserve(dst.size() + valid * per_row);  // one allocation, not one per growth step
  for (std::size_t r = 0; r < mask.size(); ++r)
    if (mask[r])
      dst.insert(dst.end(), src.begin() + static_cast<std::ptrdiff_t>(r * per_row),
                 src.begin() + static_cast<std::ptrdiff_t>((r + 1) * per_row));
}

// Samples [first, first + m) of layer d in `mode` in the layout of d.geometry.per_row(): the
// sizes the network returns checked, and the rows it marks as padding (layer_io::row_mask) left
// out, so a token-wise linear layer becomes a linear layer over its valid tokens. The result's
// row_mask is empty.
template <QuantizableNetwork Net>
layer_io capture_valid_rows(Net& net, const layer_desc& d, std::size_t first, std::size_t m,
                            capture_mode mode, bool want_inputs, bool want_outputs) {
  const std::size_t in = d.geometry.input_per_sample(), outn = d.geometry.output_per_sample();
  const bool linear = d.geometry.kind == layer_kind::linear;
  const std::size_t rows = linear ? d.geometry.linear.rows : 1;
  layer_io io = capture_checked(net, d, first, m, mode, want_inputs, want_outputs);
  if (io.row_mask.empty()) return io;
  if (!(linear && io.row_mask.size() == m * rows))
    fail(errc::shape_mismatch,
         "adaquant_calibrate: capture(layer " + std::to_string(d.id) + ").row_mask",
         linear ? "has " + std::to_string(io.row_mask.size()) + " entries for " +
                      std::to_string(m) + " samples of " + std::to_string(rows) + " rows"
                : std::string("must be empty for a convolution"));
  layer_io valid;
  if (want_inputs) append_valid_rows(io.inputs, io.row_mask, in / rows, valid.inputs);
  if (want_outputs) append_valid_rows(io.outputs, io.row_mask, outn / rows, valid.outputs);
  return valid;
}

// The inputs and/or outputs of layer d for calibration samples [0, n), captured in chunks
// (capture_valid_rows: padding rows left out).
template <QuantizableNetwork Net>
void capture_all(Net& net, const layer_desc& d, std::size_t n, std::size_t chunk, capture_mode mode,
                 bool want_inputs, bool want_outputs, layer_io& out) {
  const layer_geometry row = d.geometry.per_row();
  if (want_inputs) {
    out.inputs.clear();
    out.inputs.reserve(n * d.geometry.input_per_sample());
  }
  if (want_outputs) {
    out.outputs.clear();
    out.outputs.reserve(n * d.geometry.output_per_sample());
  }
  for (std::size_t first = 0; first < n; first += chunk) {
    const std::size_t m = std::min(chunk, n - first);
    const layer_io io = capture_valid_rows(net, d, first, m, mode, want_inputs, want_outputs);
    if (want_inputs) out.inputs.insert(out.inputs.end(), io.inputs.begin(), io.inputs.end());
    if (want_outputs) out.outputs.insert(out.outputs.end(), io.outputs.begin(), io.outputs.end());
  }
  const std::size_t valid = want_outputs ? out.outputs.size() / row.output_per_sample()
                                         : out.inputs.size() / row.input_per_sample();
  if (!(n == 0 || valid > 0 || !(want_inputs || want_outputs)))
    fail(errc::empty_input, "adaquant_calibrate: capture(layer " + std::to_string(d.id) + ")",
         "row_mask marks every row of the calibration samples as padding");
}

struct layer_job {
  const layer_desc* desc = nullptr;
  const layer_quantizers* quantizers = nullptr;
  adaquant_options opt;
  layer_io io;
  // Sequential order: the inputs as runs (views the network lends, or owned_inputs' chunks);
  // empty: io.inputs.
  std::vector<std::span<const float>> input_runs;
  std::vector<std::vector<float>> owned_inputs;
  layer_result result;
  std::optional<quantized_layer> saved;  // found in the checkpoint: not run again
  std::exception_ptr error;
  std::function<std::optional<initial_quant_params>(const layer_desc&, const layer_objective&)>
      init;
  std::size_t threads = 1;  // for the layer's steps (adaquant_optimize)

  void run() {
    try {
      const layer_quant_config cfg =
          quantizers->objective_config(desc->activation, "adaquant_calibrate: quantizers[layer " +
                                                             std::to_string(desc->id) + "]");
      layer_objective obj(
          desc->geometry, desc->weight, desc->bias,
          input_runs.empty() ? std::vector<std::span<const float>>{io.inputs} : input_runs,
          io.outputs, cfg);
      std::optional<initial_quant_params> ip;
      if (init) ip = init(*desc, obj);
      if (!ip) ip = estimate_initial_params(obj, *quantizers);
      result = adaquant_optimize(obj, opt, *ip, threads);
      result.report.layer_id = result.report.block_first = desc->id;
    } catch (...) {
      error = std::current_exception();
    }
    io = {};  // release the cache as soon as the layer is done
    input_runs = {};
    owned_inputs = {};
  }
};

// The quantized inputs of layer d over samples [0, n), captured in chunks, into j.input_runs:
// views of what the network holds anyway where it lends them (held_inputs, calibrate/network.hpp),
// else one copied chunk each (capture_valid_rows: padding rows left out).
template <QuantizableNetwork Net>
void capture_input_runs(Net& net, const layer_desc& d, std::size_t n, std::size_t chunk,
                        layer_job& j) {
  const std::size_t in = d.geometry.input_per_sample();
  const std::size_t row = d.geometry.per_row().input_per_sample();
  const std::string where = "adaquant_calibrate: held_inputs(layer " + std::to_string(d.id) + ")";
  j.input_runs.clear();
  j.owned_inputs.clear();
  std::size_t total = 0;
  for (std::size_t first = 0; first < n; first += chunk) {
    const std::size_t m = std::min(chunk, n - first);
    if constexpr (requires { net.held_inputs(d.id, first, m); }) {
      (void)capture_checked(net, d, first, m, capture_mode::quantized, false, false);
      if (auto held = net.held_inputs(d.id, first, m)) {
        std::size_t got = 0;
        for (std::span<const float> r : *held) {
          if (!(r.size() % in == 0))
            fail(errc::shape_mismatch, where,
                 "lent a run of " + std::to_string(r.size()) + " floats, not whole samples of " +
                     std::to_string(in));
          got += r.size();
        }
        if (!(got == m * in))
          fail(errc::shape_mismatch, where,
               "lent " + std::to_string(got) + " floats for " + std::to_string(m) + " samples of " +
                   std::to_string(in));
        j.input_runs.insert(j.input_runs.end(), held->begin(), held->end());
        total += got;
        continue;
      }
    }
    layer_io io = capture_valid_rows(net, d, first, m, capture_mode::quantized, true, false);
    total += io.inputs.size();
    j.owned_inputs.push_back(std::move(io.inputs));  // moving keeps the buffer: views stay valid
    j.input_runs.emplace_back(j.owned_inputs.back());
  }
  if (!(n == 0 || total / row > 0))
    fail(errc::empty_input, "adaquant_calibrate: capture(layer " + std::to_string(d.id) + ")",
         "row_mask marks every row of the calibration samples as padding");
}

inline quantized_layer to_quantized(std::size_t id, const layer_result& r,
                                    const layer_quantizers& quantizers) {
  quantized_layer q;
  q.id = id;
  q.weight = r.weights;
  q.bias = r.bias;
  q.weight_params = r.weight_params;
  q.weight_blocks = r.weight_blocks;
  q.act_params = r.act_params;
  q.quantize_input = quantizers.activations.has_value();
  if (quantizers.activations) q.act_rounding = quantizers.activations->rounding;
  return q;
}

}  // namespace adaquant::detail
