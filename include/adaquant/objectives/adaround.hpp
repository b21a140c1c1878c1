#pragma once
// AdaRound (Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization", ICML
// 2020) as the weight parameterisation of AdaQuant's layer objective (layer_objective.hpp). The
// weights stay at their float values W; what is learned is, per weight, whether it rounds down or
// up:
//
//   w_q = s * ( clamp(floor(w / s0) + h(V) + z, qmin, qmax) - z )
//   h(V) = clamp(sigmoid(V) * (zeta - gamma) + gamma, 0, 1)        rectified sigmoid
//
// with s0 the weight group's starting scale (round-to-nearest's), s its current scale (equal to
// s0 unless the weight quantizer is trained: a trained scale then stretches the grid around the
// chosen integers instead of re-rounding them), z the group's rounded zero point and w / s0
// computed as the rounding policy computes it (w * (1 / s0) for pytorch and half_away, w / s0
// for onnx). V starts where h(V) = frac(w / s0), i.e. sigmoid(V) = (frac - gamma) / (zeta -
// gamma), so the relaxed weight starts at w and the hardened one at round-to-nearest (ties up).
//
// Loss of a training step (calibrate/adaquant.hpp):
//
//   L = MSE + lambda * sum_g c_g sum_{i in g} (1 - |2 h(V_i) - 1|^beta),   c_g = s0_g^2 E[x^2] / C
//
// MSE is the layer objective with the relaxed weights (a mean over samples and output elements),
// C the layer's output channels, E[x^2] the mean square of the layer's cached (float) inputs and
// s0_g the starting scale of weight group g: c_g is what one weight of g moved by one step adds to
// the MSE when the inputs are uncorrelated, so lambda is a pure number and the balance between
// the two terms does not depend on the layer's units. (The paper's code weighs the regulariser by
// a bare 0.01 against an error summed over output channels: lambda / C in our units, which
// depends on the scales of W and X. Measured on layers fed with Fashion-MNIST images, that weight
// is 10-100 times too small for 300-1000 steps: a fifth to a third of the h were still between
// 0.01 and 0.99 at the last step, and hardening them lost most of the gain (docs/lowbit.md).)
// beta: no regulariser for the first `warmup` fraction of the iterations, then beta falls
// linearly from beta_start to beta_end at the last step (large beta: only weights near h = 0 or 1
// feel it; small beta: every weight is pushed to 0 or 1).
//
// Gradients. dw_q / dV = s * h'(V) * mask (mask: the clamp is not active; h'(V) = (zeta - gamma)
// sigmoid(V) (1 - sigmoid(V)) where the rectification is not active, else 0), dw_q / ds =
// (q - z) = w_q / s, dw_q / dz = (mask - 1) s as for the learned step (the zero point rounded
// straight-through). The regulariser's: d/dV (1 - |2h - 1|^beta) = -2 beta |2h - 1|^(beta - 1)
// sign(2h - 1) h'(V). Both are checked against central differences (tests/objectives/
// test_adaround.cpp).
//
// Hardening. Evaluations (the held-out selection, the returned weights and every report) use the
// hardened rounding: up where h(V) >= 0.5, down otherwise, i.e. the integers the network gets.

#include <adaquant/core/error.hpp>
#include <adaquant/core/numeric.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace adaquant {

// How AdaQuant learns a layer's weights (adaquant_options::rounding).
enum class weight_rounding {
  learned_step,  // AdaQuant: W + V quantized to nearest, V a continuous offset
  adaround,      // W fixed, the rounding direction learned (adaround_options)
};

[[nodiscard]] constexpr const char* to_string(weight_rounding r) noexcept {
  return r == weight_rounding::adaround ? "adaround" : "learned_step";
}

// AdaRound's settings; the maths is in this file's comment.
struct adaround_options {
  float lambda = 1000.0f;    // regulariser weight, in units of c_g (see above)
  float beta_start = 20.0f;  // annealing of the regulariser's exponent ...
  float beta_end = 2.0f;     // ... linear from beta_start to beta_end
  float warmup = 0.2f;       // fraction of the iterations without the regulariser, in [0, 1)
  float zeta = 1.1f;         // rectified sigmoid's stretch: h = clamp(sigmoid (zeta - gamma) +
  float gamma = -0.1f;       // gamma, 0, 1), zeta > 1, gamma < 0
  float lr = 3e-2f;          // Adam's rate on V (logit units per step, constant)

  // Throws errc::invalid_argument naming `where`.<member> for a value outside its domain (NaN
  // included): lambda >= 0, beta_start >= beta_end > 0, warmup in [0, 1), zeta > 1, gamma < 0,
  // lr > 0, all finite.
  void validate(const std::string& where) const {
    const auto bad = [&](const char* name, float v, const char* want) {
      detail::fail(errc::invalid_argument, where + "." + name,
                   std::string("must be ") + want + ", got " + std::to_string(v));
    };
    for (const auto& [name, v] :
         {std::pair{"lambda", lambda}, std::pair{"beta_start", beta_start},
          std::pair{"beta_end", beta_end}, std::pair{"warmup", warmup}, std::pair{"zeta", zeta},
          std::pair{"gamma", gamma}, std::pair{"lr", lr}})
      if (!detail::is_finite(v)) bad(name, v, "finite");
    if (!(lambda >= 0.0f)) bad("lambda", lambda, ">= 0");
    if (!(beta_end > 0.0f)) bad("beta_end", beta_end, "> 0");
    if (!(beta_start >= beta_end)) bad("beta_start", beta_start, ">= beta_end");
    if (!(warmup >= 0.0f && warmup < 1.0f)) bad("warmup", warmup, "in [0, 1)");
    if (!(zeta > 1.0f)) bad("zeta", zeta, "> 1");
    if (!(gamma < 0.0f)) bad("gamma", gamma, "< 0");
    if (!(lr > 0.0f)) bad("lr", lr, "> 0");
  }

  // The regulariser's exponent at step `step` (0-based) of `steps`; 0 (no regulariser) during the
  // warm-up, the first round(warmup * steps) steps.
  [[nodiscard]] float beta(std::size_t step, std::size_t steps) const noexcept {
    const auto warm = static_cast<std::size_t>(std::lround(static_cast<double>(warmup) * steps));
    if (step < warm) return 0.0f;
    const double u = static_cast<double>(step - warm) / static_cast<double>(steps - warm);
    return static_cast<float>(static_cast<double>(beta_end) +
                              static_cast<double>(beta_start - beta_end) * (1.0 - u));
  }
};

namespace detail {
inline float sigmoid(float v) noexcept { return 1.0f / (1.0f + std::exp(-v)); }

// h(V) and dh/dV (0 where the rectification clamps).
inline float rectified_sigmoid(float v, float zeta, float gamma) noexcept {
  return std::clamp(sigmoid(v) * (zeta - gamma) + gamma, 0.0f, 1.0f);
}
inline float rectified_sigmoid_slope(float v, float zeta, float gamma) noexcept {
  const float sg = sigmoid(v), h = sg * (zeta - gamma) + gamma;
  return h > 0.0f && h < 1.0f ? (zeta - gamma) * sg * (1.0f - sg) : 0.0f;
}
// The V with h(V) = frac, frac in [0, 1).
inline float rectified_sigmoid_inverse(float frac, float zeta, float gamma) noexcept {
  const double p = (static_cast<double>(frac) - gamma) / (static_cast<double>(zeta) - gamma);
  return static_cast<float>(std::log(p / (1.0 - p)));
}

// Starting point of n weights of one group with starting scale s: floor(w / s) and the V with
// h(V) = frac(w / s); w / s as the rounding policy computes it (onnx divides, the others multiply
// by the float reciprocal).
inline void adaround_start(const float* w, std::size_t n, float s, bool divide, float zeta,
                           float gamma, float* floor_out, float* v_out) noexcept {
  const float inv = 1.0f / s;
  for (std::size_t i = 0; i < n; ++i) {
    const float u = divide ? w[i] / s : w[i] * inv;
    floor_out[i] = std::floor(u);
    v_out[i] = rectified_sigmoid_inverse(u - floor_out[i], zeta, gamma);
  }
}

struct adaround_grid {
  float qmin, qmax, zeta, gamma;
  bool relaxed;  // h(V) itself; else hardened: 1 where h(V) >= 0.5, else 0
};

// w_q of n weights of one group (scale s, rounded zero point z); with mask (then also dvdw):
// the clamp's straight-through mask and s h'(V).
inline void adaround_group(const adaround_grid& g, const float* floor_w, const float* v,
                           std::size_t n, float s, float z, float* wq, std::uint8_t* mask,
                           float* dvdw) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const float h = rectified_sigmoid(v[i], g.zeta, g.gamma);
    const float q = floor_w[i] + (g.relaxed ? h : (h >= 0.5f ? 1.0f : 0.0f)) + z;
    wq[i] = (std::clamp(q, g.qmin, g.qmax) - z) * s;
    if (mask) {
      mask[i] = q >= g.qmin && q <= g.qmax ? 1 : 0;
      dvdw[i] = s * rectified_sigmoid_slope(v[i], g.zeta, g.gamma);
    }
  }
}

// sum_i (1 - |2 h(V_i) - 1|^beta); with grad non-empty, adds weight * d/dV_i to grad[i].
inline double adaround_regulariser(std::span<const float> v, float beta, float zeta, float gamma,
                                   float weight, std::span<float> grad) noexcept {
  double total = 0.0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    const float d = 2.0f * rectified_sigmoid(v[i], zeta, gamma) - 1.0f;
    const float a = std::abs(d);
    total += 1.0 - std::pow(static_cast<double>(a), static_cast<double>(beta));
    if (!grad.empty() && a > 0.0f) {
      const float dh = -2.0f * beta * std::pow(a, beta - 1.0f) * (d > 0.0f ? 1.0f : -1.0f);
      grad[i] += weight * dh * rectified_sigmoid_slope(v[i], zeta, gamma);
    }
  }
  return total;
}
}  // namespace detail

}  // namespace adaquant
