#pragma once
// Adam (Kingma & Ba) for one group of parameters, with bias correction, as torch.optim.Adam
// (no weight decay, no amsgrad):
//
//   m = b1 m + (1 - b1) g      v = b2 v + (1 - b2) g^2      t += 1
//   x -= lr_i * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
//
// The rate may vary along the group: lr_i = lr[i / block] (lr.size() == 1: one rate for all),
// which is how AdaQuant makes weight steps a fraction of each channel's quantization step; with
// rows of `row` elements, each row's blocks (the last one partial when row % block != 0) have
// their own rate: lr_i = lr[(i / row) * ceil(row / block) + (i % row) / block] (per-block
// weights, granularity::per_block).
// Element-wise, fixed order: deterministic. The update itself is the kernel of kernels/adam.hpp.
// step(..., threads) splits a large group (at least adam_parallel_min elements per thread) into
// contiguous ranges of whole rate blocks updated in parallel: the same bits for any thread count
// (each element's update reads only its own m, v, g and rate).
// Errors: sizes that disagree (errc::shape_mismatch); a negative or non-finite rate
// (errc::invalid_argument); a non-finite gradient (errc::non_finite, naming its index).

#include <adaquant/core/error.hpp>
#include <adaquant/core/numeric.hpp>
#include <adaquant/core/parallel.hpp>
#include <adaquant/kernels/adam.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

struct adam_config {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float epsilon = 1e-8f;
};

class adam {
 public:
  adam() = default;
  explicit adam(std::size_t size, const adam_config& cfg = {})
      : cfg_(cfg), m_(size, 0.0f), v_(size, 0.0f) {
    if (!(cfg.beta1 >= 0.0f && cfg.beta1 < 1.0f && cfg.beta2 >= 0.0f && cfg.beta2 < 1.0f))
      detail::fail(errc::invalid_argument, "adam: config",
                   "beta1 and beta2 must be in [0, 1), got " + std::to_string(cfg.beta1) + " and " +
                       std::to_string(cfg.beta2));
    if (!(cfg.epsilon > 0.0f && detail::is_finite(cfg.epsilon)))
      detail::fail(errc::invalid_argument, "adam: config.epsilon",
                   "must be finite and > 0, got " + std::to_string(cfg.epsilon));
  }

  [[nodiscard]] std::size_t size() const noexcept { return m_.size(); }
  [[nodiscard]] std::size_t steps() const noexcept { return t_; }

  // row == 0: one row of x.size() elements, whose blocks must then all be full. threads: at most
  // this many (0: every core; see above).
  void step(std::span<float> x, std::span<const float> grad, std::span<const float> lr,
            std::size_t block = 1, std::size_t row = 0, std::size_t threads = 1) {
    constexpr const char* fn = "adam::step";
    if (!(x.size() == m_.size() && grad.size() == m_.size()))
      detail::fail(errc::shape_mismatch, std::string(fn) + ": grad",
                   "parameters " + std::to_string(x.size()) + ", gradient " +
                       std::to_string(grad.size()) + ", optimiser state " +
                       std::to_string(m_.size()));
    const std::size_t r = row ? row : x.size();
    const bool rows_ok = block > 0 && (row == 0 ? r % block == 0 : x.size() % r == 0);
    const std::size_t rates = rows_ok && r > 0 ? x.size() / r * ((r + block - 1) / block) : 0;
    if (!(rows_ok && (lr.size() == 1 || lr.size() == rates)))
      detail::fail(errc::shape_mismatch, std::string(fn) + ": lr",
                   std::to_string(lr.size()) + " rates in blocks of " + std::to_string(block) +
                       " in rows of " + std::to_string(r) + " for " + std::to_string(x.size()) +
                       " parameters");
    for (float r : lr)
      if (!(r >= 0.0f && detail::is_finite(r)))
        detail::fail(errc::invalid_argument, std::string(fn) + ": lr",
                     "rates must be finite and >= 0, got " + std::to_string(r));
    bool finite = true;
    for (float g : grad) finite &= detail::is_finite(g);
    if (!finite)
      for (std::size_t i = 0; i < grad.size(); ++i)
        if (!detail::is_finite(grad[i]))
          detail::fail(errc::non_finite, std::string(fn) + ": grad",
                       "element " + std::to_string(i) + " is not finite");
    ++t_;
    const float c1 = 1.0f - static_cast<float>(std::pow(double{cfg_.beta1}, double(t_)));
    const float c2 = 1.0f - static_cast<float>(std::pow(double{cfg_.beta2}, double(t_)));
    detail::adam_coeffs k{cfg_.beta1, cfg_.beta2, cfg_.epsilon, 0.0f, 1.0f / c1, 1.0f / c2};
    // Units: rate blocks (one rate: runs of adam_parallel_min elements), split into `width`
    // contiguous ranges.
    const std::size_t per_row = (r + block - 1) / block;
    const std::size_t units =
        lr.size() == 1 ? (x.size() + adam_parallel_min - 1) / adam_parallel_min : rates;
    const std::size_t width =
        std::max<std::size_t>(1, std::min(resolve_threads(threads), x.size() / adam_parallel_min));
    const auto update = [&](std::size_t part) {
      detail::adam_coeffs kc = k;
      for (std::size_t u = units * part / width, e = units * (part + 1) / width; u < e; ++u) {
        std::size_t first = 0, n = 0;
        if (lr.size() == 1) {
          kc.lr = lr[0];
          first = u * adam_parallel_min;
          n = std::min(adam_parallel_min, x.size() - first);
        } else {
          kc.lr = lr[u];
          const std::size_t start = u / per_row * r;
          first = start + u % per_row * block;
          n = std::min(block, start + r - first);
        }
        detail::adam_update_run(x.data() + first, m_.data() + first, v_.data() + first,
                                grad.data() + first, n, kc);
      }
    };
    if (width == 1)
      update(0);
    else
      parallel_for(width, width, update);
  }
  // Elements per thread below which step() does not split a group (core/parallel.hpp).
  static constexpr std::size_t adam_parallel_min = detail::parallel_min_elements;

  // One scalar parameter.
  void step(float& x, float grad, float lr) {
    step(std::span<float>(&x, 1), std::span<const float>(&grad, 1), std::span<const float>(&lr, 1));
  }

 private:
  adam_config cfg_{};
  std::vector<float> m_, v_;
  std::size_t t_ = 0;
};

}  // namespace adaquant
