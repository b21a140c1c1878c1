// The Adam update equals its scalar twin bit for bit: all lengths in [0, 3 * lanes + 3), every
// unaligned start, sentinels past the end of the parameters and both moments, over several steps
// (the state each step leaves is the next one's input).
#include "twin_util.hpp"

#include <adaquant/kernels/adam.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

namespace aq = adaquant;

TEST_CASE("adam_update: SIMD == scalar twin for all tails and offsets") {
  for (std::size_t off = 0; off < lanes; ++off)
    for (std::size_t n = 0; n < 3 * lanes + 3; ++n) {
      const auto seed = static_cast<std::uint32_t>(n * 17 + off);
      std::vector<float> xa = finite_test_data(n + off, 0.1f, seed);
      xa.push_back(sentinel);
      std::vector<float> ma(n + off + 1, 0.0f), va(n + off + 1, 0.0f);
      ma.back() = va.back() = sentinel;
      std::vector<float> xb = xa, mb = ma, vb = va;
      for (int t = 1; t <= 3; ++t) {
        const auto g = finite_test_data(n + off, 0.5f, seed + static_cast<std::uint32_t>(t));
        const float c1 = 1.0f - static_cast<float>(std::pow(0.9, t));
        const float c2 = 1.0f - static_cast<float>(std::pow(0.999, t));
        const aq::detail::adam_coeffs k{0.9f,      0.999f,   1e-8f, 0.01f / static_cast<float>(t),
                                        1.0f / c1, 1.0f / c2};
        aq::detail::adam_update_run<true>(xa.data() + off, ma.data() + off, va.data() + off,
                                          g.data() + off, n, k);
        aq::detail::adam_update_run<false>(xb.data() + off, mb.data() + off, vb.data() + off,
                                           g.data() + off, n, k);
      }
      INFO("n=" << n << " off=" << off);
      for (std::size_t i = 0; i < n + off + 1; ++i) {
        REQUIRE(same_bits(xa[i], xb[i]));
        REQUIRE(same_bits(ma[i], mb[i]));
        REQUIRE(same_bits(va[i], vb[i]));
      }
      CHECK(xa[n + off] == sentinel);
      CHECK(ma[n + off] == sentinel);
      CHECK(va[n + off] == sentinel);
    }
}
