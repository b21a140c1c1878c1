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
#include <adaquant/calibrate/block.hpp>
#include <adaquant/calibrate/block_network.hpp>
#include <adaquant/calibrate/checkpoint.hpp>
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

enum class calibration_order { parallel, sequential };
// What one optimisation reconstructs: a layer (AdaQuant), or, in sequential order on a
// BlockNetwork (calibrate/block_network.hpp), each of the network's blocks as a whole
// (calibrate/block.hpp; BRECQ) and the layers outside blocks one at a time.
enum class reconstruction_unit { layer, block };

// Whether a block is reconstructed whole when calibration_options::reconstruction is not set:
// when one of its layers' weights is quantized to fewer than 4 bits (`weight_bits`: its layers'),
// else its layers one at a time. Measured with the advanced pipeline on the Fashion-MNIST
// reference models (docs/block.md): whole blocks beat layers in every pair measured below 4
// weight bits (W3A3, W2A4, W2A2; by 0.03-1.78 points of top-1).
[[nodiscard]] inline bool default_block_reconstruction(std::span<const int> weight_bits) noexcept {
  return std::any_of(weight_bits.begin(), weight_bits.end(), [](int b) { return b < 4; });
}

// The blocks selected when calibration_options::blocks is left automatic and the reconstruction
// unit is left unset: the network's automatic blocks, or, when a layer's input is quantized to
// fewer than 3 bits (`input_bits`: each layer's, 0 where its input is not quantized), runs of up
// to `layer_count` layers: the longest runs the network's blocks allow, on the reference models the
// whole network before its pooling as one block. Measured with the advanced pipeline on the
// Fashion-MNIST reference models at W2A2 (docs/lowbit.md): ResNet-style 0.48 points of top-1
// better than its residual blocks on the mean of seeds 0-4 (better on each),
// MobileNetV2-style 0.16 worse on the mean of seeds 0-4 (better on 3 of 5; its seeds spread by
// 1.8 points); at W3A3 and W2A4 the whole network was no better than the residual blocks.
// adaquant_calibrate falls back to the automatic blocks when the runs' largest cache (a block
// caches every layer's inputs and outputs) does not fit the memory limit (calibrate/memory.hpp).
[[nodiscard]] inline block_selection default_block_selection(std::span<const int> input_bits,
                                                             std::size_t layer_count) {
  block_selection s;
  if (std::any_of(input_bits.begin(), input_bits.end(), [](int b) { return b > 0 && b < 3; }))
    s.max_layers = std::max<std::size_t>(2, layer_count);
  return s;
}

struct calibration_options {
  adaquant_options layer{};  // for every layer (its seed is mixed with the layer id)
  calibration_order order = calibration_order::sequential;
  // block: sequential order only, on a network offering blocks (else an error); checkpoint
  // records then go under "<unit>-block<blocks.key()>" (a block's layers are optimised together).
  // std::nullopt, by bits: in sequential order on a BlockNetwork, each selected block for which
  // default_block_reconstruction holds is reconstructed whole and every other layer alone (the
  // records go under "<unit>-block<blocks.key()>" when a block is); per layer otherwise.
  std::optional<reconstruction_unit> reconstruction{};
  // Which blocks, when blocks are reconstructed (calibrate/block_network.hpp); anything but the
  // automatic blocks with reconstruction_unit::layer, or when no block can be (parallel order, a
  // network without blocks), is an error. Left automatic with `reconstruction` unset, the
  // selection is by bits too (default_block_selection: runs of every layer when an input is below
  // 3 bits); with reconstruction_unit::block it is the automatic blocks.
  block_selection blocks{};
  // Optional per-layer override of the optimisation; return false to skip (keep full precision).
  std::function<bool(const layer_desc&, adaquant_options&)> configure;
  // Optional per-layer initial parameters (otherwise the quantizers' range methods). Called on
  // the worker threads in parallel order: it must be safe to call concurrently.
  std::function<std::optional<initial_quant_params>(const layer_desc&, const layer_objective&)>
      initial_params;
};

namespace detail {
inline std::uint64_t layer_seed(std::uint64_t seed, std::size_t id) noexcept {
  splitmix64 r{seed ^ (0xD1B54A32D192ED03ull * (static_cast<std::uint64_t>(id) + 1))};
  return r.next();
}

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

// The inputs and/or outputs of layer d for calibration samples [0, n), captured in chunks, in
// the layout of d.geometry.per_row(): the rows the network marks as padding (layer_io::row_mask)
// are left out, so a token-wise linear layer becomes a linear layer over its valid tokens.
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
      result.report.layer_id = desc->id;
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

// Block reconstruction of b's layers (jobs, in order): the block's inputs from the quantized
// network and its full-precision output over the n calibration samples (captured in chunks),
// then block_optimize with the first layer's options on `threads`. Results (or the error) go into
// the jobs.
template <BlockNetwork Net>
void run_block(Net& net, const block_desc& b, std::span<layer_job> jobs, std::size_t n,
               std::size_t chunk, std::size_t threads) {
  try {
    const std::string where = "adaquant_calibrate: block " + b.name;
    block_io io;
    io.inputs.resize(b.program.inputs());
    for (std::size_t first = 0; first < n; first += chunk) {
      const std::size_t m = std::min(chunk, n - first);
      block_io part = net.capture_block(b, first, m);
      if (!(part.inputs.size() == io.inputs.size()))
        fail(errc::shape_mismatch, where + ": capture_block",
             "returned " + std::to_string(part.inputs.size()) + " inputs for " +
                 std::to_string(io.inputs.size()));
      for (std::size_t i = 0; i < io.inputs.size(); ++i)
        io.inputs[i].insert(io.inputs[i].end(), part.inputs[i].begin(), part.inputs[i].end());
      io.outputs.insert(io.outputs.end(), part.outputs.begin(), part.outputs.end());
    }
    std::vector<block_layer> layers;
    for (const layer_job& j : jobs)
      layers.push_back({j.desc->geometry, j.desc->weight, j.desc->bias,
                        j.quantizers->objective_config(j.desc->activation,
                                                       "adaquant_calibrate: quantizers[layer " +
                                                           std::to_string(j.desc->id) + "]")});
    const std::vector<std::span<const float>> inputs(io.inputs.begin(), io.inputs.end());
    block_objective obj(std::move(layers), b.program, inputs, io.outputs);
    std::vector<initial_quant_params> init;
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      std::optional<initial_quant_params> ip;
      if (jobs[k].init) ip = jobs[k].init(*jobs[k].desc, obj.layer(k));
      init.push_back(ip ? *ip : estimate_initial_params(obj.layer(k), *jobs[k].quantizers));
    }
    block_result r = block_optimize(obj, jobs[0].opt, init, threads);
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      jobs[k].result = std::move(r.layers[k]);
      jobs[k].result.report.layer_id = jobs[k].desc->id;
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
  // The blocks to reconstruct whole, and the largest one's cache.
  const auto collect = [&](const block_selection& selection) {
    block_at.clear();
    block_cache = {};
    for (block_desc& b : selected_blocks(net, options, selection, layers)) {
      if (!options.reconstruction) {
        std::vector<int> bits;
        for (std::size_t id : b.layers)
          bits.push_back(quantizers[position.at(id)].weights.scheme.bits);
        if (!default_block_reconstruction(bits)) continue;
      }
      const std::size_t per = detail::block_cache_per_sample(b, layers);
      if (per > block_cache.per_sample)
        block_cache = {static_cast<double>(n) * static_cast<double>(per) * sizeof(float),
                       b.layers.at(0), per, b.name};
      block_at[b.layers.at(0)] = std::move(b);
    }
  };
  block_selection selection = options.blocks;  // by bits when automatic and the unit unset
  if (!options.reconstruction && options.blocks.automatic()) {
    std::vector<int> input_bits;
    for (const layer_quantizers& q : quantizers)
      input_bits.push_back(q.activations ? q.activations->scheme.bits : 0);
    selection = default_block_selection(input_bits, layers.size());
  }
  collect(selection);
  // A selection by bits whose cache does not fit falls back to the automatic blocks (a choice
  // the user made is checked as it is, below).
  if (!selection.automatic() && options.blocks.automatic() && !cache_fits(block_cache, context)) {
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
