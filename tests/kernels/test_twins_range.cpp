// The kernels behind the range estimators (min/max, quantization error) equal their scalar twins
// bit for bit: all lengths in [0, 3 * step + 3) (step = the kernel's vector step), every unaligned
// start, a NaN sentinel past the end (reading it would show), every per-channel code path.
#include "twin_util.hpp"

#include <adaquant/kernels/min_max.hpp>
#include <adaquant/kernels/quant_error.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <limits>
#include <vector>

namespace aq = adaquant;

namespace {
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();
}

TEST_CASE("min_max: SIMD == scalar twin for all tails and offsets") {
  for (bool finite : {true, false})
    for (std::size_t off = 0; off < lanes; ++off)
      for (std::size_t n = 0; n < 3 * lanes + 3; ++n) {
        const auto seed = static_cast<std::uint32_t>(n * 31 + off);
        auto src = finite ? finite_test_data(n + off, 0.3f, seed) : test_data(n + off, 0.3f, seed);
        src.push_back(qnan);
        const aq::detail::min_max_acc a = aq::detail::min_max_run<true>(src.data() + off, n);
        const aq::detail::min_max_acc b = aq::detail::min_max_run<false>(src.data() + off, n);
        INFO("n=" << n << " off=" << off << " finite data=" << finite);
        REQUIRE(a.finite == b.finite);
        if (!b.finite) continue;  // lo/hi are unspecified then
        REQUIRE(same_bits(a.lo, b.lo));
        REQUIRE(same_bits(a.hi, b.hi));
      }
}

TEST_CASE("min_max_per_channel: SIMD == twin on every layout path") {
  const auto shapes = per_channel_shapes();
  for (const auto& s : shapes)
    for (bool finite : {true, false}) {
      const std::size_t n = s[0] * s[1] * s[2];
      const auto seed = static_cast<std::uint32_t>(n);
      auto src = finite ? finite_test_data(n, 0.2f, seed) : test_data(n, 0.2f, seed);
      src.push_back(qnan);
      const aq::channel_layout l{s[0], s[1], s[2]};
      std::vector<float> lo_a(s[1] + 1, std::numeric_limits<float>::infinity()), lo_b = lo_a;
      std::vector<float> hi_a(s[1] + 1, -std::numeric_limits<float>::infinity()), hi_b = hi_a;
      lo_a.back() = lo_b.back() = hi_a.back() = hi_b.back() = sentinel;
      const bool fa =
          aq::detail::min_max_per_channel_run<true>(src.data(), l, lo_a.data(), hi_a.data());
      const bool fb =
          aq::detail::min_max_per_channel_run<false>(src.data(), l, lo_b.data(), hi_b.data());
      INFO("shape " << s[0] << "x" << s[1] << "x" << s[2] << " finite data=" << finite);
      REQUIRE(fa == fb);
      CHECK(lo_a.back() == sentinel);
      CHECK(hi_a.back() == sentinel);
      if (!fb) continue;
      for (std::size_t c = 0; c < s[1]; ++c) {
        REQUIRE(same_bits(lo_a[c], lo_b[c]));
        REQUIRE(same_bits(hi_a[c], hi_b[c]));
      }
    }
}

TEMPLATE_TEST_CASE("quant_error: SIMD == scalar twin for all tails, offsets and norms", "",
                   aq::round_pytorch, aq::round_onnx, aq::round_half_away) {
  const aq::quant_params q{0.21f, -1, -8, 7};
  constexpr std::size_t step = aq::detail::error_partials;
  for (double p : {2.0, 1.0, 2.4})
    for (std::size_t off = 0; off < lanes; ++off)
      for (std::size_t n = 0; n < 3 * step + 3; ++n) {
        auto src = finite_test_data(n + off, q.scale, static_cast<std::uint32_t>(n * 7 + off));
        src.push_back(qnan);
        const double a = aq::detail::quant_error_run<true, TestType>(src.data() + off, n, q, p);
        const double b = aq::detail::quant_error_run<false, TestType>(src.data() + off, n, q, p);
        INFO("n=" << n << " off=" << off << " p=" << p);
        REQUIRE(same_bits(a, b));
        REQUIRE(a == a);  // the sentinel was not read
      }
}
