#pragma once
// The block reconstruction objective (BRECQ: Li et al., "BRECQ: Pushing the Limit of Post-Training
// Quantization by Block Reconstruction", ICLR 2021; with QDrop, Wei et al. 2022): a block of
// consecutive quantizable layers k = 0..K-1, wired by a dataflow program
// (objectives/block_program.hpp: layer, relu, relu6, add, identity over value slots), is optimised
// as a whole. For cached calibration samples with external inputs U (captured from the network with
// the layers before the block quantized) and full-precision block outputs T,
//
//   L(theta_0, ..., theta_{K-1}) = mean over samples and output elements of w * ( T - F_q(U) )^2
//
// with w = 1, or, after set_output_weights, a weight per sample and output element that the
// caller gives (w >= 0): BRECQ's Fisher weighting sets w to the squared gradient of the network's
// task loss w.r.t. the block's output, so errors count by their effect on the network's output.
// The mean still divides by every sample's output elements, so weights with mean 1 keep the
// loss's scale (and AdaRound's regulariser, calibrate/block.hpp) where they were.
//
// where F_q runs the program with every layer op replaced by its quantized layer
//   layer_k(x) = Q_w,k(W_k + V_k) * Q_a,k(x) + b'_k
// exactly as in the per-layer objective (objectives/layer_objective.hpp: weight groups, rounding,
// AdaRound, weight-only layers), and theta_k = (V_k, b'_k, s_w,k, z_w,k, s_a,k, z_a,k) is layer
// k's layer_state. Unlike the per-layer loss, a layer's error is judged by what it does to the
// block's output, so later layers and the residual path can absorb it, and all layers' groups move
// jointly. The loss is on the program's output slot (put the block's final ReLU in the program to
// compare after it); a layer's layer_quant_config::activation is not used here.
//
// Gradients (gradient()) are the exact gradients of the straight-through linearisation
// (kernels/fake_quant_backward.hpp), now chained through the program: backward runs the ops in
// reverse, a layer passes dL/dx = (dL/dXq masked by Q_a,k's straight-through mask; the identity
// for weight-only layers) to its input slot, where dL/dXq = dY Wq (linear) or col2im(Wq^T dY)
// (conv2d); relu and relu6 pass the gradient where their input is inside (0, inf) / (0, 6) (0 at
// the kinks, as PyTorch); add and identity pass it unchanged; gradients into a slot read twice are
// summed. Within a layer the gradients of theta_k are layer_objective's, with dL/dY_k the gradient
// arriving at its output slot. objectives/block_gradient_check.hpp evaluates the surrogate
// independently in double and compares with central differences.
//
// Inner term (deep supervision; set_inner_weight(mu), mu >= 0, default 0): the training objective
// adds, for every layer k whose supervised value is not the output slot,
//
//   mu * c_k * mean over samples and elements of ( a_k(Y_k) - a_k(Yq_k) )^2,
//   c_k = E[T^2] / (K' * E[a_k(Y_k)^2])      (0 when E[a_k(Y_k)^2] = 0)
//
// where Yq_k is layer k's output in the quantized program, Y_k its output in the full-precision
// program on the same block inputs U (cached at construction), a_k the relu or relu6 op that is
// the only reader of layer k's output in the program (the identity otherwise; the supervised
// value is then that op's slot), K' the number of supervised layers, and E[.] a mean over all
// cached samples and elements. c_k makes each layer's term a relative error on the output's
// scale, so at mu = 1 the K' terms together weigh about as much as the output's error. It keeps
// every layer of a long block (a whole network) near its full-precision values, which the
// output's error alone does not: measured on the Fashion-MNIST models at 2-bit inputs
// (docs/lowbit.md, "Deep supervision") it gained test accuracy. Its gradient reaches slot
// a_k(Yq_k) as 2 mu c_k (a_k(Yq_k) - a_k(Y_k)) / (B * elements) and flows back through the
// program like the output's. value() is the output's MSE only (reports, held-out selection);
// relaxed_value() and gradient() include the term.
//
// QDrop (input_drop, objectives/input_drop.hpp): in a training step each element of every
// quantized layer input keeps its float value with probability p; layer k draws from the stream
// seeded by mix_seed(drop.seed, k) with the sample's index (deterministic, independent of batch
// order and threads).
//
// What the objective holds: the external inputs and targets are referenced (the caller keeps them
// alive, layouts per sample as the program's slots). At construction the full-precision program
// runs over all samples (float weights, float inputs) to give each layer its own cached input and
// output; layer(k) is a layer_objective over them, for starting parameters
// (estimate_initial_params), initial_state, use_adaround and the integer grids of a result. Memory:
// N times the inputs and outputs of every layer, plus per-step buffers. One objective per thread
// (set_threads lets one objective's convolutions use more).
//
// Errors: a program that does not fit the layers (block_program::slot_sizes); a number of input
// spans other than the program's inputs (errc::shape_mismatch); no samples (errc::empty_input);
// inputs whose sizes are not N whole samples or disagree on N, targets not N outputs
// (errc::shape_mismatch); NaN/inf in inputs or targets (errc::non_finite); everything
// layer_objective's constructor throws for a layer (its weights, bias, geometry, configuration);
// a states vector of the wrong length or a state of the wrong shape (errc::shape_mismatch) or with
// scales <= 0 (errc::invalid_argument); a sample index >= N (errc::invalid_argument); output
// weights that are not N outputs (errc::shape_mismatch), not finite (errc::non_finite) or
// negative (errc::invalid_argument); an inner weight that is negative or not finite
// (errc::invalid_argument).

#include <adaquant/core/error.hpp>
#include <adaquant/objectives/block_inner_term.hpp>
#include <adaquant/objectives/block_program.hpp>
#include <adaquant/objectives/forward.hpp>
#include <adaquant/objectives/input_drop.hpp>
#include <adaquant/objectives/layer_objective.hpp>
#include <adaquant/objectives/layer_passes.hpp>
#include <adaquant/objectives/layer_state.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace adaquant {

// One quantizable layer of a block: its geometry, float weights and bias (referenced; bias may be
// empty) and how it is quantized.
struct block_layer {
  layer_geometry geometry;
  std::span<const float> weight;
  std::span<const float> bias;
  layer_quant_config config;
};

class block_objective {
 public:
  // inputs[i]: N samples of external slot i; targets: N samples of the output slot.
  block_objective(std::vector<block_layer> layers, block_program program,
                  std::vector<std::span<const float>> inputs, std::span<const float> targets)
      : layers_(std::move(layers)), prog_(std::move(program)), in_(std::move(inputs)), t_(targets) {
    const std::string f = "block_objective";
    std::vector<layer_geometry> geoms;
    for (const block_layer& l : layers_) geoms.push_back(l.geometry);
    size_ = prog_.slot_sizes(geoms, f + ": program");
    if (!(in_.size() == prog_.inputs()))
      detail::fail(errc::shape_mismatch, f + ": inputs",
                   std::to_string(in_.size()) + " spans for a program with " +
                       std::to_string(prog_.inputs()) + " external inputs");
    if (in_[0].empty()) detail::fail(errc::empty_input, f + ": inputs[0]", "no samples");
    n_ = in_[0].size() / size_[0];
    for (std::size_t i = 0; i < in_.size(); ++i) {
      const std::string at = f + ": inputs[" + std::to_string(i) + "]";
      if (!(in_[i].size() % size_[i] == 0 && in_[i].size() / size_[i] == n_))
        detail::fail(errc::shape_mismatch, at,
                     "has " + std::to_string(in_[i].size()) + " floats, " + std::to_string(n_) +
                         " samples of " + std::to_string(size_[i]) + " expected");
      detail::check_all_finite(in_[i], at);
    }
    if (!(t_.size() == n_ * size_[prog_.output]))
      detail::fail(errc::shape_mismatch, f + ": targets",
                   "has " + std::to_string(t_.size()) + " floats, " + std::to_string(n_) +
                       " samples of " + std::to_string(size_[prog_.output]) + " expected");
    detail::check_all_finite(t_, f + ": targets");
    units_.resize(layers_.size());
    for (std::size_t k = 0; k < layers_.size(); ++k) {
      detail::check_all_finite(layers_[k].weight, f + ": layer " + std::to_string(k) + " weight");
      units_[k].wg = weight_grouping::of(layers_[k].geometry, layers_[k].config.weight_block);
    }
    // Each layer's full-precision inputs and outputs, for its own layer_objective.
    fp_in_.resize(layers_.size());
    fp_out_.resize(layers_.size());
    const std::size_t chunk = eval_chunk();
    std::vector<std::size_t> batch;
    for (std::size_t first = 0; first < n_; first += chunk) {
      batch.clear();
      for (std::size_t i = first; i < std::min(n_, first + chunk); ++i) batch.push_back(i);
      forward(nullptr, batch, false, 0, true);
    }
    for (std::size_t k = 0; k < layers_.size(); ++k)
      objs_.emplace_back(layers_[k].geometry, layers_[k].weight, layers_[k].bias, fp_in_[k],
                         fp_out_[k], layers_[k].config);
    inner_.emplace(prog_, size_, fp_out_, t_);
  }
  block_objective(const block_objective&) = delete;
  block_objective& operator=(const block_objective&) = delete;
  block_objective(block_objective&&) = default;

  [[nodiscard]] std::size_t layers() const noexcept { return layers_.size(); }
  [[nodiscard]] std::size_t samples() const noexcept { return n_; }
  [[nodiscard]] const block_program& program() const noexcept { return prog_; }
  [[nodiscard]] std::span<const float> targets() const noexcept { return t_; }
  // Floats per sample of each slot.
  [[nodiscard]] std::span<const std::size_t> slot_sizes() const noexcept { return size_; }
  [[nodiscard]] std::span<const float> input(std::size_t i) const { return in_.at(i); }
  // The loss's weights per sample and output element (empty: every weight 1; file comment).
  // Referenced: the caller keeps them alive. N samples of the output slot, finite and >= 0.
  void set_output_weights(std::span<const float> w) {
    const std::string f = "block_objective::set_output_weights";
    const std::size_t out = size_[prog_.output];
    if (!(w.empty() || w.size() == n_ * out))
      detail::fail(errc::shape_mismatch, f,
                   std::to_string(w.size()) + " weights, " + std::to_string(n_) + " samples of " +
                       std::to_string(out) + " outputs expected");
    detail::check_all_finite(w, f);
    for (std::size_t i = 0; i < w.size(); ++i)
      if (!(w[i] >= 0.0f))
        detail::fail(errc::invalid_argument, f,
                     "weight " + std::to_string(i) + " (sample " + std::to_string(i / out) +
                         ") is negative: " + std::to_string(w[i]));
    w_ = w;
  }
  [[nodiscard]] std::span<const float> output_weights() const noexcept { return w_; }
  // The inner term's weight mu (file comment); 0 turns it off.
  void set_inner_weight(float mu) {
    if (!(std::isfinite(mu) && mu >= 0.0f))
      detail::fail(errc::invalid_argument, "block_objective::set_inner_weight",
                   "must be finite and >= 0, got " + std::to_string(mu));
    mu_ = mu;
  }
  [[nodiscard]] float inner_weight() const noexcept { return mu_; }
  // The inner term's layers, in layer order: the slot compared, its activation (kind of the op
  // applied to the layer's output: layer for none, relu or relu6) and c_k (file comment).
  using inner_value = block_inner_value;
  [[nodiscard]] std::span<const inner_value> inner_values() const noexcept {
    return inner_->values();
  }
  // The inner term's target of inner value j (inner_values()[j]) for sample n, element e:
  // a_k(Y_k). Throws errc::invalid_argument for an index out of range.
  [[nodiscard]] float inner_target(std::size_t j, std::size_t n, std::size_t e) const {
    const auto values = inner_values();
    if (!(j < values.size() && n < n_ && e < size_[values[j].slot]))
      detail::fail(errc::invalid_argument, "block_objective::inner_target",
                   "value " + std::to_string(j) + ", sample " + std::to_string(n) + ", element " +
                       std::to_string(e) + " out of range (" + std::to_string(values.size()) +
                       " values, " + std::to_string(n_) + " samples)");
    return inner_->target(fp_out_, j, n, e);
  }
  // Layer k on its full-precision inputs and outputs inside the block (see the file comment).
  [[nodiscard]] layer_objective& layer(std::size_t k) { return objs_.at(k); }
  [[nodiscard]] const layer_objective& layer(std::size_t k) const { return objs_.at(k); }

  // Execution only, as layer_objective::set_threads: each layer's direct convolutions split their
  // outputs over up to `threads` threads (0: every core), one per `grain` multiply-adds of a pass.
  // Same bits for any count.
  void set_threads(std::size_t threads) noexcept { threads_ = resolve_threads(threads); }
  void set_thread_grain(double macs) noexcept { grain_ = macs; }
  [[nodiscard]] std::size_t threads() const noexcept { return threads_; }

  // AdaRound for layer k from now on (layer_objective::use_adaround; s becomes its logits).
  void use_adaround(std::size_t k, layer_state& s, float zeta, float gamma) {
    check_state(k, s, "block_objective::use_adaround");
    layer_state copy = s;
    detail::start_adaround(layers_[k].config, units_[k].wg, layers_[k].weight, copy, zeta, gamma,
                           units_[k].ar);
    objs_[k].use_adaround(s, zeta, gamma);
  }

  // MSE over the given samples (all when empty); AdaRound layers hardened.
  [[nodiscard]] double value(std::span<const layer_state> s,
                             std::span<const std::size_t> batch = {}) {
    return evaluate(s, batch, false, "block_objective::value");
  }
  // AdaRound layers relaxed: the function gradient() differentiates.
  [[nodiscard]] double relaxed_value(std::span<const layer_state> s,
                                     std::span<const std::size_t> batch = {}) {
    return evaluate(s, batch, true, "block_objective::relaxed_value");
  }

  // Gradient of the objective over `batch` (all samples when empty) into grads[k] (resized; frozen
  // groups 0); returns the loss (AdaRound layers: relaxed). drop: QDrop (file comment).
  double gradient(std::span<const layer_state> s, std::span<const std::size_t> batch,
                  std::vector<layer_state>& grads, const trainable_groups& which = {},
                  const input_drop& drop = {}) {
    const std::vector<float> p(layers_.size(), drop.keep_float);
    return gradient(s, batch, grads, which, p, drop.seed);
  }
  // The same with QDrop probability keep_float[k] for layer k (one per layer).
  double gradient(std::span<const layer_state> s, std::span<const std::size_t> batch,
                  std::vector<layer_state>& grads, const trainable_groups& which,
                  std::span<const float> keep_float, std::uint64_t seed) {
    constexpr const char* fn = "block_objective::gradient";
    check_states(s, fn);
    check_batch(batch, fn);
    if (!(keep_float.size() == layers_.size()))
      detail::fail(errc::shape_mismatch, std::string(fn) + ": keep_float",
                   std::to_string(keep_float.size()) + " probabilities for " +
                       std::to_string(layers_.size()) + " layers");
    for (std::size_t k = 0; k < keep_float.size(); ++k)
      input_drop{keep_float[k], seed}.validate(std::string(fn) + ": keep_float[" +
                                               std::to_string(k) + "]");
    keep_p_.assign(keep_float.begin(), keep_float.end());
    std::vector<std::size_t> all;
    if (batch.empty()) batch = all = all_samples();
    for (std::size_t k = 0; k < units_.size(); ++k)
      detail::quantize_layer_weights(layers_[k].geometry, layers_[k].config, units_[k].wg,
                                     layers_[k].weight, units_[k].ar, s[k], true, units_[k].ar.on,
                                     units_[k].wb, threads_);
    const double sum = forward(s.data(), batch, true, seed, false);
    grads.resize(units_.size());
    backward(s.data(), batch.size(), grads, which);
    return sum / static_cast<double>(batch.size() * size_[prog_.output]);
  }

 private:
  struct unit {
    weight_grouping wg;
    detail::adaround_weights_state ar;
    detail::quantized_weight_buffers wb;
    std::vector<float> xq, cols, dwq, dxq, dcols, dx;
    std::vector<float> wt, conv_ws;  // direct convolutions: flipped weights, scratch
    std::vector<std::uint8_t> xmask, keep;
  };

  [[nodiscard]] std::vector<std::size_t> all_samples() const {
    std::vector<std::size_t> all(n_);
    for (std::size_t i = 0; i < n_; ++i) all[i] = i;
    return all;
  }

  void check_state(std::size_t k, const layer_state& s, const char* fn) const {
    // layer_objective's checks (shapes, positive scales) through a call that runs them.
    try {
      if (layers_[k].config.weight_block)
        (void)objs_[k].weight_block_params(s);
      else
        (void)objs_[k].weight_params(s);
    } catch (const error& e) {
      detail::fail(e.code(), std::string(fn) + ": states[" + std::to_string(k) + "]", e.what());
    }
  }
  void check_states(std::span<const layer_state> s, const char* fn) const {
    if (!(s.size() == layers_.size()))
      detail::fail(
          errc::shape_mismatch, std::string(fn) + ": states",
          std::to_string(s.size()) + " states for " + std::to_string(layers_.size()) + " layers");
    for (std::size_t k = 0; k < s.size(); ++k) check_state(k, s[k], fn);
  }
  void check_batch(std::span<const std::size_t> batch, const char* fn) const {
    detail::check_sample_indices(batch, n_, fn);
  }
  [[nodiscard]] std::size_t eval_chunk() const noexcept {
    std::size_t per = 0;
    for (std::size_t sz : size_) per += sz;
    for (const block_layer& l : layers_)
      if (l.geometry.kind == layer_kind::conv2d)
        per += l.geometry.weights_per_channel() * l.geometry.out_positions();
    return std::max<std::size_t>(1, (std::size_t{1} << 22) / per);
  }

  double evaluate(std::span<const layer_state> s, std::span<const std::size_t> batch, bool relaxed,
                  const char* fn) {
    check_states(s, fn);
    check_batch(batch, fn);
    std::vector<std::size_t> all;
    if (batch.empty()) batch = all = all_samples();
    for (std::size_t k = 0; k < units_.size(); ++k)
      detail::quantize_layer_weights(layers_[k].geometry, layers_[k].config, units_[k].wg,
                                     layers_[k].weight, units_[k].ar, s[k], false,
                                     relaxed && units_[k].ar.on, units_[k].wb, threads_);
    const std::size_t chunk = eval_chunk();
    double total = 0.0;
    for (std::size_t first = 0; first < batch.size(); first += chunk)
      total += forward(s.data(), batch.subspan(first, std::min(chunk, batch.size() - first)), false,
                       0, false, relaxed);
    return total / static_cast<double>(batch.size() * size_[prog_.output]);
  }

  // The program over `batch`. s == nullptr: full precision (float weights and inputs), and with
  // `record` each layer's input and output are appended to fp_in_/fp_out_. Otherwise quantized
  // (weights already in units_[k].wb), returning the sum of squared errors, plus the inner term
  // (on the same scale) when `train` or `inner` and mu > 0; `train` keeps what backward needs,
  // applies QDrop and leaves dL/d(output) in dy_ (and the inner term's in inner_).
  double forward(const layer_state* s, std::span<const std::size_t> batch, bool train,
                 std::uint64_t seed, bool record, bool inner = false) {
    const std::size_t B = batch.size(), I = prog_.inputs();
    vals_.resize(prog_.slots());
    for (std::size_t i = 0; i < I; ++i) {
      vals_[i].resize(B * size_[i]);
      for (std::size_t n = 0; n < B; ++n)
        std::memcpy(vals_[i].data() + n * size_[i], in_[i].data() + batch[n] * size_[i],
                    size_[i] * sizeof(float));
    }
    for (std::size_t i = 0; i < prog_.ops.size(); ++i) {
      const block_op& op = prog_.ops[i];
      std::vector<float>& out = vals_[I + i];
      out.resize(B * size_[I + i]);
      const float* a = vals_[op.a].data();
      switch (op.kind) {
        case block_op_kind::layer:
          layer_forward(s, op.layer, batch, a, out.data(), train, seed);
          if (record) {
            fp_in_[op.layer].insert(fp_in_[op.layer].end(), a, a + B * size_[op.a]);
            fp_out_[op.layer].insert(fp_out_[op.layer].end(), out.begin(), out.end());
          }
          break;
        case block_op_kind::relu:
        case block_op_kind::relu6:
          for (std::size_t e = 0; e < out.size(); ++e)
            out[e] = detail::block_activate(op.kind, a[e]);
          break;
        case block_op_kind::add: {
          const float* b = vals_[op.b].data();
          for (std::size_t e = 0; e < out.size(); ++e) out[e] = a[e] + b[e];
          break;
        }
        case block_op_kind::identity:
          std::copy(a, a + out.size(), out.begin());
          break;
      }
    }
    if (!s) return 0.0;
    const std::size_t out = size_[prog_.output];
    const float* q = vals_[prog_.output].data();
    if (train) dy_.resize(B * out);
    const float dscale = 2.0f / static_cast<float>(B * out);
    double total = 0.0;
    for (std::size_t n = 0; n < B; ++n)
      total += w_.empty() ? detail::squared_error_run(
                                detail::act_none{}, t_.data() + batch[n] * out, q + n * out,
                                train ? dy_.data() + n * out : nullptr, dscale, out)
                          : detail::weighted_squared_error_ref(
                                t_.data() + batch[n] * out, q + n * out, w_.data() + batch[n] * out,
                                train ? dy_.data() + n * out : nullptr, dscale, out);
    inner_on_ = mu_ > 0.0f && (train || inner);
    if (inner_on_) total += inner_->sum(mu_, batch, vals_, fp_out_, train);
    return total;
  }

  [[nodiscard]] std::size_t conv_threads(const layer_geometry& g,
                                         std::size_t batch) const noexcept {
    return detail::direct_conv_threads(g, batch, threads_, grain_);
  }

  void layer_forward(const layer_state* s, std::size_t k, std::span<const std::size_t> batch,
                     const float* x, float* y, bool train, std::uint64_t seed) {
    const layer_geometry& g = layers_[k].geometry;
    const layer_quant_config& cfg = layers_[k].config;
    unit& u = units_[k];
    const std::size_t B = batch.size(), in = g.input_per_sample();
    const float* xin = x;
    if (s && cfg.quantize_activations) {
      u.xq.resize(B * in);
      u.xmask.resize(train ? B * in : 0);
      detail::quantize_layer_input(cfg, s[k], x, u.xq.data(), B * in,
                                   std::span<std::uint8_t>(u.xmask));
      if (train) {
        detail::input_drop_mask({keep_p_[k], detail::mix_seed(seed, k)}, batch, in, u.keep);
        detail::apply_input_drop(u.keep, x, u.xq.data(), u.xmask.data());
      }
      xin = u.xq.data();
    }
    const float* w = s ? u.wb.wq.data() : layers_[k].weight.data();
    const float* b =
        s ? s[k].bias.data() : (layers_[k].bias.empty() ? nullptr : layers_[k].bias.data());
    if (g.kind == layer_kind::linear) {
      detail::linear_forward_raw(g.linear, B, xin, w, b, y);
    } else {
      const std::size_t kp = g.weights_per_channel() * g.out_positions();
      // The im2col columns are kept for dW unless dW is a direct product too.
      const bool cols = train && !detail::direct_weight_grad_applies(g.conv, B);
      u.cols.resize(cols ? B * g.conv.groups * kp : kp);
      detail::conv2d_forward_raw(g.conv, B, xin, w, b, y, u.cols.data(), cols, &u.conv_ws,
                                 conv_threads(g, B));
    }
  }

  void backward(const layer_state* s, std::size_t B, std::vector<layer_state>& grads,
                const trainable_groups& which) {
    const std::size_t I = prog_.inputs();
    grads_.resize(prog_.slots());
    for (std::size_t i = I; i < prog_.slots(); ++i) grads_[i].assign(B * size_[i], 0.0f);
    if (prog_.output >= I) std::copy(dy_.begin(), dy_.end(), grads_[prog_.output].begin());
    if (inner_on_) inner_->add_gradients(grads_);
    const auto add_to = [&](std::size_t slot, const float* g, std::size_t n) {
      if (slot < I) return;
      float* d = grads_[slot].data();
      for (std::size_t e = 0; e < n; ++e) d[e] += g[e];
    };
    for (std::size_t k = 0; k < grads.size(); ++k) zero_grad(k, grads[k], which);
    for (std::size_t i = prog_.ops.size(); i-- > 0;) {
      const block_op& op = prog_.ops[i];
      const std::vector<float>& g = grads_[I + i];
      const float* a = vals_[op.a].data();
      switch (op.kind) {
        case block_op_kind::layer:
          layer_backward(s[op.layer], op.layer, B, op.a, g.data(), grads[op.layer], which);
          break;
        case block_op_kind::relu:
        case block_op_kind::relu6:
          if (op.a >= I) {
            float* d = grads_[op.a].data();
            for (std::size_t e = 0; e < g.size(); ++e)
              d[e] += g[e] * (op.kind == block_op_kind::relu ? detail::act_relu::slope(a[e])
                                                             : detail::act_relu6::slope(a[e]));
          }
          break;
        case block_op_kind::add:
          add_to(op.a, g.data(), g.size());
          add_to(op.b, g.data(), g.size());
          break;
        case block_op_kind::identity:
          add_to(op.a, g.data(), g.size());
          break;
      }
    }
  }

  void zero_grad(std::size_t k, layer_state& grad, const trainable_groups& which) const {
    const layer_geometry& g = layers_[k].geometry;
    if (which.weight_offset)
      grad.weight_offset.resize(g.weight_size());
    else
      grad.weight_offset.assign(g.weight_size(), 0.0f);
    grad.bias.assign(g.out_channels(), 0.0f);
    grad.weight_scale.assign(units_[k].wg.groups(), 0.0f);
    grad.weight_zero_point.assign(units_[k].wg.groups(), 0.0f);
    grad.act_scale = 0.0f;
    grad.act_zero_point = 0.0f;
  }

  // dy: dL/d(layer k's output) [B, out]; adds dL/dx into the input slot when it is internal.
  void layer_backward(const layer_state& s, std::size_t k, std::size_t B, std::size_t slot,
                      const float* dy, layer_state& grad, const trainable_groups& which) {
    const layer_geometry& g = layers_[k].geometry;
    const layer_quant_config& cfg = layers_[k].config;
    unit& u = units_[k];
    const std::size_t in = g.input_per_sample();
    const float* x = vals_[slot].data();
    if (which.bias)
      detail::bias_gradient(dy, B, g.out_channels(), g.out_positions(), grad.bias.data());
    const float* xin = cfg.quantize_activations ? u.xq.data() : x;
    if (which.weight_offset || which.weight_quant) {
      u.dwq.resize(g.weight_size());
      detail::weight_product_gradient(g, B, dy, xin, u.cols.data(), u.dwq.data(), u.conv_ws,
                                      conv_threads(g, B));
      detail::weight_quant_backward(cfg, u.wg, s, u.wb, u.ar.on, u.dwq.data(), which, grad,
                                    threads_);
    }
    const bool need_dx = slot >= prog_.inputs();
    const bool want_a = which.act_quant && cfg.quantize_activations;
    if (!need_dx && !want_a) return;
    u.dxq.resize(B * in);
    detail::input_product_gradient(g, B, dy, u.wb.wq.data(), u.dxq.data(), u.dcols, u.wt, u.conv_ws,
                                   conv_threads(g, B));
    const float* dx = u.dxq.data();
    if (cfg.quantize_activations) {
      u.dx.resize(need_dx ? B * in : 0);
      double gs = 0.0, gz = 0.0;
      detail::fq_backward_run(x, u.xq.data(), u.xmask.data(), u.dxq.data(), B * in, s.act_scale,
                              need_dx ? u.dx.data() : nullptr, gs, gz);
      if (want_a) {
        grad.act_scale = static_cast<float>(gs);
        if (!cfg.act_scheme.symmetric) grad.act_zero_point = static_cast<float>(gz);
      }
      dx = u.dx.data();
    }
    if (need_dx) {
      float* d = grads_[slot].data();
      for (std::size_t e = 0; e < B * in; ++e) d[e] += dx[e];
    }
  }

  std::vector<block_layer> layers_;
  block_program prog_;
  std::vector<std::span<const float>> in_;
  std::span<const float> t_, w_;
  std::vector<std::size_t> size_;
  std::size_t n_ = 0;
  std::vector<unit> units_;
  std::vector<std::vector<float>> fp_in_, fp_out_;
  std::vector<layer_objective> objs_;
  std::vector<std::vector<float>> vals_, grads_;
  std::vector<float> dy_, keep_p_;
  float mu_ = 0.0f;
  bool inner_on_ = false;
  std::optional<detail::block_inner_term> inner_;  // set at the end of construction
  std::size_t threads_ = 1;
  double grain_ = detail::direct_conv_grain;
};

}  // namespace adaquant
