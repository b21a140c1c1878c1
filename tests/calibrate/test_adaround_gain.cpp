// AdaRound through the optimiser (calibrate/adaquant.hpp, objectives/adaround.hpp): on a layer
// whose inputs are correlated (where learning the rounding pays) the rounding is hardened by the
// last step and clearly beats round-to-nearest within a short run; the regulariser's balance
// against the MSE does not depend on the units of the inputs.

#include "support/adaquant_test_util.hpp"

#include <adaquant/calibrate/adaquant.hpp>

#include <catch2/catch.hpp>

#include <cmath>

using namespace adaquant;
using adaquant_test::linear_geom;
using adaquant_test::randn;

namespace {

// Linear 32 -> 16 whose N inputs are rank-4 mixtures plus 10% noise (like neighbouring pixels),
// inputs multiplied by `unit`, targets the float layer's outputs.
struct correlated_layer {
  layer_geometry g = linear_geom(32, 16);
  std::vector<float> w, b, x, y;
  explicit correlated_layer(std::size_t n, float unit = 1.0f) {
    const std::size_t in = 32, out = 16, rank = 4;
    w = randn(in * out, 1.0f / std::sqrt(static_cast<float>(in)), 11);
    b = randn(out, 0.1f * unit, 12);
    const auto m = randn(in * rank, unit, 13), z = randn(n * rank, 1.0f, 14);
    x = randn(n * in, 0.1f * unit, 15);
    for (std::size_t s = 0; s < n; ++s)
      for (std::size_t i = 0; i < in; ++i)
        for (std::size_t j = 0; j < rank; ++j) x[s * in + i] += m[i * rank + j] * z[s * rank + j];
    y.resize(n * out);
    linear_forward(g.linear, x, w, b, y);
  }
};

layer_result run(const correlated_layer& L, int bits, std::size_t iterations, float holdout) {
  layer_quantizers q{quantizer_spec::weights(bits), std::nullopt};  // weight-only
  adaquant_options o;
  o.iterations = iterations;
  o.batch_size = 32;
  o.eval_every = 25;
  o.holdout_fraction = holdout;
  o.rounding = weight_rounding::adaround;
  return adaquant_layer(L.g, L.w, L.b, L.x, L.y, output_activation::none, q, o);
}

// Fraction of the logits whose h(V) is still strictly between 0.01 and 0.99.
double soft_fraction(const std::vector<float>& v) {
  const adaround_options a;
  std::size_t soft = 0;
  for (float x : v) {
    const float h = detail::rectified_sigmoid(x, a.zeta, a.gamma);
    soft += h > 0.01f && h < 0.99f;
  }
  return static_cast<double>(soft) / static_cast<double>(v.size());
}

}  // namespace

TEST_CASE("AdaRound hardens by the last step and beats round-to-nearest on correlated inputs",
          "[adaquant][adaround]") {
  const correlated_layer L(128);
  for (int bits : {3, 2}) {
    // No held-out split: the result is the last step's state.
    const layer_result last = run(L, bits, 200, 0.0f);
    WARN("W" << bits << " last step: " << to_string(last.report) << ", soft "
             << soft_fraction(last.state.weight_offset));
    CHECK(soft_fraction(last.state.weight_offset) < 0.02);
    const double want = bits == 3 ? 0.25 : 0.35;
    CHECK(last.report.mse_after < want * last.report.mse_before);
    // With the held-out selection: the gain holds on samples it did not train on.
    const layer_report r = run(L, bits, 200, 0.1f).report;
    WARN("W" << bits << " held-out: " << to_string(r));
    CHECK(r.heldout_after < want * r.heldout_before);
  }
}

TEST_CASE("AdaRound's rounding does not depend on the units of the inputs",
          "[adaquant][adaround]") {
  // Inputs, bias and targets times 1/16 or 16 (exact in floating point): every term of the loss
  // scales alike, so the same roundings must be learned, up to Adam's epsilon.
  const correlated_layer a(64);
  const layer_result ra = run(a, 3, 100, 0.0f);
  const channel_params rtn =
      estimate_channel_params(tensor_view<const float>(a.w.data(), {16, 32}),
                              quantizer_spec::weights(3), zero_range::use_epsilon);
  const auto integer = [](const layer_result& r, std::size_t i) {
    return std::nearbyint(r.weights[i] / r.weight_params.scale[i / 32]);
  };
  for (const float unit : {0.0625f, 16.0f}) {
    const layer_result rb = run(correlated_layer(64, unit), 3, 100, 0.0f);
    // Of the weights either run rounds away from nearest, the share both round alike.
    std::size_t moved = 0, same = 0;
    for (std::size_t i = 0; i < ra.weights.size(); ++i) {
      const float qa = integer(ra, i), qb = integer(rb, i);
      const float qn = std::nearbyint(a.w[i] / rtn.scale[i / 32]);
      if (qa == qn && qb == qn) continue;
      ++moved;
      same += qa == qb;
    }
    const double agree = static_cast<double>(same) / static_cast<double>(moved);
    WARN("inputs x" << unit << ": " << moved << " weights moved, same in both runs " << agree);
    CHECK(moved > 10);
    CHECK(agree > 0.95);
  }
}
