// Static tests of LossEvaluator (bitalloc/sensitivity.hpp), positive and negative.
#include <adaquant/bitalloc/sensitivity.hpp>

#include <catch2/catch.hpp>

#include <functional>

namespace aq = adaquant;

namespace {
struct functor {
  double operator()(std::span<const aq::bit_config>) { return 0.0; }
};
struct const_only {
  float operator()(std::span<const aq::bit_config>) const { return 0.0f; }
};
struct wrong_argument {
  double operator()(int) { return 0.0; }
};
struct returns_nothing {
  void operator()(std::span<const aq::bit_config>) {}
};
}  // namespace

static_assert(aq::LossEvaluator<functor>);
static_assert(aq::LossEvaluator<const_only>);
static_assert(aq::LossEvaluator<std::function<double(std::span<const aq::bit_config>)>>);
static_assert(!aq::LossEvaluator<wrong_argument>);
static_assert(!aq::LossEvaluator<returns_nothing>);
static_assert(!aq::LossEvaluator<double>);

TEST_CASE("a lambda scoring configurations is a LossEvaluator that measure_sensitivity calls") {
  std::size_t calls = 0;
  auto eval = [&](std::span<const aq::bit_config> c) {
    ++calls;
    return static_cast<double>(8 - c[0].bits_w);
  };
  static_assert(aq::LossEvaluator<decltype(eval)>);
  const aq::bit_config candidates[] = {{4, 8}, {8, 8}};
  const aq::sensitivity_table t = aq::measure_sensitivity(eval, 1, candidates);
  CHECK(calls == 2);  // the base once, the 4-bit candidate once
  CHECK(t.loss_delta[0][0] == 4.0);
}
