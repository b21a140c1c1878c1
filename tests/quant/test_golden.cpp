// Each rounding policy against vectors from the runtime it claims to match
// (tools/gen_golden_vectors.py): PyTorch 1.13's fake_quantize_*_cachemask, ONNX QuantizeLinear in
// numpy float32, and ties-away rounding computed exactly.
#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cstring>
#include <string>
#include <vector>

#include "golden/golden_vectors.inc"

namespace aq = adaquant;

namespace {
std::vector<float> floats(const std::uint32_t* b, std::size_t n) {
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = std::bit_cast<float>(b[i]);
  return out;
}

template <class R>
void run_case(const golden::fake_quant_case& c, bool simd) {
  INFO("case " << c.name << (simd ? " (simd)" : " (ref)"));
  const auto x = floats(c.x_bits, c.n);
  const auto expect = floats(c.y_bits, c.n);
  std::vector<float> y(c.n, -1.0f);
  std::vector<std::uint8_t> mask(c.n, 7);
  const aq::tensor_view<const float> xv(x.data(),
                                        aq::tensor_shape::packed(std::span(c.dims, c.rank)));
  const aq::tensor_view<float> yv(y.data(), xv.shape());
  if (c.axis < 0) {
    const aq::quant_params p{std::bit_cast<float>(c.scale_bits[0]), c.zero_point[0], c.qmin,
                             c.qmax};
    simd ? aq::fake_quant_per_tensor<R>(xv, yv, p, mask)
         : aq::fake_quant_per_tensor_ref<R>(xv, yv, p, mask);
  } else {
    aq::channel_params p;
    p.scale = floats(c.scale_bits, c.channels);
    p.zero_point.assign(c.zero_point, c.zero_point + c.channels);
    p.qmin = c.qmin;
    p.qmax = c.qmax;
    p.axis = static_cast<std::size_t>(c.axis);
    simd ? aq::fake_quant_per_channel<R>(xv, yv, p, mask)
         : aq::fake_quant_per_channel_ref<R>(xv, yv, p, mask);
  }
  std::size_t wrong = 0, wrong_mask = 0;
  for (std::size_t i = 0; i < c.n; ++i) {
    if (std::bit_cast<std::uint32_t>(y[i]) != std::bit_cast<std::uint32_t>(expect[i])) {
      if (wrong++ < 5)
        UNSCOPED_INFO("i=" << i << " x=" << x[i] << " got " << y[i] << " want " << expect[i]);
    }
    wrong_mask += mask[i] != c.mask[i];
  }
  CHECK(wrong == 0);
  CHECK(wrong_mask == 0);
}

template <class R>
std::size_t run_policy(const char* policy) {
  std::size_t n = 0;
  for (const auto& c : golden::cases) {
    if (std::string(c.policy) != policy) continue;
    run_case<R>(c, true);
    run_case<R>(c, false);
    ++n;
  }
  return n;
}
}  // namespace

TEST_CASE("round_pytorch matches torch.fake_quantize_*_affine bit for bit, with its mask") {
  CHECK(run_policy<aq::round_pytorch>("pytorch") == 22);
}

TEST_CASE("round_onnx matches ONNX QuantizeLinear/DequantizeLinear in float32") {
  CHECK(run_policy<aq::round_onnx>("onnx") == 22);
}

TEST_CASE("round_half_away rounds ties away from zero") {
  CHECK(run_policy<aq::round_half_away>("half_away") == 22);
}

TEST_CASE("the policies really differ: PyTorch and ONNX disagree near ties of inexact scales") {
  std::size_t disagree = 0;
  for (const auto& c : golden::cases) {
    if (std::string(c.policy) != "pytorch" || c.axis >= 0) continue;
    const auto x = floats(c.x_bits, c.n);
    std::vector<float> a(c.n), b(c.n);
    const aq::quant_params p{std::bit_cast<float>(c.scale_bits[0]), c.zero_point[0], c.qmin,
                             c.qmax};
    aq::fake_quant_per_tensor<aq::round_pytorch>(x, a, p);
    aq::fake_quant_per_tensor<aq::round_onnx>(x, b, p);
    for (std::size_t i = 0; i < c.n; ++i) disagree += a[i] != b[i];
  }
  CHECK(disagree > 0);
}
