#pragma once
// Batch normalisation and its folding into the preceding conv/linear layer.
//
//   BN(z) = gamma * (z - mean) / sqrt(var + eps) + beta            per output channel
//   fold:   f = gamma / sqrt(var + eps);  W' = W * f;  b' = beta + (b - mean) * f
//   unfold: W = W' / f;                   b  = (b' - beta) / f + mean
//
// Weights are [out_channels, ...] row-major (OIHW for conv, [out, in] for linear): channel c owns
// the c-th contiguous block of size() / out_channels elements. Unfolding needs gamma != 0.

#include <adaquant/core/concepts.hpp>

#include <cmath>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

struct batch_norm_params {
  std::vector<float> gamma, beta, mean, var;
  float eps = 1e-5f;

  [[nodiscard]] std::size_t channels() const noexcept { return gamma.size(); }

  // Throws on size mismatches, non-finite values, var < 0 or eps <= 0.
  void validate(const char* where = "batch_norm_params") const {
    const std::size_t n = gamma.size();
    if (n == 0) detail::fail(errc::empty_input, where, "no channels");
    if (!(beta.size() == n && mean.size() == n && var.size() == n))
      detail::fail(
          errc::shape_mismatch, where,
          "gamma, beta, mean and var must have the same length (" + std::to_string(n) + ")");
    if (!(eps > 0.0f && std::isfinite(eps)))
      detail::fail(errc::invalid_argument, where, "eps must be finite and > 0");
    for (std::size_t c = 0; c < n; ++c) {
      if (!(std::isfinite(gamma[c]) && std::isfinite(beta[c]) && std::isfinite(mean[c]) &&
            std::isfinite(var[c])))
        detail::fail(errc::non_finite, where, "channel " + std::to_string(c) + " is not finite");
      if (!(var[c] >= 0.0f))
        detail::fail(errc::invalid_argument, where, "var[" + std::to_string(c) + "] is negative");
    }
  }

  // f_c = gamma_c / sqrt(var_c + eps), computed in double and rounded once.
  [[nodiscard]] float fold_factor(std::size_t c) const {
    return static_cast<float>(static_cast<double>(gamma[c]) /
                              std::sqrt(static_cast<double>(var[c]) + static_cast<double>(eps)));
  }
};

namespace detail {
inline std::size_t check_fold_args(tensor_view<float> w, std::span<float> bias,
                                   const batch_norm_params& bn, const char* fn) {
  bn.validate((std::string(fn) + ": bn").c_str());
  if (!(w.rank() >= 1 && w.extent(0) == bn.channels()))
    fail(errc::shape_mismatch, std::string(fn) + ": weights",
         "weights have " + std::to_string(w.rank() ? w.extent(0) : 0) +
             " output channels, batch norm has " + std::to_string(bn.channels()));
  if (!(bias.size() == bn.channels()))
    fail(errc::shape_mismatch, std::string(fn) + ": bias",
         "bias has " + std::to_string(bias.size()) + " entries, expected " +
             std::to_string(bn.channels()));
  if (!(w.shape().strides[0] == static_cast<std::ptrdiff_t>(w.size() / bn.channels())))
    fail(errc::invalid_argument, std::string(fn) + ": weights",
         "output channels must be the outermost (row-major) axis");
  return w.size() / bn.channels();
}
}  // namespace detail

// Folds bn into (weights, bias) in place. A layer without bias passes a zero-filled span.
inline void fold_batch_norm(tensor_view<float> weights, std::span<float> bias,
                            const batch_norm_params& bn) {
  const std::size_t per = detail::check_fold_args(weights, bias, bn, "fold_batch_norm");
  for (std::size_t c = 0; c < bn.channels(); ++c) {
    const float f = bn.fold_factor(c);
    float* w = weights.data() + c * per;
    for (std::size_t i = 0; i < per; ++i) w[i] *= f;
    bias[c] = bn.beta[c] + (bias[c] - bn.mean[c]) * f;
  }
}

// Inverse of fold_batch_norm (up to rounding). Throws when some gamma is 0.
inline void unfold_batch_norm(tensor_view<float> weights, std::span<float> bias,
                              const batch_norm_params& bn) {
  const std::size_t per = detail::check_fold_args(weights, bias, bn, "unfold_batch_norm");
  for (std::size_t c = 0; c < bn.channels(); ++c) {
    const float f = bn.fold_factor(c);
    if (!(f != 0.0f))
      detail::fail(errc::invalid_argument, "unfold_batch_norm: bn",
                   "gamma[" + std::to_string(c) + "] is 0: the fold cannot be inverted");
    float* w = weights.data() + c * per;
    for (std::size_t i = 0; i < per; ++i) w[i] /= f;
    bias[c] = (bias[c] - bn.beta[c]) / f + bn.mean[c];
  }
}

}  // namespace adaquant
