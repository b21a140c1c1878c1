#pragma once
// QDrop (Wei et al., "QDrop: Randomly Dropping Quantization for Extremely Low-bit Post-Training
// Quantization", ICLR 2022) for the AdaQuant objective: during a training step each element of
// the layer's input independently keeps its float value with probability p instead of its
// fake-quantized value,
//
//   Q~_a(x)_e = x_e          if keep_e     (keep_e ~ Bernoulli(p), independent per element)
//             = Q_a(x)_e     otherwise,
//
// so the weights learn to work with a partly quantized input, which flattens the loss around the
// quantized solution. The gradient of the loss w.r.t. the input quantizer's s_a and z_a therefore
// only sums over the quantized elements (a kept element is not a function of s_a or z_a); in the
// straight-through form of kernels/fake_quant_backward.hpp a kept element is "inside" with a zero
// rounding residual, which contributes exactly 0. p = 0 is the plain objective; p = 1 is the
// objective with a float input (the weight-only objective) and a zero input-quantizer gradient.
// Only the training steps drop: evaluations (layer_objective::value, the held-out selection) use
// the fully quantized input.
//
// Randomness. keep_e for sample index n (the sample's index in the cached set, not its place in
// the batch) is drawn from a SplitMix64 stream seeded by mixing `seed` with n; each 64-bit draw
// gives two 32-bit uniforms u, and keep = u < p * 2^32. The stream depends only on (seed, n, e),
// never on threads or batch order: adaquant_optimize derives `seed` from the layer's seed and the
// step number.

#include <adaquant/core/error.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace adaquant {

struct input_drop {
  float keep_float = 0.0f;  // p in [0, 1]
  std::uint64_t seed = 0;   // the step's stream

  // Throws errc::invalid_argument naming `where` unless p is in [0, 1] (NaN included).
  void validate(const std::string& where) const {
    if (!(keep_float >= 0.0f && keep_float <= 1.0f))
      detail::fail(errc::invalid_argument, where,
                   "QDrop probability must be in [0, 1], got " + std::to_string(keep_float));
  }
};

namespace detail {
// SplitMix64 finaliser of a ^ (odd constant * (b + 1)): independent streams from one seed.
inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) noexcept {
  std::uint64_t z = a ^ (0xD1B54A32D192ED03ull * (b + 1));
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// keep[i * in + e] = 1 where element e of sample batch[i] keeps its float value. Empty when p = 0.
inline void input_drop_mask(const input_drop& d, std::span<const std::size_t> batch, std::size_t in,
                            std::vector<std::uint8_t>& keep) {
  keep.clear();
  if (d.keep_float == 0.0f) return;
  keep.resize(batch.size() * in);
  const auto threshold =
      static_cast<std::uint64_t>(std::ldexp(static_cast<double>(d.keep_float), 32));
  for (std::size_t i = 0; i < batch.size(); ++i) {
    std::uint64_t state = mix_seed(d.seed, batch[i]);
    std::uint8_t* k = keep.data() + i * in;
    for (std::size_t e = 0; e < in; e += 2) {
      std::uint64_t z = (state += 0x9E3779B97F4A7C15ull);
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      k[e] = (z & 0xFFFFFFFFull) < threshold;
      if (e + 1 < in) k[e + 1] = (z >> 32) < threshold;
    }
  }
}

// Applies the mask: kept elements take the float value and the straight-through mask 1 (their
// scale and zero-point gradient terms vanish).
inline void apply_input_drop(std::span<const std::uint8_t> keep, const float* x, float* xq,
                             std::uint8_t* ste_mask) noexcept {
  for (std::size_t i = 0; i < keep.size(); ++i)
    if (keep[i]) {
      xq[i] = x[i];
      if (ste_mask) ste_mask[i] = 1;
    }
}
}  // namespace detail

}  // namespace adaquant
