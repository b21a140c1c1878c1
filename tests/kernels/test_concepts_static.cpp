// Static tests of the kernels' integer tensor concepts (kernels/quantize.hpp), positive and
// negative: the integer types quantize writes and dequantize reads.
#include <adaquant/adapters/std.hpp>
#include <adaquant/kernels/quantize.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <span>
#include <vector>

namespace aq = adaquant;

static_assert(aq::IntegerTensor<std::vector<std::int8_t>>);
static_assert(aq::IntegerTensor<std::vector<std::uint8_t>>);
static_assert(aq::IntegerTensor<std::vector<std::int16_t>>);
static_assert(aq::IntegerTensor<std::vector<std::int32_t>>);
static_assert(aq::IntegerTensor<aq::tensor_view<const std::int8_t>>);
static_assert(!aq::IntegerTensor<std::vector<float>>);
static_assert(!aq::IntegerTensor<std::vector<std::int64_t>>);  // not a quantized storage type
static_assert(!aq::IntegerTensor<int>);
static_assert(aq::MutableIntegerTensor<std::vector<std::int8_t>&>);
static_assert(aq::MutableIntegerTensor<std::span<std::uint8_t>>);
static_assert(!aq::MutableIntegerTensor<const std::vector<std::int8_t>&>);
static_assert(!aq::MutableIntegerTensor<std::span<const std::int8_t>>);

TEST_CASE("quantize writes any MutableIntegerTensor, dequantize reads any IntegerTensor") {
  const aq::quant_params p{0.5f, 0, -128, 127};
  const std::vector<float> x{-1.0f, 0.25f, 3.0f};
  std::vector<std::int8_t> q8(3);
  std::vector<std::int32_t> q32(3);
  aq::quantize_per_tensor(x, q8, p);
  aq::quantize_per_tensor(x, std::span<std::int32_t>(q32), p);
  CHECK(q8 == std::vector<std::int8_t>{-2, 0, 6});
  CHECK(q32 == std::vector<std::int32_t>{-2, 0, 6});
  std::vector<float> back(3);
  aq::dequantize_per_tensor(q8, back, p);
  CHECK(back == std::vector<float>{-1.0f, 0.0f, 3.0f});
}
