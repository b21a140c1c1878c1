#pragma once
// The steps the light and advanced pipelines are made of. Each works on a PipelineNetwork and a
// pipeline_state (the current quantized form of every layer), and hands every change to the
// network through set_quantized. Each saves every layer it finishes to ctx.checkpoint and
// installs a layer found there instead of computing it again (core/checkpoint.hpp).

#include <adaquant/bias/bias_correction.hpp>
#include <adaquant/bias/bias_tuning.hpp>
#include <adaquant/bn/channel_moments.hpp>
#include <adaquant/bn/retune.hpp>
#include <adaquant/calibrate/checkpoint.hpp>
#include <adaquant/calibrate/driver.hpp>
#include <adaquant/core/parallel.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/kernels/quantize.hpp>
#include <adaquant/pipeline/config.hpp>
#include <adaquant/pipeline/network.hpp>
#include <adaquant/range/estimator.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace adaquant::detail {

struct pipeline_state {
  std::vector<layer_desc> layers;
  std::vector<quantized_layer> q;  // current quantized form, by position in `layers`
  std::vector<int> wbits, abits;
  quantization_spec quant;  // the configuration's numerics

  // Layer i's quantizers at its current bits (weights at `wbits` when given).
  [[nodiscard]] layer_quantizers quantizers(std::size_t i, int weight_bits = 0) const {
    layer_quantizers q{quant.weights.with_bits(weight_bits ? weight_bits : wbits[i]), {}};
    if (quant.activations) q.activations = quant.activations->with_bits(abits[i]);
    return q;
  }
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Runs f (which returns the step's one-line summary) and appends the timed step to the report.
template <class F>
void timed_step(pipeline_report& rep, const char* name, F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  std::string summary = f();
  const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  rep.steps.push_back({name, seconds_since(t0), std::move(summary), cpu});
}

inline tensor_view<const float> weight_matrix(const layer_desc& d) {
  return {d.weight.data(), {d.geometry.out_channels(), d.geometry.weights_per_channel()}};
}

inline bool fixed_at_8bit(const quantization_spec& q, std::size_t i, std::size_t n) {
  return (q.first_last_8bit && (i == 0 || i + 1 == n)) ||
         std::find(q.fixed_8bit_layers.begin(), q.fixed_8bit_layers.end(), i) !=
             q.fixed_8bit_layers.end();
}
// Bits of layer i under the configuration: 8 for the first and last when the convention holds.
inline int layer_bits(const quantization_spec& q, std::size_t i, std::size_t n, int bits) {
  return fixed_at_8bit(q, i, n) ? 8 : bits;
}

// All calibration samples' inputs or outputs of one layer, in `mode`, in the layout of
// d.geometry.per_row() (padding rows left out: capture_all).
template <QuantizableNetwork Net>
layer_io capture_layer(Net& net, const layer_desc& d, capture_mode mode, bool inputs, bool outputs,
                       std::size_t chunk) {
  layer_io io;
  capture_all(net, d, net.calibration_size(), chunk, mode, inputs, outputs, io);
  return io;
}

// f(first, count) over consecutive chunks of at most `chunk` of the calibration samples, in
// order: the steps that only accumulate statistics stream through them, so they hold one chunk's
// outputs rather than every sample's.
template <class F>
void for_each_chunk(std::size_t samples, std::size_t chunk, F&& f) {
  chunk = std::max<std::size_t>(1, chunk);
  for (std::size_t first = 0; first < samples; first += chunk)
    f(first, std::min(chunk, samples - first));
}

// Captured outputs of layer d as [rows, C, P] (rows: samples, or valid tokens of a token-wise
// linear layer).
inline tensor_view<const float> outputs_view(const layer_desc& d, const std::vector<float>& out) {
  const std::size_t per = d.geometry.per_row().output_per_sample();
  return {out.data(), {out.size() / per, d.geometry.out_channels(), d.geometry.out_positions()}};
}

// m observes each row's outputs [C, P] of layer d (captured as outputs_view) as its own batch, in
// order: the moments do not depend on how the samples were chunked.
inline void observe_per_sample(channel_moments& m, const layer_desc& d,
                               const std::vector<float>& out) {
  const std::size_t per = d.geometry.per_row().output_per_sample();
  for (std::size_t s = 0; s < out.size() / per; ++s)
    m.observe_view(tensor_view<const float>(
        out.data() + s * per, {1, d.geometry.out_channels(), d.geometry.out_positions()}));
}

// outputs [rows, C, P] -= bias per channel (C = bias.size(), P = pos): the layer's output before
// its bias.
inline void remove_bias(std::span<const float> bias, std::size_t pos, std::vector<float>& outputs) {
  const std::size_t oc = bias.size();
  const std::size_t samples = outputs.size() / (oc * pos);
  for (std::size_t s = 0; s < samples; ++s)
    for (std::size_t c = 0; c < oc; ++c)
      for (std::size_t p = 0; p < pos; ++p) outputs[(s * oc + c) * pos + p] -= bias[c];
}

// How many groups of output channels bias tuning takes layer d in. It holds u and y_fp of one
// group at a time, and takes as few groups as keep the two within the layer's AdaQuant cache
// (inputs + outputs): ceil(2 * out / (in + out)), so one unless the outputs outweigh the inputs
// (two for a stem convolution), at most one group per channel. Each group captures the layer's
// outputs once more.
inline std::size_t bias_tuning_groups(const layer_desc& d) {
  const std::size_t in = d.geometry.input_per_sample(), out = d.geometry.output_per_sample();
  return std::min(d.geometry.out_channels(), (2 * out + in + out - 1) / (in + out));
}

// Channels [c0, c1) of layer d's outputs in `mode` over all calibration samples, as
// [rows, c1 - c0, P] (rows as capture_valid_rows gives them: samples, or valid tokens), captured
// in chunks of `chunk` samples.
template <QuantizableNetwork Net>
std::vector<float> capture_output_channels(Net& net, const layer_desc& d, capture_mode mode,
                                           std::size_t c0, std::size_t c1, std::size_t chunk) {
  const std::size_t oc = d.geometry.out_channels(), pos = d.geometry.out_positions();
  const std::size_t samples = net.calibration_size();
  std::vector<float> out;  // reserved at its bound: no regrowth doubling it
  out.reserve(samples * (d.geometry.output_per_sample() / oc) * (c1 - c0));
  for_each_chunk(samples, chunk, [&](std::size_t first, std::size_t count) {
    const layer_io io = capture_valid_rows(net, d, first, count, mode, false, true);
    for (std::size_t r = 0; r < io.outputs.size() / (oc * pos); ++r)
      out.insert(out.end(), io.outputs.begin() + static_cast<std::ptrdiff_t>((r * oc + c0) * pos),
                 io.outputs.begin() + static_cast<std::ptrdiff_t>((r * oc + c1) * pos));
  });
  return out;
}

// Round-to-nearest weights of a layer with the weight quantizer `spec`, per channel or per block
// (its range method; a dead channel or block gets scale FLT_EPSILON rather than stopping the
// pipeline).
inline void quantize_weights(const layer_desc& d, const quantizer_spec& spec, quantized_layer& q) {
  const tensor_view<const float> w = weight_matrix(d);
  q.weight.resize(d.weight.size());
  if (spec.gran.type == granularity::kind::per_block) {
    q.weight_blocks = estimate_block_params(w, spec, zero_range::use_epsilon);
    q.weight_params = {{}, {}, q.weight_blocks->qmin, q.weight_blocks->qmax, 0};
  } else {
    q.weight_blocks.reset();
    q.weight_params = estimate_channel_params(w, spec, zero_range::use_epsilon);
  }
  with_rounding(spec.rounding, [&](auto r) {
    using R = decltype(r);
    const tensor_view<float> wq(q.weight.data(), w.shape());
    if (q.weight_blocks)
      fake_quant_per_block<R>(w, wq, *q.weight_blocks);
    else
      fake_quant_per_channel<R>(w, wq, q.weight_params);
  });
}

// Step "ranges": round-to-nearest weights and activation ranges estimated on the full-precision
// inputs of every layer; up to ctx.threads layers are estimated at a time (captures stay in
// order), as many as keep their inputs together within the largest layer's inputs: small layers
// share the threads, and the step's memory does not grow with the thread count (the passes'
// kept state, which holds the layer's input once more, comes on top). Layers are independent here,
// so those found in the checkpoint are installed first, and the grouping changes no result.
template <PipelineNetwork Net>
void range_step(Net& net, pipeline_state& st, const execution_context& ctx) {
  const std::size_t n = st.layers.size();
  const std::size_t width = resolve_threads(ctx.threads);
  std::vector<std::size_t> todo;  // positions not in the checkpoint
  for (std::size_t i = 0; i < n; ++i) {
    if (auto r = load_layer(ctx.checkpoint, "ranges", st.layers[i])) {
      st.q[i] = std::move(r->layer);
      net.set_quantized(st.q[i]);
      ctx.report("ranges", i + 1 - todo.size(), n);
    } else {
      todo.push_back(i);
    }
  }
  std::size_t budget = 0;  // floats per sample: the largest layer's inputs
  for (const layer_desc& d : st.layers) budget = std::max(budget, d.geometry.input_per_sample());
  for (std::size_t first = 0, last = 0; first < todo.size(); first = last) {
    std::size_t held = st.layers[todo[first]].geometry.input_per_sample();
    for (last = first + 1; last < todo.size() && last - first < width; ++last) {
      const std::size_t more = st.layers[todo[last]].geometry.input_per_sample();
      if (held + more > budget) break;
      held += more;
    }
    std::vector<layer_io> io(last - first);
    for (std::size_t t = first; t < last; ++t)
      io[t - first] = capture_layer(net, st.layers[todo[t]], capture_mode::full_precision, true,
                                    false, ctx.capture_batch);
    parallel_for(last - first, width, [&](std::size_t k) {
      const std::size_t i = todo[first + k];
      const layer_desc& d = st.layers[i];
      quantized_layer& q = st.q[i];
      q.id = d.id;
      const layer_quantizers lq = st.quantizers(i);
      quantize_weights(d, lq.weights, q);
      q.bias.assign(d.bias.begin(), d.bias.end());
      if (q.bias.empty()) q.bias.assign(d.geometry.out_channels(), 0.0f);
      q.quantize_input = lq.activations.has_value();
      if (lq.activations) {
        q.act_params = estimate_tensor_params(
            tensor_view<const float>(io[k].inputs.data(),
                                     {io[k].inputs.size() / d.geometry.per_row().input_per_sample(),
                                      d.geometry.per_row().input_per_sample()}),
            *lq.activations, zero_range::use_epsilon);
        q.act_rounding = lq.activations->rounding;
      }
      io[k] = {};
    });
    for (std::size_t t = first; t < last; ++t) {
      save_layer(ctx.checkpoint, "ranges", st.q[todo[t]]);
      net.set_quantized(st.q[todo[t]]);
      ctx.report("ranges", n - todo.size() + t + 1, n);
    }
  }
}

// Step "bn_tuning": re-estimate the statistics of every layer with a folded batch norm on the
// quantized network's own activations (exact averages over all calibration samples, in layer
// order so each layer sees its tuned predecessors) and refold, keeping weights on their grid.
// The target statistics are the BN's running ones or the full-precision layer's (opt.target).
// Streamed in chunks of ctx.capture_batch samples; each sample is merged into the moments as its
// own batch (channel_moments), so the result does not depend on the chunk size.
template <PipelineNetwork Net>
std::size_t bn_tuning_layers(Net& net, pipeline_state& st, const bn_tuning_options& opt,
                             const execution_context& ctx) {
  std::size_t tuned = 0;
  const std::size_t samples = net.calibration_size();
  for (std::size_t i = 0; i < st.layers.size(); ++i) {
    const layer_desc& d = st.layers[i];
    const batch_norm_params* bn = net.folded_batch_norm(d.id);
    ctx.report("bn_tuning", i + 1, st.layers.size());
    if (!bn) continue;
    quantized_layer& q = st.q[i];
    ++tuned;
    if (auto saved = load_layer(ctx.checkpoint, "bn_tuning", d)) {
      q = std::move(saved->layer);
      net.set_quantized(q);
      continue;
    }
    const std::size_t oc = d.geometry.out_channels();
    const bool fp_target = opt.target == bn_reference::full_precision;
    channel_moments m(oc, 1), mf(oc, 1);
    for_each_chunk(samples, ctx.capture_batch, [&](std::size_t first, std::size_t count) {
      layer_io io = capture_valid_rows(net, d, first, count, capture_mode::quantized, false, true);
      remove_bias(q.bias, d.geometry.out_positions(), io.outputs);  // u = Q x
      observe_per_sample(m, d, io.outputs);
      if (fp_target)
        observe_per_sample(
            mf, d,
            capture_valid_rows(net, d, first, count, capture_mode::full_precision, false, true)
                .outputs);
    });
    const bn_retune_result r =
        fp_target ? match_output_moments(mf, m, bn->eps) : retune_batch_norm(*bn, m);
    // Same integers, scales multiplied by r (every block of channel c by r_c): the weights stay
    // on their (rescaled) grid.
    const auto shape = weight_matrix(d).shape();
    std::vector<std::int32_t> ints(q.weight.size());
    const tensor_view<const float> wq(q.weight.data(), shape);
    const tensor_view<std::int32_t> qi(ints.data(), shape);
    if (q.weight_blocks) {
      block_params& p = *q.weight_blocks;
      quantize_per_block(wq, qi, p);
      const std::size_t per = p.blocks() / oc;
      for (std::size_t j = 0; j < p.blocks(); ++j) p.scale[j] *= r.weight_scale_factor[j / per];
      dequantize_per_block(qi, tensor_view<float>(q.weight.data(), shape), p);
    } else {
      quantize_per_channel(wq, qi, q.weight_params);
      for (std::size_t c = 0; c < oc; ++c) q.weight_params.scale[c] *= r.weight_scale_factor[c];
      dequantize_per_channel(qi, tensor_view<float>(q.weight.data(), shape), q.weight_params);
    }
    q.bias = r.bias;
    save_layer(ctx.checkpoint, "bn_tuning", q);
    net.set_quantized(q);
  }
  return tuned;
}

// Step "bias_correction" (light): b += E[y_fp - y_q] per channel, layer by layer.
template <PipelineNetwork Net>
double bias_correction_step(Net& net, pipeline_state& st, const execution_context& ctx) {
  double largest = 0.0;
  const std::size_t samples = net.calibration_size();
  for (std::size_t i = 0; i < st.layers.size(); ++i) {
    const layer_desc& d = st.layers[i];
    double layer_largest = 0.0;
    if (auto saved = load_layer(ctx.checkpoint, "bias_correction", d, 1)) {
      st.q[i] = std::move(saved->layer);
      layer_largest = saved->figures[0];
    } else {
      // Streamed: the sums run over (sample, channel) in sample order, so any chunking gives
      // the same bits.
      bias_correction bc(d.geometry.out_channels(), 1);
      for_each_chunk(samples, ctx.capture_batch, [&](std::size_t first, std::size_t count) {
        const layer_io fp =
            capture_valid_rows(net, d, first, count, capture_mode::full_precision, false, true);
        const layer_io qo =
            capture_valid_rows(net, d, first, count, capture_mode::quantized, false, true);
        bc.observe(outputs_view(d, fp.outputs), outputs_view(d, qo.outputs));
      });
      for (float v : bc.correction())
        layer_largest = std::max(layer_largest, static_cast<double>(std::abs(v)));
      bc.apply(st.q[i].bias);
      save_layer(ctx.checkpoint, "bias_correction", st.q[i], {layer_largest});
    }
    largest = std::max(largest, layer_largest);
    net.set_quantized(st.q[i]);
    ctx.report("bias_correction", i + 1, st.layers.size());
  }
  return largest;
}

// Step "bias_tuning" (advanced): per layer, in order, only the bias of the quantized layer is
// refitted (bias/bias_tuning.hpp) so that its output after the following activation matches the
// full-precision output, with inputs from the quantized network. Weights and quantizer
// parameters stay bit for bit. Returns the summed per-layer output MSE before and after.
template <PipelineNetwork Net>
std::pair<double, double> bias_tuning_step(Net& net, pipeline_state& st,
                                           const execution_context& ctx) {
  double before = 0.0, after = 0.0;
  for (std::size_t i = 0; i < st.layers.size(); ++i) {
    const layer_desc& d = st.layers[i];
    quantized_layer& q = st.q[i];
    std::vector<double> mse;  // this layer's output MSE before and after
    if (auto saved = load_layer(ctx.checkpoint, "bias_tuning", d, 2)) {
      q = std::move(saved->layer);
      mse = std::move(saved->figures);
    } else {
      // By groups of channels (bias_tuning_groups): the same bits as all channels at once.
      const std::size_t oc = d.geometry.out_channels(), groups = bias_tuning_groups(d);
      const std::size_t pos = d.geometry.out_positions();
      bias_tuning_result r{q.bias, 0.0, 0.0};
      double elements = 0.0;
      for (std::size_t g = 0; g < groups; ++g) {
        const std::size_t c0 = oc * g / groups, c1 = oc * (g + 1) / groups;
        const std::span<const float> bias(q.bias.data() + c0, c1 - c0);
        std::vector<float> u =
            capture_output_channels(net, d, capture_mode::quantized, c0, c1, ctx.capture_batch);
        const std::vector<float> y = capture_output_channels(net, d, capture_mode::full_precision,
                                                             c0, c1, ctx.capture_batch);
        remove_bias(bias, pos, u);  // u = Q(W) Q(x)
        const std::size_t rows = u.size() / ((c1 - c0) * pos);
        tune_bias_channels(tensor_view<const float>(u.data(), {rows, c1 - c0, pos}),
                           tensor_view<const float>(y.data(), {rows, c1 - c0, pos}), bias,
                           d.activation, c0, r);
        elements += static_cast<double>(u.size());
      }
      mse = {r.loss_before / elements, r.loss_after / elements};
      q.bias = r.bias;
      save_layer(ctx.checkpoint, "bias_tuning", q, mse);
    }
    before += mse[0];
    after += mse[1];
    net.set_quantized(q);
    ctx.report("bias_tuning", i + 1, st.layers.size());
  }
  return {before, after};
}

template <PipelineNetwork Net>
std::string bn_tuning_step(Net& net, pipeline_state& st, const bn_tuning_options& opt,
                           const execution_context& ctx) {
  return std::to_string(bn_tuning_layers(net, st, opt, ctx)) + " batch norms re-estimated";
}

// A network wrapper that records what set_quantized receives (the AdaQuant driver's results).
template <QuantizableNetwork Net>
struct recording_network {
  Net& net;
  std::map<std::size_t, quantized_layer> received;

  std::size_t calibration_size() const { return net.calibration_size(); }
  std::vector<layer_desc> quantizable_layers() const { return net.quantizable_layers(); }
  layer_io capture(std::size_t id, std::size_t first, std::size_t count, capture_mode m) {
    return net.capture(id, first, count, m);
  }
  layer_io capture(std::size_t id, std::size_t first, std::size_t count, capture_mode m,
                   capture_parts want) requires requires(Net& n) {
    n.capture(id, first, count, m, want);
  }
  { return net.capture(id, first, count, m, want); }
  std::optional<std::vector<std::span<const float>>> held_inputs(std::size_t id, std::size_t first,
                                                                 std::size_t count) requires
      requires(Net& n) {
    n.held_inputs(id, first, count);
  }
  { return net.held_inputs(id, first, count); }
  void set_quantized(const quantized_layer& q) {
    net.set_quantized(q);
    received[q.id] = q;
  }
  // BlockNetwork, when Net is one.
  std::vector<block_desc> blocks() const requires BlockNetwork<Net> { return net.blocks(); }
  block_desc block_of(std::size_t a, std::size_t b) const requires BlockNetwork<Net> {
    return net.block_of(a, b);
  }
  block_io capture_block(const block_desc& b, std::size_t first,
                         std::size_t count) requires BlockNetwork<Net> {
    return net.capture_block(b, first, count);
  }
  // LossNetwork, when Net is one (block reconstruction's trial run).
  double calibration_loss() requires LossNetwork<Net> { return net.calibration_loss(); }
};

// Step "adaquant": the driver with every layer at its activation bits and at weight bits
// `wbits` (by position), in `order`; records the results into st.q. Checkpoint records go under
// `unit` ("adaquant", or "adaquant-w<b>" for bit allocation's candidate forms).
template <PipelineNetwork Net>
calibration_report adaquant_step(Net& net, pipeline_state& st, calibration_options co,
                                 calibration_order order, const std::vector<int>& wbits,
                                 const execution_context& ctx,
                                 const std::string& unit = "adaquant") {
  recording_network<Net> rec{net, {}};
  co.order = order;
  // Bit allocation's candidate forms (parallel order, full-precision inputs) stay per layer.
  if (order == calibration_order::parallel) {
    co.reconstruction = reconstruction_unit::layer;
    co.blocks = {};
  }
  std::vector<layer_quantizers> quantizers;
  for (std::size_t i = 0; i < st.layers.size(); ++i)
    quantizers.push_back(st.quantizers(i, wbits[i]));
  calibration_report rep =
      calibrate_layers(rec, std::span<const layer_quantizers>(quantizers), co, ctx, unit);
  std::map<std::size_t, std::size_t> pos;
  for (std::size_t i = 0; i < st.layers.size(); ++i) pos[st.layers[i].id] = i;
  for (auto& [id, q] : rec.received) st.q[pos.at(id)] = q;
  return rep;
}

inline double weight_bytes(const layer_desc& d, int bits) {
  return static_cast<double>(d.geometry.weight_size()) * bits / 8.0;
}

// Validates the configuration's numerics and the network before any work is done.
template <PipelineNetwork Net>
pipeline_state init_state(Net& net, const quantization_spec& quant, const char* fn) {
  const std::string f(fn);
  quant.weights.validate(f + ": config.quant.weights");
  if (quant.activations) quant.activations->validate(f + ": config.quant.activations");
  // The objective's constraints (weights per channel along axis 0 or per block along axis 1,
  // per-tensor inputs, one rounding policy) hold for every pipeline: both apply the quantizers to
  // the same layers.
  const layer_quant_config lc = layer_quantizers{quant.weights, quant.activations}.objective_config(
      output_activation::none, f + ": config.quant");
  if (net.calibration_size() == 0)
    fail(errc::empty_input, f + ": network", "the calibration set is empty");
  pipeline_state st;
  st.quant = quant;
  st.layers = net.quantizable_layers();
  if (st.layers.empty()) fail(errc::empty_input, f + ": network", "no layers");
  for (const layer_desc& d : st.layers)
    check_weight_blocks(d.geometry, lc.weight_block,
                        f + ": config.quant.weights.gran (layer " + std::to_string(d.id) + ")");
  const std::size_t n = st.layers.size();
  for (const std::size_t i : quant.fixed_8bit_layers)
    if (!(i < n))
      fail(errc::invalid_argument, f + ": config.quant.fixed_8bit_layers",
           "position " + std::to_string(i) + " is not below the " + std::to_string(n) + " layers");
  st.q.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    st.wbits.push_back(layer_bits(quant, i, n, quant.weights.scheme.bits));
    st.abits.push_back(quant.activations ? layer_bits(quant, i, n, quant.activations->scheme.bits)
                                         : 32);
  }
  return st;
}

inline void finish_report(const pipeline_state& st, pipeline_report& rep) {
  rep.weight_bits = st.wbits;
  rep.act_bits = st.abits;
  rep.weight_bytes = rep.fp32_weight_bytes = rep.param_bytes = 0.0;
  const granularity& g = st.quant.weights.gran;
  for (std::size_t i = 0; i < st.layers.size(); ++i) {
    const layer_geometry& geo = st.layers[i].geometry;
    rep.weight_bytes += weight_bytes(st.layers[i], st.wbits[i]);
    rep.fp32_weight_bytes += weight_bytes(st.layers[i], 32);
    const std::size_t per = geo.weights_per_channel();
    const std::size_t params =
        geo.out_channels() *
        (g.type == granularity::kind::per_block ? (per + g.block_size - 1) / g.block_size : 1);
    rep.param_bytes += static_cast<double>(params) * (32 + st.wbits[i]) / 8.0;
  }
}

}  // namespace adaquant::detail
