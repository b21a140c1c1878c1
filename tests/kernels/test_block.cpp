// What the per-block kernels promise beyond twin equality: each block is quantized exactly as a
// tensor of its own (forward, mask, backward, quantize, error); one block per row (block_size >=
// the extent) gives per-channel numbers bit for bit; bad parameters are errors naming them.
#include "support/expect_error.hpp"

#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <random>
#include <vector>

namespace aq = adaquant;
using adaquant_test::expect_error;

namespace {
std::vector<float> gaussian(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
  return true;
}

aq::block_params some_blocks(std::size_t blocks, std::size_t block_size) {
  aq::block_params p;
  p.axis = 1;
  p.block_size = block_size;
  p.qmin = -8;
  p.qmax = 7;
  for (std::size_t j = 0; j < blocks; ++j) {
    p.scale.push_back(0.08f + 0.02f * static_cast<float>(j % 5));
    p.zero_point.push_back(static_cast<std::int32_t>(j % 3) - 1);
  }
  return p;
}
}  // namespace

TEST_CASE("per block: every block is quantized as a tensor of its own, the last one partial") {
  const std::size_t rows = 3, in = 70, block = 32, nb = 3;  // blocks of 32, 32 and 6
  const auto x = gaussian(rows * in, 1);
  const auto gy = gaussian(rows * in, 2);
  const aq::block_params p = some_blocks(rows * nb, block);
  std::vector<float> y(rows * in), gx(rows * in), gs(rows * nb), gz(rows * nb);
  std::vector<std::uint8_t> mask(rows * in);
  const aq::tensor_view<const float> xv(x.data(), {rows, in});
  aq::fake_quant_per_block(xv, aq::tensor_view<float>(y.data(), {rows, in}), p, mask);
  aq::fake_quant_backward_per_block(xv, aq::tensor_view<const float>(y.data(), {rows, in}), mask,
                                    aq::tensor_view<const float>(gy.data(), {rows, in}), p, gx, gs,
                                    gz);
  std::vector<std::int8_t> q(rows * in);
  aq::quantize_per_block(xv, aq::tensor_view<std::int8_t>(q.data(), {rows, in}), p);
  double err = 0.0;
  std::size_t clamped = 0;
  for (std::size_t r = 0; r < rows; ++r)
    for (std::size_t j = 0; j < nb; ++j) {
      const std::size_t first = r * in + j * block, len = std::min(block, in - j * block);
      const aq::quant_params pj = p.block(r * nb + j);
      const std::span<const float> xs(x.data() + first, len);
      std::vector<float> yj(len), gxj(len);
      std::vector<std::uint8_t> mj(len);
      std::vector<std::int8_t> qj(len);
      aq::fake_quant_per_tensor(xs, yj, pj, mj);
      const aq::quantizer_grad g = aq::fake_quant_backward_per_tensor(
          xs, std::span<const float>(yj), mj, std::span<const float>(gy.data() + first, len), pj,
          gxj);
      aq::quantize_per_tensor(xs, qj, pj);
      INFO("row " << r << " block " << j);
      CHECK(same_bits(yj, std::vector<float>(y.begin() + first, y.begin() + first + len)));
      CHECK(same_bits(gxj, std::vector<float>(gx.begin() + first, gx.begin() + first + len)));
      CHECK(mj == std::vector<std::uint8_t>(mask.begin() + first, mask.begin() + first + len));
      CHECK(qj == std::vector<std::int8_t>(q.begin() + first, q.begin() + first + len));
      CHECK(g.scale == gs[r * nb + j]);
      CHECK(g.zero_point == gz[r * nb + j]);
      err += aq::quant_error(xs, pj) * static_cast<double>(len);
      for (auto m : mj) clamped += m == 0;
    }
  CHECK(aq::quant_error(xv, p) == Approx(err / static_cast<double>(rows * in)).epsilon(1e-12));
  CHECK(clamped > 0);  // the 4-bit grid clips some of the Gaussian tails: the mask matters
}

TEST_CASE("per block with block_size >= the extent equals per channel bit for bit") {
  const auto x = gaussian(5 * 200, 3);
  const auto gy = gaussian(5 * 200, 4);
  for (std::size_t in : {std::size_t{37}, std::size_t{64}, std::size_t{200}})
    for (std::size_t block : {in, in + 5}) {
      const std::size_t rows = 5, n = rows * in;
      const aq::block_params bp = some_blocks(rows, block);
      const aq::channel_params cp{bp.scale, bp.zero_point, bp.qmin, bp.qmax, 0};
      const aq::tensor_view<const float> xv(x.data(), {rows, in});
      std::vector<float> yb(n), yc(n), gxb(n), gxc(n), gsb(rows), gzb(rows), gsc(rows), gzc(rows);
      std::vector<std::uint8_t> mb(n), mc(n);
      aq::fake_quant_per_block(xv, aq::tensor_view<float>(yb.data(), {rows, in}), bp, mb);
      aq::fake_quant_per_channel(xv, aq::tensor_view<float>(yc.data(), {rows, in}), cp, mc);
      aq::fake_quant_backward_per_block(xv, aq::tensor_view<const float>(yb.data(), {rows, in}), mb,
                                        aq::tensor_view<const float>(gy.data(), {rows, in}), bp,
                                        gxb, gsb, gzb);
      aq::fake_quant_backward_per_channel(xv, aq::tensor_view<const float>(yc.data(), {rows, in}),
                                          mc, aq::tensor_view<const float>(gy.data(), {rows, in}),
                                          cp, gxc, gsc, gzc);
      INFO("in " << in << " block " << block);
      CHECK(same_bits(yb, yc));
      CHECK(mb == mc);
      CHECK(same_bits(gxb, gxc));
      CHECK(same_bits(gsb, gsc));
      CHECK(same_bits(gzb, gzc));
    }
  // Blocks along the outer axis of [extent, channels]: one block of rows = per channel along 1.
  const std::size_t extent = 6, channels = 7;
  aq::block_params bp = some_blocks(channels, 8);
  bp.axis = 0;
  const aq::channel_params cp{bp.scale, bp.zero_point, bp.qmin, bp.qmax, 1};
  const aq::tensor_view<const float> xv(x.data(), {extent, channels});
  std::vector<float> yb(extent * channels), yc(extent * channels);
  aq::fake_quant_per_block(xv, aq::tensor_view<float>(yb.data(), {extent, channels}), bp);
  aq::fake_quant_per_channel(xv, aq::tensor_view<float>(yc.data(), {extent, channels}), cp);
  CHECK(same_bits(yb, yc));
}

TEST_CASE("per block: bad parameters are errors that name them") {
  std::vector<float> x(2 * 10, 0.5f), y(2 * 10);
  const aq::tensor_view<const float> xv(x.data(), {2, 10});
  const aq::tensor_view<float> yv(y.data(), {2, 10});
  aq::block_params p = some_blocks(2 * 3, 4);  // blocks of 4, 4, 2 per row
  CHECK_NOTHROW(aq::fake_quant_per_block(xv, yv, p));
  expect_error([] { (void)aq::granularity::per_block(1, 0); }, aq::errc::invalid_argument,
               "granularity::per_block: block_size: block size must be >= 1, got 0");
  aq::block_params bad = p;
  bad.block_size = 0;
  expect_error([&] { aq::fake_quant_per_block(xv, yv, bad); }, aq::errc::invalid_argument,
               "fake_quant_per_block: params.block_size");
  bad = p;
  bad.block_size = 5;  // 2 blocks per row: 4 parameters needed
  expect_error([&] { aq::fake_quant_per_block(xv, yv, bad); }, aq::errc::shape_mismatch,
               "fake_quant_per_block: params: 6 block parameters for blocks of 5 along axis 1 of "
               "shape [2, 10], which has 4 blocks");
  bad = p;
  bad.axis = 2;
  expect_error([&] { aq::fake_quant_per_block(xv, yv, bad); }, aq::errc::invalid_argument,
               "fake_quant_per_block: params.axis");
  bad = p;
  bad.scale[4] = -1.0f;
  expect_error([&] { aq::fake_quant_per_block(xv, yv, bad); }, aq::errc::invalid_argument,
               "scale must be > 0");
  bad = p;
  bad.zero_point.pop_back();
  expect_error([&] { aq::fake_quant_per_block(xv, yv, bad); }, aq::errc::shape_mismatch,
               "zero_point has 5 entries");
  std::vector<float> gs(5), gz(6), gy(20);
  std::vector<std::uint8_t> mask(20);
  expect_error(
      [&] {
        aq::fake_quant_backward_per_block(xv, aq::tensor_view<const float>(y.data(), {2, 10}), mask,
                                          aq::tensor_view<const float>(gy.data(), {2, 10}), p, {},
                                          gs, gz);
      },
      aq::errc::shape_mismatch, "fake_quant_backward_per_block: grad_scale");
  bad = p;
  bad.block_size = 3;
  expect_error([&] { (void)aq::quant_error(xv, bad); }, aq::errc::shape_mismatch,
               "quant_error: q: 6 block parameters");
  std::vector<std::int8_t> q(20);
  expect_error(
      [&] {
        aq::quantize_per_block(xv, aq::tensor_view<std::int8_t>(q.data(), {2, 10}), bad);
      },
      aq::errc::shape_mismatch, "quantize_per_block: params");
}
