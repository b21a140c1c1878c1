// Block reconstruction's trial run (adaquant_options::trial_iterations, calibrate/block_jobs.hpp)
// on onnx_network, a LossNetwork: the run with the lower network calibration loss is kept, its
// result is the one a run of that length alone gives, the report records both losses, and a
// scripted loss exercises the trial kept, not kept, a tie and a non-finite loss.

#include "network_test_util.hpp"

#include <adaquant/calibrate/driver.hpp>
#include <adaquant/pipeline/advanced.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <vector>

namespace aq = adaquant::onnx;
using namespace adaquant;

namespace {
// An onnx_network whose calibration_loss() returns `losses` in turn, counting its calls.
struct scripted_loss {
  aq::onnx_network inner;
  std::vector<double> losses;
  std::size_t calls = 0;

  std::size_t calibration_size() const { return inner.calibration_size(); }
  std::vector<layer_desc> quantizable_layers() const { return inner.quantizable_layers(); }
  layer_io capture(std::size_t id, std::size_t first, std::size_t count, capture_mode m) {
    return inner.capture(id, first, count, m);
  }
  void set_quantized(const quantized_layer& q) { inner.set_quantized(q); }
  std::vector<block_desc> blocks() const { return inner.blocks(); }
  block_desc block_of(std::size_t a, std::size_t b) const { return inner.block_of(a, b); }
  block_io capture_block(const block_desc& b, std::size_t first, std::size_t count) {
    return inner.capture_block(b, first, count);
  }
  double calibration_loss() { return losses.at(calls++); }
};
static_assert(BlockNetwork<scripted_loss> && LossNetwork<scripted_loss>);

// ResNet at W2A2, the stem at 8 bits: by bits one block of every layer but the classifier, which
// stays float (configure), so the network's loss after calibration is the one the trial measures.
std::vector<layer_quantizers> w2a2(std::size_t layers) {
  std::vector<layer_quantizers> q;
  for (std::size_t i = 0; i < layers; ++i)
    q.push_back(
        {quantizer_spec::weights(i == 0 ? 8 : 2), quantizer_spec::activations(i == 0 ? 8 : 2)});
  return q;
}

struct outcome {
  calibration_report report;
  std::vector<std::vector<float>> weights;  // the block's layers
  double loss = 0.0;                        // the network's after calibration
};

template <class Net>
outcome calibrate(Net& net, aq::onnx_network& onnx, const calibration_options& co) {
  const std::vector<layer_desc> layers = onnx.quantizable_layers();
  const std::vector<layer_quantizers> q = w2a2(layers.size());
  calibration_options o = co;
  const std::size_t classifier = layers.back().id;
  o.configure = [classifier](const layer_desc& d, adaquant_options&) { return d.id != classifier; };
  outcome r;
  r.report = adaquant_calibrate(net, std::span<const layer_quantizers>(q), o);
  for (std::size_t k = 0; k + 1 < layers.size(); ++k)
    r.weights.push_back(onnx.quantized().at(layers[k].id).layer->weight.f);
  r.loss = onnx.calibration_loss();
  return r;
}

outcome calibrate(const calibration_options& co) {
  aq::onnx_network net = onnx_test::reference_network("resnet_fm", 12);
  return calibrate(net, net, co);
}

calibration_options short_run(std::size_t iterations, std::optional<std::size_t> trial) {
  calibration_options co;
  co.layer.iterations = iterations;
  co.layer.batch_size = 4;
  co.layer.trial_iterations = trial;
  return co;
}
}  // namespace

TEST_CASE("A block's trial run is kept when it lowers the network's calibration loss",
          "[onnx][block][trial]") {
  CHECK(default_trial_iterations(3, 1000) == 0);  // residual blocks: no trial
  CHECK(default_trial_iterations(4, 1000) == 2000);
  CHECK(default_trial_iterations(16, 5) == 10);

  // The two candidates alone: 5 and 10 iterations, no trial.
  const outcome five = calibrate(short_run(5, 0)), ten = calibrate(short_run(10, 0));
  REQUIRE(five.weights != ten.weights);
  REQUIRE(five.loss != ten.loss);
  for (const layer_report& l : five.report.layers) CHECK(l.trial_iterations == 0);

  // The default on the whole-network block: a trial of twice the iterations, the run with the
  // lower loss kept bit for bit, both losses as the runs alone give them.
  const outcome chosen = calibrate(short_run(5, std::nullopt));
  const bool longer = ten.loss < five.loss;
  REQUIRE(chosen.report.layers.size() == five.report.layers.size());
  for (const layer_report& l : chosen.report.layers) {
    INFO("layer " << l.layer_id);
    CHECK(l.block_layers == chosen.report.layers.size());
    CHECK(l.trial_iterations == 10);
    CHECK(l.loss_first == five.loss);
    CHECK(l.loss_trial == ten.loss);
    CHECK(l.trial_kept == longer);
    CHECK(l.iterations == (longer ? 10u : 5u));
    CHECK(l.mse_after == (longer ? ten : five).report.layers[0].mse_after);
    CHECK(l.seconds > 0.0);
  }
  CHECK(chosen.weights == (longer ? ten : five).weights);
  CHECK(chosen.loss == std::min(five.loss, ten.loss));
  CHECK(to_string(chosen.report.layers[0]).find(", trial of 10 it: network loss ") !=
        std::string::npos);
  CHECK(settings_summary(chosen.report.layers)
            .ends_with(longer ? "; trial kept in 1 of 1 block" : "; trial kept in 0 of 1 block"));

  // Whichever way the real loss goes, a scripted loss decides: lower kept, higher or equal not.
  const auto scripted = [&](std::vector<double> losses) {
    scripted_loss net{onnx_test::reference_network("resnet_fm", 12), std::move(losses)};
    const outcome r = calibrate(net, net.inner, short_run(5, std::nullopt));
    CHECK(net.calls == 2);  // one evaluation per run of the one block
    return r;
  };
  const outcome kept = scripted({2.0, 1.0});
  CHECK(kept.weights == ten.weights);
  CHECK(kept.report.layers[0].trial_kept);
  CHECK(kept.report.layers[0].loss_first == 2.0);
  CHECK(kept.report.layers[0].loss_trial == 1.0);
  const outcome higher = scripted({1.0, 2.0});
  CHECK(higher.weights == five.weights);
  CHECK(!higher.report.layers[0].trial_kept);
  const outcome tie = scripted({1.0, 1.0});  // a tie keeps the first run
  CHECK(tie.weights == five.weights);
  CHECK(!tie.report.layers[0].trial_kept);
}

TEST_CASE("A non-finite network loss in a trial is an error naming the block and the run",
          "[onnx][block][trial][errors]") {
  scripted_loss trial{onnx_test::reference_network("resnet_fm", 12),
                      {1.0, std::numeric_limits<double>::quiet_NaN()}};
  onnx_test::expect_error([&] { (void)calibrate(trial, trial.inner, short_run(5, std::nullopt)); },
                          errc::non_finite,
                          {"adaquant_calibrate: block", "calibration_loss()", "trial run"});
  scripted_loss first{onnx_test::reference_network("resnet_fm", 12),
                      {std::numeric_limits<double>::infinity()}};
  onnx_test::expect_error([&] { (void)calibrate(first, first.inner, short_run(5, std::nullopt)); },
                          errc::non_finite, {"calibration_loss()", "inf", "first run"});
}

TEST_CASE("Short blocks and single layers run no trial by default", "[onnx][block][trial]") {
  // 3-bit inputs: the automatic residual blocks (2-3 layers), no trial by default; an explicit
  // trial runs on each of them.
  aq::onnx_network net = onnx_test::reference_network("resnet_fm", 12);
  const layer_quantizers q{quantizer_spec::weights(3), quantizer_spec::activations(3)};
  calibration_options co = short_run(5, std::nullopt);
  const calibration_report r = adaquant_calibrate(net, q, co);
  std::size_t in_blocks = 0;
  for (const layer_report& l : r.layers) {
    in_blocks += l.block_layers > 1;
    CHECK(l.trial_iterations == 0);
  }
  CHECK(in_blocks > 0);
  co.layer.trial_iterations = 7;
  aq::onnx_network again = onnx_test::reference_network("resnet_fm", 12);
  const calibration_report t = adaquant_calibrate(again, q, co);
  for (const layer_report& l : t.layers) {
    INFO("layer " << l.layer_id);
    CHECK(l.trial_iterations == (l.block_layers > 1 ? 7u : 0u));  // layers alone: never
    if (l.block_layers > 1) CHECK(std::isfinite(l.loss_first));
  }
}

TEST_CASE("The advanced pipeline's AdaQuant step gives the trial the network's loss",
          "[onnx][block][trial][pipeline]") {
  // W2A2, first and last layer at 8 bits: the whole-network block, whose trial needs the
  // network's calibration_loss() through the pipeline's own view of the network.
  aq::onnx_network net = onnx_test::reference_network("resnet_fm", 12);
  advanced_config c;
  c.quant.weights = quantizer_spec::weights(2);
  c.quant.activations = quantizer_spec::activations(2);
  c.adaquant->layer.iterations = 5;
  c.adaquant->layer.batch_size = 4;
  const pipeline_report r = advanced_pipeline(net, c);
  REQUIRE(!r.steps.empty());
  CHECK_THAT(r.steps[0].summary,
             Catch::Contains("; trial kept in ") && Catch::Contains(" of 1 block"));
  c.adaquant->layer.trial_iterations = 0;
  aq::onnx_network plain = onnx_test::reference_network("resnet_fm", 12);
  CHECK_THAT(advanced_pipeline(plain, c).steps.at(0).summary, !Catch::Contains("trial"));
}
