#include <adaquant/bias/bias_tuning.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>
#include <random>
#include <span>
#include <utility>
#include <vector>

// The largest single allocation while `watching` (this test executable's own operator new).
namespace {
std::atomic<bool> watching{false};
std::atomic<std::size_t> largest_allocation{0};
}  // namespace

// Every form that frees with the deletes below is replaced: a sanitizer's own nothrow new paired
// with these deletes is an alloc-dealloc mismatch (Catch allocates with it). None of them inlined:
// GCC would pair malloc with operator delete, or operator new with free, and warn
// (-Wmismatched-new-delete).
[[gnu::noinline]] void* operator new(std::size_t size) {
  if (watching) {
    std::size_t seen = largest_allocation;
    while (seen < size && !largest_allocation.compare_exchange_weak(seen, size)) {
    }
  }
  if (void* ptr = std::malloc(size == 0 ? 1 : size)) return ptr;
  throw std::bad_alloc();
}
[[gnu::noinline]] void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return ::operator new(size);
  } catch (...) {
    return nullptr;
  }
}
[[gnu::noinline]] void operator delete(void* ptr) noexcept { std::free(ptr); }
[[gnu::noinline]] void operator delete(void* ptr, std::size_t) noexcept { std::free(ptr); }
[[gnu::noinline]] void operator delete(void* ptr, const std::nothrow_t&) noexcept {
  std::free(ptr);
}

namespace aq = adaquant;
using act = aq::output_activation;

namespace {
constexpr std::size_t n = 500, c = 3, p = 4;

aq::tensor_view<const float> view(const std::vector<float>& v) { return {v.data(), {n, c, p}}; }

// f_c(b) computed directly from its definition, in double.
double loss(const std::vector<float>& u, const std::vector<float>& y, std::size_t ch, float b,
            act a) {
  const auto f = [a](double z) {
    if (a == act::none) return z;
    z = std::max(z, 0.0);
    return a == act::relu6 ? std::min(z, 6.0) : z;
  };
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < p; ++k) {
      const std::size_t at = (i * c + ch) * p + k;
      const double d = f(static_cast<float>(u[at] + b)) - f(y[at]);
      s += d * d;
    }
  return s;
}
}  // namespace

TEST_CASE("bias tuning recovers the bias that generated the full-precision output") {
  const float truth[c] = {0.4f, -0.3f, 1.1f};
  for (const act a : {act::none, act::relu, act::relu6}) {
    std::mt19937 rng(5);
    std::normal_distribution<float> d(0.0f, 3.0f);
    std::vector<float> u(n * c * p), y(u.size());
    for (std::size_t i = 0; i < u.size(); ++i) {
      u[i] = d(rng);
      y[i] = u[i] + truth[(i / p) % c];
    }
    const std::vector<float> start{0.0f, 0.5f, 0.6f};
    const aq::bias_tuning_result r = aq::tune_bias(view(u), view(y), start, a);
    INFO("activation " << static_cast<int>(a));
    for (std::size_t ch = 0; ch < c; ++ch) CHECK(r.bias[ch] == Approx(truth[ch]).margin(1e-4));
    CHECK(r.loss_after < 1e-6 * r.loss_before);
    double direct = 0.0;
    for (std::size_t ch = 0; ch < c; ++ch) direct += loss(u, y, ch, r.bias[ch], a);
    CHECK(r.loss_after == Approx(direct).epsilon(1e-9).margin(1e-12));
  }
}

TEST_CASE("bias tuning never increases the loss and matches the identity's closed form") {
  std::mt19937 rng(9);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> u(n * c * p), y(u.size());
  for (std::size_t i = 0; i < u.size(); ++i) {
    u[i] = d(rng);
    y[i] = 0.5f * u[i] + d(rng);  // no bias fits exactly
  }
  const std::vector<float> start{0.1f, -2.0f, 3.0f};
  for (const act a : {act::none, act::relu, act::relu6}) {
    const aq::bias_tuning_result r = aq::tune_bias(view(u), view(y), start, a);
    double before = 0.0;
    for (std::size_t ch = 0; ch < c; ++ch) {
      before += loss(u, y, ch, start[ch], a);
      // At the bottom of its basin: nudging the bias either way does not lower the loss beyond
      // the sawtooth the kinks make (f' jumps down by 2 t where a sample enters the linear
      // range; those dips are ~1e-8 of f here, a bias 0.01 off costs ~1e-5).
      const double here = loss(u, y, ch, r.bias[ch], a);
      for (const float nudge : {1e-3f, 1e-2f, 1e-1f}) {
        CHECK(loss(u, y, ch, r.bias[ch] + nudge, a) >= here * (1 - 1e-6));
        CHECK(loss(u, y, ch, r.bias[ch] - nudge, a) >= here * (1 - 1e-6));
      }
    }
    CHECK(r.loss_before == Approx(before).epsilon(1e-9));
    CHECK(r.loss_after < r.loss_before);
  }
  // identity: b = mean(y - u) per channel.
  const aq::bias_tuning_result r = aq::tune_bias(view(u), view(y), start, act::none);
  for (std::size_t ch = 0; ch < c; ++ch) {
    double s = 0.0;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t k = 0; k < p; ++k) s += y[(i * c + ch) * p + k] - u[(i * c + ch) * p + k];
    CHECK(r.bias[ch] == Approx(s / (n * p)).epsilon(1e-6));
  }
}

TEST_CASE("bias tuning's derivative matches central differences of its loss") {
  // u on a 0.25 lattice and b 0.1 off it: b +- h stays on one quadratic piece.
  std::mt19937 rng(4);
  std::uniform_int_distribution<int> lattice(-40, 40);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> u(n * p), t(n * p);
  for (std::size_t i = 0; i < u.size(); ++i) {
    u[i] = 0.25f * static_cast<float>(lattice(rng));
    t[i] = std::max(0.0f, d(rng));
  }
  for (const act a : {act::none, act::relu, act::relu6})
    for (const float b : {-1.4f, 0.1f, 2.35f}) {
      const aq::detail::bias_channel ch{u.data(), t.data(), n, p, p, a};
      double d1 = 0.0, d2 = 0.0;
      ch.derivatives(b, d1, d2);
      const float h = 0.01f;
      const double numeric = (ch.loss(b + h) - ch.loss(b - h)) / (2.0 * h);
      double up = 0.0, down = 0.0, unused = 0.0;  // f' is linear on the piece: f'' from it
      ch.derivatives(b + 0.05f, up, unused);
      ch.derivatives(b - 0.05f, down, unused);
      const double curvature = (up - down) / 0.1;
      INFO("activation " << static_cast<int>(a) << " b " << b);
      CHECK(d1 == Approx(numeric).epsilon(1e-4));
      CHECK(d2 == Approx(curvature).epsilon(1e-3));
    }
}

TEST_CASE("bias tuning reads the targets in place: no copy the size of the outputs") {
  // A layer's outputs are the largest arrays of the advanced pipeline (ResNet-18's first layer:
  // 822 MB at 256 images); bias tuning holds two (u and y_fp) and must not make a third.
  std::mt19937 rng(6);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> u(n * c * p), y(u.size());
  for (std::size_t i = 0; i < u.size(); ++i) {
    u[i] = d(rng);
    y[i] = d(rng);
  }
  const std::vector<float> start(c, 0.1f);
  for (const act a : {act::none, act::relu, act::relu6}) {
    largest_allocation = 0;
    watching = true;
    const aq::bias_tuning_result r = aq::tune_bias(view(u), view(y), start, a);
    watching = false;
    INFO("activation " << static_cast<int>(a));
    CHECK(r.bias.size() == c);
    CHECK(largest_allocation < n * sizeof(float));  // not even one channel's outputs
  }
}

TEST_CASE("bias tuning by groups of channels gives the bits of one call over all channels") {
  // The pipeline tunes a layer whose outputs outweigh its inputs in groups of channels, each
  // group's outputs captured into arrays of their own: [N, c1 - c0, P].
  std::mt19937 rng(8);
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> u(n * c * p), y(u.size());
  for (std::size_t i = 0; i < u.size(); ++i) {
    u[i] = d(rng);
    y[i] = 0.7f * u[i] + d(rng);
  }
  const std::vector<float> start{0.3f, -1.0f, 2.0f};
  const auto slice = [](const std::vector<float>& v, std::size_t c0, std::size_t c1) {
    std::vector<float> out;
    for (std::size_t i = 0; i < n; ++i)
      out.insert(out.end(), v.begin() + static_cast<std::ptrdiff_t>((i * c + c0) * p),
                 v.begin() + static_cast<std::ptrdiff_t>((i * c + c1) * p));
    return out;
  };
  for (const act a : {act::none, act::relu, act::relu6})
    for (const std::size_t split : {std::size_t{1}, std::size_t{2}}) {  // [0, split), [split, c)
      const aq::bias_tuning_result whole = aq::tune_bias(view(u), view(y), start, a);
      aq::bias_tuning_result r{start, 0.0, 0.0};
      for (const auto& [c0, c1] : {std::pair{std::size_t{0}, split}, std::pair{split, c}}) {
        const std::vector<float> gu = slice(u, c0, c1), gy = slice(y, c0, c1);
        aq::tune_bias_channels(aq::tensor_view<const float>(gu.data(), {n, c1 - c0, p}),
                               aq::tensor_view<const float>(gy.data(), {n, c1 - c0, p}),
                               std::span<const float>(start.data() + c0, c1 - c0), a, c0, r);
      }
      INFO("activation " << static_cast<int>(a) << " split " << split);
      CHECK(r.bias == whole.bias);
      CHECK(r.loss_before == whole.loss_before);
      CHECK(r.loss_after == whole.loss_after);
    }
  aq::bias_tuning_result too_short{std::vector<float>(c, 0.0f), 0.0, 0.0};
  CHECK_THROWS_WITH(aq::tune_bias_channels(view(u), view(y), start, act::relu, 1, too_short),
                    Catch::Contains("r.bias"));
}

TEST_CASE("bias tuning rejects mismatched shapes, a wrong bias size, NaN and no samples") {
  std::vector<float> u(n * c * p, 1.0f), y(u.size(), 1.0f), bias(c, 0.0f);
  CHECK_THROWS_WITH(
      aq::tune_bias(view(u), aq::tensor_view<const float>(y.data(), {n, p, c}), bias, act::relu),
      Catch::Contains("y_fp"));
  const std::vector<float> short_bias(c - 1, 0.0f);
  CHECK_THROWS_WITH(aq::tune_bias(view(u), view(y), short_bias, act::relu),
                    Catch::Contains("expected [N, 2, P]"));
  CHECK_THROWS_AS(aq::tune_bias(aq::tensor_view<const float>(u.data(), {0, c, p}),
                                aq::tensor_view<const float>(y.data(), {0, c, p}), bias, act::relu),
                  aq::error);
  y[7] = std::nanf("");
  CHECK_THROWS_WITH(aq::tune_bias(view(u), view(y), bias, act::relu), Catch::Contains("NaN"));
  y[7] = 1.0f;
  bias[1] = INFINITY;
  CHECK_THROWS_WITH(aq::tune_bias(view(u), view(y), bias, act::relu), Catch::Contains("bias"));
}
