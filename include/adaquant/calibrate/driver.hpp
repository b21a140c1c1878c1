#pragma once
// AdaQuant over a whole network (calibrate/network.hpp), layer by layer.
//
//   adaquant_calibrate(net, quantizers, options [, context]) -> calibration_report
//
// quantizers: one layer_quantizers (calibrate/adaquant.hpp) for every layer, or one per layer in
// the order of net.quantizable_layers(). options: how AdaQuant optimises (calibrate/adaquant.hpp)
// and in which order layers are calibrated. context (core/execution.hpp): threads, capture batch,
// progress ("adaquant", layers done, layers).
//
// parallel:   every layer is calibrated on full-precision inputs and targets, independently of
//             the others; up to context.threads layers are optimised concurrently (std::thread).
//             Results do not depend on the thread count: each layer's run is self-contained and
//             seeded by (seed, layer id), and set_quantized is called in layer order.
// sequential: each layer's inputs come from the network with the already-quantized preceding
//             layers (capture_mode::quantized), over all calibration samples; its targets are
//             the full-precision outputs (capture_mode::full_precision). Quantization errors of
//             earlier layers are thus compensated by later ones. The layer's steps use
//             context.threads (chunks of options.layer.chunk_macs: results do not depend on it).
// Memory: samples are captured in chunks of context.capture_batch; the cache of one layer (inputs
// and outputs of all calibration samples) is held at a time in sequential mode, `threads` layers'
// caches in parallel mode. In sequential mode a network that lends the inputs it holds anyway
// (held_inputs, calibrate/network.hpp) is not copied: the objective reads them where they are.
// Checkpoints (context.checkpoint, core/checkpoint.hpp): each finished layer's result and report
// are saved under "adaquant.layer-<id>"; a layer found there is installed without being
// calibrated again, with the result and report it had.
// Per-layer optimisation settings: options.configure(desc, layer_options) may change how one
// layer is optimised (frozen groups, iterations), or return false to leave the layer in full
// precision (it is then not given to set_quantized).
// Token-wise layers (linear with rows > 1, calibrate/network.hpp): only the rows the network
// marks valid are cached and calibrated on.
// Errors: an empty calibration set or no layers (errc::empty_input); a row_mask with no valid
// row (errc::empty_input); duplicate layer ids
// (errc::invalid_argument); a capture whose sizes disagree with the layer's geometry
// (errc::shape_mismatch); a quantizers list whose length is not the number of layers
// (errc::shape_mismatch); quantizers a layer cannot take (block-wise weights on a convolution
// other than 1x1: errc::invalid_argument, before any capture); everything adaquant_optimize throws
// (the first failing layer in layer order is reported).

#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/calibrate/block_jobs.hpp>
#include <adaquant/calibrate/calibration_options.hpp>
#include <adaquant/calibrate/checkpoint.hpp>
#include <adaquant/calibrate/layer_job.hpp>
#include <adaquant/calibrate/memory.hpp>
#include <adaquant/calibrate/network.hpp>
#include <adaquant/calibrate/report.hpp>
#include <adaquant/core/execution.hpp>
#include <adaquant/core/parallel.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

namespace detail {
inline std::uint64_t layer_seed(std::uint64_t seed, std::size_t id) noexcept {
  splitmix64 r{seed ^ (0xD1B54A32D192ED03ull * (static_cast<std::uint64_t>(id) + 1))};
  return r.next();
}

// adaquant_calibrate with its checkpoint records under `unit` ("adaquant", "adaquant-w4", ...).
template <QuantizableNetwork Net>
calibration_report calibrate_layers(Net& net, std::span<const layer_quantizers> quantizers,
                                    const calibration_options& options,
                                    const execution_context& context, const std::string& unit) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::size_t n = net.calibration_size();
  if (!(n > 0))
    detail::fail(errc::empty_input, "adaquant_calibrate: net", "calibration set is empty");
  const std::vector<layer_desc> layers = net.quantizable_layers();
  if (!(!layers.empty()))
    detail::fail(errc::empty_input, "adaquant_calibrate: net", "no quantizable layers");
  std::map<std::size_t, std::size_t> position;  // layer id -> index into layers, quantizers
  for (std::size_t i = 0; i < layers.size(); ++i)
    if (!position.emplace(layers[i].id, i).second)
      detail::fail(errc::invalid_argument, "adaquant_calibrate: net",
                   "layer id " + std::to_string(layers[i].id) + " appears twice");
  if (!(quantizers.size() == layers.size()))
    detail::fail(errc::shape_mismatch, "adaquant_calibrate: quantizers",
                 "has " + std::to_string(quantizers.size()) + " entries for " +
                     std::to_string(layers.size()) + " layers");
  if (!(context.capture_batch > 0))
    detail::fail(errc::invalid_argument, "adaquant_calibrate: context.capture_batch",
                 "must be > 0");
  detail::validate_options(options.layer);
  std::map<std::size_t, block_desc> block_at;  // first layer id -> block
  cache_estimate block_cache;                  // the largest block's
  std::vector<int> input_bits;                 // each layer's, 0 where its input is not quantized
  for (const layer_quantizers& q : quantizers)
    input_bits.push_back(q.activations ? q.activations->scheme.bits : 0);
  // The blocks to reconstruct whole, and the largest one's cache.
  const auto collect = [&](const block_selection& selection) {
    block_at.clear();
    block_cache = {};
    for (block_desc& b : selected_blocks(net, options, selection, layers)) {
      if (!options.reconstruction) {
        std::vector<int> bits;
        for (std::size_t id : b.layers)
          bits.push_back(quantizers[position.at(id)].weights.scheme.bits);
        if (!default_block_reconstruction(bits, input_bits.front())) continue;
      }
      const std::size_t per = detail::block_cache_per_sample(b, layers);
      if (per > block_cache.per_sample)
        block_cache = {static_cast<double>(n) * static_cast<double>(per) * sizeof(float),
                       b.layers.at(0), per, b.name};
      block_at[b.layers.at(0)] = std::move(b);
    }
  };
  block_selection selection = options.blocks;  // by bits when automatic and the unit unset
  if (!options.reconstruction && options.blocks.automatic())
    selection = default_block_selection(input_bits, layers.size());
  collect(selection);
  // A selection by bits whose cache does not fit falls back to the automatic blocks (a choice
  // the user made is checked as it is, below).
  if (!selection.automatic() && options.blocks.automatic() &&
      !cache_fits(block_cache, cache_limit(context))) {
    selection = options.blocks;
    collect(selection);
  }
  const bool by_block = options.reconstruction == reconstruction_unit::block || !block_at.empty();
  const std::string key_unit = by_block ? unit + "-block" + selection.key() : unit;
  const std::size_t concurrent =
      options.order == calibration_order::sequential ? 1 : resolve_threads(context.threads);
  check_cache_memory(layers, n, concurrent, context, "adaquant_calibrate");
  if (!block_cache.block.empty())
    check_cache_memory(block_cache, n, 1, context, "adaquant_calibrate");
  const std::size_t chunk = context.capture_batch;

  // QDrop's default is the network's (default_qdrop): every layer with a quantized input drops
  // when any layer's weights or inputs are below 4 bits.
  const bool below_4_bits = std::any_of(quantizers.begin(), quantizers.end(), [](const auto& q) {
    return q.weights.scheme.bits < 4 || (q.activations && q.activations->scheme.bits < 4);
  });
  // Per-layer options, decided up front so that they do not depend on the order of execution.
  std::vector<detail::layer_job> jobs;
  jobs.reserve(layers.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const layer_desc& d = layers[i];
    detail::layer_job j;
    j.desc = &d;
    j.quantizers = &quantizers[i];
    const std::string where = "adaquant_calibrate: quantizers[layer " + std::to_string(d.id) + "]";
    const layer_quant_config cfg = j.quantizers->objective_config(d.activation, where);
    check_weight_blocks(d.geometry, cfg.weight_block, where + ".weights.gran");
    j.opt = options.layer;
    j.opt.seed = detail::layer_seed(options.layer.seed, d.id);
    if (!j.opt.qdrop) j.opt.qdrop = default_qdrop(cfg, below_4_bits);
    if (options.configure && !options.configure(d, j.opt)) continue;
    detail::validate_options(j.opt);
    j.init = options.initial_params;
    jobs.push_back(std::move(j));
  }

  calibration_report report;
  // A layer's record, when the checkpoint holds it.
  const auto load = [&](detail::layer_job& j) {
    if (auto r = load_record(context.checkpoint, layer_key(key_unit, j.desc->id))) {
      j.saved = get_quantized_layer(*r, *j.desc);
      j.result.report = get_layer_report(*r);
      r->done();
    }
    return j.saved.has_value();
  };
  const auto finish = [&](detail::layer_job& j) {
    if (j.error) std::rethrow_exception(j.error);
    if (!j.saved) {
      j.saved = detail::to_quantized(j.desc->id, j.result, *j.quantizers);
      record_writer w;
      put_quantized_layer(w, *j.saved);
      put_layer_report(w, j.result.report);
      save_record(context.checkpoint, layer_key(key_unit, j.desc->id), w);
    }
    net.set_quantized(*j.saved);
    report.layers.push_back(j.result.report);
    context.report("adaquant", report.layers.size(), jobs.size());
    j.result = {};
    j.saved.reset();
  };

  if (options.order == calibration_order::sequential) {
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      detail::layer_job& j = jobs[i];
      if constexpr (BlockNetwork<Net>) {
        const auto b = block_at.find(j.desc->id);
        if (b != block_at.end() && detail::block_jobs_ready(b->second, jobs, i, load)) {
          detail::run_block(net, b->second, std::span(jobs).subspan(i, b->second.layers.size()), n,
                            chunk, resolve_threads(context.threads));
          for (std::size_t k = 0; k < b->second.layers.size(); ++k) finish(jobs[i + k]);
          i += b->second.layers.size() - 1;
          continue;
        }
      }
      if (!j.saved && !load(j)) {
        capture_input_runs(net, *j.desc, n, chunk, j);
        capture_all(net, *j.desc, n, chunk, capture_mode::full_precision, false, true, j.io);
        j.threads = resolve_threads(context.threads);
        j.run();
      }
      finish(j);
    }
  } else {
    const std::size_t width = resolve_threads(context.threads);
    for (std::size_t first = 0; first < jobs.size(); first += width) {
      const std::size_t last = std::min(jobs.size(), first + width);
      std::vector<detail::layer_job*> todo;
      for (std::size_t i = first; i < last; ++i)
        if (!load(jobs[i])) {
          capture_all(net, *jobs[i].desc, n, chunk, capture_mode::full_precision, true, true,
                      jobs[i].io);
          todo.push_back(&jobs[i]);
        }
      parallel_for(todo.size(), width, [&](std::size_t k) { todo[k]->run(); });
      for (std::size_t i = first; i < last; ++i) finish(jobs[i]);
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}
}  // namespace detail

template <QuantizableNetwork Net>
calibration_report adaquant_calibrate(Net& net, std::span<const layer_quantizers> quantizers,
                                      const calibration_options& options,
                                      const execution_context& context = {}) {
  return detail::calibrate_layers(net, quantizers, options, context, "adaquant");
}

// The same quantizers for every layer.
template <QuantizableNetwork Net>
calibration_report adaquant_calibrate(Net& net, const layer_quantizers& quantizers,
                                      const calibration_options& options,
                                      const execution_context& context = {}) {
  const std::vector<layer_quantizers> all(net.quantizable_layers().size(), quantizers);
  return adaquant_calibrate(net, std::span<const layer_quantizers>(all), options, context);
}

}  // namespace adaquant
