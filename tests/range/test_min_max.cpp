#include <adaquant/adapters/eigen.hpp>
#include <adaquant/adapters/std.hpp>
#include <adaquant/range/min_max.hpp>

#include <algorithm>
#include <limits>

#include "range_test_util.hpp"

using namespace adaquant;
using range_test::require_error;
using range_test::same_bits;

namespace {
constexpr std::size_t lanes = detail::simd::lanes;
constexpr float inf = std::numeric_limits<float>::infinity();
const float qnan = std::numeric_limits<float>::quiet_NaN();

// Brute-force per-channel min/max through the element strides.
channel_ranges brute_per_channel(const float* x, const tensor_shape& s, std::size_t axis) {
  channel_ranges r;
  r.axis = axis;
  r.lo.assign(s.extent(axis), inf);
  r.hi.assign(s.extent(axis), -inf);
  std::array<std::size_t, max_rank> idx{};
  for (std::size_t k = 0; k < s.size(); ++k) {
    std::ptrdiff_t off = 0;
    for (std::size_t d = 0; d < s.rank; ++d)
      off += static_cast<std::ptrdiff_t>(idx[d]) * s.strides[d];
    const float v = x[off];
    const std::size_t c = idx[axis];
    r.lo[c] = std::min(r.lo[c], v);
    r.hi[c] = std::max(r.hi[c], v);
    for (std::size_t d = s.rank; d-- > 0;) {  // odometer over the logical index
      if (++idx[d] < s.extents[d]) break;
      idx[d] = 0;
    }
  }
  return r;
}
}  // namespace

TEST_CASE("min_max equals std::minmax_element for every length and offset", "[range][min_max]") {
  const auto data = range_test::gaussian(4 * lanes + 64, 1);
  for (std::size_t off = 0; off < 3; ++off)
    for (std::size_t n = 1; n < 4 * lanes + 5; ++n) {
      std::vector<float> buf(data.begin() + static_cast<std::ptrdiff_t>(off),
                             data.begin() + static_cast<std::ptrdiff_t>(off + n));
      buf.push_back(1e30f);  // sentinel past the end must not be read
      const std::span<const float> s(buf.data(), n);
      const auto [mn, mx] = std::minmax_element(s.begin(), s.end());
      const range r = min_max(s), rr = min_max_ref(s);
      INFO("n=" << n << " off=" << off);
      CHECK(r.lo == *mn);
      CHECK(r.hi == *mx);
      CHECK(same_bits(r.lo, rr.lo));
      CHECK(same_bits(r.hi, rr.hi));
    }
}

TEST_CASE("min_max returns +0 for signed zeros in SIMD and scalar alike", "[range][min_max]") {
  std::vector<float> x(3 * lanes, 0.0f);
  for (std::size_t i = 0; i < x.size(); i += 2) x[i] = -0.0f;
  const range r = min_max(x), rr = min_max_ref(x);
  CHECK(same_bits(r.lo, 0.0f));
  CHECK(same_bits(r.hi, 0.0f));
  CHECK(same_bits(rr.lo, 0.0f));
  CHECK(same_bits(rr.hi, 0.0f));
}

TEST_CASE("min_max reports the first non-finite element and names the argument",
          "[range][min_max][errors]") {
  for (const float bad : {qnan, inf, -inf}) {
    for (const std::size_t pos : {std::size_t{0}, std::size_t{5}, 2 * lanes + 1}) {
      auto x = range_test::gaussian(4 * lanes + 3, 2);
      x[pos] = bad;
      const std::string what = bad != bad ? "NaN" : (bad > 0 ? "+inf" : "-inf");
      const std::string where = "element " + std::to_string(pos) + " is " + what;
      require_error([&] { (void)min_max(x); }, errc::non_finite, {"min_max: x", where});
      require_error([&] { (void)min_max_ref(x); }, errc::non_finite, {"min_max_ref: x", where});
      require_error([&] { (void)min_max_per_channel(x, 0); }, errc::non_finite,
                    {"min_max_per_channel: x", where});
    }
  }
}

TEST_CASE("min_max rejects empty input and bad axes", "[range][min_max][errors]") {
  const std::vector<float> empty;
  require_error([&] { (void)min_max(empty); }, errc::empty_input, {"min_max: x", "empty"});
  require_error([&] { (void)min_max_per_channel(empty, 0); }, errc::empty_input,
                {"min_max_per_channel: x"});
  std::vector<float> x(12, 1.0f);
  const tensor_view<const float> m(x.data(), {3, 4});
  require_error([&] { (void)min_max_per_channel(m, 2); }, errc::invalid_argument,
                {"min_max_per_channel: axis", "axis 2", "rank 2"});
  std::vector<float> z(0);
  const tensor_view<const float> e(z.data(), {0, 3});
  require_error([&] { (void)min_max_per_channel(e, 1); }, errc::empty_input,
                {"min_max_per_channel: x"});
}

TEST_CASE("min_max_per_channel matches brute force on row- and column-major layouts",
          "[range][min_max]") {
  SECTION("Eigen matrices, both storage orders, both axes") {
    for (const int rows : {1, 3, 17, 40}) {
      for (const int cols : {1, 5, 2 * static_cast<int>(lanes) + 3}) {
        Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm(rows, cols);
        Eigen::MatrixXf cm(rows, cols);
        const auto g = range_test::gaussian(static_cast<std::size_t>(rows * cols), 3);
        for (int i = 0; i < rows; ++i)
          for (int j = 0; j < cols; ++j)
            rm(i, j) = cm(i, j) = g[static_cast<std::size_t>(i * cols + j)];
        for (const std::size_t axis : {std::size_t{0}, std::size_t{1}}) {
          const auto expect = brute_per_channel(rm.data(), view(rm).shape(), axis);
          INFO("rows=" << rows << " cols=" << cols << " axis=" << axis);
          CHECK(min_max_per_channel(rm, axis) == expect);
          CHECK(min_max_per_channel(cm, axis) == expect);  // same logical values
          CHECK(min_max_per_channel_ref(rm, axis) == expect);
          CHECK(min_max_per_channel_ref(cm, axis) == expect);
        }
      }
    }
  }
  SECTION("rank-4 NCHW and NHWC views") {
    const auto g = range_test::gaussian(2 * 37 * 3 * 5, 4);
    const tensor_view<const float> nchw(g.data(), {2, 37, 3, 5});
    const tensor_view<const float> nhwc(g.data(), {2, 3, 5, 37});
    for (std::size_t axis = 0; axis < 4; ++axis) {
      CHECK(min_max_per_channel(nchw, axis) == brute_per_channel(g.data(), nchw.shape(), axis));
      CHECK(min_max_per_channel(nhwc, axis) == brute_per_channel(g.data(), nhwc.shape(), axis));
      CHECK(min_max_per_channel(nhwc, axis) == min_max_per_channel_ref(nhwc, axis));
    }
  }
}

TEST_CASE("running min_max_observer over batches equals one pass over the concatenation",
          "[range][observer]") {
  const auto all = range_test::gaussian(10'000, 5, 3.0f, 0.5f);
  min_max_observer o;
  std::size_t at = 0;
  for (const std::size_t len : {1u, 7u, 100u, 1000u, 3333u}) {
    o.observe(std::span<const float>(all.data() + at, len));
    at += len;
  }
  o.observe(std::span<const float>(all.data() + at, all.size() - at));
  CHECK(o.batches() == 6);
  CHECK(o.result() == min_max(all));

  SECTION("a rejected batch leaves the observer unchanged") {
    const range before = o.result();
    std::vector<float> bad{1e9f, qnan};
    require_error([&] { o.observe(bad); }, errc::non_finite,
                  {"min_max_observer::observe: x", "element 1 is NaN"});
    CHECK(o.result() == before);
    CHECK(o.batches() == 6);
  }
  SECTION("reset forgets everything") {
    o.reset();
    require_error([&] { (void)o.result(); }, errc::empty_input, {"min_max_observer::result"});
  }
}

TEST_CASE("moving-average observer follows PyTorch's update", "[range][observer]") {
  min_max_observer o({true, 0.25f});
  const std::vector<float> b1{-1.0f, 2.0f}, b2{-3.0f, 6.0f}, b3{0.0f, 1.0f};
  o.observe(b1);
  CHECK(o.result() == range{-1.0f, 2.0f});  // the first batch is taken as is
  o.observe(b2);
  CHECK(o.result().lo == Approx(-1.0f + 0.25f * (-3.0f + 1.0f)));
  CHECK(o.result().hi == Approx(2.0f + 0.25f * (6.0f - 2.0f)));
  const range r2 = o.result();
  o.observe(b3);
  CHECK(o.result().lo == Approx(r2.lo + 0.25f * (0.0f - r2.lo)));
  CHECK(o.result().hi == Approx(r2.hi + 0.25f * (1.0f - r2.hi)));

  for (const float c : {0.0f, -0.1f, 1.5f, qnan})
    require_error(
        [&] {
          min_max_observer bad({true, c});
        },
        errc::invalid_argument, {"min_max_observer: options.averaging_constant", "(0, 1]"});
}

TEST_CASE("per-channel observer over batches equals one pass; channel count is checked",
          "[range][observer]") {
  // Batches of a [batch, channels] activation, per channel along axis 1.
  const std::size_t channels = 2 * lanes + 3;
  const auto all = range_test::gaussian(channels * 50, 6);
  min_max_channel_observer o(1);
  o.observe(tensor_view<const float>(all.data(), {20, channels}));
  o.observe(tensor_view<const float>(all.data() + 20 * channels, {30, channels}));
  CHECK(o.result() == min_max_per_channel(tensor_view<const float>(all.data(), {50, channels}), 1));

  require_error(
      [&] {
        o.observe(tensor_view<const float>(all.data(), {10, channels - 1}));
      },
      errc::shape_mismatch, {"min_max_channel_observer::observe: x", "channels"});
  require_error([&] { o.observe(std::span<const float>(all.data(), 4)); }, errc::invalid_argument,
                {"min_max_channel_observer::observe: axis"});

  min_max_channel_observer ma(0, {true, 0.5f});
  const std::vector<float> b1{-1.0f, 1.0f}, b2{-3.0f, 3.0f};  // two channels along axis 0
  ma.observe(b1);
  ma.observe(b2);
  CHECK(ma.result().lo == std::vector<float>{-2.0f, 2.0f});  // -1 + 0.5 * (-3 + 1), ...
  CHECK(ma.result().hi == std::vector<float>{-2.0f, 2.0f});
  require_error([&] { (void)min_max_channel_observer(0).result(); }, errc::empty_input,
                {"min_max_channel_observer::result"});
}

TEST_CASE("range helpers", "[range]") {
  constexpr range r{-3.0f, 2.0f};
  static_assert(r.width() == 5.0f);
  static_assert(r.abs_max() == 3.0f);
  static_assert(r.symmetric() == range{-3.0f, 3.0f});
  static_assert(r.scaled(0.5f) == range{-1.5f, 1.0f});
  static_assert(r.merged({-1.0f, 4.0f}) == range{-3.0f, 4.0f});
  static_assert(r.contains(0.0f) && !r.contains(2.5f));
  constexpr auto p = params_for(int8_symmetric, r);
  static_assert(p == params_from_range(int8_symmetric, -3.0f, 2.0f));
}
