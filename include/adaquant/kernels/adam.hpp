#pragma once
// The element-wise Adam update over a run of parameters sharing one rate: the kernel of the
// optimiser in optim/adam.hpp (which owns the state, the checks and the bias corrections).
// Simd = false runs the scalar twin; both give the same results bit for bit.

#include <adaquant/kernels/reference_adam.hpp>
#include <adaquant/kernels/simd/adam.hpp>

namespace adaquant::detail {

template <bool Simd = true>
void adam_update_run(float* x, float* m, float* v, const float* g, std::size_t n,
                     const adam_coeffs& c) noexcept {
  if constexpr (Simd)
    simd::adam_update(x, m, v, g, n, c);
  else
    adam_update_ref(x, m, v, g, n, c);
}

}  // namespace adaquant::detail
