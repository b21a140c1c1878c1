#pragma once
// The example runtime's network seen through adaquant's PipelineNetwork interface: batch norms
// folded (with adaquant::fold_batch_norm, recording each one for BN tuning), a full-precision and
// a quantized copy, and calibration images held as one normalised tensor.

#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/pipeline/network.hpp>
#include <adaquant_runtime/evaluate.hpp>
#include <adaquant_runtime/network.hpp>

#include <map>
#include <vector>

namespace adaquant::examples {

class ptq_network {
 public:
  // `net` is the trained network with its batch norms; `calibration` is [N, 1, 28, 28].
  ptq_network(network net, tensor calibration);

  // PipelineNetwork
  [[nodiscard]] std::size_t calibration_size() const noexcept { return calib_.dim(0); }
  [[nodiscard]] std::vector<layer_desc> quantizable_layers() const;
  adaquant::layer_io capture(std::size_t id, std::size_t first, std::size_t count,
                             capture_mode mode);
  void set_quantized(const quantized_layer& q);
  [[nodiscard]] const adaquant::batch_norm_params* folded_batch_norm(std::size_t id) const;

  // The folded full-precision network and the quantized one.
  [[nodiscard]] const network& full_precision() const noexcept { return fp_; }
  [[nodiscard]] const network& quantized() const noexcept { return q_; }
  // Mean cross-entropy of the quantized network against the full-precision predictions' labels
  // on the first `limit` calibration images (bit allocation's loss).
  [[nodiscard]] double calibration_loss(std::size_t limit) const;

 private:
  network fp_, q_;
  tensor calib_;
  std::vector<std::size_t> layers_;                           // quantizable node indices
  std::map<std::size_t, std::vector<std::size_t>> in_shape_;  // per layer: C, H, W (conv) or F
  std::map<std::size_t, output_activation> activation_;
  std::map<std::size_t, adaquant::batch_norm_params> folded_;
  std::vector<std::uint8_t> fp_labels_;  // argmax of the FP network on the calibration images
};

static_assert(PipelineNetwork<ptq_network>);

// Calibration images [count, 1, 28, 28]: `count` distinct training images chosen by `seed`.
[[nodiscard]] tensor calibration_images(const image_dataset& train, const normalisation& norm,
                                        std::size_t count, std::uint64_t seed);

}  // namespace adaquant::examples
