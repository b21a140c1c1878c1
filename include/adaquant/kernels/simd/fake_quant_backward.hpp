#pragma once
// xsimd body of the fake-quant backward. Numerics and order of summation: kernels/reference.hpp
// (the scalar twin, which also processes the tail).

#include <adaquant/kernels/reference.hpp>
#include <adaquant/kernels/simd/batch_io.hpp>

#include <algorithm>

namespace adaquant::detail::simd {

template <bool WithGx>
void fake_quant_backward(const float* x, const float* y, const std::uint8_t* mask, const float* gy,
                         std::size_t n, float s, float* gx, backward_sums& acc) noexcept {
  const fbatch vinv(1.0f / s);
  const std::size_t vn = n - n % lanes;
  alignas(64) float lane[lanes];
  double sum_scale = acc.scale, sum_outside = acc.outside;  // locals: they stay in registers
  for (std::size_t first = 0; first < vn; first += backward_flush) {
    fbatch ls(0.0f), lo(0.0f);
    const std::size_t end = std::min(vn, first + backward_flush);
    for (std::size_t i = first; i < end; i += lanes) {
      const fbatch in = load_mask(mask + i), g = fbatch::load_unaligned(gy + i);
      const fbatch gin = g * in;
      if constexpr (WithGx) gin.store_unaligned(gx + i);
      ls = mul_add(g, (fbatch::load_unaligned(y + i) - in * fbatch::load_unaligned(x + i)) * vinv,
                   ls);  // pinned as in the twin
      lo += g - gin;
    }
    ls.store_aligned(lane);
    for (std::size_t j = 0; j < lanes; ++j) sum_scale += static_cast<double>(lane[j]);
    lo.store_aligned(lane);
    for (std::size_t j = 0; j < lanes; ++j) sum_outside += static_cast<double>(lane[j]);
  }
  acc = {sum_scale, sum_outside};
  fake_quant_backward_ref<WithGx>(x + vn, y + vn, mask + vn, gy + vn, n - vn, s,
                                  WithGx ? gx + vn : nullptr, acc);
}

}  // namespace adaquant::detail::simd
