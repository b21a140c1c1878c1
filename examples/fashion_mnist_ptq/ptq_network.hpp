#pragma once
// The example runtime's network seen through adaquant's PipelineNetwork interface: the runtime's
// calibration_network (QuantizableNetwork) plus what the pipelines need beyond it: batch norms
// folded with adaquant::fold_batch_norm and remembered for BN tuning, a quantized copy kept up to
// date for evaluation, and the calibration loss used by bit allocation.

#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/pipeline/network.hpp>
#include <adaquant_runtime/calibration.hpp>
#include <adaquant_runtime/evaluate.hpp>
#include <adaquant_runtime/resumable_forward.hpp>

#include <map>
#include <vector>

namespace adaquant::examples {

class ptq_network {
 public:
  // `net` is the trained network with its batch norms; `calibration` is [N, 1, 28, 28].
  // The calibration loss uses the first `loss_samples` calibration images. Captures and the loss
  // run on `threads` threads (0: every core); results do not depend on it.
  ptq_network(network net, const tensor& calibration, std::size_t loss_samples = 256,
              std::size_t threads = 0);

  // PipelineNetwork
  [[nodiscard]] std::size_t calibration_size() const noexcept { return cal_.calibration_size(); }
  [[nodiscard]] std::vector<layer_desc> quantizable_layers() const {
    return cal_.quantizable_layers();
  }
  adaquant::layer_io capture(std::size_t id, std::size_t first, std::size_t count,
                             capture_mode mode) {
    return cal_.capture(id, first, count, mode);
  }
  void set_quantized(const quantized_layer& q);
  [[nodiscard]] const adaquant::batch_norm_params* folded_batch_norm(std::size_t id) const;

  // The quantized network as configured so far (evaluate this one).
  [[nodiscard]] const network& quantized() const noexcept { return cal_.quantized(); }
  // Mean KL divergence KL(p_fp || p_q) between the full-precision and the quantized network's
  // softmax outputs on the loss images (bit allocation's loss; no labels needed, and smooth in
  // small perturbations, unlike a loss against hard predicted labels). Bit allocation
  // changes one layer between calls, so each call resumes from just before the earliest change.
  [[nodiscard]] double calibration_loss();

 private:
  std::map<std::size_t, adaquant::batch_norm_params> folded_;  // before cal_: filled first
  calibration_network cal_;
  std::vector<resumable_forward> loss_passes_;  // the loss images, one part per thread
  tensor fp_logits_;  // of the loss images
};

static_assert(PipelineNetwork<ptq_network> && LossNetwork<ptq_network>);

}  // namespace adaquant::examples
