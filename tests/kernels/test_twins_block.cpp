// The per-block kernels (granularity::per_block) equal their scalar twins bit for bit: fake quant
// (with and without the STE mask, every rounding policy, unaligned starts, a sentinel past the
// end, the streaming path), the backward, quantize / dequantize, the quantization error and
// min/max. Shapes: blocks along the innermost axis (the hot path) for block sizes 1, 3,
// lanes - 1, lanes, lanes + 1, 32, 64 and 128 with extents that are and are not multiples of the
// block, and blocks along an outer axis (inner > 1, through the per-channel kernels).
#include "twin_util.hpp"

#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <vector>

namespace aq = adaquant;

namespace {
constexpr float qnan = std::numeric_limits<float>::quiet_NaN();

struct block_case {
  std::size_t outer, extent, inner, block;
  [[nodiscard]] std::size_t size() const { return outer * extent * inner; }
  [[nodiscard]] aq::tensor_shape shape() const {
    return aq::tensor_shape::packed({outer, extent, inner});
  }
};

std::vector<block_case> block_cases() {
  std::vector<block_case> out;
  for (std::size_t b : {std::size_t{1}, std::size_t{3}, lanes - 1, lanes, lanes + 1,
                        std::size_t{32}, std::size_t{64}, std::size_t{128}}) {
    if (b == 0) continue;
    for (std::size_t e : {std::size_t{1}, b - 1, b, b + 1, 2 * b + lanes / 2 + 1, 3 * lanes + 3})
      if (e > 0)
        for (std::size_t outer : {std::size_t{1}, std::size_t{3}}) out.push_back({outer, e, 1, b});
  }
  // Blocks along an outer axis: chunks of rows x inner channels.
  out.push_back({2, 7, 2, 3});
  out.push_back({2, 9, lanes, 4});
  out.push_back({1, 5, lanes + 3, 2});
  out.push_back({3, 10, 3, 4});
  return out;
}

// Parameters for a case, on the unsigned 4-bit grid with varied zero points.
aq::block_params params_for(const block_case& c) {
  const std::size_t nb = aq::block_layout{c.outer, c.extent, c.inner, c.block}.params();
  aq::block_params p;
  p.axis = 1;
  p.block_size = c.block;
  p.qmin = 0;
  p.qmax = 15;
  for (std::size_t j = 0; j < nb; ++j) {
    p.scale.push_back(0.05f + 0.013f * static_cast<float>(j % 17));
    p.zero_point.push_back(static_cast<std::int32_t>(j % 16));
  }
  return p;
}

std::string describe(const block_case& c) {
  return std::to_string(c.outer) + "x" + std::to_string(c.extent) + "x" + std::to_string(c.inner) +
         " block " + std::to_string(c.block);
}
}  // namespace

TEMPLATE_TEST_CASE("fake_quant_per_block: SIMD == twin for every block size, tail and offset", "",
                   aq::round_pytorch, aq::round_onnx, aq::round_half_away) {
  for (const block_case& c : block_cases()) {
    const aq::block_params p = params_for(c);
    const std::size_t n = c.size();
    for (std::size_t off : {std::size_t{0}, std::size_t{1}, lanes - 1})
      for (bool with_mask : {false, true}) {
        const auto src = test_data(n + off, 0.2f, static_cast<std::uint32_t>(n * 7 + off));
        std::vector<float> a(n + off + 1, sentinel), b(n + off + 1, sentinel);
        std::vector<std::uint8_t> ma(n + off + 1, 9), mb(n + off + 1, 9);
        aq::tensor_shape s = c.shape();
        const aq::tensor_view<const float> x(src.data() + off, s);
        const auto mask_a = with_mask ? std::span(ma.data() + off, n) : std::span<std::uint8_t>{};
        const auto mask_b = with_mask ? std::span(mb.data() + off, n) : std::span<std::uint8_t>{};
        aq::fake_quant_per_block<TestType>(x, aq::tensor_view<float>(a.data() + off, s), p, mask_a);
        aq::fake_quant_per_block_ref<TestType>(x, aq::tensor_view<float>(b.data() + off, s), p,
                                               mask_b);
        INFO(describe(c) << " off=" << off << " mask=" << with_mask);
        for (std::size_t i = 0; i < n + off + 1; ++i) {
          REQUIRE(same_bits(a[i], b[i]));
          REQUIRE(ma[i] == mb[i]);
        }
        CHECK(a[n + off] == sentinel);
        CHECK(ma[n + off] == 9);
      }
  }
}

TEST_CASE("fake_quant_per_block: large outputs (the streaming path) equal the twin") {
  // Blocks and rows multiples of lanes stream at any alignment of y (vectors across two blocks
  // blend their parameters); other shapes use plain stores. Rows of 1040: blocks of 64 leave a
  // partial last block of 16.
  const std::size_t in = 1040, rows = (std::size_t{9} << 20) / sizeof(float) / in + 1;
  const std::size_t n = rows * in;
  const auto src = test_data(n + lanes, 0.1f, 5);
  for (std::size_t block : {lanes, std::size_t{64}, std::size_t{100}})
    for (std::size_t off : {std::size_t{0}, std::size_t{1}, lanes - 1}) {
      const aq::block_params p = params_for({rows, in, 1, block});
      std::vector<float> a(n + off + 1, sentinel), b(n + off + 1, sentinel);
      const aq::tensor_view<const float> x(src.data() + off, {rows, in});
      aq::fake_quant_per_block(x, aq::tensor_view<float>(a.data() + off, {rows, in}), p);
      aq::fake_quant_per_block_ref(x, aq::tensor_view<float>(b.data() + off, {rows, in}), p);
      std::size_t diff = 0;
      for (std::size_t i = 0; i < a.size(); ++i) diff += !same_bits(a[i], b[i]);
      INFO("block " << block << " off " << off);
      CHECK(diff == 0);
      CHECK(a[n + off] == sentinel);
      if (off > 0) CHECK(a[off - 1] == sentinel);
    }
}

TEST_CASE("fake_quant_backward_per_block: SIMD == twin for every block size and tail") {
  auto cases = block_cases();
  cases.push_back({2, 1300, 1, 600});  // runs longer than a flush of the partial sums
  for (const block_case& c : cases) {
    const aq::block_params p = params_for(c);
    const std::size_t n = c.size(), nb = p.blocks();
    const aq::tensor_shape s = c.shape();
    auto x = finite_test_data(n, 0.2f, static_cast<std::uint32_t>(n));
    auto gy = finite_test_data(n, 1.0f, static_cast<std::uint32_t>(n + 1));
    std::vector<float> y(n + 1, qnan);
    std::vector<std::uint8_t> mask(n + 1, 1);
    aq::fake_quant_per_block(aq::tensor_view<const float>(x.data(), s),
                             aq::tensor_view<float>(y.data(), s), p, std::span(mask.data(), n));
    x.push_back(qnan);  // sentinels a read past the end would show
    gy.push_back(qnan);
    const aq::tensor_view<const float> xv(x.data(), s), yv(y.data(), s), gv(gy.data(), s);
    const std::span<const std::uint8_t> m(mask.data(), n);
    for (bool with_gx : {false, true}) {
      std::vector<float> gx_a(n + 1, sentinel), gx_b(n + 1, sentinel);
      std::vector<float> gs_a(nb), gz_a(nb), gs_b(nb), gz_b(nb);
      const auto gxa = with_gx ? std::span(gx_a.data(), n) : std::span<float>{};
      const auto gxb = with_gx ? std::span(gx_b.data(), n) : std::span<float>{};
      aq::fake_quant_backward_per_block(xv, yv, m, gv, p, gxa, gs_a, gz_a);
      aq::fake_quant_backward_per_block_ref(xv, yv, m, gv, p, gxb, gs_b, gz_b);
      INFO(describe(c) << " grad_x=" << with_gx);
      for (std::size_t j = 0; j < nb; ++j) {
        REQUIRE(same_bits(gs_a[j], gs_b[j]));
        REQUIRE(same_bits(gz_a[j], gz_b[j]));
        REQUIRE(gs_a[j] == gs_a[j]);
      }
      for (std::size_t i = 0; i <= n; ++i) REQUIRE(same_bits(gx_a[i], gx_b[i]));
      CHECK(gx_a[n] == sentinel);
    }
  }
}

TEMPLATE_TEST_CASE("quant_error per block: SIMD == twin for every block size, tail and norm", "",
                   aq::round_pytorch, aq::round_onnx) {
  for (const block_case& c : block_cases())
    for (double norm : {2.0, 1.0, 2.4}) {
      const aq::block_params p = params_for(c);
      const std::size_t n = c.size();
      auto src = finite_test_data(n, 0.2f, static_cast<std::uint32_t>(3 * n));
      src.push_back(qnan);
      const aq::tensor_view<const float> x(src.data(), c.shape());
      const double a = aq::quant_error<TestType>(x, p, norm);
      const double b = aq::quant_error_ref<TestType>(x, p, norm);
      INFO(describe(c) << " p=" << norm);
      REQUIRE(same_bits(a, b));
      REQUIRE(a == a);
    }
}

TEST_CASE("quantize / dequantize per block: SIMD == twin, and dequantize(quantize) == fake quant") {
  for (const block_case& c : block_cases()) {
    const aq::block_params p = params_for(c);
    const std::size_t n = c.size();
    const aq::tensor_shape s = c.shape();
    const auto src = finite_test_data(n, 0.2f, static_cast<std::uint32_t>(n + 5));
    const aq::tensor_view<const float> x(src.data(), s);
    std::vector<std::uint8_t> qa(n + 1, 42), qb(n + 1, 42);
    aq::quantize_per_block(x, aq::tensor_view<std::uint8_t>(qa.data(), s), p);
    aq::quantize_per_block_ref(x, aq::tensor_view<std::uint8_t>(qb.data(), s), p);
    INFO(describe(c));
    REQUIRE(qa == qb);
    CHECK(qa[n] == 42);
    std::vector<float> da(n), db(n), fq(n);
    aq::dequantize_per_block(aq::tensor_view<const std::uint8_t>(qa.data(), s),
                             aq::tensor_view<float>(da.data(), s), p);
    aq::dequantize_per_block_ref(aq::tensor_view<const std::uint8_t>(qa.data(), s),
                                 aq::tensor_view<float>(db.data(), s), p);
    aq::fake_quant_per_block(x, aq::tensor_view<float>(fq.data(), s), p);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(same_bits(da[i], db[i]));
      REQUIRE(same_bits(da[i], fq[i]));
    }
  }
}

TEST_CASE("min_max_per_block: SIMD == twin for every block size and tail") {
  for (const block_case& c : block_cases()) {
    const std::size_t n = c.size();
    auto src = finite_test_data(n, 0.3f, static_cast<std::uint32_t>(n + 9));
    src.push_back(qnan);
    const aq::tensor_view<const float> x(src.data(), c.shape());
    const aq::block_ranges a = aq::min_max_per_block(x, 1, c.block);
    const aq::block_ranges b = aq::min_max_per_block_ref(x, 1, c.block);
    INFO(describe(c));
    REQUIRE(a.lo.size() == aq::block_layout{c.outer, c.extent, c.inner, c.block}.params());
    for (std::size_t j = 0; j < a.lo.size(); ++j) {
      REQUIRE(same_bits(a.lo[j], b.lo[j]));
      REQUIRE(same_bits(a.hi[j], b.hi[j]));
    }
  }
}
