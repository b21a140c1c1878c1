// The loss kernels (squared error, bias tuning's sums) equal their scalar twins bit for bit, for
// each output activation: all lengths in [0, 3 * lanes + 3) and around the flushes of the float
// partial sums, every unaligned start, with and without dy, sentinels past the end (a NaN the
// kernel would read, a value in dy that writing would change).
#include "twin_util.hpp"

#include <adaquant/kernels/loss.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace aq = adaquant;

namespace {
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

std::vector<std::size_t> lengths() {
  return lengths_around_flushes(aq::detail::squared_error_flush);
}

// Targets (which = 0) and outputs (1): Gaussian targets, outputs off them by errors of magnitudes
// 1e-4 to 3e3 in turn (sums that round differently when added in another order), some of either
// at the kinks of ReLU and ReLU6 (0, 6, just below 6).
std::vector<float> loss_data(std::size_t n, std::uint32_t seed, std::size_t which) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  constexpr float size[] = {1e-4f, 1e-2f, 1.0f, 1e2f, 3e3f};
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    const float target = 3.0f * normal(rng), error = size[i % 5] * normal(rng);
    v[i] = which == 0 ? target : target + error;
    if (i % 7 == which) v[i] = i % 3 == 0 ? 0.0f : i % 3 == 1 ? 6.0f : std::nextafter(6.0f, 0.0f);
  }
  return v;
}

template <class Act>
void check_twins() {
  for (bool with_dy : {false, true})
    for (std::size_t off = 0; off < lanes; ++off)
      for (std::size_t n : lengths()) {
        const auto seed = static_cast<std::uint32_t>(n * 7 + off);
        std::vector<float> t = loss_data(n + off, seed, 0), q = loss_data(n + off, seed, 1);
        t.push_back(qnan);
        q.push_back(qnan);
        std::vector<float> dy_a(n + off + 1, sentinel), dy_b(n + off + 1, sentinel);
        const double a = aq::detail::squared_error_run<true>(
            Act{}, t.data() + off, q.data() + off, with_dy ? dy_a.data() + off : nullptr, 0.37f, n);
        const double b = aq::detail::squared_error_run<false>(
            Act{}, t.data() + off, q.data() + off, with_dy ? dy_b.data() + off : nullptr, 0.37f, n);
        INFO("n=" << n << " off=" << off << " dy=" << with_dy);
        REQUIRE(same_bits(a, b));
        REQUIRE(a == a);  // the NaN sentinels were not read
        for (std::size_t i = 0; i < dy_a.size(); ++i) REQUIRE(same_bits(dy_a[i], dy_b[i]));
        CHECK(dy_a[n + off] == sentinel);
      }
}
}  // namespace

TEST_CASE("squared_error: SIMD == scalar twin for all tails and offsets, each activation") {
  check_twins<aq::detail::act_none>();
  check_twins<aq::detail::act_relu>();
  check_twins<aq::detail::act_relu6>();
}

TEST_CASE("squared_error: the sum and dL/dq it documents") {
  // f = ReLU6: one output inside (slope 1), one above 6 and one below 0 (slope 0).
  const std::vector<float> t = {1.0f, 2.0f, 3.0f}, q = {1.5f, 7.0f, -1.0f};
  std::vector<float> dy(3);
  const double e = aq::detail::squared_error_run(aq::detail::act_relu6{}, t.data(), q.data(),
                                                 dy.data(), 2.0f, 3);
  CHECK(e == 0.25 + 16.0 + 9.0);  // (1.5 - 1)^2 + (6 - 2)^2 + (0 - 3)^2, each exact
  CHECK(dy[0] == 1.0f);           // (1.5 - 1) * 1 * 2
  CHECK(dy[1] == 0.0f);
  CHECK(dy[2] == 0.0f);
  // Without an activation every element has slope 1.
  const double none =
      aq::detail::squared_error_run(aq::detail::act_none{}, t.data(), q.data(), dy.data(), 1.0f, 3);
  CHECK(none == 0.25 + 25.0 + 16.0);
  CHECK(dy[1] == 5.0f);
  CHECK(dy[2] == -4.0f);
}

namespace {
// Bias tuning's sums: the same lengths and offsets, biases that put the run on either side of the
// kinks, the running totals added to (not overwritten).
template <class Act>
void check_bias_twins() {
  for (float b : {-0.7f, 0.0f, 2.5f})
    for (std::size_t off = 0; off < lanes; ++off)
      for (std::size_t n : lengths()) {
        const auto seed = static_cast<std::uint32_t>(n * 11 + off);
        std::vector<float> u = loss_data(n + off, seed, 1), y = loss_data(n + off, seed, 0);
        u.push_back(qnan);
        y.push_back(qnan);
        aq::detail::bias_run_sums a{0.25, 3.0}, c{0.25, 3.0};
        aq::detail::bias_slope_sums_run<true>(Act{}, u.data() + off, y.data() + off, n, b, a);
        aq::detail::bias_slope_sums_run<false>(Act{}, u.data() + off, y.data() + off, n, b, c);
        const double la =
            aq::detail::bias_loss_run<true>(Act{}, u.data() + off, y.data() + off, n, b, 0.125);
        const double lc =
            aq::detail::bias_loss_run<false>(Act{}, u.data() + off, y.data() + off, n, b, 0.125);
        INFO("n=" << n << " off=" << off << " b=" << b);
        REQUIRE(same_bits(a.slope, c.slope));
        REQUIRE(same_bits(a.linear, c.linear));
        REQUIRE(same_bits(la, lc));
        REQUIRE(la == la);  // the NaN sentinels were not read
        REQUIRE(a.slope == a.slope);
      }
}
}  // namespace

TEST_CASE("bias tuning sums: SIMD == scalar twin for all tails and offsets, each activation") {
  check_bias_twins<aq::detail::act_none>();
  check_bias_twins<aq::detail::act_relu>();
  check_bias_twins<aq::detail::act_relu6>();
}

TEST_CASE("bias tuning sums: the values they document") {
  // f = ReLU at b = 1: z = u + 1 = {-1, 0.5, 3}; only 0.5 and 3 are in the linear range.
  const std::vector<float> u = {-2.0f, -0.5f, 2.0f}, y = {1.0f, -4.0f, 1.0f};
  aq::detail::bias_run_sums s;
  aq::detail::bias_slope_sums_run(aq::detail::act_relu{}, u.data(), y.data(), 3, 1.0f, s);
  CHECK(s.slope == (0.5 - 0.0) + (3.0 - 1.0));  // t = relu(y) = {1, 0, 1}
  CHECK(s.linear == 2.0);
  const double loss =
      aq::detail::bias_loss_run(aq::detail::act_relu{}, u.data(), y.data(), 3, 1.0f, 0.5);
  CHECK(loss == 0.5 + 1.0 + 0.25 + 4.0);  // (0 - 1)^2 + (0.5 - 0)^2 + (3 - 1)^2 added to 0.5
}
