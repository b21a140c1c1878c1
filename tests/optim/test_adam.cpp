// Adam: matches the textbook update, per-block rates, argument checks.

#include <adaquant/optim/adam.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

using namespace adaquant;

TEST_CASE("adam matches the bias-corrected update, with per-block rates", "[adam]") {
  const std::size_t n = 37;  // not a multiple of any SIMD width: exercises the tail
  std::vector<float> x(n), g(n), ref(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = ref[i] = 0.1f * static_cast<float>(i);
  std::vector<double> m(n, 0.0), v(n, 0.0);
  adam opt(n);
  const std::vector<float> lr = {0.01f, 0.02f, 0.03f, 0.04f, 0.05f, 0.06f, 0.07f};  // blocks of 5
  REQUIRE_THROWS_AS(opt.step(x, g, lr, 5), error);                                  // 7 * 5 != 37
  adam opt2(35);
  std::vector<float> x2(x.begin(), x.begin() + 35), g2(35), r2(x2);
  for (int t = 1; t <= 5; ++t) {
    for (std::size_t i = 0; i < 35; ++i) g2[i] = std::sin(static_cast<float>(i + t)) * 0.5f;
    opt2.step(x2, g2, lr, 5);
    for (std::size_t i = 0; i < 35; ++i) {
      m[i] = 0.9 * m[i] + 0.1 * g2[i];
      v[i] = 0.999 * v[i] + 0.001 * double(g2[i]) * g2[i];
      const double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.999, t));
      r2[i] = static_cast<float>(r2[i] - lr[i / 5] * mh / (std::sqrt(vh) + 1e-8));
    }
  }
  for (std::size_t i = 0; i < 35; ++i) CHECK(x2[i] == Approx(r2[i]).margin(1e-5));
  CHECK(opt2.steps() == 5);
}

TEST_CASE("adam with rows: each row's blocks have their own rate, the last block partial",
          "[adam]") {
  // 3 rows of 10 in blocks of 4: rates for elements 0-3, 4-7 and 8-9 of every row.
  const std::size_t rows = 3, row = 10, block = 4, n = rows * row;
  const std::vector<float> lr = {0.01f, 0.02f, 0.03f, 0.04f, 0.05f, 0.06f, 0.07f, 0.08f, 0.09f};
  std::vector<float> x(n, 1.0f), g(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = 0.5f + 0.01f * static_cast<float>(i);
  adam rows_opt(n);
  rows_opt.step(x, g, lr, block, row);
  for (std::size_t i = 0; i < n; ++i) {
    const float rate = lr[(i / row) * 3 + (i % row) / block];
    adam one(1);  // the same update on one element with its block's rate
    float y = 1.0f;
    one.step(y, g[i], rate);
    INFO("element " << i);
    CHECK(x[i] == y);
    CHECK(x[i] != 1.0f);
  }
  CHECK_THROWS_AS(rows_opt.step(x, g, std::vector<float>(8, 0.1f), block, row), error);
  CHECK_THROWS_AS(rows_opt.step(x, g, lr, block, 7), error);  // 30 is not rows of 7
  try {
    rows_opt.step(x, g, std::vector<float>(6, 0.1f), block, row);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::shape_mismatch);
    CHECK_THAT(std::string(e.what()),
               Catch::Contains("6 rates in blocks of 4 in rows of 10 for 30 parameters"));
  }
}

TEST_CASE("adam gives the same bits on 1, 2 and 3 threads", "[adam][threads]") {
  // Large enough to split (adam::adam_parallel_min elements per thread): rows of 1000 in blocks of
  // 300 (the last one partial) with a rate each, and one rate for the whole group.
  const std::size_t row = 1000, block = 300, n = (3 * adam::adam_parallel_min / row + 7) * row;
  REQUIRE(n % row == 0);
  std::vector<float> lr(n / row * 4);
  for (std::size_t i = 0; i < lr.size(); ++i) lr[i] = 1e-3f * static_cast<float>(1 + i % 13);
  std::vector<float> g(n);
  for (std::size_t i = 0; i < n; ++i) g[i] = std::sin(0.37f * static_cast<float>(i));
  for (const bool one_rate : {false, true}) {
    INFO((one_rate ? "one rate" : "rates per block"));
    std::vector<float> x1;
    for (const std::size_t t : {1, 2, 3}) {
      INFO("threads " << t);
      std::vector<float> x(n, 0.5f);
      adam opt(n);
      for (int s = 0; s < 3; ++s) {
        if (one_rate)
          opt.step(x, g, std::vector<float>{0.01f}, 1, 0, t);
        else
          opt.step(x, g, lr, block, row, t);
      }
      if (t == 1) {
        x1 = x;
        CHECK(x[n - 1] != 0.5f);
      } else {
        CHECK(std::memcmp(x.data(), x1.data(), n * sizeof(float)) == 0);
      }
    }
    // Against element-wise steps of one element with its own rate (the unsplit definition).
    for (const std::size_t i : {std::size_t{0}, std::size_t{299}, std::size_t{300}, n / 2, n - 1}) {
      adam one(1);
      float y = 0.5f;
      const float rate = one_rate ? 0.01f : lr[(i / row) * 4 + (i % row) / block];
      for (int s = 0; s < 3; ++s) one.step(y, g[i], rate);
      INFO("element " << i);
      CHECK(x1[i] == y);
    }
  }
}

TEST_CASE("adam rejects bad rates and non-finite gradients", "[adam][errors]") {
  adam opt(4);
  std::vector<float> x(4, 1.0f), g(4, 0.5f);
  const std::vector<float> neg = {-1.0f};
  try {
    opt.step(x, g, neg);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::invalid_argument);
    CHECK_THAT(std::string(e.what()), Catch::Contains("lr"));
  }
  g[2] = std::nanf("");
  const std::vector<float> lr = {0.1f};
  try {
    opt.step(x, g, lr);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::non_finite);
    CHECK_THAT(std::string(e.what()), Catch::Contains("element 2"));
  }
  CHECK(x == std::vector<float>(4, 1.0f));  // a rejected step changes nothing
  CHECK_THROWS_AS(adam(3, adam_config{1.0f, 0.999f, 1e-8f}), error);
}
