#pragma once
// The runtime's network seen through adaquant::QuantizableNetwork (calibrate/network.hpp), so the
// AdaQuant drivers calibrate runtime models directly. Layer ids are node indices. Fold the batch
// norms first (fold_batch_norms): a layer's output is then what its activation sees, and
// layer_desc::activation names the ReLU/ReLU6 that follows it (none when an add or an unfolded BN
// comes first).
//
// Captures are cheap to repeat: each (mode, sample range) keeps a resumable_forward, so capturing
// layer after layer while quantizing them in order reruns only the layers from the earliest one
// changed since; the samples of a capture are split across `threads` threads (every image is
// computed on its own, so results are identical for any thread count).
//
// Block reconstruction (calibrate/block_network.hpp has the contract): a block program takes the
// conv2d/linear layers, relu, relu6, add (of two values of one shape) and identity nodes (folded
// batch norms are identities); an unfolded batch_norm or a global_avg_pool is not supported in a
// block. The automatic blocks are the runs of two or more layers between the points of the node
// order where exactly one value is live, extended through the layer-free runs after them that the
// program takes (a residual block's final ReLU; calibrate/automatic_blocks.hpp); a run with an
// unsupported node stays per layer. capture_block reads a block's inputs from quantized() and its
// output from full_precision(), through the cached passes and thread split captures use.

#include <adaquant_runtime/network.hpp>
#include <adaquant_runtime/resumable_forward.hpp>

#include <adaquant/calibrate/block_network.hpp>
#include <adaquant/calibrate/network.hpp>

#include <array>
#include <map>
#include <tuple>

namespace adaquant::examples {

class calibration_network {
 public:
  // calibration_inputs: N x C x H x W, already normalised. threads = 0: the hardware's.
  calibration_network(network net, tensor calibration_inputs, std::size_t threads = 0);

  // --- adaquant::QuantizableNetwork ---
  [[nodiscard]] std::size_t calibration_size() const noexcept { return inputs_.dim(0); }
  [[nodiscard]] std::vector<layer_desc> quantizable_layers() const;
  [[nodiscard]] adaquant::layer_io capture(std::size_t layer_id, std::size_t first,
                                           std::size_t count, capture_mode mode);
  void set_quantized(const quantized_layer& q);
  // --- adaquant::BlockNetwork (src/calibration_blocks.cpp) ---
  [[nodiscard]] std::vector<block_desc> blocks() const;
  [[nodiscard]] block_desc block_of(std::size_t first_layer_id, std::size_t last_layer_id) const;
  [[nodiscard]] block_io capture_block(const block_desc& b, std::size_t first, std::size_t count);
  // ---

  // The block of nodes [a, b] (1 <= a <= b < size): its external inputs are the values read
  // there and produced before a, its output the one value produced there and read after b (or
  // the network's output). Errors as block_of's.
  [[nodiscard]] block_desc block_of_nodes(std::size_t a, std::size_t b) const;

  // The full-precision network, and a copy with every set_quantized layer applied (quantized
  // weights and bias, input fake-quantized per tensor when quantize_input): evaluate this one.
  [[nodiscard]] const network& full_precision() const noexcept { return net_; }
  [[nodiscard]] const network& quantized() const noexcept { return quantized_net_; }

 private:
  network net_, quantized_net_;
  tensor inputs_;
  std::size_t threads_;
  std::vector<layer_desc> layers_;
  std::vector<std::array<std::size_t, 3>> shapes_;  // per value: C, H, W of one sample
  std::vector<std::size_t> last_read_;              // per value: its last reader (size(): output)
  [[nodiscard]] std::size_t per_sample(std::size_t v) const {
    return shapes_[v][0] * shapes_[v][1] * shapes_[v][2];
  }
  // The split of samples [first, first + count) across threads (part p: [begin[p], begin[p + 1]))
  // and each part's cached pass in `mode`.
  struct sample_split {
    std::vector<std::size_t> begin;
    std::vector<resumable_forward*> pass;
  };
  sample_split passes_for(capture_mode mode, std::size_t first, std::size_t count);
  // (mode, first sample, count) -> that batch's resumable pass through net_ or quantized_net_.
  std::map<std::tuple<capture_mode, std::size_t, std::size_t>, resumable_forward> passes_;
};

// Applies q to layer q.id of net: weights, bias and (when q.quantize_input) an input transform
// that fake-quantizes per tensor with q.act_params.
void apply_quantized_layer(network& net, const quantized_layer& q);

static_assert(QuantizableNetwork<calibration_network>);
static_assert(BlockNetwork<calibration_network>);

}  // namespace adaquant::examples
