#pragma once
// A small FP32 CNN runtime: a network is a list of nodes in execution order; node i's output is
// value i and its inputs are earlier values (value 0 is the network input). Kernels: conv2d via
// im2col + Eigen GEMM per image (depthwise by a direct loop), batch norm, ReLU/ReLU6, residual
// add, global average pooling, linear. Each image is computed independently of the rest of the
// batch, so results do not depend on batch size or thread count.
//
// Hook points for quantization (what the AdaQuant calibration driver and the pipelines use):
//   - conv2d/linear nodes are "quantizable layers": weights (OIHW / [out, in]), bias, geometry;
//     replace them with set_weight / set_bias, or edit node(...).weight directly;
//   - input_transform: applied to (a copy of) a layer's input before it computes, e.g. to
//     fake-quantize activations;
//   - capture: receives a layer's input, its transformed input and its output for each batch;
//   - batch-norm nodes: an observer receives each BN's input (for statistic re-estimation) and
//     running statistics are plain vectors to overwrite.
// forward() is const; hooks are called from the calling thread. Copy a network to quantize it
// while keeping the FP32 original.

#include <adaquant/bn/batch_norm.hpp>
#include <adaquant_runtime/tensor.hpp>

#include <map>

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant::examples {

enum class op_kind {
  input,
  conv2d,
  linear,
  batch_norm,
  relu,
  relu6,
  add,
  global_avg_pool,
  identity
};

[[nodiscard]] std::string_view to_string(op_kind k) noexcept;

struct conv_geometry {
  std::size_t stride = 1, pad = 0, groups = 1;
};

// y = gamma * (x - mean) / sqrt(var + eps) + beta, per channel (axis 1).
struct batch_norm_params {
  std::vector<float> gamma, beta, running_mean, running_var;
  float eps = 1e-5f;
};

// What a capture callback sees for one batch.
struct layer_io {
  const tensor& input;        // as produced by the previous layers
  const tensor& layer_input;  // after input_transform (same object when there is none)
  const tensor& output;
};

struct node {
  std::string name;
  op_kind kind = op_kind::identity;
  std::vector<std::size_t> inputs;  // value indices (0 = network input)

  // conv2d / linear
  tensor weight;            // conv: [out, in/groups, kh, kw]; linear: [out, in]
  std::vector<float> bias;  // empty = no bias
  conv_geometry geometry;
  std::function<void(tensor&)> input_transform;
  std::function<void(const layer_io&)> capture;

  // batch_norm
  batch_norm_params bn;
  std::function<void(const tensor& input)> bn_observer;

  [[nodiscard]] bool quantizable() const noexcept {
    return kind == op_kind::conv2d || kind == op_kind::linear;
  }
};

// Where a forward pass stands: the next node to run and every earlier value that any node from
// `next` on reads. A state saved before node p stays valid for any later target as long as only
// nodes >= p change (their weights, bias or input transform): resume it with forward_from.
struct forward_state {
  std::size_t next = 1;
  std::map<std::size_t, tensor> live;  // value index -> value
};

class network {
 public:
  network();  // holds the input node

  // Builders; each returns the new node's value index. Shapes are checked here, once.
  std::size_t add_conv2d(std::string name, std::size_t input, tensor weight,
                         std::vector<float> bias, conv_geometry g);
  std::size_t add_linear(std::string name, std::size_t input, tensor weight,
                         std::vector<float> bias);
  std::size_t add_batch_norm(std::string name, std::size_t input, batch_norm_params p);
  std::size_t add_relu(std::string name, std::size_t input);
  std::size_t add_relu6(std::string name, std::size_t input);
  std::size_t add_add(std::string name, std::size_t a, std::size_t b);
  std::size_t add_global_avg_pool(std::string name, std::size_t input);

  // Output of the last node for a batch x (N x C x H x W).
  [[nodiscard]] tensor forward(const tensor& x) const;
  // Runs nodes [1, last] only and returns value `last` (e.g. to capture an early layer cheaply).
  [[nodiscard]] tensor forward_until(const tensor& x, std::size_t last) const;
  // The state before node 1 for input x, and a resumed pass: runs nodes [s.next, last] and
  // returns value `last`. When `saved` is given, it receives the state before node save_before,
  // which must lie in [s.next, last]. Errors: errc::invalid_argument for a bad range or a state
  // missing a value a node reads.
  [[nodiscard]] forward_state start(tensor x) const;
  [[nodiscard]] tensor forward_from(forward_state s, std::size_t last, std::size_t save_before = 0,
                                    forward_state* saved = nullptr) const;

  [[nodiscard]] std::size_t size() const noexcept { return nodes_.size(); }
  [[nodiscard]] const std::vector<node>& nodes() const noexcept { return nodes_; }
  [[nodiscard]] node& at(std::size_t i) { return nodes_.at(i); }
  [[nodiscard]] const node& at(std::size_t i) const { return nodes_.at(i); }
  [[nodiscard]] std::size_t index_of(std::string_view name) const;  // errc::invalid_argument
  [[nodiscard]] node& at(std::string_view name) { return nodes_[index_of(name)]; }
  [[nodiscard]] const node& at(std::string_view name) const { return nodes_[index_of(name)]; }

  // Indices of conv2d/linear nodes, in execution order; batch-norm nodes likewise.
  [[nodiscard]] std::vector<std::size_t> quantizable_layers() const;
  [[nodiscard]] std::vector<std::size_t> batch_norm_layers() const;

  // Replace a quantizable layer's parameters (shape-checked).
  void set_weight(std::string_view layer, tensor w);
  void set_bias(std::string_view layer, std::vector<float> b);
  void clear_hooks();  // all input transforms, captures and BN observers

  [[nodiscard]] std::size_t parameter_count() const;
  // Multiply-accumulates per image for an input of c x h x w (conv and linear layers).
  [[nodiscard]] std::size_t macs_per_image(std::size_t c, std::size_t h, std::size_t w) const;

 private:
  std::size_t push(node n);
  std::vector<node> nodes_;
};

// Plain batch-norm folding: for every BN whose input is a conv2d/linear used by nothing else,
// W' = W * gamma / sqrt(var + eps) per output channel and b' = beta + (b - mean) * gamma /
// sqrt(var + eps); the BN node becomes an identity (names and indices stay stable). Returns the
// number of folded BNs. Quantizer parameters are not touched (a later stage's job).
std::size_t fold_batch_norms(network& net);
// The same fold (adaquant::fold_batch_norm), returning for each folded layer (by node index) the
// batch norm that went into it, as BN tuning needs it.
std::map<std::size_t, adaquant::batch_norm_params> fold_batch_norms_recorded(network& net);

// Kernels, exposed for tests and for objectives that recompute one layer.
[[nodiscard]] tensor conv2d(const tensor& x, const tensor& w, const std::vector<float>& bias,
                            const conv_geometry& g);
[[nodiscard]] tensor linear(const tensor& x, const tensor& w, const std::vector<float>& bias);
void batch_norm_inplace(tensor& x, const batch_norm_params& p);

// Per-image softmax cross-entropy of logits [N, K] against labels (natural log).
[[nodiscard]] std::vector<double> softmax_cross_entropy(const tensor& logits,
                                                        std::span<const std::uint8_t> labels);

}  // namespace adaquant::examples
