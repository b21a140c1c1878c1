#pragma once
// xsimd body of the Adam update. Numerics: kernels/reference_adam.hpp (the scalar twin, which also
// processes the tail).

#include <adaquant/kernels/reference_adam.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

namespace adaquant::detail::simd {

inline void adam_update(float* x, float* m, float* v, const float* g, std::size_t n,
                        const adam_coeffs& c) noexcept {
  const fbatch vb1(c.beta1), vb2(c.beta2), vc1(1.0f - c.beta1), vc2(1.0f - c.beta2), vr(c.lr),
      vi1(c.inv_c1), vi2(c.inv_c2), veps(c.epsilon);
  const std::size_t vn = n - n % lanes;
  for (std::size_t i = 0; i < vn; i += lanes) {
    const fbatch gi = fbatch::load_unaligned(g + i);
    const fbatch mi = mul_add(vc1, gi, vb1 * fbatch::load_unaligned(m + i));
    const fbatch vi = mul_add(vc2 * gi, gi, vb2 * fbatch::load_unaligned(v + i));
    mi.store_unaligned(m + i);
    vi.store_unaligned(v + i);
    (fbatch::load_unaligned(x + i) - vr * (mi * vi1) / (xsimd::sqrt(vi * vi2) + veps))
        .store_unaligned(x + i);
  }
  adam_update_ref(x + vn, m + vn, v + vn, g + vn, n - vn, c);
}

}  // namespace adaquant::detail::simd
