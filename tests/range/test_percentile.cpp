#include <adaquant/adapters/std.hpp>
#include <adaquant/range/percentile.hpp>

#include <algorithm>
#include <cmath>
#include <limits>

#include "range_test_util.hpp"

using namespace adaquant;
using range_test::require_error;

namespace {
// The order statistic of rank ceil(q n) (1-based) of v.
float exact_quantile(std::vector<float> v, double q) {
  std::sort(v.begin(), v.end());
  auto k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  k = std::clamp<std::size_t>(k, 1, v.size());
  return v[k - 1];
}
float exact_abs_quantile(std::vector<float> v, double q) {
  for (auto& x : v) x = std::fabs(x);
  return exact_quantile(std::move(v), q);
}

// Bins every value on the histogram's final grid, from scratch.
std::vector<std::uint64_t> rebin_from_scratch(const histogram& h, const std::vector<float>& all) {
  std::vector<std::uint64_t> c(h.bins(), 0);
  const auto base = static_cast<std::int64_t>(std::llround(h.edge(0) / h.bin_width()));
  for (const float v : all) {
    auto k = static_cast<std::int64_t>(std::floor(double{v} / h.bin_width())) - base;
    k = std::clamp<std::int64_t>(k, 0, static_cast<std::int64_t>(h.bins()) - 1);
    ++c[static_cast<std::size_t>(k)];
  }
  return c;
}
}  // namespace

TEST_CASE("histogram percentiles are within one bin width of the sorted quantiles",
          "[range][percentile]") {
  const auto x = range_test::gaussian(100'000, 11, 2.0f, 0.3f);
  for (const std::size_t bins : {64u, 2048u}) {
    histogram h(bins);
    h.add(x);
    const double w = h.bin_width();
    INFO("bins=" << bins << " width=" << w);
    CHECK(w <= 2.0 * (h.max() - h.min()) / static_cast<double>(bins - 1));
    for (const double q : {0.0001, 0.01, 0.25, 0.5, 0.9, 0.999, 0.9999}) {
      INFO("q=" << q);
      CHECK(std::fabs(h.quantile(q) - exact_quantile(x, q)) <= w * 1.0001);
      CHECK(std::fabs(h.abs_quantile(q) - exact_abs_quantile(x, q)) <= w * 1.0001);
    }
    for (const double p : {99.0, 99.9, 99.99}) {
      const range a = percentile_range(h, p, clipping::asymmetric);
      CHECK(std::fabs(a.hi - exact_quantile(x, p / 100)) <= w * 1.0001 + 1e-6);
      CHECK(std::fabs(a.lo - exact_quantile(x, 1 - p / 100)) <= w * 1.0001 + 1e-6);
      const range s = percentile_range(h, p, clipping::symmetric);
      CHECK(s.lo == -s.hi);
      CHECK(std::fabs(s.hi - exact_abs_quantile(x, p / 100)) <= w * 1.0001 + 1e-6);
    }
  }
}

TEST_CASE("percentile 100 is the exact min/max", "[range][percentile]") {
  const auto x = range_test::uniform(5000, 12, -1.5f, 4.0f);
  const auto [mn, mx] = std::minmax_element(x.begin(), x.end());
  CHECK(percentile_range(x, 100.0) == range{*mn, *mx});
  CHECK(percentile_range(x, 100.0, clipping::symmetric) == range{-*mx, *mx});
}

TEST_CASE("streaming histogram re-bins exactly and deterministically", "[range][percentile]") {
  // Batches whose range grows to both sides (and one constant batch first).
  std::vector<std::vector<float>> batches;
  batches.push_back(std::vector<float>(100, 0.25f));
  batches.push_back(range_test::uniform(1000, 13, 0.0f, 1.0f));
  batches.push_back(range_test::gaussian(5000, 14, 3.0f));
  batches.push_back(range_test::uniform(1000, 15, -50.0f, 10.0f));
  batches.push_back(range_test::gaussian(5000, 16, 0.1f, 200.0f));
  std::vector<float> all;
  percentile_observer a({512}), b({512});
  for (const auto& batch : batches) {
    a.observe(batch);
    b.observe(batch);
    all.insert(all.end(), batch.begin(), batch.end());
    const histogram& h = a.hist();
    CHECK(h.total() == all.size());
    // Every count sits where a fresh binning on the final grid puts it.
    CHECK(std::vector<std::uint64_t>(h.counts().begin(), h.counts().end()) ==
          rebin_from_scratch(h, all));
    const auto [mn, mx] = std::minmax_element(all.begin(), all.end());
    CHECK(h.min() == *mn);
    CHECK(h.max() == *mx);
    CHECK(h.bin_width() <= 2.0 * (double{*mx} - *mn) / 511.0 + 1e-12);
    for (const double q : {0.001, 0.5, 0.999})
      CHECK(std::fabs(h.quantile(q) - exact_quantile(all, q)) <= h.bin_width() * 1.0001);
  }
  CHECK(std::equal(a.hist().counts().begin(), a.hist().counts().end(), b.hist().counts().begin()));
  CHECK(a.result(99.9) == b.result(99.9));
}

TEST_CASE("a constant tensor gives its value as every percentile", "[range][percentile]") {
  const std::vector<float> x(1000, -2.5f);
  CHECK(percentile_range(x, 99.0) == range{-2.5f, -2.5f});
  CHECK(percentile_range(x, 99.0, clipping::symmetric) == range{-2.5f, 2.5f});
  const std::vector<float> z(10, 0.0f);
  CHECK(percentile_range(z, 99.9) == range{0.0f, 0.0f});
  CHECK(percentile_range(z, 99.9, clipping::symmetric) == range{-0.0f, 0.0f});
}

TEST_CASE("per-channel percentile equals the per-tensor percentile of each channel",
          "[range][percentile]") {
  const std::size_t rows = 3000, cols = 5;
  std::vector<float> x(rows * cols);
  for (std::size_t c = 0; c < cols; ++c) {
    const auto g = range_test::gaussian(rows, 20 + static_cast<std::uint32_t>(c),
                                        0.5f + static_cast<float>(c));
    for (std::size_t r = 0; r < rows; ++r) x[r * cols + c] = g[r];
  }
  const tensor_view<const float> m(x.data(), {rows, cols});
  for (const auto clip : {clipping::asymmetric, clipping::symmetric}) {
    const channel_ranges pc = percentile_range_per_channel(m, 1, 99.9, clip, {256});
    REQUIRE(pc.channels() == cols);
    CHECK(pc.axis == 1);
    for (std::size_t c = 0; c < cols; ++c) {
      std::vector<float> ch(rows);
      for (std::size_t r = 0; r < rows; ++r) ch[r] = x[r * cols + c];
      CHECK(pc.channel(c) == percentile_range(ch, 99.9, clip, {256}));
    }
  }
  percentile_channel_observer o(1, {128});
  o.observe(m);
  require_error(
      [&] {
        o.observe(tensor_view<const float>(x.data(), {cols, rows}));
      },
      errc::shape_mismatch, {"percentile_channel_observer::observe: x"});
  CHECK(o.channels() == cols);
}

TEST_CASE("percentile errors name the argument", "[range][percentile][errors]") {
  const auto x = range_test::gaussian(100, 30);
  for (const double p : {0.0, -1.0, 100.5, std::nan("")})
    require_error([&] { (void)percentile_range(x, p, clipping::symmetric); },
                  errc::invalid_argument, {"percentile_range: percentile", "(0, 100]"});
  require_error([&] { (void)percentile_range(x, 40.0); }, errc::invalid_argument,
                {"percentile_range: percentile", "[50, 100]", "asymmetric"});
  const std::vector<float> empty;
  require_error([&] { (void)percentile_range(empty, 99.0); }, errc::empty_input,
                {"percentile_observer::observe: x"});
  auto bad = x;
  bad[42] = -std::numeric_limits<float>::infinity();
  require_error([&] { (void)percentile_range(bad, 99.0); }, errc::non_finite,
                {"percentile_observer::observe: x", "element 42 is -inf"});
  require_error([&] { histogram h(1); }, errc::invalid_argument, {"histogram: bins"});
  require_error([&] { percentile_observer o({0}); }, errc::invalid_argument,
                {"percentile_observer: options.bins"});
  require_error([&] { (void)percentile_observer().result(); }, errc::empty_input,
                {"percentile_observer::result"});
  histogram h;
  require_error([&] { (void)h.quantile(0.5); }, errc::empty_input, {"histogram::quantile"});
  h.add(x);
  require_error([&] { (void)h.quantile(1.5); }, errc::invalid_argument, {"histogram::quantile: q"});
  require_error([&] { h.cover(2.0f, 1.0f); }, errc::invalid_argument,
                {"histogram::cover: [lo, hi]"});
  require_error([&] { h.cover(0.0f, std::numeric_limits<float>::infinity()); },
                errc::invalid_argument, {"histogram::cover"});
  require_error([&] { (void)percentile_range_per_channel(x, 1, 99.0); }, errc::invalid_argument,
                {"percentile_channel_observer::observe: axis"});
}
