#pragma once
// An imported ONNX model seen through adaquant::PipelineNetwork (pipeline/network.hpp), so the
// light and advanced pipelines quantize it like the networks built in code.
//
//   adaquant::onnx::onnx_network net(adaquant::onnx::load_model("model.onnx"), {calibration});
//   adaquant::light_pipeline(net, config);   // or the advanced one
//   auto r = net.evaluate({test_images}, test_labels, /*quantized=*/true);
//
// Layers and ids. quantizable_layers() are the graph's layer nodes (graph.hpp: Conv, Gemm and
// MatMul with constant weights, batch norms folded) in execution order; a layer's id is its node
// index in graph::nodes(). layer_desc::weight/bias are the folded full-precision parameters.
// Conv geometry has symmetric pads only: a conv with asymmetric pads (or auto_pad SAME with an
// odd total) is described with its input padded explicitly and pad 0, and capture() returns that
// padded input.
//
// Map to the ONNX file, for exporters (e.g. a QDQ writer): layer_origins() gives, per layer id,
// the ONNX node name and op type, its weight and bias initializer names (bias empty when the node
// has none), the BatchNormalization node folded into it (empty when none), whether the layer's
// weight is the initializer transposed (Gemm transB = 0, MatMul) and the Gemm alpha folded into
// it. model_proto() is the file's ModelProto unchanged. To write the quantized model, replace
// each layer's weight initializer by quantized().at(id).layer->weight (transposed back when
// weight_transposed, divided by weight_scale), its bias by ...->bias, drop the folded batch norm
// (make it an Identity), and put Q/DQ pairs with the layer's act_params on its input.
//
// Token-wise layers. A MatMul on [N, T, K] activations is a linear layer with T rows per sample
// (linear_geometry::rows). Its padding tokens are read from the token mask, a graph input of
// integers [N, T] (nonzero = a real token): network_options::token_mask names it, or, when not
// set, the input whose name contains "attention_mask" (case-insensitive) is used if there is
// one. capture() returns it as layer_io::row_mask for every layer with T rows, so padding
// counts nowhere in calibration (calibrate/network.hpp). A named input that does not exist, or a
// mask that is not integer [N, T] for every token-wise layer's T, is an error naming the input.
//
// Embedding tables (onnx/embedding.hpp): embeddings() lists the Gathers of constant [V, D]
// tables; set_embedding() makes the quantized graph read a table quantized per row.
// Activation products: network_options::activation_products puts input quantizers on both
// operands of every MatMul of two activations; onnx/products.hpp says when and how their ranges
// are estimated.
//
// Captures and the calibration loss are resumable exactly as the example runtime's
// calibration_network: each (mode, sample range) keeps the values live before the last captured
// layer, and a rerun starts at the earliest layer changed since. Samples are split across
// `threads` threads by index; results are identical for any thread count. Construction runs
// nothing (the calibration inputs' shapes are checked; their values, e.g. token ids, when first
// run), and a pass holds no copy of its samples: memory grows with the live values only.
//
// Memory. A pass keeps every value live before the last captured layer, for its samples. Steps
// that capture both modes (bias correction, BN tuning to full-precision statistics, bias tuning,
// AdaQuant) would hold that twice; so while a quantized pass holds state, a full-precision
// capture of outputs only keeps its state before the latest node (between where it resumes and
// the layer) whose live values take at most network_options::full_precision_keep_limit elements
// per sample (default: the largest layer input; onnx/live_values.hpp), else where it resumed,
// and recomputes the layers from there. Same values, more time: in
// a residual block the block input stays live beside each layer's input, so the full-precision
// state stays at the block input and the block's layers are recomputed per capture.
// held_inputs() lends the layer's input from the quantized passes' kept state, so sequential
// AdaQuant does not hold it a second time (calibrate/network.hpp).

#include <adaquant/calibrate/block_network.hpp>
#include <adaquant/calibrate/network.hpp>
#include <adaquant/core/parallel.hpp>
#include <adaquant/onnx/embedding.hpp>
#include <adaquant/onnx/graph.hpp>
#include <adaquant/onnx/live_values.hpp>
#include <adaquant/onnx/products.hpp>
#include <adaquant/onnx/resumable_pass.hpp>
#include <adaquant/pipeline/network.hpp>

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <span>
#include <string_view>
#include <tuple>
#include <utility>

namespace adaquant::onnx {

struct network_options {
  compile_options compile;  // sample_shapes default to the calibration inputs' items
  // The graph input marking padding tokens (see above): unset = auto-detect, "" = none.
  std::optional<std::string> token_mask;
  // Input quantizers on both operands of every MatMul of two activations (see above); unset: they
  // run in float.
  std::optional<activation_products_options> activation_products;
  std::size_t loss_samples = 256;  // calibration samples of calibration_loss()
  // Elements per sample a full-precision pass may keep while quantized passes hold state too
  // (see "Memory" above); unset: the largest layer input; graph::npos: no limit.
  std::optional<std::size_t> full_precision_keep_limit;
  std::size_t threads = 0;  // 0: every core
};

struct layer_origin {
  std::size_t id = 0;
  std::string node, op_type, weight_initializer, bias_initializer, folded_batch_norm;
  bool weight_transposed = false;
  float weight_scale = 1.0f;
};

struct eval_options {
  std::size_t batch =
      16;  // samples per chunk (small: activations stay in cache); threads take whole chunks
  std::size_t threads = 0;
  bool quantized = false;
};

struct eval_result {
  std::size_t samples = 0, correct = 0;
  double accuracy = 0.0;
  tensor logits;  // the first output, [samples, classes]
};

class onnx_network {
 public:
  // calibration: one tensor per model input, first axis = samples (float or int64).
  onnx_network(const model& m, std::vector<tensor> calibration, network_options opt = {})
      : onnx_network(m, std::move(calibration), std::move(opt), m.proto) {}
  // The same, taking m's ModelProto instead of copying it, and dropping m's parsed initializers
  // (the compiled graphs hold what the network needs): one copy of the weights fewer each.
  onnx_network(model&& m, std::vector<tensor> calibration, network_options opt = {})
      : onnx_network(m, std::move(calibration), std::move(opt), ::onnx::ModelProto{}) {
    proto_ = std::move(m.proto);
    m.initializers = {};
  }

  // --- PipelineNetwork ---
  [[nodiscard]] std::size_t calibration_size() const noexcept { return samples_; }
  [[nodiscard]] std::vector<layer_desc> quantizable_layers() const { return layers_; }
  [[nodiscard]] adaquant::layer_io capture(std::size_t layer_id, std::size_t first,
                                           std::size_t count, capture_mode mode,
                                           capture_parts want = {});
  void set_quantized(const quantized_layer& q);
  // The inputs a quantized capture of layer_id over [first, first + count) just returned, as
  // views of the passes' resume states (calibrate/network.hpp); std::nullopt for a layer with a
  // token mask or an explicitly padded input, or when the passes are not at the layer.
  [[nodiscard]] std::optional<std::vector<std::span<const float>>> held_inputs(
      std::size_t layer_id, std::size_t first, std::size_t count) const;
  [[nodiscard]] const batch_norm_params* folded_batch_norm(std::size_t id) const {
    const auto it = fp_.folded_batch_norms().find(id);
    return it == fp_.folded_batch_norms().end() ? nullptr : &it->second;
  }
  // ---

  // --- BlockNetwork (calibrate/block_network.hpp; onnx/network_blocks.hpp) ---
  [[nodiscard]] std::vector<block_desc> blocks() const;
  [[nodiscard]] block_desc block_of(std::size_t first_layer_id, std::size_t last_layer_id) const;
  [[nodiscard]] block_io capture_block(const block_desc& b, std::size_t first, std::size_t count);
  // ---

  // Mean KL(p_fp || p_q) between the full-precision and the quantized model's softmax outputs
  // (first output, last axis) over the first loss_samples calibration samples, in double.
  [[nodiscard]] double calibration_loss();

  // The outputs for inputs (first axis = samples), full precision or quantized.
  [[nodiscard]] std::vector<tensor> forward(const std::vector<tensor>& inputs,
                                            const eval_options& opt = {}) const;
  // Top-1 of the first output against labels (one per sample).
  [[nodiscard]] eval_result evaluate(const std::vector<tensor>& inputs,
                                     std::span<const std::int64_t> labels,
                                     const eval_options& opt = {}) const;
  // As above, estimating the activation products' ranges first when a quantized pass needs them.
  [[nodiscard]] std::vector<tensor> forward(const std::vector<tensor>& inputs,
                                            const eval_options& opt = {}) {
    if (opt.quantized) estimate_activation_products();
    return std::as_const(*this).forward(inputs, opt);
  }
  [[nodiscard]] eval_result evaluate(const std::vector<tensor>& inputs,
                                     std::span<const std::int64_t> labels,
                                     const eval_options& opt = {}) {
    if (opt.quantized) estimate_activation_products();
    return std::as_const(*this).evaluate(inputs, labels, opt);
  }

  // Estimates the operand ranges of the products at nodes <= through not estimated yet, in
  // node order, on the current quantized network.
  void estimate_activation_products(std::size_t through = graph::npos);
  // The products with operand quantizers, in node order (empty without the option).
  [[nodiscard]] const std::vector<activation_product>& activation_products() const noexcept {
    return products_;
  }

  // Elements the passes of `mode` keep to resume from (all samples; see "Memory" above).
  [[nodiscard]] std::size_t kept_elements(capture_mode mode) const {
    std::size_t e = 0;
    for (const auto& [key, pass] : passes_)
      if (std::get<0>(key) == mode)
        for (const auto& [v, t] : pass.kept().live) e += t.f.size() + t.i.size();
    return e;
  }
  [[nodiscard]] const graph& full_precision() const noexcept { return fp_; }
  [[nodiscard]] const graph& quantized() const noexcept { return q_; }
  [[nodiscard]] const std::vector<layer_report_entry>& layer_report() const noexcept {
    return fp_.layer_report();
  }
  // The graph input used as token mask; empty when none.
  [[nodiscard]] const std::string& token_mask() const noexcept { return mask_name_; }
  [[nodiscard]] std::vector<layer_origin> layer_origins() const;
  // The id of the quantizable layer whose ONNX node is named `node_name`; empty when none.
  [[nodiscard]] std::optional<std::size_t> layer_named(std::string_view node_name) const {
    for (const layer_desc& d : layers_)
      if (fp_.at(d.id).name == node_name) return d.id;
    return std::nullopt;
  }
  // Embedding tables (onnx/embedding.hpp) and the Gathers of constants left float.
  [[nodiscard]] const embedding_scan& embeddings() const noexcept { return embeddings_; }
  // The quantized graph's Gather q.node reads q.table instead of the float table.
  void set_embedding(const quantized_embedding& q);
  [[nodiscard]] const ::onnx::ModelProto& model_proto() const noexcept { return proto_; }
  // The full-precision keep limit in force (network_options::full_precision_keep_limit, "Memory"
  // above); changing it changes memory and time, never a result.
  [[nodiscard]] std::size_t full_precision_keep_limit() const noexcept { return fp_keep_limit_; }
  void set_full_precision_keep_limit(std::size_t elements) noexcept { fp_keep_limit_ = elements; }
  // Frees the ModelProto (a copy of the weights the graphs do not need); model_proto() is then
  // empty, and an exporter reads the file again (adaquant_ptq does).
  void drop_model_proto() {
    ::onnx::ModelProto empty;
    empty.Swap(&proto_);
  }

 private:
  onnx_network(const model& m, std::vector<tensor> calibration, network_options opt,
               ::onnx::ModelProto proto);
  [[nodiscard]] std::vector<tensor> calibration_items(std::size_t b, std::size_t e) const {
    std::vector<tensor> out;
    for (const tensor& t : calibration_) out.push_back(t.items(b, e));
    return out;
  }
  [[nodiscard]] const layer_desc& desc(std::size_t id) const;
  void resolve_token_mask(const model& m, const std::optional<std::string>& name);
  void find_products(const std::optional<activation_products_options>& opt);
  void estimate_product(activation_product& p);
  // Samples [first, first + count) split over the passes of one capture: boundaries, parts + 1.
  [[nodiscard]] std::vector<std::size_t> pass_bounds(std::size_t first, std::size_t count) const {
    const std::size_t parts = std::max<std::size_t>(1, std::min(threads_, count));
    std::vector<std::size_t> begin(parts + 1);
    for (std::size_t p = 0; p <= parts; ++p) begin[p] = first + count * p / parts;
    return begin;
  }
  // The input of layer node n as its layer_desc sees it: `in`, or `in` padded explicitly when
  // the conv's pads are asymmetric (then returned; empty otherwise).
  [[nodiscard]] std::vector<float> explicit_padding(const graph& run, const node& n,
                                                    const tensor& in) const;
  // The quantized graph changed at `node`: quantized passes and loss passes resume before it,
  // and the range estimates of the products after it are dropped (re-estimated when next needed).
  void invalidate_quantized_from(std::size_t node);
  [[nodiscard]] block_desc block_of_nodes(std::size_t a, std::size_t b) const;

  ::onnx::ModelProto proto_;
  graph fp_, q_;
  std::vector<tensor> calibration_;
  std::size_t samples_ = 0, threads_ = 1;
  std::size_t mask_input_ = graph::npos;  // index into calibration_ of the token mask
  std::string mask_name_;
  std::vector<layer_desc> layers_;
  embedding_scan embeddings_;
  std::vector<activation_product> products_;
  quantizer_spec product_spec_;
  std::map<std::tuple<capture_mode, std::size_t, std::size_t>, resumable_pass> passes_;
  std::vector<resumable_pass> loss_passes_;
  std::vector<std::size_t> loss_begin_;
  tensor fp_logits_;
  std::vector<std::size_t> live_;  // elements per sample live before each node (fp_)
  std::size_t fp_keep_limit_ = graph::npos;
  // Where a full-precision pass capturing layer_id keeps its state (see "Memory" above).
  [[nodiscard]] std::size_t fp_keep_point(const resumable_pass& pass, std::size_t layer_id) const {
    const std::size_t start = pass.start_point(layer_id);
    for (std::size_t k = layer_id; k > start; --k)
      if (live_[k] <= fp_keep_limit_) return k;
    return start;
  }
};

static_assert(PipelineNetwork<onnx_network>);
static_assert(BlockNetwork<onnx_network>);

inline onnx_network::onnx_network(const model& m, std::vector<tensor> calibration,
                                  network_options opt, ::onnx::ModelProto proto)
    : proto_(std::move(proto)),
      calibration_(std::move(calibration)),
      threads_(resolve_threads(opt.threads)) {
  const std::string where = m.source + ": calibration inputs";
  if (calibration_.size() != m.inputs.size())
    adaquant::detail::fail(errc::shape_mismatch, where,
                           "expected one tensor per model input (" +
                               std::to_string(m.inputs.size()) + "), got " +
                               std::to_string(calibration_.size()));
  for (const tensor& t : calibration_)
    if (t.rank() == 0 || t.shape[0] <= 0 ||
        (samples_ && static_cast<std::size_t>(t.shape[0]) != samples_) ||
        t.size() != onnx::detail::checked_count(t.shape, where))
      adaquant::detail::fail(errc::shape_mismatch, where,
                             "expected non-empty tensors with the same number of samples, got " +
                                 shape_string(t.shape));
    else
      samples_ = static_cast<std::size_t>(t.shape[0]);
  compile_options co = opt.compile;
  co.batch_axis = true;
  if (co.sample_shapes.empty())
    for (const tensor& t : calibration_)
      co.sample_shapes.emplace_back(t.shape.begin() + 1, t.shape.end());
  fp_ = graph::compile(m, co);
  q_ = fp_;
  for (std::size_t i = 0; i < fp_.nodes().size(); ++i) {
    const node& n = fp_.at(i);
    if (!n.layer) continue;
    const shape_t& xs = fp_.probe_shape(n.inputs[0]);
    const tensor& w = n.layer->weight;
    layer_desc d;
    d.id = i;
    if (n.op_type == "Conv") {
      const bool two_d = xs.size() == 4;
      const op_env env{n, fp_.opset(), fp_.limits(), fp_.source(), nullptr};
      const detail::window g = detail::conv_window(env, xs, w.shape, n.attr_int("group", 1));
      conv2d_geometry c;
      c.in_channels = static_cast<std::size_t>(xs[1]);
      c.out_channels = static_cast<std::size_t>(w.shape[0]);
      c.in_h = static_cast<std::size_t>(two_d ? xs[2] : 1);
      c.in_w = static_cast<std::size_t>(xs.back());
      c.kernel_h = static_cast<std::size_t>(g.kh);
      c.kernel_w = static_cast<std::size_t>(g.kw);
      c.stride_h = static_cast<std::size_t>(g.sh);
      c.stride_w = static_cast<std::size_t>(g.sw);
      c.dilation_h = static_cast<std::size_t>(g.dh);
      c.dilation_w = static_cast<std::size_t>(g.dw);
      c.groups = static_cast<std::size_t>(n.attr_int("group", 1));
      if (g.symmetric_pads()) {
        c.pad_h = static_cast<std::size_t>(g.pt);
        c.pad_w = static_cast<std::size_t>(g.pl);
      } else {  // explicit padding before the layer
        c.in_h += static_cast<std::size_t>(g.pt + g.pb);
        c.in_w += static_cast<std::size_t>(g.pl + g.pr);
      }
      d.geometry = layer_geometry::of(c);
    } else {
      d.geometry = layer_geometry::of(linear_geometry{
          static_cast<std::size_t>(w.shape[1]), static_cast<std::size_t>(w.shape[0]),
          xs.size() == 3 ? static_cast<std::size_t>(xs[1]) : std::size_t{1}});
    }
    d.geometry.validate(fp_.source() + ": layer \"" + n.name + "\"");
    d.activation = fp_.activation_after(i);
    d.weight = n.layer->weight.f;
    d.bias = n.layer->bias;
    layers_.push_back(d);
  }
  live_ = detail::live_elements(fp_);
  if (opt.full_precision_keep_limit) {
    fp_keep_limit_ = *opt.full_precision_keep_limit;
  } else {
    fp_keep_limit_ = 0;
    for (const layer_desc& d : layers_) {
      std::size_t e = 1;
      for (const std::int64_t x : fp_.probe_shape(fp_.at(d.id).inputs[0]))
        e *= static_cast<std::size_t>(x);
      fp_keep_limit_ = std::max(fp_keep_limit_, e / static_cast<std::size_t>(fp_.probe_batch()));
    }
  }
  resolve_token_mask(m, opt.token_mask);
  // m.proto, not proto_: proto_ is still empty here when m is moved in (the constructor above).
  embeddings_ = find_embedding_tables(fp_, m.proto);
  find_products(opt.activation_products);
  // The loss samples, split by index across threads.
  const std::size_t ls = std::min(opt.loss_samples, samples_);
  if (ls > 0) {
    const std::size_t parts = std::min(threads_, ls);
    for (std::size_t p = 0; p <= parts; ++p) loss_begin_.push_back(ls * p / parts);
    loss_passes_.resize(parts);
  }
}

inline const layer_desc& onnx_network::desc(std::size_t id) const {
  for (const layer_desc& l : layers_)
    if (l.id == id) return l;
  adaquant::detail::fail(errc::invalid_argument, "onnx_network: layer_id",
                         std::to_string(id) + " is not a quantizable layer");
}

inline void onnx_network::resolve_token_mask(const model& m,
                                             const std::optional<std::string>& name) {
  const std::string where = m.source + ": token mask";
  const auto lower = [](std::string v) {
    for (char& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return v;
  };
  for (std::size_t k = 0; k < m.inputs.size(); ++k)
    if (name ? m.inputs[k] == *name
             : lower(m.inputs[k]).find("attention_mask") != std::string::npos) {
      mask_input_ = k;
      break;
    }
  if (name && !name->empty() && mask_input_ == graph::npos) {
    std::string all;
    for (const std::string& in : m.inputs) all += (all.empty() ? "'" : ", '") + in + "'";
    adaquant::detail::fail(errc::invalid_argument, where,
                           "the model has no input '" + *name + "' (its inputs: " + all + ")");
  }
  if (mask_input_ == graph::npos) return;
  mask_name_ = m.inputs[mask_input_];
  const tensor& t = calibration_[mask_input_];
  for (const layer_desc& d : layers_) {
    if (d.geometry.kind != layer_kind::linear || d.geometry.linear.rows == 1) continue;
    const auto rows = static_cast<std::int64_t>(d.geometry.linear.rows);
    if (t.floating() || t.rank() != 2 || t.shape[1] != rows)
      adaquant::detail::fail(errc::shape_mismatch, where,
                             "input '" + mask_name_ + "' is " + (t.floating() ? "float " : "") +
                                 shape_string(t.shape) +
                                 "; a token mask must be integer [samples, " +
                                 std::to_string(rows) + "] for layer \"" + fp_.at(d.id).name +
                                 "\" with " + std::to_string(rows) + " tokens per sample");
  }
}

inline void onnx_network::set_quantized(const quantized_layer& q) {
  const layer_desc& d = desc(q.id);
  if (!(q.weight.size() == d.weight.size() && q.bias.size() == d.geometry.out_channels()))
    adaquant::detail::fail(errc::shape_mismatch, "onnx_network::set_quantized: q",
                           "layer " + std::to_string(q.id) + " has " +
                               std::to_string(d.weight.size()) + " weights and " +
                               std::to_string(d.geometry.out_channels()) + " biases");
  if (q.quantize_input) q.act_params.validate("onnx_network::set_quantized: act_params");
  layer_params& l = *q_.at(q.id).layer;
  l.weight.f = q.weight;
  l.bias = q.bias;
  l.input_quant = q.quantize_input ? std::optional<quant_params>(q.act_params) : std::nullopt;
  l.input_rounding = q.act_rounding;
  invalidate_quantized_from(q.id);
}

inline void onnx_network::invalidate_quantized_from(std::size_t node) {
  for (auto& [key, pass] : passes_)
    if (std::get<0>(key) == capture_mode::quantized) pass.invalidate_from(node);
  for (resumable_pass& p : loss_passes_) p.invalidate_from(node);
  for (activation_product& p : products_)
    if (p.node > node && p.estimated) {
      p.estimated = false;
      q_.at(p.node).operands.reset();
    }
}

inline void onnx_network::set_embedding(const quantized_embedding& q) {
  const auto it = std::find_if(embeddings_.tables.begin(), embeddings_.tables.end(),
                               [&](const embedding_table& t) { return t.node == q.node; });
  if (it == embeddings_.tables.end() || it->initializer != q.initializer)
    adaquant::detail::fail(
        errc::invalid_argument, "onnx_network::set_embedding: q",
        "node " + std::to_string(q.node) + " is not the Gather of table '" + q.initializer + "'");
  q_.set_constant_values(it->value, q.table);
  invalidate_quantized_from(q.node);
}

inline std::vector<layer_origin> onnx_network::layer_origins() const {
  std::vector<layer_origin> out;
  for (const layer_desc& d : layers_) {
    const node& n = fp_.at(d.id);
    const layer_params& l = *n.layer;
    out.push_back({d.id, n.name, n.op_type, l.weight_initializer, l.bias_initializer,
                   l.folded_batch_norm_node, l.weight_transposed, l.weight_scale});
  }
  return out;
}

}  // namespace adaquant::onnx

#include <adaquant/onnx/network_blocks.hpp>
#include <adaquant/onnx/network_passes.hpp>
#include <adaquant/onnx/network_products.hpp>
