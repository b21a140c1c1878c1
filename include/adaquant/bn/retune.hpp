#pragma once
// Batch-norm tuning (paper Eq. 6-8): after a layer with folded batch norm is quantized, its
// output statistics drift. Re-estimate them on the quantized network's own activations and refold.
//
// Let Q = Q(W') be the folded, quantized weights and m_c, v_c the exact mean and (biased) variance
// over the calibration set of u = Q x (the layer output before bias), with the inputs x coming
// from the already-quantized network. The unfolded pre-BN activation is u / f + b_unf, so its
// re-estimated statistics are mean' = m / f + b_unf and var' = v / f^2; refolding with them gives
//
//   r_c    = f'_c / f_c = sqrt(var_c + eps) / sqrt(v_c / f_c^2 + eps)       (> 0)
//   W_new  = r_c * Q              -> keep q, multiply the channel's weight scale by r_c
//   b_new  = beta_c - r_c * m_c   (b_unf cancels)
//
// so the quantized weights stay on their grid. A channel with gamma = 0 (f = 0) keeps r = 1 and
// b = beta. Errors: invalid bn, moments with another channel count or a channel with no data.
//
// match_output_moments is the variant whose reference is the full-precision network on the same
// calibration set instead of the trained running statistics. With M_c, S2_c the mean and variance
// of the full-precision folded layer's output y_fp (inputs from the full-precision network):
//
//   r_c    = sqrt((S2_c + eps) / (v_c + eps)),   b_new = M_c - r_c * m_c
//
// A quantized layer that already reproduces the full-precision layer's statistics is left as it
// is, whereas retune_batch_norm also moves it by the gap between the running statistics and the
// calibration set's (which on our models undid part of what AdaQuant gained; see README).

#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/bn/channel_moments.hpp>

#include <cmath>
#include <vector>

namespace adaquant {

struct bn_retune_result {
  std::vector<float> weight_scale_factor;  // r_c: multiply channel c's weight scale by it
  std::vector<float> bias;                 // the new folded bias
};

inline bn_retune_result retune_batch_norm(const batch_norm_params& bn,
                                          const channel_moments& quantized_output) {
  constexpr const char* fn = "retune_batch_norm";
  bn.validate("retune_batch_norm: bn");
  if (!(quantized_output.channels() == bn.channels()))
    detail::fail(errc::shape_mismatch, "retune_batch_norm: quantized_output",
                 std::to_string(quantized_output.channels()) +
                     " channels observed, batch norm has " + std::to_string(bn.channels()));
  quantized_output.require_data("retune_batch_norm: quantized_output");
  (void)fn;
  bn_retune_result out;
  out.weight_scale_factor.resize(bn.channels());
  out.bias.resize(bn.channels());
  for (std::size_t c = 0; c < bn.channels(); ++c) {
    const double f = bn.fold_factor(c), eps = bn.eps;
    if (f == 0.0) {
      out.weight_scale_factor[c] = 1.0f;
      out.bias[c] = bn.beta[c];
      continue;
    }
    const double v = quantized_output.variance(c), m = quantized_output.mean(c);
    const double r = std::sqrt(static_cast<double>(bn.var[c]) + eps) / std::sqrt(v / (f * f) + eps);
    out.weight_scale_factor[c] = static_cast<float>(r);
    out.bias[c] = static_cast<float>(bn.beta[c] - r * m);
  }
  return out;
}

inline bn_retune_result match_output_moments(const channel_moments& full_precision_output,
                                             const channel_moments& quantized_output,
                                             double eps = 1e-5) {
  if (!(quantized_output.channels() == full_precision_output.channels()))
    detail::fail(errc::shape_mismatch, "match_output_moments: quantized_output",
                 std::to_string(quantized_output.channels()) + " channels, full precision has " +
                     std::to_string(full_precision_output.channels()));
  if (!(eps > 0.0 && std::isfinite(eps)))
    detail::fail(errc::invalid_argument, "match_output_moments: eps", "must be finite and > 0");
  full_precision_output.require_data("match_output_moments: full_precision_output");
  quantized_output.require_data("match_output_moments: quantized_output");
  bn_retune_result out;
  out.weight_scale_factor.resize(quantized_output.channels());
  out.bias.resize(quantized_output.channels());
  for (std::size_t c = 0; c < quantized_output.channels(); ++c) {
    const double r = std::sqrt((full_precision_output.variance(c) + eps) /
                               (quantized_output.variance(c) + eps));
    out.weight_scale_factor[c] = static_cast<float>(r);
    out.bias[c] = static_cast<float>(full_precision_output.mean(c) - r * quantized_output.mean(c));
  }
  return out;
}

}  // namespace adaquant
