#pragma once
// Block reconstruction inside adaquant_calibrate (calibrate/driver.hpp): which blocks are
// reconstructed whole (selected_blocks), what one holds in memory (block_cache_per_sample), and
// one block's run (run_block: its inputs and full-precision output captured from the network,
// then block_optimize, calibrate/block.hpp, and the trial run of adaquant_options::
// trial_iterations). Internal: everything is in adaquant::detail.

#include <adaquant/calibrate/block.hpp>
#include <adaquant/calibrate/block_network.hpp>
#include <adaquant/calibrate/calibration_options.hpp>
#include <adaquant/calibrate/layer_job.hpp>
#include <adaquant/core/error.hpp>

#include <cmath>
#include <cstddef>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace adaquant::detail {

// Floats per sample block reconstruction holds for b: its inputs and output, and each layer's
// inputs and outputs inside it (block_objective's full-precision run).
inline std::size_t block_cache_per_sample(const block_desc& b, std::span<const layer_desc> layers) {
  std::size_t per = 0;
  for (std::size_t s : b.program.input_sizes) per += s;
  std::vector<layer_geometry> geoms;
  for (std::size_t id : b.layers)
    for (const layer_desc& d : layers)
      if (d.id == id) {
        per += d.geometry.input_per_sample() + d.geometry.output_per_sample();
        geoms.push_back(d.geometry);
      }
  return per +
         b.program.slot_sizes(geoms, "adaquant_calibrate: block " + b.name).at(b.program.output);
}

// Whether jobs[i ..] are block b's layers, in order, none found in the checkpoint (load(job)
// tells, and keeps what it found).
template <class Load>
bool block_jobs_ready(const block_desc& b, std::vector<layer_job>& jobs, std::size_t i,
                      Load&& load) {
  if (!(i + b.layers.size() <= jobs.size())) return false;
  bool ready = true;
  for (std::size_t k = 0; k < b.layers.size(); ++k)
    ready = ready && jobs[i + k].desc->id == b.layers[k];
  if (!ready) return false;
  for (std::size_t k = 0; k < b.layers.size(); ++k) ready = !load(jobs[i + k]) && ready;
  return ready;
}

// The trial run of a block whose first run gave r (run_block): with trial_iterations resolved
// above 0, each run's layers are given to the network and its calibration_loss() measured; the
// trial's result replaces r when its loss is lower. r's report records the trial either way.
// A non-finite loss is an error (errc::non_finite) naming the block.
template <LossNetwork Net>
void trial_run(Net& net, block_objective& obj, std::span<layer_job> jobs,
               std::span<const initial_quant_params> init, std::size_t threads,
               const std::string& where, block_result& r) {
  const adaquant_options& opt = jobs[0].opt;
  const std::size_t trial = opt.trial_iterations
                                ? *opt.trial_iterations
                                : default_trial_iterations(jobs.size(), opt.iterations);
  if (trial == 0) return;
  const auto loss_of = [&](const block_result& res, const char* run) {
    for (std::size_t k = 0; k < jobs.size(); ++k)
      net.set_quantized(to_quantized(jobs[k].desc->id, res.layers[k], *jobs[k].quantizers));
    const double loss = static_cast<double>(net.calibration_loss());
    if (!std::isfinite(loss))
      fail(errc::non_finite, where + ": calibration_loss()",
           "is " + std::to_string(loss) + " after the " + run + " run");
    return loss;
  };
  const double first = loss_of(r, "first");
  adaquant_options o = opt;
  o.iterations = trial;
  block_result t = block_optimize(obj, o, init, threads);
  const double loss = loss_of(t, "trial");
  const double seconds = r.report.seconds + t.report.seconds;
  const bool kept = loss < first;
  if (kept) r = std::move(t);
  const auto record = [&](layer_report& x) {
    x.trial_iterations = trial;
    x.loss_first = first;
    x.loss_trial = loss;
    x.trial_kept = kept;
    x.seconds = seconds;
  };
  record(r.report);
  for (layer_result& l : r.layers) record(l.report);
}

// Block reconstruction of b's layers (jobs, in order): the block's inputs from the quantized
// network and its full-precision output (and the loss's weights, when the network gives them)
// over the n calibration samples (captured in chunks),
// then block_optimize with the first layer's options on `threads`; then, when the network has
// calibration_loss() and the options a trial (trial_iterations, default_trial_iterations), the
// trial run, and the run with the lower network loss is kept (trial_run). Results (or the error)
// go into the jobs; the network holds one of the two runs' layers, which the driver's
// set_quantized of the results replaces.
template <BlockNetwork Net>
void run_block(Net& net, const block_desc& b, std::span<layer_job> jobs, std::size_t n,
               std::size_t chunk, std::size_t threads) {
  try {
    const std::string where = "adaquant_calibrate: block " + b.name;
    block_io io;
    io.inputs.resize(b.program.inputs());
    bool weighted = false;
    for (std::size_t first = 0; first < n; first += chunk) {
      const std::size_t m = std::min(chunk, n - first);
      block_io part = net.capture_block(b, first, m);
      if (!(part.inputs.size() == io.inputs.size()))
        fail(errc::shape_mismatch, where + ": capture_block",
             "returned " + std::to_string(part.inputs.size()) + " inputs for " +
                 std::to_string(io.inputs.size()));
      for (std::size_t i = 0; i < io.inputs.size(); ++i)
        io.inputs[i].insert(io.inputs[i].end(), part.inputs[i].begin(), part.inputs[i].end());
      // Output weights come with every chunk (one per output) or with none.
      if (first == 0) weighted = !part.output_weights.empty();
      if (!(part.output_weights.size() == (weighted ? part.outputs.size() : 0)))
        fail(errc::shape_mismatch, where + ": capture_block",
             "returned " + std::to_string(part.output_weights.size()) + " output weights for " +
                 std::to_string(part.outputs.size()) + " outputs of samples " +
                 std::to_string(first) + ".." + std::to_string(first + m - 1) + " (" +
                 (weighted ? "the first samples had weights)" : "the first samples had none)"));
      io.outputs.insert(io.outputs.end(), part.outputs.begin(), part.outputs.end());
      io.output_weights.insert(io.output_weights.end(), part.output_weights.begin(),
                               part.output_weights.end());
    }
    std::vector<block_layer> layers;
    for (const layer_job& j : jobs)
      layers.push_back({j.desc->geometry, j.desc->weight, j.desc->bias,
                        j.quantizers->objective_config(j.desc->activation,
                                                       "adaquant_calibrate: quantizers[layer " +
                                                           std::to_string(j.desc->id) + "]")});
    const std::vector<std::span<const float>> inputs(io.inputs.begin(), io.inputs.end());
    block_objective obj(std::move(layers), b.program, inputs, io.outputs);
    obj.set_output_weights(io.output_weights);
    std::vector<initial_quant_params> init;
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      std::optional<initial_quant_params> ip;
      if (jobs[k].init) ip = jobs[k].init(*jobs[k].desc, obj.layer(k));
      init.push_back(ip ? *ip : estimate_initial_params(obj.layer(k), *jobs[k].quantizers));
    }
    block_result r = block_optimize(obj, jobs[0].opt, init, threads);
    if constexpr (LossNetwork<Net>) trial_run(net, obj, jobs, init, threads, where, r);
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      jobs[k].result = std::move(r.layers[k]);
      jobs[k].result.report.layer_id = jobs[k].desc->id;
      jobs[k].result.report.block_first = jobs[0].desc->id;
    }
  } catch (...) {
    jobs[0].error = std::current_exception();
  }
}

// The blocks `selection` (options.blocks, or the selection by bits, default_block_selection)
// selects on net (layers: its quantizable_layers()), none for reconstruction by
// layer, or by bits where blocks cannot be (parallel order, a network without blocks);
// errc::invalid_argument (before anything changes) for blocks selected where none is
// reconstructed, block reconstruction asked for in parallel order or on a network without blocks,
// and whatever select_blocks refuses. By bits, the caller keeps the blocks
// default_block_reconstruction accepts.
template <QuantizableNetwork Net>
std::vector<block_desc> selected_blocks(const Net& net, const calibration_options& options,
                                        const block_selection& selection,
                                        std::span<const layer_desc> layers) {
  const auto none = [&](const char* why) {
    if (!options.blocks.automatic())
      fail(errc::invalid_argument, "adaquant_calibrate: options.blocks",
           std::string("selects blocks but ") + why);
    return std::vector<block_desc>{};
  };
  const bool asked = options.reconstruction == reconstruction_unit::block;
  if (options.reconstruction == reconstruction_unit::layer)
    return none("options.reconstruction is layer");
  if (options.order != calibration_order::sequential) {
    if (!asked) return none("the order is parallel (blocks need the sequential order)");
    fail(errc::invalid_argument, "adaquant_calibrate: options.reconstruction",
         "block reconstruction needs the sequential order");
  }
  if constexpr (BlockNetwork<Net>) {
    return select_blocks(net, selection, layers, "adaquant_calibrate: options.blocks");
  } else {
    if (!asked) return none("the network has no blocks (BlockNetwork)");
    fail(errc::invalid_argument, "adaquant_calibrate: options.reconstruction",
         "block reconstruction needs a network with blocks (BlockNetwork)");
  }
}

}  // namespace adaquant::detail
