#pragma once
// onnx_network's passes: captures of a layer's inputs and outputs from the resumable passes,
// the inputs the quantized passes hold, the calibration loss, and forward/evaluate (the contract
// is on onnx_network in onnx/network.hpp).

#include <adaquant/onnx/network.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

namespace adaquant::onnx {

namespace detail {

// x [n, c, h, w] padded with zeros: pt rows on top, pb below, pl and pr columns.
inline std::vector<float> pad_nchw(const tensor& x, std::int64_t pt, std::int64_t pb,
                                   std::int64_t pl, std::int64_t pr) {
  const std::int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
  const std::int64_t hp = h + pt + pb, wp = w + pl + pr;
  std::vector<float> out(static_cast<std::size_t>(n * c * hp * wp), 0.0f);
  for (std::int64_t p = 0; p < n * c; ++p)
    for (std::int64_t i = 0; i < h; ++i)
      std::copy_n(x.f.data() + (p * h + i) * w, w, out.data() + (p * hp + i + pt) * wp + pl);
  return out;
}

// log softmax of one row, in double.
inline void log_softmax(const float* z, std::size_t k, std::vector<double>& out) {
  const double m = *std::max_element(z, z + k);
  double sum = 0.0;
  for (std::size_t j = 0; j < k; ++j) sum += std::exp(z[j] - m);
  const double lse = m + std::log(sum);
  out.resize(k);
  for (std::size_t j = 0; j < k; ++j) out[j] = z[j] - lse;
}

}  // namespace detail

inline adaquant::layer_io onnx_network::capture(std::size_t layer_id, std::size_t first,
                                                std::size_t count, capture_mode mode,
                                                capture_parts want) {
  const layer_desc& d = desc(layer_id);
  if (!(first <= samples_ && count <= samples_ - first))
    adaquant::detail::fail(errc::invalid_argument, "onnx_network::capture: first, count",
                           "samples beyond the " + std::to_string(samples_) + " held");
  if (mode == capture_mode::quantized) estimate_activation_products(layer_id);
  const graph& run = mode == capture_mode::quantized ? q_ : fp_;
  const node& n = run.at(layer_id);
  const int in_v = n.inputs[0], out_v = n.outputs[0];
  const std::vector<std::size_t> begin = pass_bounds(first, count);
  const std::size_t parts = begin.size() - 1;
  std::vector<resumable_pass*> pass(parts);
  for (std::size_t p = 0; p < parts; ++p) {
    const std::size_t b = begin[p], c = begin[p + 1] - b;
    pass[p] = &passes_[{mode, b, c}];
  }
  adaquant::layer_io io;
  const std::size_t in_per = d.geometry.input_per_sample(),
                    out_per = d.geometry.output_per_sample();
  if (want.inputs) io.inputs.resize(count * in_per);
  if (want.outputs) io.outputs.resize(count * out_per);
  const std::size_t rows = d.geometry.kind == layer_kind::linear ? d.geometry.linear.rows : 1;
  if (rows > 1 && mask_input_ != graph::npos) {
    const std::vector<std::int64_t>& m = calibration_[mask_input_].i;
    io.row_mask.resize(count * rows);
    for (std::size_t r = 0; r < count * rows; ++r) io.row_mask[r] = m[first * rows + r] != 0;
  }
  if (count == 0) return io;
  // Full-precision outputs while quantized passes hold state: keep within the limit (see above).
  bool bounded = mode == capture_mode::full_precision && !want.inputs;
  if (bounded) {
    bounded = false;
    for (const auto& [key, qp] : passes_)
      bounded = bounded || (std::get<0>(key) == capture_mode::quantized && qp.has_state());
  }
  std::vector<std::size_t> keep(parts, layer_id);
  if (bounded)
    for (std::size_t p = 0; p < parts; ++p) keep[p] = fp_keep_point(*pass[p], layer_id);
  parallel_for(parts, threads_, [&](std::size_t p) {
    tensor out =
        std::move(pass[p]
                      ->run(run, layer_id, {out_v}, keep[p],
                            [&] { return calibration_items(begin[p], begin[p + 1]); })
                      .at(0));
    const std::size_t at = begin[p] - first;
    if (want.inputs) {  // kept before layer_id (only captures of outputs alone keep earlier)
      const tensor& in = pass[p]->kept().live.at(in_v);
      const std::vector<float> padded = explicit_padding(run, n, in);
      const std::vector<float>& from = padded.empty() ? in.f : padded;
      std::copy(from.begin(), from.end(),
                io.inputs.begin() + static_cast<std::ptrdiff_t>(at * in_per));
    }
    if (want.outputs)
      std::copy(out.f.begin(), out.f.end(),
                io.outputs.begin() + static_cast<std::ptrdiff_t>(at * out_per));
    graph::recycle(out);  // this thread's next run makes its outputs in it
  });
  return io;
}

inline std::vector<float> onnx_network::explicit_padding(const graph& run, const node& n,
                                                         const tensor& in) const {
  if (n.op_type != "Conv") return {};
  const op_env env{n, run.opset(), run.limits(), run.source(), nullptr};
  const detail::window g =
      detail::conv_window(env, in.shape, n.layer->weight.shape, n.attr_int("group", 1));
  if (g.symmetric_pads()) return {};
  tensor in4 = in;
  if (in4.rank() == 3) in4.shape.insert(in4.shape.begin() + 2, 1);
  return detail::pad_nchw(in4, g.pt, g.pb, g.pl, g.pr);
}

inline std::optional<std::vector<std::span<const float>>> onnx_network::held_inputs(
    std::size_t layer_id, std::size_t first, std::size_t count) const {
  const layer_desc& d = desc(layer_id);
  const std::size_t rows = d.geometry.kind == layer_kind::linear ? d.geometry.linear.rows : 1;
  if ((rows > 1 && mask_input_ != graph::npos) || !(first <= samples_ && count <= samples_ - first))
    return std::nullopt;
  const node& n = q_.at(layer_id);
  const std::vector<std::size_t> begin = pass_bounds(first, count);
  std::vector<std::span<const float>> runs;
  for (std::size_t p = 0; p + 1 < begin.size(); ++p) {
    const auto it = passes_.find({capture_mode::quantized, begin[p], begin[p + 1] - begin[p]});
    if (it == passes_.end() || it->second.start_point(layer_id) != layer_id) return std::nullopt;
    const auto v = it->second.kept().live.find(n.inputs[0]);
    if (v == it->second.kept().live.end()) return std::nullopt;
    const tensor& in = v->second;
    if (!(in.f.size() == (begin[p + 1] - begin[p]) * d.geometry.input_per_sample()) ||
        !explicit_padding(q_, n, in).empty())
      return std::nullopt;
    runs.emplace_back(in.f);
  }
  return runs;
}

inline double onnx_network::calibration_loss() {
  if (loss_passes_.empty()) return 0.0;
  estimate_activation_products();
  if (fp_logits_.rank() == 0) {  // on first use: a network that never asks pays no forward pass
    eval_options eo;
    eo.threads = threads_;
    fp_logits_ = forward(calibration_items(0, loss_begin_.back()), eo).at(0);
  }
  const std::size_t n = static_cast<std::size_t>(fp_logits_.shape[0]);
  const std::size_t k = n ? fp_logits_.size() / n : 0;
  const std::size_t last = q_.nodes().empty() ? 0 : q_.nodes().size() - 1;
  const int out_v = q_.output_values().at(0);
  std::vector<double> loss(n, 0.0);
  parallel_for(loss_passes_.size(), loss_passes_.size(), [&](std::size_t p) {
    resumable_pass& pass = loss_passes_[p];
    const tensor logits =
        pass.run(q_, last, {out_v}, pass.dirty(),
                 [&] { return calibration_items(loss_begin_[p], loss_begin_[p + 1]); })
            .at(0);
    const std::size_t b = loss_begin_[p];
    std::vector<double> lp, lq;
    for (std::size_t i = 0; i + b < loss_begin_[p + 1]; ++i) {
      detail::log_softmax(fp_logits_.f.data() + (b + i) * k, k, lp);
      detail::log_softmax(logits.f.data() + i * k, k, lq);
      double kl = 0.0;
      for (std::size_t j = 0; j < k; ++j) kl += std::exp(lp[j]) * (lp[j] - lq[j]);
      loss[b + i] = kl;
    }
  });
  return std::accumulate(loss.begin(), loss.end(), 0.0) / static_cast<double>(n);
}

inline std::vector<tensor> onnx_network::forward(const std::vector<tensor>& inputs,
                                                 const eval_options& opt) const {
  const graph& g = opt.quantized ? q_ : fp_;
  if (opt.quantized)
    for (const activation_product& p : products_)
      if (!p.estimated)
        adaquant::detail::fail(errc::invalid_argument, "onnx_network::forward",
                               "the operand ranges of product \"" + p.name +
                                   "\" are not estimated yet: call estimate_activation_products()");
  if (inputs.empty() || inputs[0].rank() == 0)
    adaquant::detail::fail(errc::shape_mismatch, "onnx_network::forward: inputs",
                           "expected [samples, ...] tensors");
  const std::size_t n = static_cast<std::size_t>(inputs[0].shape[0]);
  const std::size_t batch = std::max<std::size_t>(1, opt.batch);
  const std::size_t chunks = (n + batch - 1) / batch;
  std::vector<std::vector<tensor>> parts(chunks);
  parallel_for(chunks, resolve_threads(opt.threads), [&](std::size_t c) {
    std::vector<tensor> in;
    for (const tensor& t : inputs) in.push_back(t.items(c * batch, std::min(n, (c + 1) * batch)));
    parts[c] = g.forward(std::move(in));
  });
  std::vector<tensor> out;
  for (std::size_t k = 0; k < g.output_values().size(); ++k) {
    tensor t;
    if (chunks) {
      t.type = parts[0][k].type;
      t.shape = parts[0][k].shape;
      t.shape.at(0) = static_cast<std::int64_t>(n);
    }
    std::size_t nf = 0, ni = 0;
    for (const auto& p : parts) {
      nf += p[k].f.size();
      ni += p[k].i.size();
    }
    t.f.reserve(nf);
    t.i.reserve(ni);
    for (auto& p : parts) {
      const tensor& s = p[k];
      t.f.insert(t.f.end(), s.f.begin(), s.f.end());
      t.i.insert(t.i.end(), s.i.begin(), s.i.end());
    }
    out.push_back(std::move(t));
  }
  return out;
}

inline eval_result onnx_network::evaluate(const std::vector<tensor>& inputs,
                                          std::span<const std::int64_t> labels,
                                          const eval_options& opt) const {
  eval_result r;
  r.logits = forward(inputs, opt).at(0);
  const std::size_t n = static_cast<std::size_t>(r.logits.shape.at(0));
  if (labels.size() != n || !r.logits.floating())
    adaquant::detail::fail(
        errc::shape_mismatch, "onnx_network::evaluate: labels",
        std::to_string(labels.size()) + " labels for " + std::to_string(n) + " samples");
  const std::size_t k = n ? r.logits.size() / n : 0;
  r.samples = n;
  for (std::size_t i = 0; i < n; ++i) {
    const float* z = r.logits.f.data() + i * k;
    const auto best = static_cast<std::int64_t>(std::max_element(z, z + k) - z);
    r.correct += best == labels[i];
  }
  r.accuracy = n ? static_cast<double>(r.correct) / static_cast<double>(n) : 0.0;
  return r;
}

}  // namespace adaquant::onnx
