#include <adaquant/adapters/eigen.hpp>
#include <adaquant/adapters/std.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/range/mse_search.hpp>

#include <cmath>
#include <limits>

#include "range_test_util.hpp"

using namespace adaquant;
using range_test::require_error;
using range_test::same_bits;

namespace {
constexpr std::size_t lanes = detail::simd::lanes;
constexpr quant_scheme int4_sym{4, true, true, false};
constexpr quant_scheme uint4_affine{4, false, false, false};

// Mean |fake_quant(x) - x|^p through the public fake-quant kernel: an independent reference.
template <RoundingPolicy R = round_pytorch>
double error_via_kernel(const std::vector<float>& x, const quant_params& q, double p) {
  std::vector<float> y(x.size());
  fake_quant_per_tensor_ref<R>(x, y, q);
  double e = 0;
  for (std::size_t i = 0; i < x.size(); ++i) e += std::pow(std::fabs(double{y[i]} - x[i]), p);
  return e / static_cast<double>(x.size());
}
}  // namespace

TEMPLATE_TEST_CASE("quant_error: SIMD equals its scalar twin bit for bit", "[range][mse]",
                   round_pytorch, round_onnx, round_half_away) {
  const auto data = range_test::gaussian(4 * lanes + 64, 40, 1.3f);
  const quant_params q = params_from_range(int4_sym, -2.0f, 2.0f);
  const quant_params qa = params_from_range(uint4_affine, -0.7f, 3.0f);
  for (const double p : {2.0, 1.0, 2.4})
    for (std::size_t off = 0; off < 3; ++off)
      for (std::size_t n = 1; n < 4 * lanes + 5; ++n) {
        std::vector<float> buf(data.begin() + static_cast<std::ptrdiff_t>(off),
                               data.begin() + static_cast<std::ptrdiff_t>(off + n));
        buf.push_back(std::numeric_limits<float>::quiet_NaN());  // sentinel: never read
        const std::span<const float> s(buf.data(), n);
        for (const auto& params : {q, qa}) {
          const double a = quant_error<TestType>(s, params, p);
          const double b = quant_error_ref<TestType>(s, params, p);
          INFO("n=" << n << " off=" << off << " p=" << p);
          CHECK(same_bits(a, b));
          CHECK(a == Approx(error_via_kernel<TestType>(std::vector<float>(s.begin(), s.end()),
                                                       params, p))
                         .epsilon(1e-6));
        }
      }
}

TEST_CASE("MSE search beats min/max and matches a brute-force fine grid", "[range][mse]") {
  const auto x = range_test::gaussian(20'000, 41);
  for (const auto& scheme : {int4_sym, uint4_affine, quant_scheme{3, true, true, false},
                             quant_scheme{8, false, false, false}}) {
    INFO("bits=" << scheme.bits << " symmetric=" << scheme.symmetric);
    const mse_result m = mse_search(x, scheme);
    const range mm = min_max(x);
    const double e_mm = quant_error_ref(x, params_for(scheme, mm));
    CHECK(m.min_max_error == e_mm);
    CHECK(m.error <= e_mm);
    CHECK(m.params == params_for(scheme, m.clip));
    CHECK(m.error == quant_error(x, m.params));
    // Brute force: 4000 alphas in (0, 1].
    double best = e_mm;
    for (int k = 1; k <= 4000; ++k) {
      const float a = static_cast<float>(k / 4000.0);
      const range c = scheme.symmetric ? mm.symmetric().scaled(a) : mm.scaled(a);
      best = std::min(best, quant_error_ref(x, params_for(scheme, c)));
    }
    CHECK(m.error <= best * 1.005);
    // The refinement never loses against the grid alone.
    const mse_result grid = mse_search(x, scheme, {100, 0});
    CHECK(m.error <= grid.error);
  }
}

TEST_CASE("4-bit MSE clipping of a Gaussian is about 2.5 sigma", "[range][mse]") {
  const float sigma = 0.7f;
  const auto x = range_test::gaussian(200'000, 42, sigma);
  const mse_result m = mse_search(x, int4_sym);
  CHECK(m.alpha < 1.0f);
  const double clip_in_sigmas = m.clip.hi / sigma;
  INFO("clip = " << clip_in_sigmas << " sigma, alpha = " << m.alpha);
  CHECK(clip_in_sigmas > 2.2);
  CHECK(clip_in_sigmas < 2.9);
  CHECK(m.error < 0.7 * m.min_max_error);  // clipping pays off at 4 bits
  // At 8 bits much less clipping is optimal.
  const mse_result m8 = mse_search(x, int8_symmetric);
  CHECK(m8.clip.hi / sigma > 3.0);
}

TEST_CASE("MSE search prefers the larger alpha on ties and handles exact grids", "[range][mse]") {
  // Values already on the alpha = 1 grid: zero error at alpha = 1, positive for any clipping.
  const std::vector<float> x{0.0f, 1.0f, 2.0f, 3.0f, 15.0f};
  const mse_result m = mse_search(x, uint4_affine);
  CHECK(m.alpha == 1.0f);
  CHECK(m.error == 0.0);
  // A constant tensor: several alphas tie at zero error? alpha = 1 always qualifies and wins.
  const std::vector<float> c(64, 0.5f);
  CHECK(mse_search(c, uint4_affine).alpha == 1.0f);
}

TEST_CASE("Lp choice changes the optimum: larger p clips less", "[range][mse]") {
  const auto x = range_test::gaussian(50'000, 43);
  const float a1 = mse_search(x, int4_sym, {100, 20, 1.0}).alpha;
  const float a2 = mse_search(x, int4_sym, {100, 20, 2.0}).alpha;
  const float a4 = mse_search(x, int4_sym, {100, 20, 4.0}).alpha;
  CHECK(a1 <= a2);
  CHECK(a2 <= a4);
  const mse_result m24 = mse_search(x, int4_sym, {100, 20, 2.4});
  CHECK(m24.error == Approx(error_via_kernel(x, m24.params, 2.4)).epsilon(1e-6));
}

TEST_CASE("per-channel MSE search is independent per channel on any layout", "[range][mse]") {
  const int rows = 8, cols = 300;
  Eigen::MatrixXf cm(rows, cols);  // column-major: channels along axis 0 are strided
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rm(rows, cols);
  for (int r = 0; r < rows; ++r) {
    const auto g = range_test::gaussian(cols, 50 + static_cast<std::uint32_t>(r),
                                        0.1f * static_cast<float>(r + 1));
    for (int c = 0; c < cols; ++c) cm(r, c) = rm(r, c) = g[static_cast<std::size_t>(c)];
  }
  for (const auto& scheme : {int4_sym, uint4_affine}) {
    const channel_mse_result a = mse_search_per_channel(cm, 0, scheme);
    const channel_mse_result b = mse_search_per_channel(rm, 0, scheme);
    REQUIRE(a.params.channels() == static_cast<std::size_t>(rows));
    CHECK(a.params.axis == 0);
    CHECK(a.clip == b.clip);
    for (int r = 0; r < rows; ++r) {
      std::vector<float> row(static_cast<std::size_t>(cols));
      for (int c = 0; c < cols; ++c) row[static_cast<std::size_t>(c)] = rm(r, c);
      const mse_result m = mse_search(row, scheme);
      const auto k = static_cast<std::size_t>(r);
      CHECK(a.clip.channel(k) == m.clip);
      CHECK(a.params.channel(k) == m.params);
      CHECK(a.alpha[k] == m.alpha);
      CHECK(a.error[k] == m.error);
    }
    CHECK(range_test::same(a.params, params_for(scheme, a.clip)));
  }
}

TEST_CASE("histogram MSE search approximates the data search", "[range][mse]") {
  const auto x = range_test::gaussian(100'000, 44, 1.5f, 0.2f);
  histogram h(2048);
  for (std::size_t i = 0; i < x.size(); i += 10'000)
    h.add(std::span<const float>(x.data() + i, 10'000));
  for (const auto& scheme : {int4_sym, uint4_affine}) {
    const mse_result d = mse_search(x, scheme);
    const mse_result hm = mse_search(h, scheme);
    INFO("data alpha " << d.alpha << " histogram alpha " << hm.alpha);
    CHECK(std::fabs(hm.alpha - d.alpha) < 0.05f);
    // Its params, measured on the data, lose at most 2% more than the data search's.
    CHECK(quant_error(x, hm.params) <= d.error * 1.02);
    CHECK(hm.error == Approx(d.error).epsilon(0.05));
  }
}

TEST_CASE("MSE search errors name the argument", "[range][mse][errors]") {
  const auto x = range_test::gaussian(64, 45);
  require_error([&] { (void)mse_search(x, int4_sym, {0}); }, errc::invalid_argument,
                {"mse_search: options.candidates"});
  require_error(
      [&] {
        (void)mse_search(x, int4_sym, {100, -1});
      },
      errc::invalid_argument, {"mse_search: options.refine_iterations"});
  for (const double p : {0.0, -2.0, std::nan(""), 100.0})
    require_error(
        [&] {
          (void)mse_search(x, int4_sym, {100, 20, p});
        },
        errc::invalid_argument, {"mse_search: options.p"});
  require_error(
      [&] {
        (void)mse_search(x, int4_sym, {100, 20, 2.0, 0});
      },
      errc::invalid_argument, {"mse_search: options.points_per_bin"});
  require_error(
      [&] {
        (void)mse_search(x, quant_scheme{1, true, true, false});
      },
      errc::invalid_argument, {"mse_search: scheme.bits"});
  const std::vector<float> empty;
  require_error([&] { (void)mse_search(empty, int4_sym); }, errc::empty_input, {"mse_search: x"});
  auto bad = x;
  bad[9] = std::numeric_limits<float>::quiet_NaN();
  require_error([&] { (void)mse_search(bad, int4_sym); }, errc::non_finite,
                {"mse_search: x", "element 9 is NaN"});
  require_error([&] { (void)mse_search_per_channel(bad, 0, int4_sym); }, errc::non_finite,
                {"mse_search_per_channel: x", "element 9 is NaN"});
  require_error([&] { (void)mse_search_per_channel(x, 1, int4_sym); }, errc::invalid_argument,
                {"mse_search_per_channel: axis"});
  require_error([&] { (void)quant_error(bad, params_from_range(int4_sym, -1, 1)); },
                errc::non_finite, {"quant_error: x", "element 9"});
  require_error([&] { (void)mse_search(histogram{}, int4_sym); }, errc::empty_input,
                {"mse_search: h"});
  const std::vector<float> zeros(16, 0.0f);
  require_error([&] { (void)mse_search(zeros, int4_sym); }, errc::invalid_argument,
                {"range is zero"});
  mse_options eps;
  eps.on_zero = zero_range::use_epsilon;
  const mse_result z = mse_search(zeros, int4_sym, eps);
  CHECK(z.error == 0.0);
  CHECK(z.alpha == 1.0f);
}
