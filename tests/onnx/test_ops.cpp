// Every supported op against values computed by hand.
#include "onnx_test_util.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <random>

using namespace onnx_test;
using Catch::Matchers::WithinAbs;

namespace {
void check(const aq::tensor& y, std::vector<std::int64_t> shape, std::vector<float> want,
           float tol = 1e-6f) {
  REQUIRE(y.shape == shape);
  REQUIRE(y.f.size() == want.size());
  for (std::size_t k = 0; k < want.size(); ++k) {
    INFO("element " << k);
    CHECK_THAT(y.f[k], WithinAbs(want[k], tol));
  }
}
void check_i(const aq::tensor& y, std::vector<std::int64_t> shape, std::vector<std::int64_t> want) {
  REQUIRE(y.shape == shape);
  CHECK(y.i == want);
}
}  // namespace

TEST_CASE("Conv: padding, strides, dilations, groups, auto_pad, bias", "[onnx][ops]") {
  // 1x1x3x3 input 1..9, 2x2 kernel of ones.
  const auto x = f({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const auto w = f({1, 1, 2, 2}, {1, 1, 1, 1});
  check(run_op("Conv", x, {w}), {1, 1, 2, 2}, {12, 16, 24, 28});
  check(run_op("Conv", x, {w, f({1}, {0.5f})}), {1, 1, 2, 2}, {12.5f, 16.5f, 24.5f, 28.5f});
  check(run_op("Conv", x, {w}, [](auto& n) { attr_ints(n, "pads", {1, 1, 0, 0}); }), {1, 1, 3, 3},
        {1, 3, 5, 5, 12, 16, 11, 24, 28});
  check(run_op("Conv", x, {w}, [](auto& n) { attr_ints(n, "strides", {2, 2}); attr_ints(n, "pads", {0, 0, 1, 1}); }),
        {1, 1, 2, 2}, {12, 9, 15, 9});
  check(run_op("Conv", x, {w}, [](auto& n) { attr_ints(n, "dilations", {2, 2}); }), {1, 1, 1, 1}, {20});
  check(run_op("Conv", x, {w}, [](auto& n) { attr_s(n, "auto_pad", "SAME_UPPER"); }), {1, 1, 3, 3},
        {12, 16, 9, 24, 28, 15, 15, 17, 9});
  check(run_op("Conv", x, {w}, [](auto& n) { attr_s(n, "auto_pad", "SAME_LOWER"); }), {1, 1, 3, 3},
        {1, 3, 5, 5, 12, 16, 11, 24, 28});
  // Two groups: channel 0 * 1, channel 1 * 2 (1x1 kernels), and a 1-D conv.
  const auto x2 = f({1, 2, 1, 2}, {1, 2, 3, 4});
  check(run_op("Conv", x2, {f({2, 1, 1, 1}, {1, 2})}, [](auto& n) { attr_i(n, "group", 2); }), {1, 2, 1, 2},
        {1, 2, 6, 8});
  check(run_op("Conv", f({1, 1, 4}, {1, 2, 3, 4}), {f({1, 1, 2}, {1, -1})}), {1, 1, 3}, {-1, -1, -1});
}

TEST_CASE("ConvTranspose: stride 2 scatters the kernel", "[onnx][ops]") {
  const auto x = f({1, 1, 2, 2}, {1, 2, 3, 4});
  const auto w = f({1, 1, 2, 2}, {1, 1, 1, 1});
  check(run_op("ConvTranspose", x, {w}, [](auto& n) { attr_ints(n, "strides", {2, 2}); }), {1, 1, 4, 4},
        {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  check(run_op("ConvTranspose", x, {w}), {1, 1, 3, 3}, {1, 3, 2, 4, 10, 6, 3, 7, 4});
}

TEST_CASE("Gemm and MatMul", "[onnx][ops]") {
  const auto a = f({2, 2}, {1, 2, 3, 4});
  check(run_op("Gemm", a, {f({2, 2}, {1, 0, 0, 1})}), {2, 2}, {1, 2, 3, 4});
  check(run_op("Gemm", a, {f({2, 2}, {1, 2, 3, 4}), f({2}, {1, 1})},
               [](auto& n) { attr_i(n, "transB", 1); attr_f(n, "alpha", 2); attr_f(n, "beta", 3); }),
        {2, 2}, {13, 25, 25, 53});
  check(run_op("Gemm", a, {f({2, 2}, {1, 2, 3, 4})}, [](auto& n) { attr_i(n, "transA", 1); }), {2, 2},
        {10, 14, 14, 20});
  check(run_op("MatMul", a, {f({2, 1}, {1, 1})}), {2, 1}, {3, 7});
  check(run_op("MatMul", f({2, 1, 2}, {1, 2, 3, 4}), {f({2, 2}, {1, 0, 0, 1})}), {2, 1, 2}, {1, 2, 3, 4});
  check(run_op("MatMul", f({2}, {1, 2}), {f({2}, {3, 4})}), {}, {11});
}

TEST_CASE("BatchNormalization, LayerNormalization, Softmax, ReduceMean", "[onnx][ops]") {
  const auto x = f({1, 2, 1, 1}, {1, 2});
  check(run_op("BatchNormalization", x,
               {f({2}, {2, 1}), f({2}, {1, 0}), f({2}, {0, 1}), f({2}, {1, 4})},
               [](auto& n) { attr_f(n, "epsilon", 0.0f); }),
        {1, 2, 1, 1}, {3, 0.5f});
  check(run_op("LayerNormalization", f({1, 2}, {1, 3}), {f({2}, {1, 2}), f({2}, {0, 1})}, {}, 17), {1, 2},
        {-1, 3}, 1e-4f);
  const float e = std::exp(1.0f);
  check(run_op("Softmax", f({2, 2}, {0, 1, 0, 0})), {2, 2}, {1 / (1 + e), e / (1 + e), 0.5f, 0.5f});
  // opset < 13: axis 0 flattens everything into one row.
  check(run_op("Softmax", f({2, 1}, {0, 0}), {}, [](auto& n) { attr_i(n, "axis", 0); }, 11), {2, 1},
        {0.5f, 0.5f});
  check(run_op("Softmax", f({2, 1}, {0, 0}), {}, [](auto& n) { attr_i(n, "axis", 0); }, 13), {2, 1},
        {0.5f, 0.5f});
  check(run_op("ReduceMean", f({2, 2}, {1, 2, 3, 4}), {}, [](auto& n) { attr_ints(n, "axes", {1}); }), {2, 1},
        {1.5f, 3.5f});
  check(run_op("ReduceMean", f({2, 2}, {1, 2, 3, 4}), {i64({1}, {0})},
               [](auto& n) { attr_i(n, "keepdims", 0); }, 18),
        {2}, {2, 3});
}

TEST_CASE("activations", "[onnx][ops]") {
  const auto x = f({4}, {-2, -0.5f, 0.5f, 8});
  check(run_op("Relu", x), {4}, {0, 0, 0.5f, 8});
  check(run_op("LeakyRelu", x, {}, [](auto& n) { attr_f(n, "alpha", 0.1f); }), {4}, {-0.2f, -0.05f, 0.5f, 8});
  check(run_op("Clip", x, {f({}, {0}), f({}, {6})}), {4}, {0, 0, 0.5f, 6});
  check(run_op("Clip", x, {f({}, {0})}), {4}, {0, 0, 0.5f, 8});
  check(run_op("Clip", x, {}, [](auto& n) { attr_f(n, "min", -1); attr_f(n, "max", 1); }, 9), {4},
        {-1, -0.5f, 0.5f, 1});
  check(run_op("Sigmoid", f({1}, {0})), {1}, {0.5f});
  check(run_op("HardSigmoid", x), {4}, {0.1f, 0.4f, 0.6f, 1});
  check(run_op("HardSwish", f({3}, {-4, 0, 1})), {3}, {0, 0, 1 * (1.0f / 6 + 0.5f)});
  check(run_op("Tanh", f({1}, {0})), {1}, {0});
  check(run_op("Erf", f({2}, {0, 10})), {2}, {0, 1});
  check(run_op("Sqrt", f({2}, {4, 9})), {2}, {2, 3});
  check(run_op("Identity", x), {4}, {-2, -0.5f, 0.5f, 8});
}

TEST_CASE("broadcasting arithmetic", "[onnx][ops]") {
  const auto x = f({2, 3}, {1, 2, 3, 4, 5, 6});
  check(run_op("Add", x, {f({3}, {10, 20, 30})}), {2, 3}, {11, 22, 33, 14, 25, 36});
  check(run_op("Sub", x, {f({2, 1}, {1, 2})}), {2, 3}, {0, 1, 2, 2, 3, 4});
  check(run_op("Mul", x, {f({}, {2})}), {2, 3}, {2, 4, 6, 8, 10, 12});
  check(run_op("Div", x, {f({1, 3}, {1, 2, 4})}), {2, 3}, {1, 1, 0.75f, 4, 2.5f, 1.5f});
  check(run_op("Pow", x, {f({}, {2})}), {2, 3}, {1, 4, 9, 16, 25, 36});
  check(run_op("Add", f({2, 1}, {1, 2}), {f({1, 3}, {10, 20, 30})}), {2, 3}, {11, 21, 31, 12, 22, 32});
  check_i(run_op("Mul", i64({2}, {3, 4}), {i64({1}, {2})}), {2}, {6, 8});
  check_i(run_op("Div", i64({2}, {7, -7}), {i64({}, {2})}), {2}, {3, -3});
}

TEST_CASE("pooling", "[onnx][ops]") {
  const auto x = f({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  check(run_op("GlobalAveragePool", x), {1, 1, 1, 1}, {5});
  check(run_op("MaxPool", x, {},
               [](auto& n) {
                 attr_ints(n, "kernel_shape", {2, 2});
               }),
        {1, 1, 2, 2}, {5, 6, 8, 9});
  check(run_op("MaxPool", x, {},
               [](auto& n) {
                 attr_ints(n, "kernel_shape", {2, 2});
                 attr_ints(n, "strides", {2, 2});
                 attr_i(n, "ceil_mode", 1);
               }),
        {1, 1, 2, 2}, {5, 6, 8, 9});
  check(run_op("AveragePool", x, {},
               [](auto& n) {
                 attr_ints(n, "kernel_shape", {2, 2});
               }),
        {1, 1, 2, 2}, {3, 4, 6, 7});
  // Padding excluded from the count unless count_include_pad.
  check(run_op("AveragePool", x, {}, [](auto& n) {
          attr_ints(n, "kernel_shape", {2, 2});
          attr_ints(n, "pads", {1, 1, 0, 0});
        }),
        {1, 1, 3, 3}, {1, 1.5f, 2.5f, 2.5f, 3, 4, 5.5f, 6, 7});
  check(run_op("AveragePool", x, {}, [](auto& n) {
          attr_ints(n, "kernel_shape", {2, 2});
          attr_ints(n, "pads", {1, 1, 0, 0});
          attr_i(n, "count_include_pad", 1);
        }),
        {1, 1, 3, 3}, {0.25f, 0.75f, 1.25f, 1.25f, 3, 4, 2.75f, 6, 7});
}

TEST_CASE("shape and data movement ops", "[onnx][ops]") {
  const auto x = f({2, 3}, {1, 2, 3, 4, 5, 6});
  check(run_op("Flatten", f({2, 1, 3}, x.f)), {2, 3}, x.f);
  check(run_op("Reshape", x, {i64({2}, {3, -1})}), {3, 2}, x.f);
  check(run_op("Reshape", x, {i64({2}, {0, 3})}), {2, 3}, x.f);
  check(run_op("Transpose", x), {3, 2}, {1, 4, 2, 5, 3, 6});
  check(run_op("Transpose", f({1, 2, 3}, x.f), {}, [](auto& n) { attr_ints(n, "perm", {2, 0, 1}); }), {3, 1, 2},
        {1, 4, 2, 5, 3, 6});
  check(run_op("Squeeze", f({1, 6, 1}, x.f)), {6}, x.f);
  check(run_op("Squeeze", f({1, 6, 1}, x.f), {i64({1}, {0})}), {6, 1}, x.f);
  check(run_op("Squeeze", f({1, 6, 1}, x.f), {}, [](auto& n) { attr_ints(n, "axes", {2}); }, 11), {1, 6}, x.f);
  check(run_op("Unsqueeze", x, {i64({2}, {0, -1})}), {1, 2, 3, 1}, x.f);
  check(run_op("Unsqueeze", x, {}, [](auto& n) { attr_ints(n, "axes", {1}); }, 11), {2, 1, 3}, x.f);
  check(run_op("Concat", x, {f({2, 1}, {7, 8})}, [](auto& n) { attr_i(n, "axis", 1); }), {2, 4},
        {1, 2, 3, 7, 4, 5, 6, 8});
  check(run_op("Slice", x, {i64({1}, {1}), i64({1}, {100}), i64({1}, {1})}), {2, 2}, {2, 3, 5, 6});
  check(run_op("Slice", x, {i64({1}, {-1}), i64({1}, {INT64_MIN}), i64({1}, {1}), i64({1}, {-2})}), {2, 2},
        {3, 1, 6, 4});
  check(run_op("Slice", x, {}, [](auto& n) {
          attr_ints(n, "starts", {1});
          attr_ints(n, "ends", {2});
          attr_ints(n, "axes", {0});
        }, 9),
        {1, 3}, {4, 5, 6});
  check(run_op("Gather", x, {i64({2}, {1, -1})}), {2, 3}, {4, 5, 6, 4, 5, 6});
  check(run_op("Gather", x, {i64({}, {2})}, [](auto& n) { attr_i(n, "axis", 1); }), {2}, {3, 6});
  check_i(run_op("Shape", x), {2}, {2, 3});
  check_i(run_op("Shape", x, {}, [](auto& n) { attr_i(n, "start", -1); }, 15), {1}, {3});
  check_i(run_op("Cast", f({3}, {-1.7f, 0.2f, 300}), {}, [](auto& n) { attr_i(n, "to", 3); }), {3}, {-1, 0, 44});
  check(run_op("Cast", i64({2}, {1, -2}), {}, [](auto& n) { attr_i(n, "to", 1); }), {2}, {1, -2});
  check(run_op("ConstantOfShape", i64({2}, {1, 2})), {1, 2}, {0, 0});
  check(run_op("ConstantOfShape", i64({1}, {2}), {}, [](auto& n) { attr_t(n, "value", builder::tensor_f("v", {1}, {3})); }),
        {2}, {3, 3});
}

TEST_CASE("Constant and Dropout", "[onnx][ops]") {
  builder b;
  b.input("x", {2});
  attr_t(b.node("Constant", {}, {"c"}), "value", builder::tensor_f("v", {2}, {1, 2}));
  b.node("Add", {"x", "c"}, {"s"});
  b.node("Dropout", {"s"}, {"y"});
  b.output("y");
  aq::compile_options co;
  co.batch_axis = false;
  co.sample_shapes = {{2}};
  const auto g = aq::graph::compile(b.load(), co);
  check(g.forward({f({2}, {10, 20})}).at(0), {2}, {11, 22});
}

TEST_CASE("Resize: nearest and linear", "[onnx][ops]") {
  const auto x = f({1, 1, 2, 2}, {1, 2, 3, 4});
  const auto scales = f({4}, {1, 1, 2, 2});
  check(run_op("Resize", x, {aq::tensor(), scales}, [](auto& n) { attr_s(n, "mode", "nearest"); }), {1, 1, 4, 4},
        {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  check(run_op("Resize", x, {aq::tensor(), aq::tensor(), i64({4}, {1, 1, 1, 3})}, [](auto& n) {
          attr_s(n, "mode", "linear");
          attr_s(n, "coordinate_transformation_mode", "align_corners");
        }),
        {1, 1, 1, 3}, {1, 1.5f, 2});
  check(run_op("Resize", x, {aq::tensor(), scales}, [](auto& n) { attr_s(n, "mode", "linear"); }), {1, 1, 4, 4},
        {1, 1.25f, 1.75f, 2, 1.5f, 1.75f, 2.25f, 2.5f, 2.5f, 2.75f, 3.25f, 3.5f, 3, 3.25f, 3.75f, 4});
  // Opset 10: (X, scales), asymmetric coordinates.
  check(run_op("Resize", x, {scales}, [](auto& n) { attr_s(n, "mode", "nearest"); }, 10), {1, 1, 4, 4},
        {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
}

namespace {
// y[n, o, oh, ow] = bias[o] + sum x[n, g cg + ci, oh sh - pt + i dh, ow sw - pl + j dw] w[o, ci, i,
// j] in double: the reference for the direct conv kernels (gathered product, depthwise planes).
std::vector<double> conv_reference(const aq::tensor& x, const aq::tensor& w,
                                   const std::vector<float>& bias, std::int64_t groups,
                                   std::array<std::int64_t, 2> s, std::array<std::int64_t, 2> d,
                                   std::array<std::int64_t, 4> pads, std::int64_t ho,
                                   std::int64_t wo) {
  const std::int64_t n = x.shape[0], c = x.shape[1], h = x.shape[2], wd = x.shape[3];
  const std::int64_t o = w.shape[0], cg = w.shape[1], kh = w.shape[2], kw = w.shape[3], og = o / groups;
  std::vector<double> y(static_cast<std::size_t>(n * o * ho * wo));
  for (std::int64_t ni = 0; ni < n; ++ni)
    for (std::int64_t oc = 0; oc < o; ++oc)
      for (std::int64_t oh = 0; oh < ho; ++oh)
        for (std::int64_t ow = 0; ow < wo; ++ow) {
          double acc = bias.empty() ? 0.0 : bias[static_cast<std::size_t>(oc)];
          for (std::int64_t ci = 0; ci < cg; ++ci)
            for (std::int64_t i = 0; i < kh; ++i)
              for (std::int64_t j = 0; j < kw; ++j) {
                const std::int64_t ih = oh * s[0] - pads[0] + i * d[0], iw = ow * s[1] - pads[1] + j * d[1];
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                acc += static_cast<double>(x.f[static_cast<std::size_t>(((ni * c + oc / og * cg + ci) * h + ih) * wd + iw)]) *
                       w.f[static_cast<std::size_t>(((oc * cg + ci) * kh + i) * kw + j)];
              }
          y[static_cast<std::size_t>(((ni * o + oc) * ho + oh) * wo + ow)] = acc;
        }
  return y;
}
}  // namespace

TEST_CASE("Conv: the direct kernels against a reference loop over many geometries", "[onnx][ops]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  struct geo {
    std::int64_t c, o, groups, h, w, kh, kw, sh, sw, dh, dw;
    std::array<std::int64_t, 4> pads;  // top, left, bottom, right
  };
  const std::vector<geo> cases = {
      {3, 5, 1, 7, 6, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}},     // 5 channels: a partial vector
      {4, 17, 1, 9, 9, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}},    // stride 2, 17 channels
      {2, 9, 1, 8, 11, 2, 3, 1, 3, 2, 1, {0, 2, 1, 0}},    // asymmetric pads, dilation, stride 3
      {6, 8, 2, 5, 5, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}},     // groups, 1x1 read in place
      {16, 40, 1, 6, 6, 1, 1, 2, 2, 1, 1, {0, 0, 0, 0}},   // 1x1 stride 2, 5 vectors
      {12, 70, 1, 5, 6, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}},   // 9 (or 18) vectors: blocks of 3 and 2
      {8, 44, 2, 6, 5, 3, 1, 1, 1, 1, 1, {1, 0, 1, 0}},    // groups of 22 channels, partial blocks
      {8, 8, 8, 9, 9, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}},     // depthwise, stride 1
      {5, 5, 5, 14, 14, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}},   // depthwise, stride 2
      {3, 3, 3, 10, 7, 5, 3, 3, 2, 1, 2, {2, 0, 1, 3}},    // depthwise, odd strides, dilation
      {4, 4, 4, 4, 4, 3, 3, 1, 1, 2, 2, {2, 2, 2, 2}},     // depthwise, dilation 2 on 4x4
  };
  for (const geo& g : cases)
    for (const bool with_bias : {false, true}) {
      INFO("c=" << g.c << " o=" << g.o << " groups=" << g.groups << " " << g.h << "x" << g.w
                << " k=" << g.kh << "x" << g.kw << " s=" << g.sh << "," << g.sw << " bias=" << with_bias);
      aq::tensor x({2, g.c, g.h, g.w}, std::vector<float>(static_cast<std::size_t>(2 * g.c * g.h * g.w)));
      aq::tensor w({g.o, g.c / g.groups, g.kh, g.kw},
                   std::vector<float>(static_cast<std::size_t>(g.o * g.c / g.groups * g.kh * g.kw)));
      for (float& v : x.f) v = nd(rng);
      for (float& v : w.f) v = nd(rng);
      std::vector<float> bias;
      std::vector<aq::tensor> consts = {w};
      if (with_bias) {
        for (std::int64_t k = 0; k < g.o; ++k) bias.push_back(nd(rng));
        consts.push_back(f({g.o}, bias));
      }
      const aq::tensor y = run_op("Conv", x, consts, [&](auto& n) {
        attr_i(n, "group", g.groups);
        attr_ints(n, "strides", {g.sh, g.sw});
        attr_ints(n, "dilations", {g.dh, g.dw});
        attr_ints(n, "pads", {g.pads[0], g.pads[1], g.pads[2], g.pads[3]});
      });
      const std::int64_t ho = (g.h + g.pads[0] + g.pads[2] - (g.kh - 1) * g.dh - 1) / g.sh + 1;
      const std::int64_t wo = (g.w + g.pads[1] + g.pads[3] - (g.kw - 1) * g.dw - 1) / g.sw + 1;
      REQUIRE(y.shape == std::vector<std::int64_t>{2, g.o, ho, wo});
      const auto want = conv_reference(x, w, bias, g.groups, {g.sh, g.sw}, {g.dh, g.dw}, g.pads, ho, wo);
      for (std::size_t k = 0; k < want.size(); ++k) {
        INFO("element " << k);
        REQUIRE_THAT(y.f[k], WithinAbs(want[k], 1e-4 * (1.0 + std::abs(want[k]))));
      }
      // Bit for bit the kernels' documented sum (kernels/reference_conv.hpp): from the bias, taps
      // in (input channel, row, column) order, each fused where the target has FMA (mul_add),
      // padding read as zeros; whatever blocks the output channels are computed in.
      const std::int64_t cg = g.c / g.groups, og = g.o / g.groups;
      for (std::int64_t s = 0; s < 2; ++s)
        for (std::int64_t o = 0; o < g.o; ++o)
          for (std::int64_t oh = 0; oh < ho; ++oh)
            for (std::int64_t ow = 0; ow < wo; ++ow) {
              float acc = with_bias ? bias[static_cast<std::size_t>(o)] : 0.0f;
              for (std::int64_t ci = 0; ci < cg; ++ci)
                for (std::int64_t i = 0; i < g.kh; ++i)
                  for (std::int64_t j = 0; j < g.kw; ++j) {
                    const std::int64_t r = oh * g.sh - g.pads[0] + i * g.dh, q = ow * g.sw - g.pads[1] + j * g.dw;
                    const std::int64_t ch = o / og * cg + ci;
                    const float xv = r >= 0 && r < g.h && q >= 0 && q < g.w
                                         ? x.f[static_cast<std::size_t>(((s * g.c + ch) * g.h + r) * g.w + q)]
                                         : 0.0f;
                    acc = adaquant::detail::mul_add(xv, w.f[static_cast<std::size_t>(((o * cg + ci) * g.kh + i) * g.kw + j)], acc);
                  }
              const float got = y.f[static_cast<std::size_t>(((s * g.o + o) * ho + oh) * wo + ow)];
              REQUIRE(std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(acc));
            }
      // A sample's result does not depend on the batch it runs in.
      const aq::tensor y1 = run_op("Conv", x.items(1, 2), consts, [&](auto& n) {
        attr_i(n, "group", g.groups);
        attr_ints(n, "strides", {g.sh, g.sw});
        attr_ints(n, "dilations", {g.dh, g.dw});
        attr_ints(n, "pads", {g.pads[0], g.pads[1], g.pads[2], g.pads[3]});
      });
      const std::size_t half = y.f.size() / 2;
      for (std::size_t k = 0; k < half; ++k) REQUIRE(std::bit_cast<std::uint32_t>(y1.f[k]) == std::bit_cast<std::uint32_t>(y.f[half + k]));
    }
}

TEST_CASE("linear_batch: a row's bits do not depend on the batch around it", "[onnx][ops]") {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  // Batches across the padded block's edges; the last shape's packed weights exceed what a
  // thread keeps (thread_scratch::keep), so that product packs them into storage of its own.
  const std::size_t block = aq::detail::padded_batch(1);
  for (const auto& [out, in] : std::array<std::pair<std::size_t, std::size_t>, 4>{
           {{5, 3}, {64, 128}, {130, 33}, {2200, 2000}}}) {
    INFO(out << " x " << in);
    std::vector<float> w(out * in);
    for (float& v : w) v = nd(rng);
    for (const std::size_t samples : {std::size_t{1}, block - 1, block, block + 1, 2 * block + 3}) {
      INFO(samples << " samples");
      std::vector<float> x(samples * in), y(samples * out, std::nanf("")), one(out);
      for (float& v : x) v = nd(rng);
      aq::detail::linear_batch(w.data(), out, in, x.data(), samples, y.data());
      for (std::size_t s = 0; s < samples; ++s) {
        aq::detail::linear_batch(w.data(), out, in, x.data() + s * in, 1, one.data());
        REQUIRE(std::memcmp(one.data(), y.data() + s * out, out * sizeof(float)) == 0);
      }
      // Against a double-precision sum (every element written, none left NaN).
      const std::size_t s = samples - 1;
      for (std::size_t o = 0; o < out; o += 7) {
        double want = 0;
        for (std::size_t k = 0; k < in; ++k) want += double(w[o * in + k]) * x[s * in + k];
        REQUIRE_THAT(y[s * out + o], WithinAbs(want, 1e-3 * std::sqrt(double(in))));
      }
    }
  }
}

TEST_CASE("op_env: recycled storage is zeroed by make and reused by make_for_overwrite",
          "[onnx][ops]") {
  aq::node n;
  n.name = "n";
  n.op_type = "Add";
  const aq::exec_limits limits;
  const std::string source = "test";
  std::vector<std::vector<float>> pool;
  const aq::op_env env{n, 17, limits, source, &pool};
  aq::tensor a = env.make_for_overwrite({64, 128});
  std::fill(a.f.begin(), a.f.end(), 3.0f);
  const float* storage = a.f.data();
  env.recycle(a);
  REQUIRE(pool.size() == 1);
  REQUIRE(a.f.empty());
  // Reused (same storage), zero-filled by make, of the type asked for.
  const aq::tensor z = env.make(aq::dtype::float64, {32, 200});
  CHECK(z.f.data() == storage);
  CHECK(z.type == aq::dtype::float64);
  CHECK(z.shape == aq::shape_t{32, 200});
  CHECK(std::all_of(z.f.begin(), z.f.end(), [](float v) { return v == 0.0f; }));
  CHECK(pool.empty());
  // Storage more than twice the request is left in the pool; small tensors are not pooled.
  aq::tensor big = env.make_for_overwrite({64, 128});
  env.recycle(big);
  const aq::tensor small = env.make_for_overwrite({10, 10});
  CHECK(pool.size() == 1);
  aq::tensor tiny = small;
  env.recycle(tiny);
  CHECK(pool.size() == 1);
  // The element limit holds for recycled requests too.
  const aq::exec_limits tight{100, 1e13};
  const aq::op_env small_env{n, 17, tight, source, &pool};
  CHECK_THROWS_WITH(small_env.make_for_overwrite({11, 10}),
                    Catch::Contains("node \"n\"") && Catch::Contains("exceeds the limit"));
  // copy_of: a copy in recycled storage, or the movable input itself.
  aq::tensor x = f({2, 3}, {1, 2, 3, 4, 5, 6});
  const aq::tensor c = env.copy_of(x, nullptr);
  CHECK(c.f == x.f);
  CHECK(c.shape == x.shape);
  const float* xs = x.f.data();
  const aq::tensor m = env.copy_of(x, &x);
  CHECK(m.f.data() == xs);
}
