// Public QAT pieces: fake-quant backward (STE for x, LSQ for scale and zero point).

#include "support/adaquant_test_util.hpp"

#include <adaquant/adapters/std.hpp>
#include <adaquant/kernels/fake_quant_backward.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace adaquant;

TEST_CASE("fake_quant_backward_per_tensor follows the STE / LSQ formulas", "[ste]") {
  const quant_params p{0.1f, 3, 0, 15};  // real range [-0.3, 1.2]
  const std::vector<float> x = {-1.0f, -0.31f, -0.04f, 0.0f, 0.26f, 1.19f, 1.26f, 5.0f};
  std::vector<float> y(x.size()), gy(x.size()), gx(x.size());
  std::vector<std::uint8_t> mask(x.size());
  fake_quant_per_tensor(x, y, p, mask);
  for (std::size_t i = 0; i < x.size(); ++i) gy[i] = 1.0f + 0.5f * static_cast<float>(i);
  const quantizer_grad g = fake_quant_backward_per_tensor(x, y, mask, gy, p, gx);
  double gs = 0.0, gz = 0.0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double u = x[i] / 0.1, q = std::nearbyint(u) + 3;
    if (q < 0) {
      CHECK(gx[i] == 0.0f);
      gs += gy[i] * (0 - 3);
      gz += gy[i] * -0.1;
    } else if (q > 15) {
      CHECK(gx[i] == 0.0f);
      gs += gy[i] * (15 - 3);
      gz += gy[i] * -0.1;
    } else {
      CHECK(gx[i] == gy[i]);
      gs += gy[i] * (std::nearbyint(u) - u);
    }
  }
  CHECK(g.scale == Approx(gs).epsilon(1e-5));
  CHECK(g.zero_point == Approx(gz).epsilon(1e-6));
}

TEST_CASE("fake_quant_backward_per_channel equals per-tensor backward per channel", "[ste]") {
  const std::size_t C = 3, K = 7;
  auto x = adaquant_test::randn(C * K, 1.0f, 4);
  channel_params p;
  p.scale = {0.1f, 0.2f, 0.05f};
  p.zero_point = {0, 1, -2};
  p.qmin = -8;
  p.qmax = 7;
  std::vector<float> y(C * K), gy = adaquant_test::randn(C * K, 1.0f, 5), gx(C * K);
  std::vector<std::uint8_t> mask(C * K);
  const tensor_view<const float> xv(x.data(), {C, K});
  fake_quant_per_channel(xv, tensor_view<float>(y.data(), {C, K}), p, mask);
  std::vector<float> gs(C), gz(C);
  fake_quant_backward_per_channel(xv, tensor_view<const float>(y.data(), {C, K}), mask,
                                  tensor_view<const float>(gy.data(), {C, K}), p, gx, gs, gz);
  for (std::size_t c = 0; c < C; ++c) {
    std::vector<float> gxc(K);
    const quantizer_grad t = fake_quant_backward_per_tensor(
        std::span<const float>(x.data() + c * K, K), std::span<const float>(y.data() + c * K, K),
        std::span<const std::uint8_t>(mask.data() + c * K, K),
        std::span<const float>(gy.data() + c * K, K), p.channel(c), gxc);
    CHECK(gs[c] == t.scale);
    CHECK(gz[c] == t.zero_point);
    for (std::size_t i = 0; i < K; ++i) CHECK(gx[c * K + i] == gxc[i]);
  }
}

TEST_CASE("fake_quant_backward rejects mismatched sizes", "[ste][errors]") {
  const quant_params p{0.1f, 0, -8, 7};
  std::vector<float> x(4, 0.0f), y(4), gy(3);
  std::vector<std::uint8_t> mask(4);
  try {
    (void)fake_quant_backward_per_tensor(x, y, mask, gy, p);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::shape_mismatch);
    CHECK_THAT(std::string(e.what()), Catch::Contains("grad_y"));
  }
}
