// The direct-convolution kernels equal their scalar twins bit for bit. gather_product: channel
// counts across every register-block split (1 to 7 vectors, with partial last vectors), position
// counts up to two full blocks of 14 positions (AVX-512; 4-8 elsewhere) and every remainder (the
// last positions take a block of 4 or 8 where they fit), with and without bias, and sentinels
// around every output row (a partial block must not write past its positions or channels).
// tap_sum: every length up to 5 blocks of 4 vectors plus tails, 1 to 9 taps and more taps than
// the tail's pointer buffer holds. Also: outputs depend only on their own inputs (a position
// computed among 4 equals itself computed alone). gather_product_u8 (integer codes): the same
// sweep against its twin, and exact sums at the codes' extremes; quad_codes: words and off-grid
// flags of both forms for every tail.
#include "twin_util.hpp"

#include <adaquant/kernels/conv.hpp>

#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <type_traits>
#include <vector>

namespace ad = adaquant::detail;

namespace {

struct gather_case {
  std::vector<float> x, w, bias;
  std::vector<ad::gather_index> base, off;
  std::size_t depth, channels, ldw, positions;
};

// A 3x3-like gather over `depth` taps: positions read at scattered bases and offsets.
gather_case make_gather(std::size_t positions, std::size_t depth, std::size_t channels,
                        std::uint32_t seed) {
  gather_case g;
  g.positions = positions;
  g.depth = depth;
  g.channels = channels;
  g.ldw =
      (channels + lanes - 1) / lanes * lanes + (seed % 2 ? lanes : 0);  // padded, sometimes more
  g.x = finite_test_data(positions * 3 + depth * 5 + 16, 0.25f, seed);
  g.w = finite_test_data(depth * g.ldw, 0.1f, seed + 1);
  g.bias = finite_test_data(channels, 1.0f, seed + 2);
  for (std::size_t p = 0; p < positions; ++p)
    g.base.push_back(static_cast<ad::gather_index>((p * 7) % (positions * 3 + 1)));
  for (std::size_t k = 0; k < depth; ++k)
    g.off.push_back(static_cast<ad::gather_index>((k * 5 + k % 3) % (depth * 5 + 16)));
  return g;
}

// Runs the kernel into a [channels + 1][ld] buffer of sentinels, ld = positions + 2.
template <bool Simd>
std::vector<float> run_gather(const gather_case& g, bool with_bias) {
  const std::size_t ld = g.positions + 2;
  std::vector<float> out((g.channels + 1) * ld, sentinel);
  ad::gather_product_run<Simd>(g.x.data(), g.base.data(), g.positions, g.off.data(), g.depth,
                               g.w.data(), g.ldw, with_bias ? g.bias.data() : nullptr, g.channels,
                               out.data(), ld);
  return out;
}

}  // namespace

// For channel counts 1, 2, ... up to `dense`, then every `stride` up to `most`, positions 1-31,
// depths 1, 9 and 20 and with and without bias: make(positions, depth, channels, seed) run by
// run(case, bias, std::bool_constant<Simd>) gives the twin's bits, and leaves the sentinels
// beyond the positions and channels untouched.
template <class Make, class Run>
void sweep_against_twin(std::size_t most, std::size_t dense, std::size_t stride, Make make,
                        Run run) {
  for (std::size_t channels = 1; channels <= most; channels += (channels < dense ? 1 : stride))
    for (std::size_t positions = 1; positions <= 31; ++positions)
      for (const std::size_t depth : {std::size_t{1}, std::size_t{9}, std::size_t{20}})
        for (const bool with_bias : {false, true}) {
          const auto seed = static_cast<std::uint32_t>(channels * 131 + positions * 7 + depth);
          const auto g = make(positions, depth, channels, seed);
          const auto a = run(g, with_bias, std::true_type{});
          const auto b = run(g, with_bias, std::false_type{});
          INFO("channels=" << channels << " positions=" << positions << " depth=" << depth
                           << " bias=" << with_bias);
          const std::size_t ld = positions + 2;
          for (std::size_t c = 0; c <= channels; ++c)
            for (std::size_t p = 0; p < ld; ++p) {
              const float v = a[c * ld + p];
              REQUIRE(same_bits(v, b[c * ld + p]));
              if (c == channels || p >= positions) REQUIRE(v == sentinel);  // untouched
            }
        }
}

TEST_CASE("gather_product: SIMD == scalar twin for every channel split and position tail") {
  sweep_against_twin(7 * lanes + 1, 2 * lanes + 2, lanes - 1, make_gather,
                     [](const gather_case& g, bool bias, auto simd) {
                       return run_gather<decltype(simd)::value>(g, bias);
                     });
}

TEST_CASE("gather_product: the sum in tap order from the bias, each output alone") {
  const gather_case g = make_gather(6, 11, 2 * lanes + 3, 5);
  const auto all = run_gather<true>(g, true);
  const std::size_t ld = g.positions + 2;
  for (std::size_t p = 0; p < g.positions; ++p)
    for (std::size_t c = 0; c < g.channels; ++c) {
      float acc = g.bias[c];
      for (std::size_t k = 0; k < g.depth; ++k)
        acc = ad::mul_add(g.x[g.base[p] + g.off[k]], g.w[k * g.ldw + c], acc);
      REQUIRE(same_bits(all[c * ld + p], acc));
    }
  // One position alone (a partial block) gives the bits it had inside a full block.
  std::vector<float> one(g.channels, sentinel);
  ad::gather_product_run<true>(g.x.data(), g.base.data() + 2, 1, g.off.data(), g.depth, g.w.data(),
                               g.ldw, g.bias.data(), g.channels, one.data(), 1);
  for (std::size_t c = 0; c < g.channels; ++c) REQUIRE(same_bits(one[c], all[c * ld + 2]));
}

TEST_CASE("tap_sum: SIMD == scalar twin for all lengths and tap counts") {
  for (const std::size_t taps : {std::size_t{1}, std::size_t{2}, std::size_t{9}, std::size_t{70}})
    for (std::size_t n = 0; n <= 20 * lanes + 3; ++n) {
      const auto seed = static_cast<std::uint32_t>(n * 3 + taps);
      const std::vector<float> src = finite_test_data(n + taps * 3 + 1, 0.5f, seed);
      const std::vector<float> w = finite_test_data(taps, 0.2f, seed + 9);
      std::vector<const float*> ptr;
      for (std::size_t t = 0; t < taps; ++t) ptr.push_back(src.data() + (t * 3) % (taps * 3 + 1));
      std::vector<float> a(n + 1, sentinel), b(n + 1, sentinel);
      ad::tap_sum_run<true>(ptr.data(), w.data(), taps, 0.75f, n, a.data());
      ad::tap_sum_run<false>(ptr.data(), w.data(), taps, 0.75f, n, b.data());
      INFO("n=" << n << " taps=" << taps);
      for (std::size_t q = 0; q < n; ++q) REQUIRE(same_bits(a[q], b[q]));
      REQUIRE(a[n] == sentinel);
      if (n > 0) {
        float acc = 0.75f;
        for (std::size_t t = 0; t < taps; ++t) acc = ad::mul_add(w[t], ptr[t][n - 1], acc);
        REQUIRE(same_bits(a[n - 1], acc));
      }
    }
}

TEST_CASE("transpose: SIMD == scalar twin, tiles and edges, nothing written outside") {
  // Rows and columns across the 8 x 8 tiles and their edges, strided source and destination.
  for (std::size_t rows = 1; rows <= 19; rows += (rows < 10 ? 1 : 9))
    for (std::size_t cols = 1; cols <= 27; cols += (cols < 18 ? 1 : 9)) {
      const std::size_t lds = cols + 3, ldo = rows + 5;
      const auto src =
          finite_test_data(rows * lds, 1.0f, static_cast<std::uint32_t>(rows * 31 + cols));
      std::vector<float> a((cols + 1) * ldo, sentinel), b = a;
      ad::transpose_run<true>(src.data(), lds, rows, cols, a.data(), ldo);
      ad::transpose_run<false>(src.data(), lds, rows, cols, b.data(), ldo);
      INFO("rows=" << rows << " cols=" << cols);
      for (std::size_t p = 0; p <= cols; ++p)
        for (std::size_t r = 0; r < ldo; ++r) {
          REQUIRE(same_bits(a[p * ldo + r], b[p * ldo + r]));
          if (p < cols && r < rows)
            REQUIRE(same_bits(a[p * ldo + r], src[r * lds + p]));
          else
            REQUIRE(a[p * ldo + r] == sentinel);
        }
    }
}

namespace {

struct gather_u8_case {
  std::vector<std::uint8_t> x;
  std::vector<std::int8_t> w;
  std::vector<std::int32_t> init;
  std::vector<float> scale, bias;
  std::vector<ad::gather_index> base, off;
  std::size_t groups, channels, ldw, positions;
};

// Codes over their whole 8-bit ranges at scattered bases and offsets (each offset a group of 4).
gather_u8_case make_gather_u8(std::size_t positions, std::size_t groups, std::size_t channels,
                              std::uint32_t seed) {
  gather_u8_case g;
  g.positions = positions;
  g.groups = groups;
  g.channels = channels;
  g.ldw = (channels + 15) / 16 * 16 + (seed % 2 ? 16 : 0);
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> du(0, 255), dw(-128, 127), di(-100000, 100000);
  const std::size_t xn = positions * 3 + groups * 20 + 16;
  for (std::size_t i = 0; i < xn; ++i) g.x.push_back(static_cast<std::uint8_t>(du(gen)));
  for (std::size_t i = 0; i < groups * g.ldw * 4; ++i)
    g.w.push_back(static_cast<std::int8_t>(dw(gen)));
  for (std::size_t c = 0; c < channels; ++c) g.init.push_back(di(gen));
  g.scale = finite_test_data(channels, 1e-3f, seed + 1);
  g.bias = finite_test_data(channels, 1.0f, seed + 2);
  for (std::size_t p = 0; p < positions; ++p)
    g.base.push_back(static_cast<ad::gather_index>((p * 7) % (positions * 3 + 1)));
  for (std::size_t k = 0; k < groups; ++k)
    g.off.push_back(static_cast<ad::gather_index>((k * 19 + k % 5) % (groups * 20 + 12)));
  return g;
}

template <bool Simd>
std::vector<float> run_gather_u8(const gather_u8_case& g, bool with_bias) {
  const std::size_t ld = g.positions + 2;
  std::vector<float> out((g.channels + 1) * ld, sentinel);
  ad::gather_product_u8_run<Simd>(g.x.data(), g.base.data(), g.positions, g.off.data(), g.groups,
                                  g.w.data(), g.ldw, g.init.data(), g.scale.data(),
                                  with_bias ? g.bias.data() : nullptr, g.channels, out.data(), ld);
  return out;
}

}  // namespace

TEST_CASE("gather_product_u8: SIMD == scalar twin for every channel split and position tail") {
  // Depth counts groups of 4 taps here; 16 channels per vector on every target.
  sweep_against_twin(5 * 16 + 1, 34, 15, make_gather_u8,
                     [](const gather_u8_case& g, bool bias, auto simd) {
                       return run_gather_u8<decltype(simd)::value>(g, bias);
                     });
}

TEST_CASE("gather_product_u8: exact 32-bit sums at the codes' extremes, one rounding after") {
  // 255 x 127 per product: a pair already exceeds 16 bits (a saturating 16-bit intermediate
  // fails), 2000 groups reach 2.6e8, beyond float's exact integers (2^24).
  for (const int wv : {127, -128})
    for (const std::size_t groups : {std::size_t{1}, std::size_t{2000}}) {
      gather_u8_case g = make_gather_u8(15, groups, 20, 3);
      std::fill(g.x.begin(), g.x.end(), std::uint8_t{255});
      std::fill(g.w.begin(), g.w.end(), static_cast<std::int8_t>(wv));
      const auto a = run_gather_u8<true>(g, true);
      const std::size_t ld = g.positions + 2;
      for (std::size_t c = 0; c < g.channels; ++c) {
        const std::int64_t acc =
            g.init[c] + static_cast<std::int64_t>(groups) * 4 * 255 * static_cast<std::int64_t>(wv);
        const float want =
            ad::mul_add(static_cast<float>(acc), g.scale[c], g.bias[c]);  // documented form
        for (std::size_t p = 0; p < g.positions; ++p) REQUIRE(same_bits(a[c * ld + p], want));
      }
    }
}

TEST_CASE("quad_codes: SIMD == scalar twin, the words and the off-grid flag") {
  const float s = 0.0625f * 1.3f, inv = 1.0f / s;
  const std::int32_t uz = 5, levels = 16;
  const float lo = static_cast<float>(-uz), hi = static_cast<float>(levels - 1 - uz);
  for (std::size_t n = 0; n <= 5 * lanes + 3; ++n) {
    std::array<std::vector<float>, 4> rows;
    for (std::size_t j = 0; j < 4; ++j)
      for (std::size_t q = 0; q < n; ++q)
        rows[j].push_back(static_cast<float>(static_cast<std::int32_t>((q * 7 + j * 3) % 16) - uz) *
                          s);
    const auto run = [&](bool simd, const std::array<std::vector<float>, 4>& r,
                         std::vector<std::uint32_t>& out) {
      out.assign(n + 1, 0xDEADBEEFu);
      const std::array<const float*, 4> p = {r[0].data(), r[1].data(), r[2].data(), r[3].data()};
      return simd ? ad::quad_codes_run<true>(p, n, s, inv, lo, hi, uz, out.data())
                  : ad::quad_codes_run<false>(p, n, s, inv, lo, hi, uz, out.data());
    };
    std::vector<std::uint32_t> a, b;
    INFO("n=" << n);
    REQUIRE(!run(true, rows, a));
    REQUIRE(!run(false, rows, b));
    REQUIRE(a == b);
    REQUIRE(a[n] == 0xDEADBEEFu);
    for (std::size_t q = 0; q < n; ++q)  // byte j is row j's code (t + uz)
      for (std::size_t j = 0; j < 4; ++j)
        REQUIRE(((a[q] >> (8 * j)) & 0xFFu) == (q * 7 + j * 3) % 16);
    // One value off the grid anywhere (between codes, beyond the last code, NaN) is flagged by
    // both forms.
    for (std::size_t q = 0; q < n; ++q)
      for (const float bad :
           {rows[q % 4][q] + 0.3f * s, 11.0f * s, std::numeric_limits<float>::quiet_NaN()}) {
        auto r = rows;
        r[q % 4][q] = bad;
        REQUIRE(run(true, r, a));
        REQUIRE(run(false, r, b));
      }
  }
}
