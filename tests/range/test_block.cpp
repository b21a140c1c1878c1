// Per-block range estimators (granularity::per_block): each block estimated as a tensor of its own,
// one block per row equal to per channel, the gain on weights with outlier blocks, and errors.
#include <adaquant/adapters/std.hpp>
#include <adaquant/kernels/fake_quant.hpp>
#include <adaquant/kernels/quant_error.hpp>
#include <adaquant/range/quantizer_spec.hpp>

#include <limits>

#include "range_test_util.hpp"

using namespace adaquant;
using range_test::require_error;

namespace {
constexpr quant_scheme int4_sym{4, true, true, false};
constexpr quant_scheme uint4_affine{4, false, false, false};

// The elements of block j of row r of a row-major [rows, in] tensor.
std::vector<float> block_of(const std::vector<float>& x, std::size_t in, std::size_t block,
                            std::size_t r, std::size_t j) {
  const std::size_t first = r * in + j * block;
  return {x.begin() + static_cast<std::ptrdiff_t>(first),
          x.begin() + static_cast<std::ptrdiff_t>(first + std::min(block, in - j * block))};
}
}  // namespace

TEST_CASE("per-block estimators: every block as a tensor of its own", "[range][block]") {
  const std::size_t rows = 3, in = 150, block = 64, nb = 3;  // 64, 64, 22
  const auto x = range_test::gaussian(rows * in, 70);
  const tensor_view<const float> w(x.data(), {rows, in});
  const block_ranges mm = min_max_per_block(w, 1, block);
  const block_mse_result mse = mse_search_per_block(w, 1, block, uint4_affine);
  const block_ranges pct = percentile_range_per_block(w, 1, block, 90.0, clipping::symmetric);
  REQUIRE(mm.blocks() == rows * nb);
  CHECK(mse.params.axis == 1);
  CHECK(mse.params.block_size == block);
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < nb; ++j) {
      const auto b = block_of(x, in, block, r, j);
      const std::size_t k = r * nb + j;
      INFO("row " << r << " block " << j);
      CHECK(mm.block(k) == min_max(b));
      const mse_result m = mse_search(b, uint4_affine);
      CHECK(mse.params.block(k) == m.params);
      CHECK(mse.error[k] == m.error);
      CHECK(mse.error[k] <= mse.min_max_error[k]);
      // Exact order statistics: 90% of |v| lie within [-t, t] (linear between neighbours).
      std::size_t inside = 0;
      for (float v : b) inside += std::fabs(v) <= pct.hi[k];
      CHECK(static_cast<double>(inside) >= 0.9 * static_cast<double>(b.size() - 1));
      CHECK(pct.lo[k] == -pct.hi[k]);
    }
}

TEST_CASE("percentile per block: exact order statistics", "[range][block]") {
  std::vector<float> x(32);
  for (std::size_t i = 0; i < 32; ++i) x[i] = static_cast<float>(i) - 10.0f;  // -10 .. 21
  const tensor_view<const float> v(x.data(), {1, 32});
  const block_ranges r = percentile_range_per_block(v, 1, 32, 90.0);
  CHECK(r.lo[0] == Approx(-10.0f + 0.1f * 31.0f));  // position 0.1 * 31 of the sorted values
  CHECK(r.hi[0] == Approx(-10.0f + 0.9f * 31.0f));
  const block_ranges all = percentile_range_per_block(v, 1, 32, 100.0);
  CHECK(all.block(0) == range{-10.0f, 21.0f});
  const block_ranges sym = percentile_range_per_block(v, 1, 32, 100.0, clipping::symmetric);
  CHECK(sym.block(0) == range{-21.0f, 21.0f});
}

TEST_CASE("per block with block_size >= the extent: per-channel parameters", "[range][block]") {
  const std::size_t rows = 5, in = 90;
  const auto x = range_test::gaussian(rows * in, 71);
  const tensor_view<const float> w(x.data(), {rows, in});
  for (const auto m : {range_method::min_max, range_method::mse})
    for (std::size_t block : {in, std::size_t{1000}})
      for (const auto& scheme : {int4_sym, uint4_affine}) {
        const block_params b = estimate_block_params(w, scheme, 1, block, m);
        const channel_params c = estimate_channel_params(w, scheme, 0, m);
        CHECK(b.scale == c.scale);
        CHECK(b.zero_point == c.zero_point);
      }
}

TEST_CASE("per block beats per channel on weights with outlier inputs", "[range][block]") {
  // A weight whose rows each hold two large values in one block (language models' weights have
  // such outlier inputs): a per-channel scale must cover them and wastes the grid on the row's
  // other blocks; per block only the outliers' block pays.
  const std::size_t rows = 8, in = 256, block = 64;
  auto x = range_test::gaussian(rows * in, 72, 0.02f);
  for (std::size_t r = 0; r < rows; ++r) {
    x[r * in + (r % 4) * block + 5] = 0.6f;
    x[r * in + (r % 4) * block + 17] = -0.5f;
  }
  const tensor_view<const float> w(x.data(), {rows, in});
  for (const auto m : {range_method::min_max, range_method::mse}) {
    const channel_params pc = estimate_channel_params(w, int4_sym, 0, m);
    const block_params pb = estimate_block_params(w, int4_sym, 1, block, m);
    std::vector<float> yc(x.size());
    fake_quant_per_channel(w, tensor_view<float>(yc.data(), {rows, in}), pc);
    double ec = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) ec += std::pow(double{yc[i]} - x[i], 2);
    ec /= static_cast<double>(x.size());
    const double eb = quant_error(w, pb);
    INFO("method " << to_string(m) << ": per channel " << ec << ", per block " << eb);
    CHECK(eb < 0.5 * ec);
  }
}

TEST_CASE("per-block estimators through the spec, and their errors", "[range][block][errors]") {
  const auto x = range_test::gaussian(4 * 40, 73);
  const tensor_view<const float> w(x.data(), {4, 40});
  quantizer_spec spec = quantizer_spec::weights_per_block(4, 16);
  CHECK(spec.gran == granularity::per_block(1, 16));
  const auto v = estimate_params(w, spec);
  REQUIRE(std::holds_alternative<block_params>(v));
  CHECK(std::get<block_params>(v) == estimate_block_params(w, spec));
  CHECK(std::get<block_params>(v).blocks() == 4 * 3);
  require_error([&] { (void)estimate_tensor_params(w, spec); }, errc::invalid_argument,
                {"estimate_tensor_params: spec.gran", "is per block"});
  require_error([&] { (void)estimate_channel_params(w, spec); }, errc::invalid_argument,
                {"estimate_channel_params: spec.gran", "is per block"});
  require_error([&] { (void)estimate_block_params(w, quantizer_spec::weights(4)); },
                errc::invalid_argument, {"estimate_block_params: spec.gran", "is per channel"});
  spec.gran.block_size = 0;
  require_error([&] { spec.validate("config.quant.weights"); }, errc::invalid_argument,
                {"config.quant.weights.gran.block_size", "must be >= 1"});
  require_error([&] { (void)estimate_block_params(w, spec); }, errc::invalid_argument,
                {"estimate_block_params: spec.gran.block_size"});
  require_error([&] { (void)min_max_per_block(w, 1, 0); }, errc::invalid_argument,
                {"min_max_per_block: block_size"});
  require_error([&] { (void)mse_search_per_block(w, 2, 8, int4_sym); }, errc::invalid_argument,
                {"mse_search_per_block: axis"});
  auto bad = x;
  bad[45] = std::numeric_limits<float>::quiet_NaN();
  require_error(
      [&] {
        (void)percentile_range_per_block(tensor_view<const float>(bad.data(), {4, 40}), 1, 8, 99.0);
      },
      errc::non_finite, {"percentile_range_per_block: x", "element 45 is NaN"});
  require_error([&] { (void)percentile_range_per_block(w, 1, 8, 0.0, clipping::symmetric); },
                errc::invalid_argument, {"percentile_range_per_block: percentile"});
  const std::vector<float> zeros(16, 0.0f);
  require_error([&] { (void)estimate_block_params(zeros, int4_sym, 0, 8, range_method::min_max); },
                errc::invalid_argument, {"range is zero"});
}
