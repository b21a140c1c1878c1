// Samples in runs (objectives/sample_rows.hpp): everything computed over all samples is the same
// bit for bit wherever the runs split (including splits inside the SIMD kernel's blocks of
// partial sums), and AdaQuant on runs is AdaQuant on one array.

#include "support/adaquant_test_util.hpp"

#include <adaquant/calibrate/adaquant.hpp>
#include <adaquant/objectives/sample_rows.hpp>

#include <catch2/catch.hpp>

#include <cstring>

using namespace adaquant;
using adaquant_test::conv_geom;
using adaquant_test::linear_geom;
using adaquant_test::random_layer;

namespace {

// x cut into runs after every `cut` samples, the k-th run one sample longer when `ragged`.
std::vector<std::span<const float>> cut_runs(const std::vector<float>& x, std::size_t per,
                                             std::size_t cut, bool ragged) {
  std::vector<std::span<const float>> runs;
  std::size_t at = 0;
  for (std::size_t k = 0; at < x.size(); ++k) {
    const std::size_t len = std::min((cut + (ragged ? k % 3 : 0)) * per, x.size() - at);
    runs.emplace_back(x.data() + at, len);
    at += len;
  }
  return runs;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("sample_rows: rows across runs, empty runs dropped, bad runs refused",
          "[objectives][sample_rows]") {
  const std::vector<float> x = adaquant_test::randn(5 * 3, 1.0f, 1);
  const sample_rows one(x, 3);
  REQUIRE(one.samples() == 5);
  CHECK(one.contiguous().data() == x.data());
  const sample_rows runs({std::span<const float>(x.data(), 6), std::span<const float>{},
                          std::span<const float>(x.data() + 6, 9)},
                         3);
  REQUIRE(runs.samples() == 5);
  CHECK(runs.runs().size() == 2);
  CHECK(runs.contiguous().empty());
  CHECK(runs.elements() == 15);
  for (std::size_t i = 0; i < 5; ++i) CHECK(runs.row(i) == x.data() + 3 * i);
  try {
    (void)sample_rows({std::span<const float>(x.data(), 4)}, 3);
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::shape_mismatch);
    CHECK_THAT(std::string(e.what()), Catch::Contains("runs[0]"));
  }
}

TEST_CASE("quant_error_runs and the range estimates over runs equal those over one array",
          "[objectives][sample_rows]") {
  // 7 floats per sample: every cut falls inside a block of the kernel's partial sums.
  for (const std::size_t per : {std::size_t{7}, std::size_t{64}}) {
    std::vector<float> x = adaquant_test::randn(per * 37, 1.0f, 2, 0.3f);
    for (std::size_t i = 0; i < x.size(); i += 5) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
    const tensor_view<const float> all(x.data(), {x.size()});
    const quant_params q = params_from_range(quant_scheme{4, false, false, false}, -0.5f, 2.0f);
    for (const double p : {2.0, 1.0, 2.4})
      for (const auto& [cut, ragged] :
           {std::pair<std::size_t, bool>{1, false}, {2, true}, {5, false}, {37, false}}) {
        const sample_rows s(cut_runs(x, per, cut, ragged), per);
        CHECK(same_bits(detail::quant_error_runs<round_pytorch>(s, q, p),
                        detail::simd::quant_error<round_pytorch>(x.data(), x.size(), q, p)));
      }
    for (const range_method m :
         {range_method::min_max, range_method::mse, range_method::percentile})
      for (const rounding_mode r : {rounding_mode::pytorch, rounding_mode::onnx}) {
        quantizer_spec spec = quantizer_spec::activations(3);
        spec.range = m;
        spec.rounding = r;
        const quant_params want = estimate_tensor_params(all, spec);
        for (const std::size_t cut : {std::size_t{1}, std::size_t{3}, std::size_t{36}}) {
          const quant_params got =
              estimate_tensor_params(sample_rows(cut_runs(x, per, cut, true), per), spec);
          CHECK(got == want);
          CHECK(std::memcmp(&got.scale, &want.scale, sizeof(float)) == 0);
        }
      }
  }
}

TEST_CASE("AdaQuant on inputs in runs is AdaQuant on one array, bit for bit",
          "[objectives][sample_rows]") {
  for (const layer_geometry& g : {conv_geom(3, 8, 6, 6, 3, 1, 1), linear_geom(20, 6)}) {
    const random_layer l(g, 24, 5);
    layer_quant_config c;
    c.weight_scheme.bits = 3;
    c.act_scheme.bits = 3;
    c.activation = output_activation::relu;
    adaquant_options o;
    o.iterations = 30;
    o.batch_size = 8;
    o.eval_every = 10;
    layer_objective whole(g, l.w, l.b, l.x, l.y, c);
    layer_objective cut(g, l.w, l.b, cut_runs(l.x, g.input_per_sample(), 5, true), l.y, c);
    CHECK(cut.inputs().runs().size() > 1);
    const auto q = quantizers_of(c);
    const layer_result a = adaquant_optimize(whole, o, estimate_initial_params(whole, q));
    const layer_result b = adaquant_optimize(cut, o, estimate_initial_params(cut, q));
    CHECK(a.weights == b.weights);
    CHECK(a.bias == b.bias);
    CHECK(a.act_params == b.act_params);
    CHECK(same_bits(a.report.mse_after, b.report.mse_after));
  }
  // A non-finite input is named by its index in the samples, whichever run holds it.
  random_layer bad(linear_geom(4, 2), 6, 7);
  bad.x[13] = std::numeric_limits<float>::quiet_NaN();
  try {
    layer_objective obj(bad.geometry, bad.w, bad.b, cut_runs(bad.x, 4, 1, false), bad.y, {});
    FAIL("no throw");
  } catch (const error& e) {
    CHECK(e.code() == errc::non_finite);
    CHECK_THAT(std::string(e.what()), Catch::Contains("inputs") && Catch::Contains("element 13"));
  }
}
