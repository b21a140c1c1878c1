// The runtime as an adaquant::QuantizableNetwork: layer descriptions, captures in both modes, and
// a short AdaQuant calibration through the real driver.
#include "test_helpers.hpp"

#include <adaquant_runtime/calibration.hpp>

#include <adaquant/calibrate/driver.hpp>

#include <catch2/catch.hpp>

#include <random>

using namespace adaquant::examples;
using test_helpers::randn;

namespace {
// conv-BN-ReLU -> depthwise-BN-ReLU6 -> 1x1 conv + residual -> pool -> linear, BN folded.
network folded_net(std::mt19937& rng) {
  network net;
  auto bn = [](std::size_t c) {
    return batch_norm_params{std::vector<float>(c, 1.2f), std::vector<float>(c, 0.1f),
                             std::vector<float>(c, 0.05f), std::vector<float>(c, 0.9f), 1e-5f};
  };
  std::size_t x = net.add_conv2d("stem", 0, randn({8, 1, 3, 3}, rng, 0.5f), {}, {1, 1, 1});
  x = net.add_relu("stem_relu", net.add_batch_norm("stem_bn", x, bn(8)));
  std::size_t y = net.add_conv2d("dw", x, randn({8, 1, 3, 3}, rng, 0.5f), {}, {2, 1, 8});
  y = net.add_relu6("dw_relu", net.add_batch_norm("dw_bn", y, bn(8)));
  std::size_t z = net.add_conv2d("pw", y, randn({8, 8, 1, 1}, rng, 0.3f), {}, {1, 0, 1});
  z = net.add_global_avg_pool("pool", net.add_add("add", y, z));
  net.add_linear("fc", z, randn({4, 8}, rng, 0.5f), {0.1f, -0.2f, 0.3f, 0.0f});
  fold_batch_norms(net);
  return net;
}
}  // namespace

TEST_CASE("calibration_network describes layers and captures their inputs and outputs",
          "[calibration]") {
  std::mt19937 rng(11);
  const network net = folded_net(rng);
  calibration_network cn(net, randn({6, 1, 10, 10}, rng, 1.0f));
  CHECK(cn.calibration_size() == 6);
  const auto layers = cn.quantizable_layers();
  REQUIRE(layers.size() == 4);
  CHECK(layers[0].id == net.index_of("stem"));
  CHECK(layers[0].activation == adaquant::output_activation::relu);
  CHECK(layers[1].activation == adaquant::output_activation::relu6);
  CHECK(layers[1].geometry.conv.groups == 8);
  CHECK(layers[1].geometry.conv.in_h == 10);
  CHECK(layers[2].activation == adaquant::output_activation::none);  // the add comes first
  CHECK(layers[2].geometry.conv.in_h == 5);
  CHECK(layers[3].geometry.kind == adaquant::layer_kind::linear);
  CHECK(layers[0].bias.size() == 8);  // folded BN gave the conv a bias

  for (const auto& d : layers) {
    const adaquant::layer_io io = cn.capture(d.id, 2, 3, adaquant::capture_mode::full_precision);
    CHECK(io.inputs.size() == 3 * d.geometry.input_per_sample());
    CHECK(io.outputs.size() == 3 * d.geometry.output_per_sample());
  }
  // The captured output is the layer applied to the captured input.
  const auto& dw = layers[1];
  const adaquant::layer_io io = cn.capture(dw.id, 0, 2, adaquant::capture_mode::full_precision);
  const tensor out = conv2d(tensor({2, 8, 10, 10}, io.inputs), net.at(dw.id).weight,
                            net.at(dw.id).bias, net.at(dw.id).geometry);
  CHECK(out.values() == io.outputs);
  CHECK_THROWS_AS(cn.capture(net.index_of("pool"), 0, 1, adaquant::capture_mode::full_precision),
                  adaquant::error);
  CHECK_THROWS_AS(cn.capture(dw.id, 5, 2, adaquant::capture_mode::full_precision), adaquant::error);
}

TEST_CASE("AdaQuant's driver calibrates a runtime network end to end", "[calibration]") {
  std::mt19937 rng(12);
  const network net = folded_net(rng);
  const tensor calib = randn({64, 1, 10, 10}, rng, 1.0f);
  calibration_network cn(net, calib);
  adaquant::calibration_options opt;
  opt.layer.iterations = 30;
  opt.layer.batch_size = 16;
  const adaquant::layer_quantizers w4a4{};  // weights per channel, inputs per tensor, MSE ranges
  const adaquant::calibration_report report =
      adaquant::adaquant_calibrate(cn, w4a4, opt, {1, 32, {}});
  CHECK(report.layers.size() == 4);
  // Layers given to set_quantized change the quantized network (weights on an 8-bit grid, inputs
  // fake-quantized), but the result stays close to full precision at 8 bits.
  const network q = cn.quantized();
  CHECK(q.at("stem").input_transform);
  const tensor y_fp = net.forward(calib), y_q = q.forward(calib);
  double err = 0.0, ref = 0.0;
  for (std::size_t i = 0; i < y_fp.size(); ++i) {
    err += (y_fp[i] - y_q[i]) * (y_fp[i] - y_q[i]);
    ref += y_fp[i] * y_fp[i];
  }
  CHECK(err > 0.0);
  CHECK(err < 0.01 * ref);
}
