#include "ptq_network.hpp"

#include <adaquant/core/parallel.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace adaquant::examples {
namespace {
network fold_recording(network net, std::map<std::size_t, adaquant::batch_norm_params>& folded) {
  folded = fold_batch_norms_recorded(net);
  return net;
}

}  // namespace

ptq_network::ptq_network(network net, const tensor& calibration, std::size_t loss_samples,
                         std::size_t threads)
    : cal_(fold_recording(std::move(net), folded_), calibration, threads) {
  const std::size_t n = std::min(loss_samples, calibration.dim(0));
  fp_logits_ = cal_.full_precision().forward(calibration.items(0, n));
  const std::size_t parts = std::min(resolve_threads(threads), n);
  for (std::size_t p = 0; p < parts; ++p)
    loss_passes_.emplace_back(calibration.items(n * p / parts, n * (p + 1) / parts));
}

void ptq_network::set_quantized(const quantized_layer& q) {
  cal_.set_quantized(q);
  for (resumable_forward& p : loss_passes_) p.invalidate_from(q.id);
}

const adaquant::batch_norm_params* ptq_network::folded_batch_norm(std::size_t id) const {
  const auto it = folded_.find(id);
  return it == folded_.end() ? nullptr : &it->second;
}

namespace {
// log softmax of one row, in double.
void log_softmax(const float* z, std::size_t k, std::vector<double>& out) {
  const double m = *std::max_element(z, z + k);
  double sum = 0.0;
  for (std::size_t j = 0; j < k; ++j) sum += std::exp(z[j] - m);
  const double lse = m + std::log(sum);
  out.resize(k);
  for (std::size_t j = 0; j < k; ++j) out[j] = z[j] - lse;
}
}  // namespace

double ptq_network::calibration_loss() {
  const network& q = cal_.quantized();
  const std::size_t parts = loss_passes_.size(), n = fp_logits_.dim(0), k = fp_logits_.dim(1);
  const std::size_t last = q.size() - 1;
  std::vector<double> loss(n);
  parallel_for(parts, parts, [&](std::size_t p) {
    // Keep the state before the earliest change: the next change is at or after it.
    resumable_forward& pass = loss_passes_[p];
    const tensor logits = pass.run(q, last, pass.dirty());
    const std::size_t b = n * p / parts;
    std::vector<double> lp, lq;
    for (std::size_t i = 0; i < logits.dim(0); ++i) {  // KL(p_fp || p_q)
      log_softmax(fp_logits_.data() + (b + i) * k, k, lp);
      log_softmax(logits.data() + i * k, k, lq);
      double kl = 0.0;
      for (std::size_t j = 0; j < k; ++j) kl += std::exp(lp[j]) * (lp[j] - lq[j]);
      loss[b + i] = kl;
    }
  });
  return std::accumulate(loss.begin(), loss.end(), 0.0) / static_cast<double>(n);
}

}  // namespace adaquant::examples
