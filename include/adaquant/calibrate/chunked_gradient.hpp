#pragma once
// One AdaQuant step's gradient over fixed chunks of its samples, computed on several threads.
//
// A step of B samples is cut into chunks of c samples (the last one shorter), c fixed by the
// options (adaquant_options::chunk_macs, chunk_samples below), never by the thread count. Chunk j
// of m_j samples gives the mean loss L_j and its gradient g_j (layer_objective::gradient); the
// step's are their weighted sums in chunk order,
//   L = sum_j (m_j / B) L_j   (double),     g = sum_j (m_j / B) g_j   (float, mul_add),
// the mean over all B samples up to rounding. Each chunk is a pure function of the state and its
// samples (the objective only supplies scratch buffers; QDrop's mask is keyed by sample index), so
// the result is bit-identical for any thread count. One chunk (B <= c) is the objective's own
// single-piece gradient, unchanged. Thread t computes chunks t, t + T, ... with its own objective
// (a copy of the caller's: objectives own scratch buffers). With fewer chunks than threads, each
// chunk's objective splits its convolutions over threads / chunks threads
// (layer_objective::set_threads; same bits), so a one-sample step still uses every thread.

#include <adaquant/core/numeric.hpp>
#include <adaquant/core/parallel.hpp>
#include <adaquant/objectives/layer_objective.hpp>

#include <algorithm>
#include <cstddef>
#include <span>
#include <vector>

namespace adaquant::detail {

// Samples per chunk of a step of `step` samples of a layer with geometry g: floor(chunk_macs /
// forward MACs per sample), at least 1; `step` (one chunk) when chunk_macs is 0.
[[nodiscard]] inline std::size_t chunk_samples(double chunk_macs, const layer_geometry& g,
                                               std::size_t step) noexcept {
  const double per_sample =
      static_cast<double>(g.out_positions()) * static_cast<double>(g.weight_size());
  if (!(chunk_macs > 0.0) || per_sample * static_cast<double>(step) <= chunk_macs) return step;
  return std::max<std::size_t>(1, static_cast<std::size_t>(chunk_macs / per_sample));
}

// sum = w * part (first) or sum + w * part, member by member.
inline void add_weighted(layer_state& sum, const layer_state& part, float w, bool first) {
  const auto add = [&](std::vector<float>& s, const std::vector<float>& p) {
    if (first) s.assign(p.size(), 0.0f);
    for (std::size_t i = 0; i < p.size(); ++i) s[i] = mul_add(w, p[i], s[i]);
  };
  add(sum.weight_offset, part.weight_offset);
  add(sum.bias, part.bias);
  add(sum.weight_scale, part.weight_scale);
  add(sum.weight_zero_point, part.weight_zero_point);
  sum.act_scale = mul_add(w, part.act_scale, first ? 0.0f : sum.act_scale);
  sum.act_zero_point = mul_add(w, part.act_zero_point, first ? 0.0f : sum.act_zero_point);
}

// Sets an objective's thread count (layer_objective::set_threads, block_objective::set_threads)
// for a scope.
template <class Objective>  // layer_objective or block_objective
class scoped_threads {
 public:
  scoped_threads(Objective& obj, std::size_t threads) : o_(obj), old_(obj.threads()) {
    o_.set_threads(threads);
  }
  ~scoped_threads() { o_.set_threads(old_); }
  scoped_threads(const scoped_threads&) = delete;
  scoped_threads& operator=(const scoped_threads&) = delete;

 private:
  Objective& o_;
  std::size_t old_;
};

class chunked_gradient {
 public:
  // obj: the caller's objective (thread 0 uses it; copies serve the others); chunk: samples per
  // chunk (> 0); threads: at most this many (0: every core).
  chunked_gradient(layer_objective& obj, std::size_t chunk, std::size_t threads)
      : obj_(obj), chunk_(std::max<std::size_t>(chunk, 1)), threads_(resolve_threads(threads)) {}

  // layer_objective::gradient over `batch`, in chunks (see the file comment).
  double operator()(const layer_state& s, std::span<const std::size_t> batch, layer_state& grad,
                    const trainable_groups& which, const input_drop& drop) {
    const std::size_t B = batch.size(), chunks = (B + chunk_ - 1) / chunk_;
    const std::size_t width = std::min(threads_, std::max<std::size_t>(chunks, 1));
    const std::size_t inner = std::max<std::size_t>(1, threads_ / width);
    const scoped_threads keep(obj_, inner);
    if (chunks <= 1) return obj_.gradient(s, batch, grad, which, drop);
    while (helpers_.size() + 1 < width) helpers_.push_back(obj_);
    for (layer_objective& h : helpers_) h.set_threads(inner);
    parts_.resize(chunks);
    loss_.resize(chunks);
    parallel_for(width, width, [&](std::size_t t) {
      layer_objective& o = t == 0 ? obj_ : helpers_[t - 1];
      for (std::size_t j = t; j < chunks; j += width) {
        const std::size_t first = j * chunk_;
        loss_[j] = o.gradient(s, batch.subspan(first, std::min(chunk_, B - first)), parts_[j],
                              which, drop);
      }
    });
    double loss = 0.0;
    for (std::size_t j = 0; j < chunks; ++j) {
      const std::size_t m = std::min(chunk_, B - j * chunk_);
      const double w = static_cast<double>(m) / static_cast<double>(B);
      loss += w * loss_[j];
      add_weighted(grad, parts_[j], static_cast<float>(w), j == 0);
    }
    return loss;
  }

 private:
  layer_objective& obj_;
  std::size_t chunk_, threads_;
  std::vector<layer_objective> helpers_;
  std::vector<layer_state> parts_;
  std::vector<double> loss_;
};

}  // namespace adaquant::detail
