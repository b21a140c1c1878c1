#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>
#include <adaquant/bn/batch_norm.hpp>
#include <adaquant/bn/channel_moments.hpp>
#include <adaquant/bn/retune.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

namespace aq = adaquant;

namespace {
// y[n, o] = sum_i w[o, i] x[n, i] + b[o]
std::vector<float> linear(const std::vector<float>& w, const std::vector<float>& b,
                          const std::vector<float>& x, std::size_t n, std::size_t in,
                          std::size_t out) {
  std::vector<float> y(n * out);
  for (std::size_t s = 0; s < n; ++s)
    for (std::size_t o = 0; o < out; ++o) {
      double acc = b[o];
      for (std::size_t i = 0; i < in; ++i)
        acc += static_cast<double>(w[o * in + i]) * x[s * in + i];
      y[s * out + o] = static_cast<float>(acc);
    }
  return y;
}

std::vector<float> normal(std::size_t n, float sd, std::uint32_t seed, float mean = 0.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(mean, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
}  // namespace

TEST_CASE("channel_moments: batches merged exactly equal one pass over everything") {
  const std::size_t n = 64, c = 3, hw = 5;
  const auto x = normal(n * c * hw, 2.0f, 1, 0.5f);
  aq::channel_moments all(c, 1), parts(c, 1);
  all.observe(aq::tensor_view<const float>(x.data(), {n, c, hw}));
  for (std::size_t s = 0; s < n; s += 16)
    parts.observe(aq::tensor_view<const float>(x.data() + s * c * hw, {16, c, hw}));
  for (std::size_t ch = 0; ch < c; ++ch) {
    double m = 0, q = 0;
    for (std::size_t s = 0; s < n; ++s)
      for (std::size_t i = 0; i < hw; ++i) m += x[(s * c + ch) * hw + i];
    m /= static_cast<double>(n * hw);
    for (std::size_t s = 0; s < n; ++s)
      for (std::size_t i = 0; i < hw; ++i) q += std::pow(x[(s * c + ch) * hw + i] - m, 2);
    q /= static_cast<double>(n * hw);
    CHECK(all.mean(ch) == Approx(m).epsilon(1e-12));
    CHECK(all.variance(ch) == Approx(q).epsilon(1e-12));
    CHECK(parts.mean(ch) == Approx(m).epsilon(1e-12));
    CHECK(parts.variance(ch) == Approx(q).epsilon(1e-12));
    CHECK(parts.count(ch) == n * hw);
  }
}

TEST_CASE("channel_moments rejects wrong channel counts, NaN and reading before data") {
  aq::channel_moments m(4, 1);
  std::vector<float> x(2 * 3, 1.0f);
  CHECK_THROWS_WITH(m.observe(aq::tensor_view<const float>(x.data(), {2, 3})),
                    Catch::Contains("extent 3"));
  CHECK_THROWS_AS(m.require_data("test"), aq::error);
  std::vector<float> y(8, 1.0f);
  y[5] = std::nanf("");
  CHECK_THROWS_WITH(m.observe(aq::tensor_view<const float>(y.data(), {2, 4})),
                    Catch::Contains("NaN"));
}

TEST_CASE("folding BN into a linear layer gives BN(Wx + b); unfolding restores W and b") {
  const std::size_t n = 32, in = 6, out = 4;
  auto w = normal(out * in, 0.5f, 2);
  std::vector<float> b{0.1f, -0.2f, 0.3f, 0.0f};
  const auto x = normal(n * in, 1.0f, 3);
  aq::batch_norm_params bn{{1.5f, 0.7f, -0.9f, 2.0f},
                           {0.1f, 0.2f, -0.3f, 0.4f},
                           {0.05f, -0.1f, 0.2f, 0.0f},
                           {0.8f, 1.2f, 0.5f, 2.0f},
                           1e-5f};
  const auto y = linear(w, b, x, n, in, out);
  auto wf = w;
  auto bf = b;
  aq::fold_batch_norm(aq::tensor_view<float>(wf.data(), {out, in}), bf, bn);
  const auto yf = linear(wf, bf, x, n, in, out);
  for (std::size_t s = 0; s < n; ++s)
    for (std::size_t o = 0; o < out; ++o) {
      const float expect =
          bn.gamma[o] * (y[s * out + o] - bn.mean[o]) / std::sqrt(bn.var[o] + bn.eps) + bn.beta[o];
      CHECK(yf[s * out + o] == Approx(expect).margin(1e-5));
    }
  aq::unfold_batch_norm(aq::tensor_view<float>(wf.data(), {out, in}), bf, bn);
  for (std::size_t i = 0; i < w.size(); ++i) CHECK(wf[i] == Approx(w[i]).margin(1e-6));
  for (std::size_t o = 0; o < out; ++o) CHECK(bf[o] == Approx(b[o]).margin(1e-6));
}

TEST_CASE("fold/unfold reject mismatched shapes, bad BN and zero gamma on unfold") {
  std::vector<float> w(12), b(3);
  aq::batch_norm_params bn{{1, 1, 1}, {0, 0, 0}, {0, 0, 0}, {1, 1, 1}, 1e-5f};
  CHECK_NOTHROW(aq::fold_batch_norm(aq::tensor_view<float>(w.data(), {3, 4}), b, bn));
  CHECK_THROWS_WITH(aq::fold_batch_norm(aq::tensor_view<float>(w.data(), {4, 3}), b, bn),
                    Catch::Contains("output channels"));
  std::vector<float> b2(2);
  CHECK_THROWS_WITH(aq::fold_batch_norm(aq::tensor_view<float>(w.data(), {3, 4}), b2, bn),
                    Catch::Contains("bias"));
  auto bad = bn;
  bad.var[1] = -1.0f;
  CHECK_THROWS_WITH(aq::fold_batch_norm(aq::tensor_view<float>(w.data(), {3, 4}), b, bad),
                    Catch::Contains("negative"));
  bad = bn;
  bad.mean[2] = std::nanf("");
  CHECK_THROWS_AS(aq::fold_batch_norm(aq::tensor_view<float>(w.data(), {3, 4}), b, bad), aq::error);
  bad = bn;
  bad.gamma[0] = 0.0f;
  CHECK_THROWS_WITH(aq::unfold_batch_norm(aq::tensor_view<float>(w.data(), {3, 4}), b, bad),
                    Catch::Contains("gamma[0] is 0"));
}

TEST_CASE("BN tuning restores the full-precision output statistics of a drifted quantized layer") {
  // A layer whose BN statistics match its full-precision output on the calibration data.
  const std::size_t n = 2000, in = 8, out = 3;
  const auto w = normal(out * in, 0.4f, 5);
  const std::vector<float> zero(out, 0.0f);
  const auto x = normal(n * in, 1.0f, 6, 0.3f);
  const auto y = linear(w, zero, x, n, in, out);
  aq::channel_moments fp(out, 1);
  fp.observe(aq::tensor_view<const float>(y.data(), {n, out}));
  aq::batch_norm_params bn{{1.2f, -0.8f, 0.5f}, {0.3f, 0.0f, -1.0f}, {}, {}, 1e-5f};
  for (std::size_t c = 0; c < out; ++c) {
    bn.mean.push_back(static_cast<float>(fp.mean(c)));
    bn.var.push_back(static_cast<float>(fp.variance(c)));
  }
  auto wf = w;
  std::vector<float> bf(out, 0.0f);
  aq::fold_batch_norm(aq::tensor_view<float>(wf.data(), {out, in}), bf, bn);

  // Quantize the folded weights coarsely (3 bits per channel): the output statistics drift.
  std::vector<float> lo(out), hi(out);
  for (std::size_t c = 0; c < out; ++c) {
    lo[c] = *std::min_element(wf.begin() + c * in, wf.begin() + (c + 1) * in);
    hi[c] = *std::max_element(wf.begin() + c * in, wf.begin() + (c + 1) * in);
  }
  auto qp = aq::channel_params_from_ranges({3, true, true, false}, lo, hi, 0);
  std::vector<float> wq(wf.size());
  aq::fake_quant_per_channel(aq::tensor_view<const float>(wf.data(), {out, in}),
                             aq::tensor_view<float>(wq.data(), {out, in}), qp);
  const auto u = linear(wq, zero, x, n, in, out);  // Q x, before bias
  aq::channel_moments mq(out, 1);
  mq.observe(aq::tensor_view<const float>(u.data(), {n, out}));

  const auto r = aq::retune_batch_norm(bn, mq);
  // Weights stay on their grid: scaling the channel's scale by r gives exactly r * Q.
  auto qp2 = qp;
  for (std::size_t c = 0; c < out; ++c) qp2.scale[c] *= r.weight_scale_factor[c];
  std::vector<float> wq2(wf.size());
  std::vector<float> wf_scaled(wf.size());
  for (std::size_t i = 0; i < wf.size(); ++i) wf_scaled[i] = wf[i] * r.weight_scale_factor[i / in];
  aq::fake_quant_per_channel(aq::tensor_view<const float>(wf_scaled.data(), {out, in}),
                             aq::tensor_view<float>(wq2.data(), {out, in}), qp2);
  for (std::size_t i = 0; i < wq.size(); ++i)
    CHECK(wq2[i] == Approx(wq[i] * r.weight_scale_factor[i / in]).epsilon(1e-5));

  const auto z = linear(wq2, r.bias, x, n, in, out);
  aq::channel_moments tuned(out, 1);
  tuned.observe(aq::tensor_view<const float>(z.data(), {n, out}));
  for (std::size_t c = 0; c < out; ++c) {
    // BN's output on its own statistics: mean beta, variance gamma^2 var / (var + eps).
    CHECK(tuned.mean(c) == Approx(bn.beta[c]).margin(1e-4));
    const double target = bn.gamma[c] * bn.gamma[c] * bn.var[c] / (bn.var[c] + bn.eps);
    CHECK(tuned.variance(c) == Approx(target).epsilon(1e-3));
    // Before tuning they were off.
  }
  const auto before = linear(wq, bf, x, n, in, out);
  aq::channel_moments drift(out, 1);
  drift.observe(aq::tensor_view<const float>(before.data(), {n, out}));
  double worst = 0;
  for (std::size_t c = 0; c < out; ++c)
    worst = std::max(worst, std::abs(drift.variance(c) / (bn.gamma[c] * bn.gamma[c]) - 1.0));
  CHECK(worst > 0.01);  // the 3-bit quantization really had moved the statistics
}

TEST_CASE("matching full-precision output moments rescales a drifted output and leaves an exact "
          "one alone") {
  const std::size_t n = 3000, c = 2;
  // Quantized output u = a_c * y_fp + d_c before its bias (drifted scale and mean).
  const auto y = normal(n * c, 1.5f, 8, 0.4f);
  const float a[c] = {0.7f, 1.3f}, d[c] = {0.2f, -0.5f};
  std::vector<float> u(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) u[i] = a[i % c] * y[i] + d[i % c];
  aq::channel_moments fp(c, 1), q(c, 1);
  fp.observe(aq::tensor_view<const float>(y.data(), {n, c}));
  q.observe(aq::tensor_view<const float>(u.data(), {n, c}));
  const auto r = aq::match_output_moments(fp, q, 1e-12);
  for (std::size_t k = 0; k < c; ++k) {
    // r * u + b reproduces y exactly: r = 1 / a, b = -d / a.
    CHECK(r.weight_scale_factor[k] == Approx(1.0 / a[k]).epsilon(1e-5));
    CHECK(r.bias[k] == Approx(-d[k] / a[k]).epsilon(1e-4));
  }
  // A quantized output equal to the full-precision one (bias removed) keeps r = 1, b = bias.
  std::vector<float> no_bias(y.size());
  for (std::size_t i = 0; i < y.size(); ++i) no_bias[i] = y[i] - 0.25f;
  aq::channel_moments same(c, 1);
  same.observe(aq::tensor_view<const float>(no_bias.data(), {n, c}));
  const auto id = aq::match_output_moments(fp, same);
  for (std::size_t k = 0; k < c; ++k) {
    CHECK(id.weight_scale_factor[k] == Approx(1.0).epsilon(1e-6));
    CHECK(id.bias[k] == Approx(0.25).epsilon(1e-4));
  }
  aq::channel_moments three(3, 1), empty(c, 1);
  CHECK_THROWS_WITH(aq::match_output_moments(fp, three), Catch::Contains("channels"));
  CHECK_THROWS_AS(aq::match_output_moments(fp, empty), aq::error);
  CHECK_THROWS_WITH(aq::match_output_moments(fp, q, 0.0), Catch::Contains("eps"));
}
