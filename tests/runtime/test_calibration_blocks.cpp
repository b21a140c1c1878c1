// The runtime as an adaquant::BlockNetwork: the ResNet-style reference model's automatic blocks,
// their programs reproduce the network, captures (1 and 2 threads), errors naming the node,
// calibration by block through the real driver, and output weights reaching the block loss.
#include "support/code_built_models.hpp"
#include "support/expect_error.hpp"
#include "test_helpers.hpp"

#include <adaquant_runtime/calibration.hpp>

#include <adaquant/calibrate/driver.hpp>
#include <adaquant/objectives/block_objective.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>

using namespace adaquant::examples;
using adaquant::block_desc;
using adaquant::block_io;
using adaquant::block_op_kind;
using adaquant::capture_mode;
using adaquant::errc;
using adaquant_test::expect_error;
using test_helpers::randn;

namespace {
network reference_model(const std::string& name, bool fold) {
  network net =
      code_built::load(ADAQUANT_MODELS_DIR, load_reference_sidecar(ADAQUANT_MODELS_DIR, name));
  if (fold) fold_batch_norms(net);
  return net;
}
network resnet_fm(bool fold) { return reference_model("resnet_fm", fold); }

// n images of Normal(0, 1) pixels.
tensor images(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  return randn({n, 1, 28, 28}, rng, 1.0f);
}

// A residual network small enough for the sanitizer build: stem, an identity-shortcut block
// (with a batch norm, folded), a stride-2 block with a projection, pool, linear.
network small_resnet(std::mt19937& rng) {
  network net;
  const auto conv = [&](const std::string& name, std::size_t in, std::size_t ci, std::size_t k,
                        std::size_t stride) {
    return net.add_conv2d(name, in, randn({4, ci, k, k}, rng, 0.4f), std::vector<float>(4, 0.05f),
                          {stride, k / 2, 1});
  };
  const std::size_t x = net.add_relu("stem_relu", conv("stem", 0, 1, 3, 1));
  std::size_t y = conv("a.conv1", x, 4, 3, 1);
  y = net.add_batch_norm("a.bn1", y,
                         {std::vector<float>(4, 1.1f), std::vector<float>(4, 0.1f),
                          std::vector<float>(4, 0.02f), std::vector<float>(4, 0.8f), 1e-5f});
  y = conv("a.conv2", net.add_relu("a.relu1", y), 4, 3, 1);
  const std::size_t a = net.add_relu("a.relu2", net.add_add("a.add", y, x));
  std::size_t z = conv("b.conv2", net.add_relu("b.relu1", conv("b.conv1", a, 4, 3, 2)), 4, 3, 1);
  z = net.add_relu("b.relu2", net.add_add("b.add", z, conv("b.proj", a, 4, 1, 2)));
  net.add_linear("fc", net.add_global_avg_pool("pool", z), randn({3, 4}, rng, 0.5f), {});
  fold_batch_norms(net);
  return net;
}

std::size_t count_ops(const block_desc& b, block_op_kind k) {
  return static_cast<std::size_t>(std::count_if(b.program.ops.begin(), b.program.ops.end(),
                                                [&](const auto& o) { return o.kind == k; }));
}

double worst_difference(std::span<const float> a, std::span<const float> b) {
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// Runs b's program in float with the network's own kernels and weights: the output slot.
tensor run_program(const network& net, const block_desc& b, const std::vector<tensor>& inputs) {
  std::vector<tensor> slot(inputs);
  for (const adaquant::block_op& op : b.program.ops) {
    tensor y = slot.at(op.a);
    if (op.kind == block_op_kind::layer) {
      const node& n = net.at(b.layers.at(op.layer));
      y = n.kind == op_kind::conv2d ? conv2d(y, n.weight, n.bias, n.geometry)
                                    : linear(y, n.weight, n.bias);
    } else if (op.kind == block_op_kind::add) {
      for (std::size_t i = 0; i < y.size(); ++i) y[i] += slot.at(op.b)[i];
    } else if (op.kind != block_op_kind::identity) {
      const float hi = op.kind == block_op_kind::relu6 ? 6.0f : INFINITY;
      for (float& v : y.span()) v = std::min(std::max(v, 0.0f), hi);
    }
    slot.push_back(std::move(y));
  }
  return slot.at(b.program.output);
}

// A calibration_network whose capture_block also gives output weights, weight(sample, element),
// when `weight` is set; with `drop_from` > 0, none from that sample on (a network that breaks the
// contract).
struct weighted_blocks {
  calibration_network& net;
  std::function<float(std::size_t, std::size_t)> weight;
  std::size_t drop_from = 0;

  std::size_t calibration_size() const { return net.calibration_size(); }
  std::vector<adaquant::layer_desc> quantizable_layers() const { return net.quantizable_layers(); }
  adaquant::layer_io capture(std::size_t id, std::size_t first, std::size_t count,
                             capture_mode mode) {
    return net.capture(id, first, count, mode);
  }
  void set_quantized(const adaquant::quantized_layer& q) { net.set_quantized(q); }
  std::vector<block_desc> blocks() const { return net.blocks(); }
  block_desc block_of(std::size_t a, std::size_t b) const { return net.block_of(a, b); }
  block_io capture_block(const block_desc& b, std::size_t first, std::size_t count) {
    block_io io = net.capture_block(b, first, count);
    if (!weight || (drop_from > 0 && first >= drop_from)) return io;
    const std::size_t out = io.outputs.size() / count;
    for (std::size_t i = 0; i < io.outputs.size(); ++i)
      io.output_weights.push_back(weight(first + i / out, i % out));
    return io;
  }
};
static_assert(adaquant::BlockNetwork<weighted_blocks>);

// small_resnet on 6 random 8x8 images, block reconstruction with `iterations` steps of 3
// samples, weights and inputs at `bits`.
struct small_case {
  network net;
  tensor x;
  adaquant::calibration_options co;
  adaquant::layer_quantizers q;

  small_case(std::size_t iterations, int bits) {
    std::mt19937 rng(24);
    net = small_resnet(rng);
    x = randn({6, 1, 8, 8}, rng, 1.0f);
    co.layer.iterations = iterations;
    co.layer.batch_size = 3;
    co.reconstruction = adaquant::reconstruction_unit::block;
    q = {adaquant::quantizer_spec::weights(bits), adaquant::quantizer_spec::activations(bits)};
  }
};

}  // namespace

TEST_CASE("Output weights a network gives reach the block loss", "[calibration][block]") {
  const small_case c(4, 3);
  const auto& [net, x, co, q] = c;
  // The report of a layer in the last block (its layers share the block's report) and the
  // quantized network's logits.
  const auto run = [&](std::function<float(std::size_t, std::size_t)> weight,
                       std::size_t drop_from = 0) {
    calibration_network cn(net, x, 1);
    weighted_blocks wn{cn, std::move(weight), drop_from};
    const adaquant::calibration_report r = adaquant::adaquant_calibrate(wn, q, co, {1, 2, {}});
    return std::pair{r.layers.at(r.layers.size() - 2), cn.quantized().forward(x).values()};
  };
  const auto [plain_report, plain_logits] = run(nullptr, 0);
  const auto [ones_report, ones_logits] = run([](std::size_t, std::size_t) { return 1.0f; });
  // Weight 1 everywhere is the plain loss (up to the order of its sums).
  CHECK(ones_report.mse_before == Approx(plain_report.mse_before).epsilon(1e-6));
  // Samples 0-2 weighted 0, 3-5 weighted 2: the loss is the last samples' only.
  const auto [last_report, last_logits] =
      run([](std::size_t n, std::size_t) { return n < 3 ? 0.0f : 2.0f; });
  CHECK(last_report.mse_before != Approx(plain_report.mse_before).epsilon(1e-3));
  CHECK(last_logits != plain_logits);
  // Weights for the first chunk (samples 0-1) only: an error naming the block and the samples.
  expect_error([&] { (void)run([](std::size_t, std::size_t) { return 1.0f; }, 2); },
               errc::shape_mismatch, "capture_block: returned 0 output weights");
}

TEST_CASE("The ResNet-style model's automatic blocks are its residual blocks",
          "[calibration][block]") {
  const network net = resnet_fm(true);
  const tensor x = images(3, 21);
  calibration_network cn(net, x, 2);
  const std::vector<block_desc> blocks = cn.blocks();
  REQUIRE(blocks.size() == 6);  // 3 stages of 2 blocks; the stem and the classifier per layer
  std::size_t end = 0;
  for (std::size_t k = 0; k < blocks.size(); ++k) {
    const block_desc& b = blocks[k];
    INFO(b.name);
    const std::string p = "blocks." + std::to_string(k) + ".";
    // conv1, conv2 and, where the shape changes, the projection; through the final ReLU.
    CHECK(net.at(b.first_node).name == p + "conv1");
    CHECK(net.at(b.last_node).name == p + "relu2");
    CHECK(b.output_value == static_cast<int>(b.last_node));
    CHECK(b.first_node >= end);
    end = b.last_node + 1;
    REQUIRE(b.layers.size() >= 2);
    CHECK(b.layers[0] == net.index_of(p + "conv1"));
    CHECK(b.layers[1] == net.index_of(p + "conv2"));
    CHECK(b.layers.size() ==
          (k % 2 == 0 ? 3u : 2u));  // each stage's first block (stride 2) projects
    CHECK(b.program.inputs() == 1);
    CHECK(count_ops(b, block_op_kind::add) == 1);
    CHECK(count_ops(b, block_op_kind::relu) == 2);
    // block_of takes the add and ReLU, and stops before the pooling after the last block.
    CHECK(cn.block_of(b.layers.front(), b.layers.back()).last_node == b.last_node);
  }
  // Unfolded batch norms are not in a block program: no automatic blocks.
  const network unfolded = resnet_fm(false);
  calibration_network cu(unfolded, x, 1);
  CHECK(cu.blocks().empty());
  const std::size_t c1 = unfolded.index_of("blocks.1.conv1"),
                    c2 = unfolded.index_of("blocks.1.conv2");
  expect_error([&] { (void)cu.block_of(c1, c2); }, errc::invalid_argument,
               "\"blocks.1.bn1\" (batch_norm) is not folded");
  // MobileNetV2-style: the inverted-residual blocks with a residual add (expand, depthwise,
  // project); the blocks without one are runs where a single value stays live, calibrated per
  // layer.
  const network mobilenet = reference_model("mobilenetv2_fm", true);
  calibration_network cm(mobilenet, x, 1);
  const std::vector<block_desc> mb = cm.blocks();
  CHECK(mb.size() == 3);
  for (const block_desc& b : mb) {
    INFO(b.name);
    CHECK(b.layers.size() == 3);
    CHECK(count_ops(b, block_op_kind::add) == 1);
    CHECK(count_ops(b, block_op_kind::relu6) == 2);
  }
  // Runs of up to 3 layers (block_of on every run) also make the plain inverted-residual blocks.
  std::size_t covered = 0;
  const auto ml = cm.quantizable_layers();
  for (const block_desc& b : adaquant::select_blocks(cm, {3, {}}, ml, "test")) {
    CHECK(b.layers.size() >= 2);
    covered += b.layers.size();
  }
  CHECK(covered > 3 * 3);
}

TEST_CASE("A runtime block's program reproduces the captured network values",
          "[calibration][block]") {
  const network net = resnet_fm(true);
  const tensor x = images(2, 22);
  calibration_network cn(net, x, 2);
  const auto layers = cn.quantizable_layers();
  for (const block_desc& b : cn.blocks()) {
    INFO(b.name);
    const block_io io = cn.capture_block(b, 0, 2);
    // Nothing is quantized yet: inputs and output are the network's values, bit for bit.
    const tensor in = net.forward_until(x, static_cast<std::size_t>(b.input_values.at(0)));
    REQUIRE(io.inputs.size() == 1);
    CHECK(io.inputs[0] == in.values());
    CHECK(io.outputs == net.forward_until(x, static_cast<std::size_t>(b.output_value)).values());
    // The program on the captured input gives the captured output.
    const tensor mine = run_program(net, b, {tensor(in.shape(), io.inputs[0])});
    REQUIRE(mine.size() == io.outputs.size());
    CHECK(worst_difference(mine.span(), io.outputs) < 1e-5);
    // The library's float run of the program gives every layer the input the network gives it.
    std::vector<adaquant::block_layer> bl;
    for (std::size_t id : b.layers) {
      const auto it =
          std::find_if(layers.begin(), layers.end(), [&](const auto& d) { return d.id == id; });
      bl.push_back({it->geometry, it->weight, it->bias, {}});
    }
    adaquant::block_objective obj(bl, b.program, {io.inputs[0]}, io.outputs);
    for (std::size_t k = 0; k < b.layers.size(); ++k) {
      const adaquant::layer_io ref = cn.capture(b.layers[k], 0, 2, capture_mode::full_precision);
      const auto got = obj.layer(k).inputs().contiguous();
      REQUIRE(got.size() == ref.inputs.size());
      CHECK(worst_difference(got, ref.inputs) < 1e-4);
    }
  }
}

TEST_CASE("User-named runtime blocks outside the program are errors naming the node",
          "[calibration][block][errors]") {
  const network net = resnet_fm(true);
  calibration_network cn(net, images(2, 23), 1);
  const auto layers = cn.quantizable_layers();
  const std::size_t fc = layers.back().id, before = layers[layers.size() - 2].id;
  expect_error([&] { (void)cn.block_of(before, fc); }, errc::invalid_argument,
               "node " + std::to_string(net.index_of("pool")) +
                   " \"pool\" (global_avg_pool) is not supported in a block");
  expect_error([&] { (void)cn.block_of(fc, before); }, errc::invalid_argument,
               "block_of(" + std::to_string(fc) + ", " + std::to_string(before) +
                   "): the ids must be quantizable layers, the first not after the last");
  expect_error([&] { (void)cn.block_of(layers[0].id + 1, fc); }, errc::invalid_argument,
               "must be quantizable layers");
  // Stem .. the first block's conv1 leaves the stem's ReLU (the shortcut) and relu1 live after it.
  expect_error([&] { (void)cn.block_of(layers[0].id, layers[1].id); }, errc::invalid_argument,
               "\"stem_relu\" (relu) and node " + std::to_string(layers[1].id + 2) +
                   " \"blocks.0.relu1\" (relu) are both used after it; a block has one output");
  const block_desc b = cn.block_of(layers[1].id, layers[2].id);
  CHECK(b.layers == std::vector<std::size_t>{layers[1].id, layers[2].id});
  expect_error([&] { (void)cn.capture_block(b, 1, 2); }, errc::invalid_argument,
               "capture_block: first, count: samples beyond the 2 held");
  block_desc other = b;
  other.input_values[0] = static_cast<int>(b.first_node);
  expect_error([&] { (void)cn.capture_block(other, 0, 1); }, errc::invalid_argument,
               "capture_block: b: is not a block of this network");
}

TEST_CASE("Runtime block captures and calibration by block do not depend on the thread count",
          "[calibration][block]") {
  const small_case c(2, 4);
  const auto& [net, x, co, q] = c;
  std::vector<tensor> logits;
  std::vector<block_io> last_block;
  std::size_t last_input = 0, last_output = 0;
  for (const std::size_t threads : {1u, 2u}) {
    calibration_network cn(net, x, threads);
    const adaquant::calibration_report r =
        adaquant::adaquant_calibrate(cn, q, co, {threads, 3, {}});
    REQUIRE(r.layers.size() == cn.quantizable_layers().size());
    // A block's layers share its report (the output MSE).
    std::size_t shared = 0, in_blocks = 0;
    for (std::size_t k = 0; k + 1 < r.layers.size(); ++k)
      shared += r.layers[k].mse_before == r.layers[k + 1].mse_before;
    for (const block_desc& b : cn.blocks()) in_blocks += b.layers.size() - 1;
    CHECK(in_blocks == 3);
    CHECK(shared == in_blocks);
    for (const auto& d : cn.quantizable_layers()) CHECK(cn.quantized().at(d.id).input_transform);
    logits.push_back(cn.quantized().forward(x));
    last_block.push_back(cn.capture_block(cn.blocks().back(), 1, 5));
    last_input = static_cast<std::size_t>(cn.blocks().back().input_values.at(0));
    last_output = static_cast<std::size_t>(cn.blocks().back().output_value);
  }
  CHECK(logits[0].values() == logits[1].values());
  CHECK(last_block[0].inputs == last_block[1].inputs);
  CHECK(last_block[0].outputs == last_block[1].outputs);
  // The inputs come from the quantized network, the output from the full-precision one.
  CHECK(last_block[0].inputs[0] != net.forward_until(x.items(1, 6), last_input).values());
  CHECK(last_block[0].outputs == net.forward_until(x.items(1, 6), last_output).values());
}
