// The fake-quant backward equals its scalar twin bit for bit: all lengths in [0, 3 * lanes + 3)
// and around the flushes of the float partial sums, every unaligned start, sentinels past the end
// (a NaN in the inputs that reading would show, a value in grad_x that writing would change),
// with and without grad_x, every per-channel code path.
#include "twin_util.hpp"

#include <adaquant/adapters/std.hpp>
#include <adaquant/kernels/fake_quant_backward.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <limits>
#include <vector>

namespace aq = adaquant;

namespace {
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

// Forward pass and an upstream gradient for n elements starting at `off`, one NaN past the end.
struct backward_case {
  std::vector<float> x, y, gy;
  std::vector<std::uint8_t> mask;
  backward_case(std::size_t n, std::size_t off, const aq::quant_params& p, std::uint32_t seed)
      : x(finite_test_data(n + off, p.scale, seed)),
        y(n + off + 1, qnan),
        gy(finite_test_data(n + off, 1.0f, seed + 1)),
        mask(n + off + 1, 1) {
    aq::fake_quant_per_tensor(aq::tensor_view<const float>(x.data() + off, {n}),
                              aq::tensor_view<float>(y.data() + off, {n}), p,
                              std::span(mask.data() + off, n));
    x.push_back(qnan);
    gy.push_back(qnan);
  }
};

std::vector<std::size_t> lengths() { return lengths_around_flushes(aq::detail::backward_flush); }
}  // namespace

TEST_CASE("fake_quant_backward (one run): SIMD == scalar twin for all tails and offsets") {
  const aq::quant_params p{0.13f, 2, -8, 7};
  for (bool with_gx : {false, true})
    for (std::size_t off = 0; off < lanes; ++off)
      for (std::size_t n : lengths()) {
        const backward_case c(n, off, p, static_cast<std::uint32_t>(n * 13 + off));
        std::vector<float> gx_a(n + off + 1, sentinel), gx_b(n + off + 1, sentinel);
        double gs_a = 0.5, gz_a = -0.25, gs_b = 0.5, gz_b = -0.25;  // added to, not overwritten
        aq::detail::fq_backward_run<true>(c.x.data() + off, c.y.data() + off, c.mask.data() + off,
                                          c.gy.data() + off, n, p.scale,
                                          with_gx ? gx_a.data() + off : nullptr, gs_a, gz_a);
        aq::detail::fq_backward_run<false>(c.x.data() + off, c.y.data() + off, c.mask.data() + off,
                                           c.gy.data() + off, n, p.scale,
                                           with_gx ? gx_b.data() + off : nullptr, gs_b, gz_b);
        INFO("n=" << n << " off=" << off << " grad_x=" << with_gx);
        REQUIRE(same_bits(gs_a, gs_b));
        REQUIRE(same_bits(gz_a, gz_b));
        REQUIRE(gs_a == gs_a);  // the NaN sentinels were not read
        for (std::size_t i = 0; i < gx_a.size(); ++i) REQUIRE(same_bits(gx_a[i], gx_b[i]));
        CHECK(gx_a[n + off] == sentinel);
      }
}

TEST_CASE("fake_quant_backward_per_tensor: public entry == its _ref twin") {
  const aq::quant_params p{0.07f, 0, -8, 7};
  for (std::size_t n : lengths()) {
    if (n == 0) continue;
    const backward_case c(n, 0, p, static_cast<std::uint32_t>(n));
    const aq::tensor_view<const float> x(c.x.data(), {n}), y(c.y.data(), {n}), gy(c.gy.data(), {n});
    const std::span<const std::uint8_t> m(c.mask.data(), n);
    std::vector<float> gx_a(n), gx_b(n);
    const aq::quantizer_grad a = aq::fake_quant_backward_per_tensor(x, y, m, gy, p, gx_a);
    const aq::quantizer_grad b = aq::fake_quant_backward_per_tensor_ref(x, y, m, gy, p, gx_b);
    INFO("n=" << n);
    REQUIRE(same_bits(a.scale, b.scale));
    REQUIRE(same_bits(a.zero_point, b.zero_point));
    REQUIRE(gx_a == gx_b);
  }
}

TEST_CASE("fake_quant_backward_per_channel: SIMD == twin on every layout") {
  auto shapes = per_channel_shapes();
  shapes.push_back({2, 3, 600});  // runs longer than a flush of the partial sums
  for (const auto& s : shapes) {
    const std::size_t n = s[0] * s[1] * s[2];
    aq::channel_params p;
    p.axis = 1;
    p.qmin = 0;
    p.qmax = 15;
    for (std::size_t c = 0; c < s[1]; ++c) {
      p.scale.push_back(0.05f + 0.031f * static_cast<float>(c));
      p.zero_point.push_back(static_cast<std::int32_t>(c % 16));
    }
    const auto x = finite_test_data(n, 0.2f, static_cast<std::uint32_t>(n));
    const auto gy = finite_test_data(n, 1.0f, static_cast<std::uint32_t>(n + 1));
    std::vector<float> y(n);
    std::vector<std::uint8_t> mask(n);
    const aq::tensor_view<const float> xv(x.data(), {s[0], s[1], s[2]});
    const aq::tensor_view<const float> gv(gy.data(), {s[0], s[1], s[2]});
    aq::fake_quant_per_channel(xv, aq::tensor_view<float>(y.data(), {s[0], s[1], s[2]}), p, mask);
    const aq::tensor_view<const float> yv(y.data(), {s[0], s[1], s[2]});
    std::vector<float> gx_a(n + 1, sentinel), gx_b(n + 1, sentinel);
    std::vector<float> gs_a(s[1]), gz_a(s[1]), gs_b(s[1]), gz_b(s[1]);
    aq::fake_quant_backward_per_channel(xv, yv, mask, gv, p, std::span(gx_a.data(), n), gs_a, gz_a);
    aq::fake_quant_backward_per_channel_ref(xv, yv, mask, gv, p, std::span(gx_b.data(), n), gs_b,
                                            gz_b);
    INFO("shape " << s[0] << "x" << s[1] << "x" << s[2]);
    for (std::size_t c = 0; c < s[1]; ++c) {
      REQUIRE(same_bits(gs_a[c], gs_b[c]));
      REQUIRE(same_bits(gz_a[c], gz_b[c]));
    }
    for (std::size_t i = 0; i <= n; ++i) REQUIRE(same_bits(gx_a[i], gx_b[i]));
    CHECK(gx_a[n] == sentinel);
  }
}
