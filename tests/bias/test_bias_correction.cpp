#include <adaquant/adapters/std.hpp>
#include <adaquant/bias/bias_correction.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <vector>

namespace aq = adaquant;

TEST_CASE("bias correction recovers a per-channel output shift under zero-mean noise") {
  const std::size_t n = 4000, c = 3, hw = 4;
  const float shift[c] = {0.25f, -0.1f, 0.0f};
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.0f, 1.0f), noise(0.0f, 0.05f);
  std::vector<float> fp(n * c * hw), q(n * c * hw);
  for (std::size_t i = 0; i < fp.size(); ++i) {
    fp[i] = d(rng);
    q[i] = fp[i] - shift[(i / hw) % c] + noise(rng);
  }
  aq::bias_correction bc(c, 1);
  for (std::size_t s = 0; s < n; s += 1000)  // in batches
    bc.observe(aq::tensor_view<const float>(fp.data() + s * c * hw, {1000, c, hw}),
               aq::tensor_view<const float>(q.data() + s * c * hw, {1000, c, hw}));
  const auto delta = bc.correction();
  for (std::size_t ch = 0; ch < c; ++ch) CHECK(delta[ch] == Approx(shift[ch]).margin(0.005));
  std::vector<float> bias{1.0f, 1.0f, 1.0f};
  bc.apply(bias);
  CHECK(bias[0] == Approx(1.25f).margin(0.005));
}

TEST_CASE("bias correction rejects mismatched shapes, NaN, wrong bias size and no data") {
  aq::bias_correction bc(2, 1);
  CHECK_THROWS_WITH(bc.correction(), Catch::Contains("no data"));
  std::vector<float> a(8, 1.0f), b(6, 1.0f);
  CHECK_THROWS_WITH(bc.observe(aq::tensor_view<const float>(a.data(), {4, 2}),
                               aq::tensor_view<const float>(b.data(), {3, 2})),
                    Catch::Contains("y_q"));
  CHECK_THROWS_AS(bc.observe(aq::tensor_view<const float>(a.data(), {2, 4}),
                             aq::tensor_view<const float>(a.data(), {2, 4})),
                  aq::error);
  std::vector<float> nan_data(8, 1.0f);
  nan_data[3] = std::nanf("");
  CHECK_THROWS_WITH(bc.observe(aq::tensor_view<const float>(a.data(), {4, 2}),
                               aq::tensor_view<const float>(nan_data.data(), {4, 2})),
                    Catch::Contains("NaN"));
  bc.observe(aq::tensor_view<const float>(a.data(), {4, 2}),
             aq::tensor_view<const float>(a.data(), {4, 2}));
  std::vector<float> bias(3);
  CHECK_THROWS_WITH(bc.apply(bias), Catch::Contains("bias"));
}
