#include "ptq_network.hpp"

#include <adaquant/calibrate/adaquant.hpp>

#include <algorithm>
#include <numeric>

namespace adaquant::examples {
namespace {
network fold_recording(network net, std::map<std::size_t, adaquant::batch_norm_params>& folded) {
  folded = fold_batch_norms_recorded(net);
  return net;
}

tensor first_items(const tensor& x, std::size_t count) {
  std::vector<std::size_t> shape = x.shape();
  shape[0] = count;
  return tensor(shape, std::vector<float>(x.data(), x.data() + count * x.item_size()));
}
}  // namespace

ptq_network::ptq_network(network net, const tensor& calibration, std::size_t loss_samples)
    : cal_(fold_recording(std::move(net), folded_), calibration),
      q_(cal_.full_precision()),
      loss_inputs_(first_items(calibration, std::min(loss_samples, calibration.dim(0)))) {
  const tensor logits = cal_.full_precision().forward(loss_inputs_);
  const std::size_t k = logits.dim(1);
  fp_labels_.resize(loss_inputs_.dim(0));
  for (std::size_t s = 0; s < fp_labels_.size(); ++s) {
    const float* row = logits.data() + s * k;
    fp_labels_[s] = static_cast<std::uint8_t>(std::max_element(row, row + k) - row);
  }
}

void ptq_network::set_quantized(const quantized_layer& q) {
  cal_.set_quantized(q);
  apply_quantized_layer(q_, q);
}

const adaquant::batch_norm_params* ptq_network::folded_batch_norm(std::size_t id) const {
  const auto it = folded_.find(id);
  return it == folded_.end() ? nullptr : &it->second;
}

double ptq_network::calibration_loss() const {
  const auto ce = softmax_cross_entropy(q_.forward(loss_inputs_), fp_labels_);
  return std::accumulate(ce.begin(), ce.end(), 0.0) / static_cast<double>(ce.size());
}

tensor calibration_images(const image_dataset& train, const normalisation& norm, std::size_t count,
                          std::uint64_t seed) {
  if (!(count > 0 && count <= train.count))
    detail::fail(
        errc::invalid_argument, "calibration_images: count",
        "must be in [1, " + std::to_string(train.count) + "], got " + std::to_string(count));
  std::vector<std::size_t> idx(train.count);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  detail::splitmix64 rng{seed};
  for (std::size_t i = 0; i < count; ++i)  // partial Fisher-Yates: the first `count` are chosen
    std::swap(idx[i], idx[i + rng.below(train.count - i)]);
  const std::size_t px = train.rows * train.cols;
  tensor out({count, 1, train.rows, train.cols});
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t p = 0; p < px; ++p) out[i * px + p] = norm(train.pixels[idx[i] * px + p]);
  return out;
}

}  // namespace adaquant::examples
