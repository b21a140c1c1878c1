// The fake-quant and quantize kernels equal their scalar twins bit for bit (the other kernels:
// test_twins_*.cpp): all lengths in [0, 3 * lanes + 3), every unaligned start, a sentinel past the
// end, masks on and off, all rounding policies, the streaming path for large outputs and every
// per-channel code path.
#include "twin_util.hpp"

#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

namespace aq = adaquant;

TEMPLATE_TEST_CASE("fake_quant_per_tensor: SIMD == scalar twin for all tails and offsets", "",
                   aq::round_pytorch, aq::round_onnx, aq::round_half_away) {
  const aq::quant_params p{0.37f, 3, -8, 7};
  for (bool with_mask : {false, true})
    for (std::size_t off = 0; off < lanes; ++off)
      for (std::size_t n = 0; n < 3 * lanes + 3; ++n) {
        const auto src = test_data(n + off, p.scale, static_cast<std::uint32_t>(n * 31 + off));
        std::vector<float> a(n + off + 1, sentinel), b(n + off + 1, sentinel);
        std::vector<std::uint8_t> ma(n + off + 1, 9), mb(n + off + 1, 9);
        const aq::tensor_view<const float> x(src.data() + off, {n});
        const auto mask_a = with_mask ? std::span(ma.data() + off, n) : std::span<std::uint8_t>{};
        const auto mask_b = with_mask ? std::span(mb.data() + off, n) : std::span<std::uint8_t>{};
        aq::fake_quant_per_tensor<TestType>(x, aq::tensor_view<float>(a.data() + off, {n}), p,
                                            mask_a);
        aq::fake_quant_per_tensor_ref<TestType>(x, aq::tensor_view<float>(b.data() + off, {n}), p,
                                                mask_b);
        for (std::size_t i = 0; i < n + off + 1; ++i) {
          INFO("n=" << n << " off=" << off << " i=" << i << " mask=" << with_mask);
          REQUIRE(same_bits(a[i], b[i]));
          REQUIRE(ma[i] == mb[i]);
        }
        CHECK(a[n + off] == sentinel);
        CHECK(ma[n + off] == 9);
      }
}

TEST_CASE("fake_quant_per_tensor: the streaming path (large outputs) equals the twin") {
  const aq::quant_params p{0.05f, -2, -8, 7};
  const std::size_t n = (std::size_t{9} << 20) / sizeof(float) + 5;  // above the 8 MiB threshold
  for (std::size_t off : {std::size_t{0}, std::size_t{1}, lanes - 1}) {
    const auto src = test_data(n + off, p.scale, 7);
    std::vector<float> a(n + off + 1, sentinel), b(n + off + 1, sentinel);
    aq::fake_quant_per_tensor(aq::tensor_view<const float>(src.data() + off, {n}),
                              aq::tensor_view<float>(a.data() + off, {n}), p);
    aq::fake_quant_per_tensor_ref(aq::tensor_view<const float>(src.data() + off, {n}),
                                  aq::tensor_view<float>(b.data() + off, {n}), p);
    std::size_t diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff += !same_bits(a[i], b[i]);
    CHECK(diff == 0);
    CHECK(a[n + off] == sentinel);
  }
}

TEST_CASE("fake_quant_per_channel: the streaming path (large outputs) equals the twin") {
  const std::size_t channels = 7, inner = (std::size_t{9} << 20) / sizeof(float) / channels + 3;
  const std::size_t n = channels * inner;
  const auto src = test_data(n, 0.1f, 3);
  aq::channel_params p;
  p.qmin = -8;
  p.qmax = 7;
  for (std::size_t c = 0; c < channels; ++c) {
    p.scale.push_back(0.02f * static_cast<float>(c + 1));
    p.zero_point.push_back(static_cast<std::int32_t>(c) - 3);
  }
  std::vector<float> a(n + 1, sentinel), b(n + 1, sentinel);
  const aq::tensor_view<const float> x(src.data(), {channels, inner});
  aq::fake_quant_per_channel(x, aq::tensor_view<float>(a.data(), {channels, inner}), p);
  aq::fake_quant_per_channel_ref(x, aq::tensor_view<float>(b.data(), {channels, inner}), p);
  std::size_t diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff += !same_bits(a[i], b[i]);
  CHECK(diff == 0);
  CHECK(a[n] == sentinel);
}

TEMPLATE_TEST_CASE("fake_quant_per_channel: SIMD == twin on every layout path", "",
                   aq::round_pytorch, aq::round_onnx, aq::round_half_away) {
  const auto shapes = per_channel_shapes();
  for (const auto& s : shapes)
    for (std::size_t axis : {std::size_t{1}}) {
      const std::size_t n = s[0] * s[1] * s[2];
      const auto src = test_data(n, 0.2f, static_cast<std::uint32_t>(n));
      aq::channel_params p;
      p.axis = axis;
      p.qmin = 0;
      p.qmax = 15;
      for (std::size_t c = 0; c < s[1]; ++c) {
        p.scale.push_back(0.05f + 0.031f * static_cast<float>(c));
        p.zero_point.push_back(static_cast<std::int32_t>(c % 16));
      }
      for (bool with_mask : {false, true}) {
        std::vector<float> a(n + 1, sentinel), b(n + 1, sentinel);
        std::vector<std::uint8_t> ma(n, 9), mb(n, 9);
        const aq::tensor_view<const float> x(src.data(), {s[0], s[1], s[2]});
        aq::fake_quant_per_channel<TestType>(
            x, aq::tensor_view<float>(a.data(), {s[0], s[1], s[2]}), p,
            with_mask ? std::span(ma) : std::span<std::uint8_t>{});
        aq::fake_quant_per_channel_ref<TestType>(
            x, aq::tensor_view<float>(b.data(), {s[0], s[1], s[2]}), p,
            with_mask ? std::span(mb) : std::span<std::uint8_t>{});
        for (std::size_t i = 0; i <= n; ++i) {
          INFO("shape " << s[0] << "x" << s[1] << "x" << s[2] << " i=" << i);
          REQUIRE(same_bits(a[i], b[i]));
          if (i < n) REQUIRE(ma[i] == mb[i]);
        }
      }
    }
}

TEMPLATE_TEST_CASE("quantize / dequantize: SIMD == twin, per tensor and per channel", "",
                   std::int8_t, std::uint8_t, std::int16_t, std::int32_t) {
  using Int = TestType;
  const std::int32_t qmin = std::is_signed_v<Int> ? -8 : 0, qmax = std::is_signed_v<Int> ? 7 : 15;
  const aq::quant_params p{0.11f, std::is_signed_v<Int> ? 1 : 6, qmin, qmax};
  for (std::size_t n = 0; n < 3 * lanes + 3; ++n) {
    auto src = test_data(n, p.scale, static_cast<std::uint32_t>(n));
    for (auto& v : src)
      if (std::isnan(v)) v = 0.25f;  // NaN throws; tested in test_semantics.cpp
    std::vector<Int> qa(n + 1, Int{42}), qb(n + 1, Int{42});
    aq::quantize_per_tensor(aq::tensor_view<const float>(src.data(), {n}),
                            aq::tensor_view<Int>(qa.data(), {n}), p);
    aq::quantize_per_tensor_ref(aq::tensor_view<const float>(src.data(), {n}),
                                aq::tensor_view<Int>(qb.data(), {n}), p);
    REQUIRE(qa == qb);
    CHECK(qa[n] == Int{42});
    std::vector<float> da(n), db(n), fq(n);
    aq::dequantize_per_tensor(aq::tensor_view<const Int>(qa.data(), {n}), da, p);
    aq::dequantize_per_tensor_ref(aq::tensor_view<const Int>(qa.data(), {n}), db, p);
    aq::fake_quant_per_tensor(src, fq, p);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(same_bits(da[i], db[i]));
      REQUIRE(same_bits(da[i], fq[i]));  // dequantize(quantize(x)) == fake_quant(x)
    }
  }
  // Per channel, channels along axis 0 of a [channels, inner] tensor with long and short runs.
  for (std::size_t inner : {std::size_t{1}, lanes - 1, 2 * lanes + 1}) {
    const std::size_t ch = 3, n = ch * inner;
    auto src = test_data(n, 0.1f, 99);
    for (auto& v : src)
      if (std::isnan(v)) v = -0.75f;
    aq::channel_params cp;
    cp.qmin = qmin;
    cp.qmax = qmax;
    cp.scale = {0.05f, 0.1f, 0.3f};
    cp.zero_point = {0, std::is_signed_v<Int> ? -1 : 3, 2};
    std::vector<Int> qa(n), qb(n);
    const aq::tensor_view<const float> x(src.data(), {ch, inner});
    aq::quantize_per_channel(x, aq::tensor_view<Int>(qa.data(), {ch, inner}), cp);
    aq::quantize_per_channel_ref(x, aq::tensor_view<Int>(qb.data(), {ch, inner}), cp);
    REQUIRE(qa == qb);
    std::vector<float> da(n), db(n), fq(n);
    aq::dequantize_per_channel(aq::tensor_view<const Int>(qa.data(), {ch, inner}),
                               aq::tensor_view<float>(da.data(), {ch, inner}), cp);
    aq::dequantize_per_channel_ref(aq::tensor_view<const Int>(qa.data(), {ch, inner}),
                                   aq::tensor_view<float>(db.data(), {ch, inner}), cp);
    aq::fake_quant_per_channel(x, aq::tensor_view<float>(fq.data(), {ch, inner}), cp);
    for (std::size_t i = 0; i < n; ++i) {
      REQUIRE(same_bits(da[i], db[i]));
      REQUIRE(same_bits(da[i], fq[i]));
    }
  }
}
