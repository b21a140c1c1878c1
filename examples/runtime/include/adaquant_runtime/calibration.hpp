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

#include <adaquant_runtime/network.hpp>
#include <adaquant_runtime/resumable_forward.hpp>

#include <adaquant/calibrate/network.hpp>

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
  // ---

  // The full-precision network, and a copy with every set_quantized layer applied (quantized
  // weights and bias, input fake-quantized per tensor when quantize_input): evaluate this one.
  [[nodiscard]] const network& full_precision() const noexcept { return net_; }
  [[nodiscard]] const network& quantized() const noexcept { return quantized_net_; }

 private:
  network net_, quantized_net_;
  tensor inputs_;
  std::size_t threads_;
  std::vector<layer_desc> layers_;
  // (mode, first sample, count) -> that batch's resumable pass through net_ or quantized_net_.
  std::map<std::tuple<capture_mode, std::size_t, std::size_t>, resumable_forward> passes_;
};

// Applies q to layer q.id of net: weights, bias and (when q.quantize_input) an input transform
// that fake-quantizes per tensor with q.act_params.
void apply_quantized_layer(network& net, const quantized_layer& q);

static_assert(QuantizableNetwork<calibration_network>);

}  // namespace adaquant::examples
