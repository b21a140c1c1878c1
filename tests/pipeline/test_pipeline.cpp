#include <adaquant/pipeline/advanced.hpp>
#include <adaquant/pipeline/light.hpp>

#include <catch2/catch.hpp>

#include "toy_network.hpp"

namespace aq = adaquant;

namespace {
aq::pipeline_config naive(int wbits, int abits) {
  aq::pipeline_config c;
  c.weight_bits = wbits;
  c.act_bits = abits;
  c.first_last_8bit = false;
  c.weight_range = c.act_range = aq::range_method::min_max;
  c.bn_tuning = c.bias_correction = false;
  c.capture_batch = 64;
  return c;
}
aq::pipeline_config light(int wbits, int abits) {
  aq::pipeline_config c = naive(wbits, abits);
  c.weight_range = c.act_range = aq::range_method::mse;
  c.bn_tuning = c.bias_correction = true;
  return c;
}
aq::pipeline_config advanced(int wbits, int abits) {
  aq::pipeline_config c = light(wbits, abits);
  c.calibration.layer.iterations = 600;
  c.calibration.layer.seed = 7;
  return c;
}
}  // namespace

TEST_CASE("light beats naive and advanced beats light at W3A4 on the final output") {
  toy::network a(400), b(400), c(400);
  const auto rn = aq::light_pipeline(a, naive(3, 4));
  const auto rl = aq::light_pipeline(b, light(3, 4));
  const auto ra = aq::advanced_pipeline(c, advanced(3, 4));
  const double mn = a.output_mse(), ml = b.output_mse(), ma = c.output_mse();
  INFO("naive " << mn << " light " << ml << " advanced " << ma);
  CHECK(ml < 0.8 * mn);
  CHECK(ma < ml);
  CHECK(rn.steps.size() == 1);
  REQUIRE(rl.steps.size() == 3);
  CHECK(rl.steps[1].name == "bn_tuning");
  CHECK(rl.steps[1].summary.find("2 batch norms") != std::string::npos);
  REQUIRE(ra.steps.size() == 3);
  CHECK(ra.steps[0].name == "adaquant");
  CHECK(ra.steps[2].name == "bias_tuning");
}

TEST_CASE("each light step lowers the output error of a coarse quantization") {
  toy::network ranges_only(400), with_bn(400), with_bias(400);
  auto c = light(3, 4);
  c.bn_tuning = c.bias_correction = false;
  (void)aq::light_pipeline(ranges_only, c);
  c.bn_tuning = true;
  (void)aq::light_pipeline(with_bn, c);
  c.bias_correction = true;
  (void)aq::light_pipeline(with_bias, c);
  toy::network fp_target(400);
  c.bias_correction = false;
  c.bn_target = aq::bn_reference::full_precision;
  (void)aq::light_pipeline(fp_target, c);
  INFO(ranges_only.output_mse() << " " << with_bn.output_mse() << " " << with_bias.output_mse()
                                << " " << fp_target.output_mse());
  CHECK(with_bias.output_mse() < ranges_only.output_mse());
  CHECK(fp_target.output_mse() < ranges_only.output_mse());
  // The toy's running statistics are its full-precision statistics on the calibration set, so
  // both BN targets must agree (up to float rounding of the stored statistics).
  CHECK(fp_target.output_mse() == Approx(with_bn.output_mse()).epsilon(1e-4));
  // BN tuning keeps weights on a grid: same integers, rescaled per channel.
  for (const auto& [id, q] : with_bn.quantized()) {
    std::vector<std::int32_t> ints(q.weight.size());
    const std::size_t oc = q.weight_params.channels(), k = q.weight.size() / oc;
    aq::quantize_per_channel(aq::tensor_view<const float>(q.weight.data(), {oc, k}),
                             aq::tensor_view<std::int32_t>(ints.data(), {oc, k}), q.weight_params);
    std::vector<float> back(q.weight.size());
    aq::dequantize_per_channel(aq::tensor_view<const std::int32_t>(ints.data(), {oc, k}),
                               aq::tensor_view<float>(back.data(), {oc, k}), q.weight_params);
    CHECK(back == q.weight);
  }
}

TEST_CASE("bit allocation meets the size budget and spends bits where they matter") {
  toy::network net(300);
  auto c = light(4, 8);
  c.max_size_ratio = 0.1;  // 3.2 bits per weight on average
  c.weight_bit_options = {2, 3, 4, 8};
  c.calibration_loss = [&net] { return net.output_mse(); };
  const auto r = aq::light_pipeline(net, c);
  CHECK(r.size_ratio() <= 0.1 + 1e-12);
  REQUIRE(r.weight_bits.size() == 3);
  for (int b : r.weight_bits) CHECK((b == 2 || b == 3 || b == 4 || b == 8));
  CHECK(r.steps[1].name == "bit_allocation");
  CHECK(r.steps[1].summary.rfind("optimal", 0) == 0);
  // The allocation is not uniform: a uniform 3-bit choice would fit too, the optimum differs or
  // equals it, but it never exceeds the budget and its loss is finite.
  CHECK(std::isfinite(net.output_mse()));
}

TEST_CASE("advanced bit allocation chooses among AdaQuant-calibrated options within budget") {
  toy::network net(300);
  auto c = advanced(4, 8);
  c.calibration.layer.iterations = 100;
  c.max_size_ratio = 0.1;
  c.weight_bit_options = {2, 3, 4};
  c.calibration_loss = [&net] { return net.output_mse(); };
  const auto r = aq::advanced_pipeline(net, c);
  CHECK(r.size_ratio() <= 0.1 + 1e-12);
  REQUIRE(r.steps.size() == 4);
  CHECK(r.steps[0].summary.find("2 bits:") != std::string::npos);
  CHECK(r.steps[1].name == "bit_allocation");
  CHECK(r.steps[1].summary.rfind("optimal", 0) == 0);
  CHECK(std::isfinite(net.output_mse()));
}

TEST_CASE("pipelines are deterministic: the same seed gives bit-identical parameters") {
  toy::network a(200), b(200);
  auto c = advanced(4, 4);
  c.calibration.layer.iterations = 40;
  (void)aq::advanced_pipeline(a, c);
  (void)aq::advanced_pipeline(b, c);
  for (const auto& [id, q] : a.quantized()) {
    CHECK(q.weight == b.quantized().at(id).weight);
    CHECK(q.bias == b.quantized().at(id).bias);
    CHECK(q.act_params == b.quantized().at(id).act_params);
  }
}

TEST_CASE("pipelines reject bad configurations before changing the network") {
  toy::network net(100);
  auto check = [&](aq::pipeline_config c, aq::errc code, const char* text) {
    const std::size_t calls = net.set_calls;
    try {
      (void)aq::light_pipeline(net, c);
      FAIL("expected an error");
    } catch (const aq::error& e) {
      CHECK(e.code() == code);
      CHECK_THAT(e.what(), Catch::Contains(text));
    }
    CHECK(net.set_calls == calls);
  };
  check(light(17, 4), aq::errc::invalid_argument, "weight_bits");
  check(light(4, 1), aq::errc::invalid_argument, "act_bits");
  auto c = light(4, 4);
  c.max_size_ratio = 0.01;  // below 2 bits everywhere
  c.calibration_loss = [] { return 0.0; };
  check(c, aq::errc::infeasible, "smallest achievable");
  c.max_size_ratio = 1.5;
  check(c, aq::errc::invalid_argument, "max_size_ratio");
  toy::network empty(0);
  CHECK_THROWS_WITH(aq::light_pipeline(empty, light(4, 4)),
                    Catch::Contains("calibration set is empty"));
  c = light(4, 4);
  c.max_size_ratio = 0.5;
  CHECK_THROWS_WITH(aq::light_pipeline(net, c), Catch::Contains("calibration_loss"));
}
