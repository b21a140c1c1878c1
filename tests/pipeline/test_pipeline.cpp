#include <adaquant/pipeline/advanced.hpp>
#include <adaquant/pipeline/light.hpp>

#include <catch2/catch.hpp>

#include <limits>
#include <utility>

#include "support/expect_error.hpp"
#include "toy_network.hpp"

namespace aq = adaquant;

namespace {
const aq::execution_context ctx{1, 64, {}};

aq::light_config light(int wbits, int abits) {
  aq::light_config c;
  c.quant.weights = aq::quantizer_spec::weights(wbits);
  c.quant.activations = aq::quantizer_spec::activations(abits);
  c.quant.first_last_8bit = false;
  return c;
}
aq::advanced_config advanced(int wbits, int abits) {
  aq::advanced_config c;
  c.quant = light(wbits, abits).quant;
  c.adaquant->layer.iterations = 600;
  c.adaquant->layer.seed = 7;
  return c;
}

// The toy network without the loss member: bit allocation must refuse it.
struct no_loss_network {
  toy::network& net;
  std::size_t calibration_size() const { return net.calibration_size(); }
  std::vector<aq::layer_desc> quantizable_layers() const { return net.quantizable_layers(); }
  aq::layer_io capture(std::size_t id, std::size_t first, std::size_t count, aq::capture_mode m) {
    return net.capture(id, first, count, m);
  }
  void set_quantized(const aq::quantized_layer& q) { net.set_quantized(q); }
  const aq::batch_norm_params* folded_batch_norm(std::size_t id) const {
    return net.folded_batch_norm(id);
  }
};
static_assert(aq::PipelineNetwork<no_loss_network> && !aq::LossNetwork<no_loss_network>);
}  // namespace

TEST_CASE("light beats naive and advanced beats light at W3A4 on the final output") {
  toy::network a(400), b(400), c(400);
  const auto rn = aq::light_pipeline(a, aq::light_config::naive(3, 4), ctx);
  const auto rl = aq::light_pipeline(b, light(3, 4), ctx);
  const auto ra = aq::advanced_pipeline(c, advanced(3, 4), ctx);
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
  // 12 inputs -> 24 outputs: bias tuning takes the first layer in two groups of channels.
  CHECK(aq::detail::bias_tuning_groups(c.quantizable_layers()[0]) == 2);
  for (const auto* r : {&rl, &ra})  // every step reports its CPU time (AdaQuant's did not)
    for (const aq::step_report& s : r->steps) {
      INFO(s.name);
      CHECK(s.cpu_seconds > 0.0);
    }
}

TEST_CASE("each light step lowers the output error of a coarse quantization") {
  toy::network ranges_only(400), with_bn(400), with_bias(400);
  auto c = light(3, 4);
  c.bn_tuning.reset();
  c.bias_correction = false;
  (void)aq::light_pipeline(ranges_only, c, ctx);
  c.bn_tuning = aq::bn_tuning_options{};
  (void)aq::light_pipeline(with_bn, c, ctx);
  c.bias_correction = true;
  (void)aq::light_pipeline(with_bias, c, ctx);
  toy::network fp_target(400);
  c.bias_correction = false;
  c.bn_tuning->target = aq::bn_reference::full_precision;
  (void)aq::light_pipeline(fp_target, c, ctx);
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
  c.bit_allocation = aq::bit_allocation_budget{0.1, {2, 3, 4, 8}};  // 3.2 bits per weight
  const auto r = aq::light_pipeline(net, c, ctx);
  CHECK(r.size_ratio() <= 0.1 + 1e-12);
  REQUIRE(r.weight_bits.size() == 3);
  for (int b : r.weight_bits) CHECK((b == 2 || b == 3 || b == 4 || b == 8));
  CHECK(r.steps[1].name == "bit_allocation");
  CHECK(r.steps[1].summary.rfind("optimal", 0) == 0);
  CHECK((r.steps[0].cpu_seconds > 0.0 && r.steps[1].cpu_seconds > 0.0));
  CHECK(std::isfinite(net.output_mse()));
}

TEST_CASE("advanced bit allocation chooses among AdaQuant-calibrated options within budget") {
  toy::network net(300);
  auto c = advanced(4, 8);
  c.adaquant->layer.iterations = 100;
  c.bit_allocation = aq::bit_allocation_budget{0.1, {2, 3, 4}};
  const auto r = aq::advanced_pipeline(net, c, ctx);
  CHECK(r.size_ratio() <= 0.1 + 1e-12);
  REQUIRE(r.steps.size() == 5);
  CHECK(r.steps[0].summary.find("2 bits:") != std::string::npos);
  CHECK(r.steps[1].name == "bit_allocation");
  CHECK(r.steps[1].summary.rfind("optimal", 0) == 0);
  CHECK(r.steps[2].name == "adaquant_chosen");
  CHECK((r.steps[0].cpu_seconds > 0.0 && r.steps[1].cpu_seconds > 0.0));
  CHECK(std::isfinite(net.output_mse()));
}

TEST_CASE("the chosen bits calibrated again in sequential order never raise the chosen loss") {
  // Same budget and bits with and without recalibrate_allocation, no later step: the choice is
  // the same, and the calibration loss with it is no higher (strictly lower when kept).
  for (const double budget : {0.1, 0.16}) {
    INFO("budget " << budget);
    toy::network with(300), without(300);
    auto c = advanced(4, 8);
    c.adaquant->layer.iterations = 100;
    c.bit_allocation = aq::bit_allocation_budget{budget, {2, 3, 4}};
    c.bn_tuning.reset();
    c.bias_tuning = false;
    const auto r = aq::advanced_pipeline(with, c, ctx);
    c.recalibrate_allocation = false;
    const auto r0 = aq::advanced_pipeline(without, c, ctx);
    REQUIRE(r.steps.size() == 3);
    REQUIRE(r0.steps.size() == 2);
    CHECK(r.weight_bits == r0.weight_bits);
    const double loss = with.calibration_loss(), chosen = without.calibration_loss();
    const std::string& summary = r.steps[2].summary;
    INFO(summary);
    if (summary.find(": kept") != std::string::npos) {
      CHECK(loss < chosen);
    } else {
      CHECK(summary.find("restored") != std::string::npos);
      CHECK(loss == chosen);
      for (const auto& [id, q] : without.quantized())
        CHECK(q.weight == with.quantized().at(id).weight);
    }
  }
}

TEST_CASE("pipelines are deterministic: the same seed gives bit-identical parameters") {
  toy::network a(200), b(200), t(200);
  auto c = advanced(4, 4);
  c.adaquant->layer.iterations = 40;
  (void)aq::advanced_pipeline(a, c, ctx);
  (void)aq::advanced_pipeline(b, c, ctx);
  c.adaquant->order = aq::calibration_order::parallel;  // more threads than layers
  (void)aq::advanced_pipeline(t, c, {3, 17, {}});
  for (const auto& [id, q] : a.quantized()) {
    CHECK(q.weight == b.quantized().at(id).weight);
    CHECK(q.bias == b.quantized().at(id).bias);
    CHECK(q.act_params == b.quantized().at(id).act_params);
  }
}

TEST_CASE("below 4 activation or weight bits the advanced pipeline uses QDrop by default",
          "[qdrop]") {
  for (const auto& [wbits, abits] : {std::pair{4, 2}, std::pair{2, 4}, std::pair{4, 4}}) {
    INFO("W" << wbits << "A" << abits);
    toy::network by_default(200), explicit_p(200), none(200);
    auto c = advanced(wbits, abits);
    c.adaquant->layer.iterations = 40;
    (void)aq::advanced_pipeline(by_default, c, ctx);
    c.adaquant->layer.qdrop = 0.5f;
    (void)aq::advanced_pipeline(explicit_p, c, ctx);
    c.adaquant->layer.qdrop = 0.0f;
    (void)aq::advanced_pipeline(none, c, ctx);
    // Below 4 bits the default is p = 0.5 (and differs from no drop); at W4A4 it is no drop.
    const toy::network& expected = wbits < 4 || abits < 4 ? explicit_p : none;
    const toy::network& other = wbits < 4 || abits < 4 ? none : explicit_p;
    bool differs = false;
    for (const auto& [id, q] : by_default.quantized()) {
      CHECK(q.weight == expected.quantized().at(id).weight);
      CHECK(q.bias == expected.quantized().at(id).bias);
      differs = differs || q.weight != other.quantized().at(id).weight;
    }
    CHECK(differs);
  }
}

TEST_CASE("below 4 weight bits the advanced pipeline uses AdaRound by default", "[adaround]") {
  toy::network by_default(200), explicit_r(200), step(200);
  auto c = advanced(2, 4);
  c.adaquant->layer.iterations = 40;
  (void)aq::advanced_pipeline(by_default, c, ctx);
  c.adaquant->layer.rounding = aq::weight_rounding::adaround;
  (void)aq::advanced_pipeline(explicit_r, c, ctx);
  c.adaquant->layer.rounding = aq::weight_rounding::learned_step;
  (void)aq::advanced_pipeline(step, c, ctx);
  bool differs = false;
  for (const auto& [id, q] : by_default.quantized()) {
    CHECK(q.weight == explicit_r.quantized().at(id).weight);
    CHECK(q.bias == explicit_r.quantized().at(id).bias);
    differs = differs || q.weight != step.quantized().at(id).weight;
  }
  CHECK(differs);
}

TEST_CASE("the advanced pipeline with AdaRound (and QDrop) beats light at W2A3", "[adaround]") {
  toy::network l(400), r(400);
  (void)aq::light_pipeline(l, light(2, 3), ctx);
  auto c = advanced(2, 3);
  c.adaquant->layer.rounding = aq::weight_rounding::adaround;
  c.adaquant->layer.qdrop = 0.5f;
  (void)aq::advanced_pipeline(r, c, ctx);
  INFO("light " << l.output_mse() << " advanced + AdaRound " << r.output_mse());
  CHECK(r.output_mse() < l.output_mse());
}

TEST_CASE("AdaQuant starts from the ranges the quantizer specs ask for, settings included") {
  // Every group frozen: AdaQuant returns its starting point, which must be what the weight and
  // activation specs estimate (range method and its settings; the settings were once dropped).
  for (const double pct : {90.0, 99.9}) {
    toy::network net(200);
    auto c = advanced(4, 4);
    c.adaquant->layer.iterations = 1;
    c.adaquant->layer.train = {false, false, false, false};
    c.bn_tuning.reset();
    c.bias_tuning = false;
    c.quant.weights.range = c.quant.activations->range = aq::range_method::percentile;
    c.quant.weights.settings.percentile = c.quant.activations->settings.percentile = pct;
    (void)aq::advanced_pipeline(net, c, ctx);
    const auto layers = net.quantizable_layers();
    for (const auto& d : layers) {
      const auto& q = net.quantized().at(d.id);
      const auto expect = aq::estimate_channel_params(
          aq::tensor_view<const float>(
              d.weight.data(), {d.geometry.out_channels(), d.geometry.weights_per_channel()}),
          c.quant.weights, aq::zero_range::use_epsilon);
      INFO("percentile " << pct << " layer " << d.id);
      CHECK(q.weight_params.scale == expect.scale);
      // The input range of the first layer comes from the network input (no earlier layer).
      if (d.id == 0) {
        const auto io = net.capture(0, 0, net.calibration_size(), aq::capture_mode::full_precision);
        const auto a = aq::estimate_tensor_params(
            aq::tensor_view<const float>(io.inputs.data(), {io.inputs.size()}),
            *c.quant.activations, aq::zero_range::use_epsilon);
        CHECK(q.act_params == a);
      }
    }
  }
}

TEST_CASE("pipelines reject bad configurations before changing the network") {
  toy::network net(100);
  auto check = [&](const aq::light_config& c, aq::errc code, const char* text) {
    const std::size_t calls = net.set_calls;
    adaquant_test::expect_error([&] { (void)aq::light_pipeline(net, c, ctx); }, code, text);
    CHECK(net.set_calls == calls);
  };
  check(light(17, 4), aq::errc::invalid_argument, "config.quant.weights.scheme.bits");
  check(light(4, 1), aq::errc::invalid_argument, "config.quant.activations.scheme.bits");
  auto c = light(4, 4);
  c.quant.weights.gran = aq::granularity::per_tensor();
  check(c, aq::errc::invalid_argument, "config.quant.weights.gran");
  c = light(4, 4);
  c.quant.activations->gran = aq::granularity::per_channel(1);
  check(c, aq::errc::invalid_argument, "config.quant.activations.gran");
  c = light(4, 4);
  c.quant.activations->rounding = aq::rounding_mode::onnx;
  check(c, aq::errc::invalid_argument, "rounding");
  c = light(4, 4);
  c.bit_allocation = aq::bit_allocation_budget{0.01, {2, 4}};  // below 2 bits everywhere
  check(c, aq::errc::infeasible, "smallest achievable");
  c.bit_allocation->max_size_ratio = 1.5;
  check(c, aq::errc::invalid_argument, "max_size_ratio");
  c.bit_allocation = aq::bit_allocation_budget{0.5, {}};
  check(c, aq::errc::invalid_argument, "weight_bits");
  c.bit_allocation = aq::bit_allocation_budget{0.5, {1, 4}};
  check(c, aq::errc::invalid_argument, "weight_bits");
  {  // caches larger than the memory limit: named, with the estimate, before any change
    aq::execution_context small = ctx;
    small.memory_limit = 1000;  // bytes; the toy's widest layer needs 100 x (24 + 24) x 4
    const std::size_t before = net.set_calls;
    adaquant_test::expect_error([&] { (void)aq::light_pipeline(net, light(4, 4), small); },
                                aq::errc::infeasible, "100 samples x 48 floats");
    adaquant_test::expect_error([&] { (void)aq::advanced_pipeline(net, advanced(4, 4), small); },
                                aq::errc::infeasible, "of context.memory_limit");
    CHECK(net.set_calls == before);
    small.memory_limit = 100 * 48 * 4 * aq::resolve_threads(small.threads);  // exactly enough
    CHECK_NOTHROW(aq::light_pipeline(net, light(4, 4), small));
  }
  toy::network empty(0);
  CHECK_THROWS_WITH(aq::light_pipeline(empty, light(4, 4), ctx),
                    Catch::Contains("calibration set is empty"));
  c = light(4, 4);
  c.bit_allocation = aq::bit_allocation_budget{0.5, {2, 4}};
  no_loss_network plain{net};
  const std::size_t calls = net.set_calls;
  CHECK_THROWS_WITH(aq::light_pipeline(plain, c, ctx), Catch::Contains("calibration_loss"));
  auto adv = advanced(4, 4);
  adv.bit_allocation = c.bit_allocation;
  CHECK_THROWS_WITH(aq::advanced_pipeline(plain, adv, ctx), Catch::Contains("calibration_loss"));
  adv = advanced(4, 4);
  adv.adaquant->layer.iterations = 0;
  CHECK_THROWS_WITH(aq::advanced_pipeline(net, adv, ctx), Catch::Contains("iterations"));
  adv = advanced(4, 2);
  for (float p : {-0.5f, 2.0f, std::numeric_limits<float>::quiet_NaN()}) {
    adv.adaquant->layer.qdrop = p;
    adaquant_test::expect_error([&] { (void)aq::advanced_pipeline(net, adv, ctx); },
                                aq::errc::invalid_argument, "options.qdrop");
  }
  adv = advanced(2, 4);
  adv.adaquant->layer.rounding = aq::weight_rounding::adaround;
  for (float l : {-0.01f, std::numeric_limits<float>::quiet_NaN()}) {
    adv.adaquant->layer.adaround.lambda = l;
    adaquant_test::expect_error([&] { (void)aq::advanced_pipeline(net, adv, ctx); },
                                aq::errc::invalid_argument, "options.adaround.lambda");
  }
  adv.adaquant->layer.adaround.lambda = 0.01f;
  adv.adaquant->layer.adaround.beta_start = 1.0f;  // below beta_end
  adaquant_test::expect_error([&] { (void)aq::advanced_pipeline(net, adv, ctx); },
                              aq::errc::invalid_argument, "options.adaround.beta_start");
  CHECK(net.set_calls == calls);
}

namespace {
// Weight-only W3 in blocks of 8 inputs (the toy's 12 and 24 inputs: 8 + 4 and 3 x 8).
aq::quantization_spec weight_only_blocks() {
  aq::quantization_spec q;
  q.weights = aq::quantizer_spec::weights_per_block(3, 8);
  q.activations.reset();
  q.first_last_8bit = false;
  return q;
}
// Every layer of the network holds block-wise weights on its blocks' grids and float inputs.
void check_block_weight_only(const toy::network& net) {
  for (const auto& d : net.quantizable_layers()) {
    const aq::quantized_layer& q = net.quantized().at(d.id);
    INFO("layer " << d.id);
    REQUIRE(q.weight_blocks.has_value());
    CHECK_FALSE(q.quantize_input);
    const std::size_t oc = d.geometry.out_channels(), k = d.geometry.weights_per_channel();
    CHECK(q.weight_blocks->blocks() == oc * ((k + 7) / 8));
    std::vector<float> again(q.weight.size());
    aq::fake_quant_per_block(aq::tensor_view<const float>(q.weight.data(), {oc, k}),
                             aq::tensor_view<float>(again.data(), {oc, k}), *q.weight_blocks);
    CHECK(again == q.weight);
  }
}
}  // namespace

TEST_CASE("weight-only, block-wise: light and advanced pipelines", "[block]") {
  toy::network blocks_light(300), channels_light(300), blocks_adv(300);
  aq::light_config lc;
  lc.quant = weight_only_blocks();
  const auto rl = aq::light_pipeline(blocks_light, lc, ctx);
  check_block_weight_only(blocks_light);
  CHECK(rl.act_bits == std::vector<int>{32, 32, 32});
  CHECK(rl.weight_bits == std::vector<int>{3, 3, 3});
  CHECK(rl.steps[0].summary.find("float (weight-only)") != std::string::npos);
  REQUIRE(rl.steps[1].name == "bn_tuning");  // rescaled block scales keep the grid
  aq::light_config per_channel = lc;
  per_channel.quant.weights = aq::quantizer_spec::weights(3);
  const auto rc = aq::light_pipeline(channels_light, per_channel, ctx);
  // Storage: the 3-bit integers, plus a float scale and a 3-bit zero point per block or channel.
  double ints = 0, fp32 = 0, per_block = 0, per_channel_params = 0;
  for (const auto& d : blocks_light.quantizable_layers()) {
    const double oc = static_cast<double>(d.geometry.out_channels());
    const std::size_t k = d.geometry.weights_per_channel();
    ints += oc * static_cast<double>(k) * 3 / 8;
    fp32 += oc * static_cast<double>(k) * 4;
    per_block += oc * static_cast<double>((k + 7) / 8) * 35 / 8;
    per_channel_params += oc * 35 / 8;
  }
  CHECK(rl.weight_bytes == ints);
  CHECK(rl.fp32_weight_bytes == fp32);
  CHECK(rl.param_bytes == per_block);
  CHECK(rc.param_bytes == per_channel_params);
  CHECK(rl.size_ratio_with_params() == (ints + per_block) / fp32);
  aq::advanced_config ac;
  ac.quant = lc.quant;
  ac.adaquant->layer.iterations = 300;
  ac.adaquant->layer.seed = 7;
  (void)aq::advanced_pipeline(blocks_adv, ac, ctx);
  check_block_weight_only(blocks_adv);
  const double mb = blocks_light.output_mse(), mc = channels_light.output_mse();
  const double ma = blocks_adv.output_mse();
  INFO("light per block " << mb << ", light per channel " << mc << ", advanced per block " << ma);
  CHECK(mb < mc);
  CHECK(ma < mb);
  // Parallel AdaQuant: the same result on 1 and 2 threads.
  ac.adaquant->order = aq::calibration_order::parallel;
  ac.bn_tuning.reset();
  toy::network one(120), two(120);
  (void)aq::advanced_pipeline(one, ac, aq::execution_context{1, 64, {}});
  (void)aq::advanced_pipeline(two, ac, aq::execution_context{2, 64, {}});
  for (std::size_t id = 0; id < 3; ++id) {
    CHECK(one.quantized().at(id).weight == two.quantized().at(id).weight);
    CHECK(one.quantized().at(id).weight_blocks == two.quantized().at(id).weight_blocks);
  }
  // Bit allocation chooses among block-wise forms.
  toy::network alloc(200);
  lc.bit_allocation = aq::bit_allocation_budget{0.15, {2, 3, 4, 8}};
  const auto rb = aq::light_pipeline(alloc, lc, ctx);
  CHECK(rb.size_ratio() <= 0.15 + 1e-9);
  check_block_weight_only(alloc);
}

TEST_CASE("block-wise weights on a 3x3 convolution are rejected before any change", "[block]") {
  // The toy network with layer 1 presented as a 3x3 convolution (only its geometry is read).
  struct conv_presenting {
    toy::network& net;
    std::size_t calibration_size() const { return net.calibration_size(); }
    std::vector<aq::layer_desc> quantizable_layers() const {
      auto d = net.quantizable_layers();
      d[1].geometry = aq::layer_geometry::of(aq::conv2d_geometry{8, 24, 3, 3, 3, 3});
      return d;
    }
    aq::layer_io capture(std::size_t id, std::size_t first, std::size_t count, aq::capture_mode m) {
      return net.capture(id, first, count, m);
    }
    void set_quantized(const aq::quantized_layer& q) { net.set_quantized(q); }
    const aq::batch_norm_params* folded_batch_norm(std::size_t id) const {
      return net.folded_batch_norm(id);
    }
  };
  toy::network net(50);
  conv_presenting presenting{net};
  aq::light_config lc;
  lc.quant = weight_only_blocks();
  adaquant_test::expect_error(
      [&] { (void)aq::light_pipeline(presenting, lc, ctx); }, aq::errc::invalid_argument,
      "light_pipeline: config.quant.weights.gran (layer 1): block-wise weights need blocks along "
      "the weight's innermost axis");
  aq::advanced_config ac;
  ac.quant = lc.quant;
  ac.quant.weights.gran = aq::granularity::per_block(0, 8);  // blocks along the outputs
  adaquant_test::expect_error([&] { (void)aq::advanced_pipeline(presenting, ac, ctx); },
                              aq::errc::invalid_argument,
                              "advanced_pipeline: config.quant.weights.gran: AdaQuant's objective "
                              "quantizes weights per output channel (axis 0) or per block");
  CHECK(net.set_calls == 0);
}

TEST_CASE("fixed_8bit_layers hold those layers at 8 bits; a position past the layers is refused") {
  toy::network net(200), plain(200);
  auto c = light(3, 4);
  c.quant.fixed_8bit_layers = {1};
  const auto r = aq::light_pipeline(net, c, ctx);
  CHECK(r.weight_bits == std::vector<int>{3, 8, 3});
  CHECK(r.act_bits == std::vector<int>{4, 8, 4});
  (void)aq::light_pipeline(plain, light(3, 4), ctx);
  CHECK(net.quantized().at(1).weight_params.qmax == 127);
  CHECK(plain.quantized().at(1).weight_params.qmax == 3);
  c.quant.fixed_8bit_layers = {3};
  toy::network other(200);
  adaquant_test::expect_error(
      [&] { (void)aq::light_pipeline(other, c, ctx); }, aq::errc::invalid_argument,
      "config.quant.fixed_8bit_layers: position 3 is not below the 3 layers");
  CHECK(other.set_calls == 0);
}
