#pragma once
// Scalar twin of the Adam update kernel (kernels/simd/adam.hpp); the SIMD kernel matches it bit
// for bit. Element-wise, with the bias corrections folded into reciprocals (optim/adam.hpp):
//   m = (1 - b1) g + b1 m      v = ((1 - b2) g) g + b2 v
//   x -= lr (m inv_c1) / (sqrt(v inv_c2) + eps)
// The first product of m and of v is fused into its sum where the target has FMA (mul_add).

#include <adaquant/core/numeric.hpp>

#include <cmath>
#include <cstddef>

namespace adaquant::detail {

struct adam_coeffs {
  float beta1, beta2, epsilon;
  float lr;      // this run's rate
  float inv_c1;  // 1 / (1 - beta1^t)
  float inv_c2;  // 1 / (1 - beta2^t)
};

inline void adam_update_ref(float* x, float* m, float* v, const float* g, std::size_t n,
                            const adam_coeffs& c) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = mul_add(1.0f - c.beta1, gi, c.beta1 * m[i]);
    const float vi = mul_add((1.0f - c.beta2) * gi, gi, c.beta2 * v[i]);
    m[i] = mi;
    v[i] = vi;
    x[i] -= c.lr * (mi * c.inv_c1) / (std::sqrt(vi * c.inv_c2) + c.epsilon);
  }
}

}  // namespace adaquant::detail
