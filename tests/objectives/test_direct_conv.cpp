// The forward convolution (objectives/forward.hpp, direct path of objectives/direct_conv.hpp)
// equals its defining scalar expression bit for bit: every output is the bias plus the taps of
// the zero-padded input in (input channel, row, column) order, each product fused (mul_add).
// Geometries cover stride, dilation, asymmetric kernels, groups, unpadded 1x1, channel counts
// that leave a partial vector and every register-block split, and position counts that leave a
// partial position block. An output depends only on its own sample: a batch equals its samples
// computed one at a time. Groups of fewer than 8 channels (depthwise) keep im2col + GEMM. The
// adjoint (dL/dX of a stride-1 convolution, direct_conv2d_adjoint) against the scatter of every
// tap's dy * w. The integer forward (objectives/integer_conv.hpp) against its documented
// result on codes, on 1-3 threads, and its refusals (values off the grids, grouped layers).
#include "support/adaquant_test_util.hpp"

#include <adaquant/core/numeric.hpp>
#include <adaquant/objectives/forward.hpp>
#include <adaquant/objectives/integer_conv.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

using adaquant::conv2d_geometry;

namespace {

// The input pixel (row * in_w + column) that tap (i, j) of output (oy, ox) reads, or -1 in the
// padding.
long tap_pixel(const conv2d_geometry& g, std::size_t oy, std::size_t ox, std::size_t i,
               std::size_t j) {
  const long iy =
      static_cast<long>(oy * g.stride_h + i * g.dilation_h) - static_cast<long>(g.pad_h);
  const long ix =
      static_cast<long>(ox * g.stride_w + j * g.dilation_w) - static_cast<long>(g.pad_w);
  const bool in =
      iy >= 0 && ix >= 0 && iy < static_cast<long>(g.in_h) && ix < static_cast<long>(g.in_w);
  return in ? iy * static_cast<long>(g.in_w) + ix : -1;
}

// The defining expression, one output at a time over the padded input.
std::vector<float> reference_conv(const conv2d_geometry& g, std::size_t batch,
                                  const std::vector<float>& x, const std::vector<float>& w,
                                  const std::vector<float>& b) {
  const std::size_t cg = g.in_channels / g.groups, og = g.out_channels / g.groups;
  const std::size_t oh = g.out_h(), ow = g.out_w();
  std::vector<float> y(batch * g.out_channels * oh * ow);
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t o = 0; o < g.out_channels; ++o)
      for (std::size_t oy = 0; oy < oh; ++oy)
        for (std::size_t ox = 0; ox < ow; ++ox) {
          float acc = b.empty() ? 0.0f : b[o];
          for (std::size_t c = 0; c < cg; ++c)
            for (std::size_t i = 0; i < g.kernel_h; ++i)
              for (std::size_t j = 0; j < g.kernel_w; ++j) {
                const long px = tap_pixel(g, oy, ox, i, j);
                const std::size_t ci = (o / og) * cg + c;
                const float xv = px >= 0 ? x[(n * g.in_channels + ci) * g.in_h * g.in_w +
                                             static_cast<std::size_t>(px)]
                                         : 0.0f;
                acc = adaquant::detail::mul_add(
                    xv, w[((o * cg + c) * g.kernel_h + i) * g.kernel_w + j], acc);
              }
          y[((n * g.out_channels + o) * oh + oy) * ow + ox] = acc;
        }
  return y;
}

conv2d_geometry geom(std::size_t cin, std::size_t cout, std::size_t h, std::size_t w,
                     std::size_t kh, std::size_t kw, std::size_t stride, std::size_t pad,
                     std::size_t dil, std::size_t groups) {
  conv2d_geometry c;
  c.in_channels = cin;
  c.out_channels = cout;
  c.in_h = h;
  c.in_w = w;
  c.kernel_h = kh;
  c.kernel_w = kw;
  c.stride_h = c.stride_w = stride;
  c.pad_h = pad;
  c.pad_w = pad ? pad + 1 : 0;
  c.dilation_h = c.dilation_w = dil;
  c.groups = groups;
  return c;
}

std::string describe(const conv2d_geometry& c) {
  return std::to_string(c.in_channels) + "->" + std::to_string(c.out_channels) + " " +
         std::to_string(c.in_h) + "x" + std::to_string(c.in_w) + " k" + std::to_string(c.kernel_h) +
         "x" + std::to_string(c.kernel_w) + " s" + std::to_string(c.stride_h) + " p" +
         std::to_string(c.pad_h) + " d" + std::to_string(c.dilation_h) + " g" +
         std::to_string(c.groups);
}

}  // namespace

TEST_CASE("conv2d_forward's direct path equals the scalar expression bit for bit",
          "[objective][forward][direct]") {
  const std::vector<conv2d_geometry> shapes = {
      geom(3, 8, 5, 6, 3, 3, 1, 1, 1, 1),     // one vector, 30 positions
      geom(2, 8, 13, 12, 3, 3, 1, 1, 1, 1),   // 182 positions: two tiles of positions
      geom(5, 9, 7, 5, 3, 2, 2, 1, 1, 1),     // partial second vector, stride 2
      geom(4, 17, 6, 6, 3, 3, 1, 2, 2, 1),    // 3 vectors, dilation 2
      geom(6, 24, 4, 5, 1, 1, 1, 0, 1, 1),    // unpadded 1x1, read in place
      geom(4, 40, 9, 9, 3, 3, 2, 1, 1, 2),    // groups of 20: one block of 3 vectors, partial
      geom(8, 64, 3, 3, 3, 3, 1, 1, 1, 1),    // 8 vectors: blocks of 2
      geom(3, 40, 4, 4, 3, 3, 1, 1, 1, 1),    // 5 vectors: a block of 3, then 2
      geom(16, 56, 5, 5, 2, 3, 1, 0, 1, 2)};  // groups of 28: 2 blocks of 2, the last partial
  for (const conv2d_geometry& c : shapes) {
    INFO(describe(c));
    REQUIRE(adaquant::detail::direct_conv_applies(c));
    const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
    for (const bool bias : {true, false}) {
      const std::size_t batch = 3;
      const std::vector<float> x = adaquant_test::randn(batch * g.input_per_sample(), 1.0f, 7);
      const std::vector<float> w = adaquant_test::randn(g.weight_size(), 0.2f, 8);
      const std::vector<float> b =
          bias ? adaquant_test::randn(c.out_channels, 0.5f, 9) : std::vector<float>{};
      std::vector<float> y(batch * g.output_per_sample(), -7.0f), ws;
      adaquant::conv2d_forward(c, x, w, b, y, adaquant::output_activation::none, &ws);
      const std::vector<float> want = reference_conv(c, batch, x, w, b);
      std::size_t differ = 0;
      for (std::size_t i = 0; i < y.size(); ++i) differ += y[i] != want[i];
      CHECK(differ == 0);
      // Sample by sample, with the scratch buffer reused: the same bits.
      for (std::size_t n = 0; n < batch; ++n) {
        std::vector<float> one(g.output_per_sample());
        const std::size_t in = g.input_per_sample(), out = g.output_per_sample();
        adaquant::conv2d_forward(c, std::span<const float>(x).subspan(n * in, in), w, b, one,
                                 adaquant::output_activation::none, &ws);
        CHECK(std::memcmp(one.data(), y.data() + n * out, out * sizeof(float)) == 0);
      }
    }
  }
}

TEST_CASE("conv2d_forward keeps im2col + GEMM for groups of fewer than 8 channels",
          "[objective][forward][direct]") {
  const conv2d_geometry depthwise = geom(6, 6, 5, 5, 3, 3, 1, 1, 1, 6);
  const conv2d_geometry narrow = geom(3, 7, 5, 5, 3, 3, 1, 1, 1, 1);
  CHECK_FALSE(adaquant::detail::direct_conv_applies(depthwise));
  CHECK_FALSE(adaquant::detail::direct_conv_applies(narrow));
  for (const conv2d_geometry& c : {depthwise, narrow}) {
    INFO(describe(c));
    const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
    const std::vector<float> x = adaquant_test::randn(2 * g.input_per_sample(), 1.0f, 3);
    const std::vector<float> w = adaquant_test::randn(g.weight_size(), 0.2f, 4);
    const std::vector<float> b = adaquant_test::randn(c.out_channels, 0.5f, 5);
    std::vector<float> y(2 * g.output_per_sample());
    adaquant::conv2d_forward(c, x, w, b, y);
    const std::vector<float> want = reference_conv(c, 2, x, w, b);
    double max_err = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i)
      max_err = std::max(max_err, static_cast<double>(std::abs(y[i] - want[i])));
    CHECK(max_err < 1e-5);
  }
}

TEST_CASE("direct_conv2d_adjoint is the convolution's adjoint (dL/dX) at stride 1",
          "[objective][backward][direct]") {
  const std::vector<conv2d_geometry> shapes = {
      geom(8, 9, 5, 6, 3, 3, 1, 1, 1, 1),    // padding 1 (rows) and 2 (columns)
      geom(16, 12, 6, 7, 3, 2, 1, 1, 2, 2),  // groups of 8 inputs, dilation 2
      geom(9, 5, 4, 5, 1, 1, 1, 0, 1, 1),    // 1x1: 5 outputs, 9 inputs
      geom(8, 8, 6, 6, 3, 3, 1, 0, 1, 1)};   // no padding: the adjoint pads by 2
  for (const conv2d_geometry& c : shapes) {
    INFO(describe(c));
    REQUIRE(adaquant::detail::direct_adjoint_applies(c));
    const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
    const std::size_t batch = 2, cg = c.in_channels / c.groups, og = c.out_channels / c.groups;
    const std::size_t oh = c.out_h(), ow = c.out_w();
    const std::vector<float> dy = adaquant_test::randn(batch * g.output_per_sample(), 1.0f, 5);
    const std::vector<float> w = adaquant_test::randn(g.weight_size(), 0.2f, 6);
    std::vector<float> dx(batch * g.input_per_sample(), -7.0f), wt, ws;
    adaquant::detail::direct_conv2d_adjoint(c, batch, dy.data(), w.data(), dx.data(), wt, ws);
    std::vector<double> want(dx.size(), 0.0);
    for (std::size_t n = 0; n < batch; ++n)
      for (std::size_t o = 0; o < c.out_channels; ++o)
        for (std::size_t oy = 0; oy < oh; ++oy)
          for (std::size_t ox = 0; ox < ow; ++ox)
            for (std::size_t ci = 0; ci < cg; ++ci)
              for (std::size_t i = 0; i < c.kernel_h; ++i)
                for (std::size_t j = 0; j < c.kernel_w; ++j) {
                  const long iy =
                      static_cast<long>(oy + i * c.dilation_h) - static_cast<long>(c.pad_h);
                  const long ix =
                      static_cast<long>(ox + j * c.dilation_w) - static_cast<long>(c.pad_w);
                  if (iy < 0 || ix < 0 || iy >= static_cast<long>(c.in_h) ||
                      ix >= static_cast<long>(c.in_w))
                    continue;
                  const std::size_t xi = (o / og) * cg + ci;
                  want[((n * c.in_channels + xi) * c.in_h + static_cast<std::size_t>(iy)) * c.in_w +
                       static_cast<std::size_t>(ix)] +=
                      static_cast<double>(dy[((n * c.out_channels + o) * oh + oy) * ow + ox]) *
                      w[((o * cg + ci) * c.kernel_h + i) * c.kernel_w + j];
                }
    double max_err = 0.0;
    for (std::size_t i = 0; i < dx.size(); ++i)
      max_err = std::max(max_err, std::abs(dx[i] - want[i]));
    CHECK(max_err < 1e-5);
  }
  // Where it does not apply: stride 2, padding beyond the dilated kernel, narrow input groups.
  CHECK_FALSE(adaquant::detail::direct_adjoint_applies(geom(8, 8, 6, 6, 3, 3, 2, 1, 1, 1)));
  CHECK_FALSE(adaquant::detail::direct_adjoint_applies(geom(8, 8, 6, 6, 1, 1, 1, 1, 1, 1)));
  CHECK_FALSE(adaquant::detail::direct_adjoint_applies(geom(4, 8, 6, 6, 3, 3, 1, 1, 1, 1)));
}

TEST_CASE("direct_conv2d_weight_grad is the weight gradient sum over samples and positions",
          "[objective][backward][direct]") {
  const std::vector<conv2d_geometry> shapes = {
      geom(3, 9, 5, 6, 3, 3, 1, 1, 1, 1),   // padding 1 (rows) and 2 (columns)
      geom(4, 16, 7, 6, 3, 2, 2, 1, 1, 2),  // stride 2, groups of 8 outputs
      geom(5, 24, 6, 6, 3, 3, 1, 2, 2, 1),  // dilation 2, 3 vectors
      geom(6, 8, 4, 5, 1, 1, 2, 0, 1, 1)};  // 1x1 stride 2
  for (const conv2d_geometry& c : shapes) {
    INFO(describe(c));
    REQUIRE(adaquant::detail::direct_weight_grad_applies(c, 3));
    const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
    const std::size_t batch = 3, cg = c.in_channels / c.groups, og = c.out_channels / c.groups;
    const std::size_t oh = c.out_h(), ow = c.out_w(), k = g.weights_per_channel();
    const std::vector<float> x = adaquant_test::randn(batch * g.input_per_sample(), 1.0f, 15);
    const std::vector<float> dy = adaquant_test::randn(batch * g.output_per_sample(), 1.0f, 16);
    std::vector<float> dw(g.weight_size(), -7.0f), ws;
    adaquant::detail::direct_conv2d_weight_grad(c, batch, x.data(), dy.data(), dw.data(), ws);
    double max_err = 0.0;
    for (std::size_t o = 0; o < c.out_channels; ++o)
      for (std::size_t ci = 0; ci < cg; ++ci)
        for (std::size_t i = 0; i < c.kernel_h; ++i)
          for (std::size_t j = 0; j < c.kernel_w; ++j) {
            double want = 0.0;
            for (std::size_t n = 0; n < batch; ++n)
              for (std::size_t oy = 0; oy < oh; ++oy)
                for (std::size_t ox = 0; ox < ow; ++ox) {
                  const long iy = static_cast<long>(oy * c.stride_h + i * c.dilation_h) -
                                  static_cast<long>(c.pad_h);
                  const long ix = static_cast<long>(ox * c.stride_w + j * c.dilation_w) -
                                  static_cast<long>(c.pad_w);
                  if (iy < 0 || ix < 0 || iy >= static_cast<long>(c.in_h) ||
                      ix >= static_cast<long>(c.in_w))
                    continue;
                  const std::size_t xi = (o / og) * cg + ci;
                  want += static_cast<double>(
                              x[((n * c.in_channels + xi) * c.in_h + static_cast<std::size_t>(iy)) *
                                    c.in_w +
                                static_cast<std::size_t>(ix)]) *
                          dy[((n * c.out_channels + o) * oh + oy) * ow + ox];
                }
            const float got = dw[o * k + (ci * c.kernel_h + i) * c.kernel_w + j];
            max_err = std::max(max_err, std::abs(got - want));
          }
    CHECK(max_err < 1e-5);
  }
}

TEST_CASE("The direct products give the same bits on 1, 2 and 3 threads",
          "[objective][forward][backward][direct][threads]") {
  // Several tiles of positions (and of taps for dW), several channel blocks, padded and in place;
  // threads 1 against the scalar expression, 2 and 3 against threads 1.
  const std::vector<conv2d_geometry> shapes = {
      geom(16, 40, 13, 12, 3, 3, 1, 1, 1, 1),  // 156 positions, 144 taps, blocks of 3 and 2
      geom(16, 32, 6, 7, 1, 1, 1, 0, 1, 2),    // groups of 16, unpadded 1x1 read in place
      geom(64, 128, 3, 3, 3, 3, 1, 1, 1, 1)};  // 288 KiB of weights: channel blocks outermost
  const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  for (const conv2d_geometry& c : shapes) {
    INFO(describe(c));
    REQUIRE(adaquant::detail::direct_adjoint_applies(c));
    const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
    const std::size_t batch = 2;  // each thread count starts threads: slow under sanitizers
    const std::vector<float> x = adaquant_test::randn(batch * g.input_per_sample(), 1.0f, 21);
    const std::vector<float> w = adaquant_test::randn(g.weight_size(), 0.2f, 22);
    const std::vector<float> b = adaquant_test::randn(c.out_channels, 0.5f, 23);
    const std::vector<float> dy = adaquant_test::randn(batch * g.output_per_sample(), 1.0f, 24);
    std::vector<float> y1, dx1, dw1;
    for (const std::size_t t : {1, 2, 3}) {
      INFO("threads " << t);
      std::vector<float> y(batch * g.output_per_sample(), -7.0f), ws, wt;
      std::vector<float> dx(batch * g.input_per_sample(), -7.0f), dw(g.weight_size(), -7.0f);
      adaquant::detail::direct_conv2d(c, batch, x.data(), w.data(), b.data(), y.data(), ws, t);
      adaquant::detail::direct_conv2d_adjoint(c, batch, dy.data(), w.data(), dx.data(), wt, ws, t);
      adaquant::detail::direct_conv2d_weight_grad(c, batch, x.data(), dy.data(), dw.data(), ws, t);
      if (t == 1) {
        CHECK(same(y, reference_conv(c, batch, x, w, b)));
        y1 = y;
        dx1 = dx;
        dw1 = dw;
      } else {
        CHECK(same(y, y1));
        CHECK(same(dx, dx1));
        CHECK(same(dw, dw1));
      }
    }
  }
}

TEST_CASE("Inputs padded once by padded_batch give the products' bits, across shape changes",
          "[objective][forward][backward][direct][padded]") {
  // A training step pads its quantized inputs once for the forward and dL/dW and dL/dY once for
  // the adjoint (padded_batch keeps the zero borders between fills). The results equal the
  // products that pad for themselves; one padded_batch serves shapes in turn (a smaller batch, a
  // different plane, back again), so stale interiors on a new shape's borders would show.
  const std::vector<conv2d_geometry> shapes = {
      geom(16, 40, 13, 12, 3, 3, 1, 1, 1, 1),  // pads 1 x 2: 156 positions, blocks of 3 and 2
      geom(16, 32, 6, 7, 3, 3, 1, 1, 1, 2),    // two groups of 16: a sample spans both groups
      geom(16, 40, 13, 12, 3, 3, 1, 1, 1, 1),  // the first shape again, after the second
      geom(24, 16, 9, 5, 5, 5, 1, 2, 1, 1)};   // pads 2 x 3, a 5x5 kernel
  const auto same = [](const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
  };
  adaquant::detail::padded_batch xpad, dypad;
  std::size_t batch = 3;
  for (const conv2d_geometry& c : shapes) {
    INFO(describe(c) << " batch " << batch);
    REQUIRE(adaquant::detail::direct_adjoint_applies(c));
    REQUIRE(adaquant::detail::direct_weight_grad_applies(c, batch, true));
    const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
    const conv2d_geometry a = adaquant::detail::adjoint_geometry(c);
    const std::vector<float> x = adaquant_test::randn(batch * g.input_per_sample(), 1.0f, 31);
    const std::vector<float> w = adaquant_test::randn(g.weight_size(), 0.2f, 32);
    const std::vector<float> b = adaquant_test::randn(c.out_channels, 0.5f, 33);
    const std::vector<float> dy = adaquant_test::randn(batch * g.output_per_sample(), 1.0f, 34);
    for (const std::size_t t : {1, 2}) {
      INFO("threads " << t);
      std::vector<float> ws, wt, y(batch * g.output_per_sample()), y_p(y.size());
      std::vector<float> dx(batch * g.input_per_sample()), dx_p(dx.size());
      std::vector<float> dw(g.weight_size()), dw_p(dw.size());
      adaquant::detail::direct_conv2d(c, batch, x.data(), w.data(), b.data(), y.data(), ws, t);
      adaquant::detail::direct_conv2d_adjoint(c, batch, dy.data(), w.data(), dx.data(), wt, ws, t);
      adaquant::detail::direct_conv2d_weight_grad(c, batch, x.data(), dy.data(), dw.data(), ws, t);
      const float* xp = xpad.fill(x.data(), batch, c.in_channels, c.in_h, c.in_w, c.pad_h, c.pad_w);
      const float* dyp =
          dypad.fill(dy.data(), batch, a.in_channels, a.in_h, a.in_w, a.pad_h, a.pad_w);
      adaquant::detail::direct_conv2d(c, batch, xp, w.data(), b.data(), y_p.data(), ws, t, true);
      adaquant::detail::direct_conv2d_adjoint(c, batch, dyp, w.data(), dx_p.data(), wt, ws, t,
                                              true);
      adaquant::detail::direct_conv2d_weight_grad(c, batch, xp, dy.data(), dw_p.data(), ws, t,
                                                  true);
      CHECK(same(y_p, y));
      CHECK(same(y, reference_conv(c, batch, x, w, b)));
      CHECK(same(dx_p, dx));
      CHECK(same(dw_p, dw));
    }
    batch = batch == 3 ? 2 : 3;
  }
  // Nothing to pad: the input is already in the padded layout and comes back as it is.
  const std::vector<float> x = adaquant_test::randn(2 * 3 * 4 * 5, 1.0f, 35);
  CHECK(xpad.fill(x.data(), 2, 3, 4, 5, 0, 0) == x.data());
}

namespace {

// Codes and grids of a layer for integer_conv: inputs u in [0, levels) with xq = (u - uz) s_x,
// weights c in [lo, hi] with wq = c s_w[o].
struct coded_layer {
  std::vector<std::int32_t> u, code;
  std::vector<float> xq, wq, sw, b;
  float sx = 0.037f;
  std::int32_t uz = 0, levels = 0;
};

coded_layer make_coded(const conv2d_geometry& c, std::size_t batch, std::int32_t levels,
                       std::int32_t uz, std::int32_t lo, std::int32_t hi, std::uint32_t seed) {
  const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
  coded_layer L;
  L.levels = levels;
  L.uz = uz;
  std::mt19937 gen(seed);
  std::uniform_int_distribution<std::int32_t> du(0, levels - 1), dc(lo, hi);
  for (std::size_t i = 0; i < batch * g.input_per_sample(); ++i) {
    L.u.push_back(du(gen));
    L.xq.push_back(static_cast<float>(L.u.back() - uz) * L.sx);
  }
  L.sw = adaquant_test::randn(c.out_channels, 0.01f, seed + 1, 0.03f);
  for (float& v : L.sw) v = std::abs(v) + 0.005f;
  const std::size_t k = g.weights_per_channel();
  for (std::size_t i = 0; i < g.weight_size(); ++i) {
    L.code.push_back(dc(gen));
    L.wq.push_back(static_cast<float>(L.code.back()) * L.sw[i / k]);
  }
  L.b = adaquant_test::randn(c.out_channels, 0.5f, seed + 2);
  return L;
}

// The documented result: A = sum over taps of c (u - uz) (padding: 0) as an exact integer, then
// mul_add(float(A), s_w s_x, b).
std::vector<float> coded_reference(const conv2d_geometry& c, std::size_t batch,
                                   const coded_layer& L) {
  const std::size_t oh = c.out_h(), ow = c.out_w(), ic = c.in_channels;
  std::vector<float> y(batch * c.out_channels * oh * ow);
  for (std::size_t n = 0; n < batch; ++n)
    for (std::size_t o = 0; o < c.out_channels; ++o)
      for (std::size_t oy = 0; oy < oh; ++oy)
        for (std::size_t ox = 0; ox < ow; ++ox) {
          std::int64_t a = 0;
          for (std::size_t ch = 0; ch < ic; ++ch)
            for (std::size_t i = 0; i < c.kernel_h; ++i)
              for (std::size_t j = 0; j < c.kernel_w; ++j) {
                const long px = tap_pixel(c, oy, ox, i, j);
                if (px < 0) continue;
                const std::int32_t u =
                    L.u[(n * ic + ch) * c.in_h * c.in_w + static_cast<std::size_t>(px)];
                a += static_cast<std::int64_t>(
                         L.code[((o * ic + ch) * c.kernel_h + i) * c.kernel_w + j]) *
                     (u - L.uz);
              }
          y[((n * c.out_channels + o) * oh + oy) * ow + ox] =
              adaquant::detail::mul_add(static_cast<float>(a), L.sw[o] * L.sx, L.b[o]);
        }
  return y;
}

}  // namespace

TEST_CASE("integer_conv: the forward on codes is mul_add(float(A), s_w s_x, b), A exact",
          "[objective][forward][direct][integer]") {
  // Channel counts that leave a partial block of 4 inputs or 16 outputs, stride, dilation,
  // asymmetric padding, 1x1 in place, two tiles of positions; 4-bit and 8-bit grids (the 8-bit
  // extremes would saturate a 16-bit intermediate).
  const std::vector<conv2d_geometry> shapes = {
      geom(3, 8, 5, 6, 3, 3, 1, 1, 1, 1),   geom(5, 9, 7, 5, 3, 2, 2, 1, 1, 1),
      geom(4, 17, 6, 6, 3, 3, 1, 2, 2, 1),  geom(6, 24, 4, 5, 1, 1, 1, 0, 1, 1),
      geom(13, 33, 5, 5, 3, 3, 1, 1, 1, 1), geom(16, 40, 13, 12, 3, 3, 1, 1, 1, 1)};
  struct grid {
    std::int32_t levels, uz, lo, hi;
  };
  for (const conv2d_geometry& c : shapes)
    for (const grid gr : {grid{16, 3, -8, 7}, grid{256, 0, -128, 127}, grid{256, 255, -128, 127},
                          grid{2, 1, -1, 1}}) {
      INFO(describe(c) << " levels " << gr.levels << " zero code " << gr.uz);
      const std::size_t batch = 3;
      const coded_layer L = make_coded(c, batch, gr.levels, gr.uz, gr.lo, gr.hi, 31);
      const std::vector<float> want = coded_reference(c, batch, L);
      const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
      std::vector<float> y1;
      for (const std::size_t t : {1, 2, 3}) {
        std::vector<float> y(batch * g.output_per_sample(), -7.0f);
        adaquant::detail::integer_conv ic(true);
        REQUIRE(ic.run(c, batch, L.xq.data(), L.sx, L.uz, L.levels, L.wq.data(), L.sw.data(),
                       L.b.data(), y.data(), t));
        std::size_t differ = 0;
        for (std::size_t i = 0; i < y.size(); ++i) differ += std::memcmp(&y[i], &want[i], 4) != 0;
        CHECK(differ == 0);
      }
      // Where the SIMD body exists the library's own choice runs it: the same bits.
      if (adaquant::detail::gather_product_u8_native) {
        std::vector<float> y(batch * g.output_per_sample(), -7.0f);
        adaquant::detail::integer_conv ic;
        REQUIRE(ic.run(c, batch, L.xq.data(), L.sx, L.uz, L.levels, L.wq.data(), L.sw.data(),
                       L.b.data(), y.data(), 1));
        CHECK(std::memcmp(y.data(), want.data(), y.size() * sizeof(float)) == 0);
      }
    }
}

TEST_CASE("integer_conv declines values off their grids and layers it does not cover",
          "[objective][forward][direct][integer]") {
  const conv2d_geometry c = geom(6, 16, 5, 5, 3, 3, 1, 1, 1, 1);
  const adaquant::layer_geometry g = adaquant::layer_geometry::of(c);
  const coded_layer L = make_coded(c, 2, 16, 8, -8, 7, 41);
  const auto declines = [&](const coded_layer& M, const conv2d_geometry& cg) {
    std::vector<float> y(2 * adaquant::layer_geometry::of(cg).output_per_sample(), -7.0f);
    adaquant::detail::integer_conv ic(true);
    const bool ran = ic.run(cg, 2, M.xq.data(), M.sx, M.uz, M.levels, M.wq.data(), M.sw.data(),
                            M.b.data(), y.data(), 1);
    const bool untouched = std::all_of(y.begin(), y.end(), [](float v) { return v == -7.0f; });
    return !ran && untouched;
  };
  {
    coded_layer M = L;  // a QDrop-like float input element
    M.xq[17] = std::nextafter(M.xq[17], 10.0f);
    CHECK(declines(M, c));
  }
  {
    coded_layer M = L;  // a relaxed (AdaRound) weight
    M.wq[5] += 0.3f * M.sw[0];
    CHECK(declines(M, c));
  }
  {
    coded_layer M = L;  // a code beyond 8 signed bits
    M.wq[3] = 200.0f * M.sw[0];
    CHECK(declines(M, c));
  }
  {
    coded_layer M = L;  // an input beyond the grid's last code
    M.xq[2] = static_cast<float>(M.levels - M.uz) * M.sx;
    CHECK(declines(M, c));
  }
  {
    coded_layer M = L;
    M.xq[0] = std::numeric_limits<float>::quiet_NaN();
    CHECK(declines(M, c));
  }
  {
    coded_layer M = L;  // more than 256 input codes
    M.levels = 257;
    CHECK(declines(M, c));
  }
  CHECK(declines(L, geom(6, 16, 5, 5, 3, 3, 1, 1, 1, 2)));  // grouped
  CHECK(declines(L, geom(6, 4, 5, 5, 3, 3, 1, 1, 1, 1)));   // fewer than 8 output channels
  // The unchanged layer runs.
  std::vector<float> y(2 * g.output_per_sample(), -7.0f);
  adaquant::detail::integer_conv ic(true);
  CHECK(ic.run(c, 2, L.xq.data(), L.sx, L.uz, L.levels, L.wq.data(), L.sw.data(), L.b.data(),
               y.data(), 1));
}
