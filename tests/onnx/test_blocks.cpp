// onnx_network as a BlockNetwork: the reference models' automatic blocks (residual and
// inverted-residual), their programs reproduce the network's layer inputs, captures, and the
// errors of user-named blocks.

#include "network_test_util.hpp"

#include <adaquant/calibrate/driver.hpp>
#include <adaquant/objectives/block_objective.hpp>
#include <adaquant/onnx/load.hpp>
#include <adaquant/onnx/network.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <functional>

namespace aq = adaquant::onnx;
using namespace adaquant;

namespace {
aq::onnx_network model_network(const std::string& name, std::size_t n) {
  return onnx_test::reference_network(name, n);
}
std::size_t count_ops(const block_program& p, block_op_kind k) {
  return static_cast<std::size_t>(
      std::count_if(p.ops.begin(), p.ops.end(), [&](const block_op& o) { return o.kind == k; }));
}
}  // namespace

TEST_CASE("The reference models' automatic blocks are their residual blocks", "[onnx][block]") {
  for (const std::string name : {"resnet_fm", "mobilenetv2_fm"}) {
    INFO(name);
    aq::onnx_network net = model_network(name, 4);
    const std::vector<block_desc> blocks = net.blocks();
    REQUIRE(!blocks.empty());
    WARN(name << ": " << blocks.size() << " blocks, the first " << blocks[0].name << " ("
              << blocks[0].layers.size() << " layers)");
    std::size_t last = 0;
    for (const block_desc& b : blocks) {
      INFO(b.name);
      CHECK(b.layers.size() >= 2);
      CHECK(b.program.inputs() == 1);
      CHECK(b.first_node >= last);
      last = b.last_node + 1;
      CHECK(std::is_sorted(b.layers.begin(), b.layers.end()));
      if (name == "resnet_fm") {  // conv-relu-conv (+ projection) + add, relu
        CHECK(count_ops(b.program, block_op_kind::add) == 1);
        CHECK(count_ops(b.program, block_op_kind::relu) == 2);
      } else {
        CHECK(count_ops(b.program, block_op_kind::relu6) >= 1);
      }
    }
    // ResNet: 3 stages of 2 blocks; the stem and the classifier stay per layer.
    if (name == "resnet_fm") CHECK(blocks.size() == 6);
  }
}

TEST_CASE("A block's program reproduces the network's layer inputs and outputs", "[onnx][block]") {
  for (const std::string name : {"resnet_fm", "mobilenetv2_fm"}) {
    INFO(name);
    aq::onnx_network net = model_network(name, 3);
    const auto layers = net.quantizable_layers();
    for (const block_desc& b : net.blocks()) {
      INFO(b.name);
      block_io io = net.capture_block(b, 0, 3);
      std::vector<block_layer> bl;
      for (std::size_t id : b.layers) {
        const auto it = std::find_if(layers.begin(), layers.end(),
                                     [&](const layer_desc& d) { return d.id == id; });
        bl.push_back({it->geometry, it->weight, it->bias, layer_quant_config{}});
      }
      std::vector<std::span<const float>> in(io.inputs.begin(), io.inputs.end());
      block_objective obj(bl, b.program, in, io.outputs);
      for (std::size_t k = 0; k < b.layers.size(); ++k) {
        const layer_io ref = net.capture(b.layers[k], 0, 3, capture_mode::full_precision);
        const auto mine = obj.layer(k).inputs().contiguous();
        REQUIRE(mine.size() == ref.inputs.size());
        double worst = 0.0;
        for (std::size_t i = 0; i < mine.size(); ++i)
          worst = std::max(worst, std::abs(static_cast<double>(mine[i]) - ref.inputs[i]) /
                                      (1.0 + std::abs(static_cast<double>(ref.inputs[i]))));
        CHECK(worst < 1e-4);
      }
      // The last op's result (the program in full precision) against the captured output: the
      // per-layer objective's targets are the layers' outputs, the block's its output.
      const layer_io last =
          net.capture(b.layers.back(), 0, 3, capture_mode::full_precision, {false, true});
      const auto mine = obj.layer(b.layers.size() - 1).targets();
      REQUIRE(mine.size() == last.outputs.size());
      for (std::size_t i = 0; i < mine.size(); i += 97)
        CHECK(mine[i] == Approx(last.outputs[i]).margin(1e-4).epsilon(1e-4));
    }
  }
}

TEST_CASE("User-named blocks outside the program's ops or layers are errors naming them",
          "[onnx][block][errors]") {
  aq::onnx_network net = model_network("resnet_fm", 2);
  const auto layers = net.quantizable_layers();
  const std::size_t fc = layers.back().id, before = layers[layers.size() - 2].id;
  // The last conv through the classifier runs over the global average pool (ReduceMean).
  onnx_test::expect_error([&] { (void)net.block_of(before, fc); }, errc::invalid_argument,
                          {"ReduceMean", "is not supported in a block"});
  onnx_test::expect_error([&] { (void)net.block_of(fc, before); }, errc::invalid_argument,
                          {"block_of", "the first not after the last"});
  onnx_test::expect_error([&] { (void)net.block_of(layers[0].id + 1, fc); }, errc::invalid_argument,
                          {"must be quantizable layers"});
  // A run that ends inside a residual block leaves two values live after it.
  onnx_test::expect_error([&] { (void)net.block_of(layers[0].id, layers[1].id); },
                          errc::invalid_argument, {"a block has one output"});
  CHECK_NOTHROW(net.block_of(layers[1].id, layers[2].id));
}

TEST_CASE("Sequential calibration by block quantizes every layer of the network",
          "[onnx][block][calibrate]") {
  aq::onnx_network net = model_network("resnet_fm", 12);
  calibration_options co;
  co.layer.iterations = 20;
  co.layer.batch_size = 4;
  co.reconstruction = reconstruction_unit::block;
  const layer_quantizers q{quantizer_spec::weights(3), quantizer_spec::activations(4)};
  const calibration_report r = adaquant_calibrate(net, q, co);
  const auto layers = net.quantizable_layers();
  REQUIRE(r.layers.size() == layers.size());
  // A block's layers share the block's report (its output MSE); a layer alone has its own.
  const std::vector<block_desc> blocks = net.blocks();
  std::size_t shared = 0;
  for (std::size_t k = 0; k + 1 < r.layers.size(); ++k)
    shared += r.layers[k].mse_before == r.layers[k + 1].mse_before;
  std::size_t in_blocks = 0;
  for (const block_desc& b : blocks) in_blocks += b.layers.size() - 1;
  CHECK(shared == in_blocks);
  for (const layer_report& l : r.layers) CHECK(l.heldout_after <= l.heldout_before);
  for (const layer_desc& d : layers) CHECK(net.quantized().at(d.id).layer->input_quant);
  // The reports name each layer's block (its first layer and size; 1 and itself alone) and the
  // settings resolved by bits: AdaRound for 3-bit weights, QDrop 0.5 below 4 bits.
  for (std::size_t k = 0; k < r.layers.size(); ++k) {
    const layer_report& l = r.layers[k];
    INFO("layer " << l.layer_id);
    CHECK(l.layer_id == layers[k].id);
    std::size_t size = 1, first = l.layer_id;
    for (const block_desc& b : blocks)
      if (std::find(b.layers.begin(), b.layers.end(), l.layer_id) != b.layers.end()) {
        size = b.layers.size();
        first = b.layers.front();
      }
    CHECK(l.block_layers == size);
    CHECK(l.block_first == first);
    CHECK(l.adaround);
    CHECK(l.qdrop == 0.5f);
    CHECK(l.step_samples == 4);
    CHECK(l.inner_weight == 0.0f);  // residual blocks of 2-3 layers: no inner term by default
  }

  co.order = calibration_order::parallel;
  onnx_test::expect_error([&] { (void)adaquant_calibrate(net, q, co); }, errc::invalid_argument,
                          {"options.reconstruction", "sequential"});
}

TEST_CASE("Runs of up to N layers keep the automatic blocks whole and join the layers between",
          "[onnx][block][select]") {
  for (const std::string name : {"resnet_fm", "mobilenetv2_fm"}) {
    INFO(name);
    aq::onnx_network net = model_network(name, 2);
    const auto layers = net.quantizable_layers();
    const std::vector<block_desc> automatic = net.blocks();
    for (const std::size_t n : {2u, 3u, 4u}) {
      INFO("max_layers " << n);
      const std::vector<block_desc> runs = select_blocks(net, {n, {}}, layers, "test");
      std::size_t covered = 0, next = 0;
      for (const block_desc& b : runs) {
        CHECK(b.layers.size() >= 2);
        CHECK(b.layers.size() <= n);
        CHECK(b.first_node >= next);  // in order, not overlapping
        next = b.last_node + 1;
        covered += b.layers.size();
        // The same block as block_of names it.
        CHECK(net.block_of(b.layers.front(), b.layers.back()).program.ops.size() ==
              b.program.ops.size());
      }
      // Every automatic block that fits in N layers lies inside one run.
      for (const block_desc& a : automatic) {
        if (a.layers.size() > n) continue;
        INFO(a.name);
        CHECK(std::any_of(runs.begin(), runs.end(), [&](const block_desc& r) {
          return r.first_node <= a.first_node && a.last_node <= r.last_node;
        }));
      }
      std::size_t in_automatic = 0;
      for (const block_desc& a : automatic)
        in_automatic += a.layers.size() <= n ? a.layers.size() : 0;
      CHECK(covered >= in_automatic);
    }
    // MobileNetV2's inverted-residual blocks without an add (expand, depthwise, project) become
    // blocks of 3 too: more layers are in blocks than in the automatic ones.
    if (name == "mobilenetv2_fm") {
      std::size_t covered = 0, in_automatic = 0;
      for (const block_desc& b : select_blocks(net, {3, {}}, layers, "test"))
        covered += b.layers.size();
      for (const block_desc& a : automatic) in_automatic += a.layers.size();
      CHECK(covered > in_automatic);
    }
  }
}

TEST_CASE("Named blocks are exactly the ones named; bad selections are errors before any change",
          "[onnx][block][select][errors]") {
  aq::onnx_network net = model_network("resnet_fm", 12);
  const auto layers = net.quantizable_layers();
  const std::vector<block_desc> automatic = net.blocks();
  REQUIRE(automatic.size() >= 2);
  const auto& a0 = automatic[0].layers;
  const auto& a1 = automatic[1].layers;
  block_selection s;
  s.named = {{a1.front(), a1.back()}};
  const std::vector<block_desc> one = select_blocks(net, s, layers, "test");
  REQUIRE(one.size() == 1);
  CHECK(one[0].layers == a1);

  const auto rejected = [&](const block_selection& sel, std::initializer_list<const char*> words) {
    calibration_options co;
    co.layer.iterations = 5;
    co.reconstruction = reconstruction_unit::block;
    co.blocks = sel;
    const layer_quantizers q{quantizer_spec::weights(3), quantizer_spec::activations(4)};
    onnx_test::expect_error([&] { (void)adaquant_calibrate(net, q, co); }, errc::invalid_argument,
                            words);
    for (const layer_desc& d : layers)  // nothing was changed
      CHECK(!net.quantized().at(d.id).layer->input_quant);
  };
  // Out of order, overlapping, not a block (ends inside a residual block), max_layers 1, both.
  rejected({0, {{a1.front(), a1.back()}, {a0.front(), a0.back()}}},
           {"options.blocks.named[1]", "execution order"});
  rejected({0, {{a0.front(), a0.back()}, {a0.back(), a1.back()}}}, {"options.blocks.named[1]"});
  rejected({0, {{layers[0].id, layers[1].id}}},
           {"options.blocks.named[0]", "a block has one output"});
  rejected({1, {}}, {"options.blocks.max_layers", ">= 2"});
  rejected({3, {{a0.front(), a0.back()}}}, {"options.blocks", "alternatives"});
  // Blocks selected where no block is reconstructed: by layer, or by bits in parallel order.
  calibration_options co;
  co.blocks.max_layers = 3;
  co.reconstruction = reconstruction_unit::layer;
  const layer_quantizers q{quantizer_spec::weights(3), quantizer_spec::activations(4)};
  onnx_test::expect_error([&] { (void)adaquant_calibrate(net, q, co); }, errc::invalid_argument,
                          {"options.blocks", "reconstruction is layer"});
  co.reconstruction.reset();
  co.order = calibration_order::parallel;
  onnx_test::expect_error([&] { (void)adaquant_calibrate(net, q, co); }, errc::invalid_argument,
                          {"options.blocks", "the order is parallel"});
  for (const layer_desc& d : layers) CHECK(!net.quantized().at(d.id).layer->input_quant);
}

TEST_CASE(
    "By default a block is reconstructed whole when a layer in it has weights below 4 bits, or "
    "when the network's input is at 4 bits or fewer",
    "[onnx][block][calibrate]") {
  // The first layer's input (the image) at first_abits, every other input at 4 bits.
  const auto run = [](const std::function<int(std::size_t)>& wbits, const calibration_options& co,
                      int first_abits = 8) {
    aq::onnx_network net = model_network("resnet_fm", 12);
    const auto layers = net.quantizable_layers();
    std::vector<layer_quantizers> q;
    for (std::size_t i = 0; i < layers.size(); ++i)
      q.push_back({quantizer_spec::weights(wbits(i)),
                   quantizer_spec::activations(i == 0 ? first_abits : 4)});
    const calibration_report r = adaquant_calibrate(net, std::span<const layer_quantizers>(q), co);
    std::vector<std::vector<float>> weights;
    for (const layer_desc& d : layers) weights.push_back(net.quantized().at(d.id).layer->weight.f);
    return std::pair{r, weights};
  };
  const auto same = [](const auto& a, const auto& b) {
    REQUIRE(a.first.layers.size() == b.first.layers.size());
    for (std::size_t k = 0; k < a.first.layers.size(); ++k) {
      INFO("layer " << k);
      CHECK(a.first.layers[k].mse_before == b.first.layers[k].mse_before);
      CHECK(a.first.layers[k].mse_after == b.first.layers[k].mse_after);
    }
    CHECK(a.second == b.second);
  };
  const aq::onnx_network probe = model_network("resnet_fm", 2);
  const auto layers = probe.quantizable_layers();
  const block_desc first = probe.blocks().at(0);
  const auto in_first = [&](std::size_t i) {
    return std::find(first.layers.begin(), first.layers.end(), layers[i].id) != first.layers.end();
  };
  calibration_options by_bits;
  by_bits.layer.iterations = 5;
  by_bits.layer.batch_size = 4;
  // The first residual block at 3 bits, every other layer at 4: only that block is taken whole,
  // the same as block reconstruction of exactly that block.
  const auto mixed = [&](std::size_t i) { return in_first(i) ? 3 : 4; };
  calibration_options named = by_bits;
  named.reconstruction = reconstruction_unit::block;
  named.blocks.named = {{first.layers.front(), first.layers.back()}};
  const auto a = run(mixed, by_bits);
  same(a, run(mixed, named));
  std::size_t shared = 0;  // a block's layers share its report
  for (std::size_t k = 0; k + 1 < a.first.layers.size(); ++k)
    shared += a.first.layers[k].mse_before == a.first.layers[k + 1].mse_before;
  CHECK(shared == first.layers.size() - 1);
  // Every layer at 4 bits: per layer, as reconstruction_unit::layer.
  calibration_options layer = by_bits;
  layer.reconstruction = reconstruction_unit::layer;
  const auto four = [](std::size_t) { return 4; };
  same(run(four, by_bits), run(four, layer));
  const std::vector<int> w4{4, 4}, w3{4, 3};
  CHECK(!default_block_reconstruction(w4));
  CHECK(default_block_reconstruction(w3));
  CHECK(default_block_reconstruction(w4, 4));
  CHECK(default_block_reconstruction(w4, 2));
  CHECK(!default_block_reconstruction(w4, 5));
  CHECK(!default_block_reconstruction(w4, 0));  // 0: the input is not quantized
  // The network's input at 4 bits too: every block whole, as reconstruction_unit::block (at 8
  // bits, above, and at 5, checked on the rule, per layer).
  calibration_options block = by_bits;
  block.reconstruction = reconstruction_unit::block;
  const auto image4 = run(four, by_bits, 4);
  same(image4, run(four, block, 4));
  CHECK(image4.second != run(four, layer, 4).second);
  // In parallel order, by bits is per layer (no error, unlike reconstruction_unit::block).
  by_bits.order = layer.order = calibration_order::parallel;
  const auto three = [](std::size_t) { return 3; };
  same(run(three, by_bits), run(three, layer));
}

TEST_CASE("By default inputs below 3 bits select the longest runs (default_block_selection)",
          "[onnx][block][calibrate]") {
  // Input bits per layer (0: not quantized).
  const std::vector<int> a4{0, 4, 4}, a2{0, 2, 8}, a3{0, 3, 3}, none{0, 0};
  CHECK(default_block_selection(a4, 3).automatic());
  CHECK(default_block_selection(a3, 3).automatic());
  CHECK(default_block_selection(none, 2).automatic());
  CHECK(default_block_selection(a2, 3).max_layers == 3);
  CHECK(default_block_selection(std::vector<int>{2}, 1).max_layers == 2);  // never 1

  // On ResNet at W2A2 (the stem's input at 8 bits), by bits is block reconstruction of runs of
  // up to every layer: one block from the stem through the last residual block, the classifier
  // alone; with every input at 3 bits, the automatic residual blocks.
  const auto run = [](int abits, const calibration_options& co, const execution_context& ctx = {}) {
    aq::onnx_network net = model_network("resnet_fm", 12);
    const auto layers = net.quantizable_layers();
    std::vector<layer_quantizers> q;
    for (std::size_t i = 0; i < layers.size(); ++i)
      q.push_back({quantizer_spec::weights(i == 0 ? 8 : 2),
                   quantizer_spec::activations(i == 0 ? 8 : abits)});
    const calibration_report r =
        adaquant_calibrate(net, std::span<const layer_quantizers>(q), co, ctx);
    std::vector<std::vector<float>> weights;
    for (const layer_desc& d : layers) weights.push_back(net.quantized().at(d.id).layer->weight.f);
    return std::pair{r, weights};
  };
  calibration_options by_bits;
  by_bits.layer.iterations = 5;
  by_bits.layer.batch_size = 4;
  by_bits.layer.trial_iterations = 0;  // the whole-network block's trial run: test_block_trial.cpp
  const std::size_t n = model_network("resnet_fm", 2).quantizable_layers().size();
  calibration_options runs = by_bits, automatic = by_bits;
  runs.reconstruction = automatic.reconstruction = reconstruction_unit::block;
  runs.blocks.max_layers = n;
  const auto a = run(2, by_bits), b = run(2, runs), c = run(2, automatic);
  CHECK(a.second == b.second);
  CHECK(a.second != c.second);
  REQUIRE(a.first.layers.size() == n);
  for (std::size_t k = 0; k + 2 < n; ++k)  // one block's report, the classifier's its own
    CHECK(a.first.layers[k].mse_before == a.first.layers[k + 1].mse_before);
  CHECK(a.first.layers[n - 2].mse_before != a.first.layers[n - 1].mse_before);
  // The whole-network block trains with the inner term at its default weight, 1 (more than 3
  // layers); the classifier alone has none. Weight 0 is the output's error alone: other weights.
  for (std::size_t k = 0; k + 1 < n; ++k) CHECK(a.first.layers[k].inner_weight == 1.0f);
  CHECK(a.first.layers[n - 1].inner_weight == 0.0f);
  calibration_options plain = by_bits;
  plain.layer.inner_weight = 0.0f;
  const auto p = run(2, plain);
  CHECK(p.first.layers[0].inner_weight == 0.0f);
  CHECK(p.second != a.second);
  CHECK(run(3, by_bits).second == run(3, automatic).second);

  // When the whole network's cache does not fit the memory limit but the residual blocks' does,
  // the default falls back to the residual blocks (an explicit selection would be refused).
  const aq::onnx_network probe = model_network("resnet_fm", 12);
  const auto layers = probe.quantizable_layers();
  std::size_t largest = 0;  // floats per sample: the largest residual block's or layer's cache
  for (const block_desc& blk : probe.blocks())
    largest = std::max(largest, adaquant::detail::block_cache_per_sample(blk, layers));
  for (const layer_desc& d : layers)
    largest = std::max(largest, d.geometry.input_per_sample() + d.geometry.output_per_sample());
  execution_context tight;
  tight.memory_limit = 12 * largest * sizeof(float);
  CHECK(run(2, by_bits, tight).second == c.second);
  onnx_test::expect_error([&] { (void)run(2, runs, tight); }, errc::infeasible,
                          {"adaquant_calibrate", "block", "context.memory_limit"});
}

TEST_CASE("The memory check counts a block's cache", "[onnx][block][select][errors]") {
  aq::onnx_network net = model_network("resnet_fm", 12);
  const auto layers = net.quantizable_layers();
  const cache_estimate layer = estimate_cache(layers, 12, 1);
  calibration_options co;
  co.layer.iterations = 5;
  co.reconstruction = reconstruction_unit::block;
  co.blocks.max_layers = 4;
  execution_context ctx;
  ctx.memory_limit = static_cast<std::size_t>(layer.bytes) + 1;  // one layer's cache fits
  const layer_quantizers q{quantizer_spec::weights(3), quantizer_spec::activations(4)};
  onnx_test::expect_error([&] { (void)adaquant_calibrate(net, q, co, ctx); }, errc::infeasible,
                          {"adaquant_calibrate", "block", "context.memory_limit"});
  co.reconstruction = reconstruction_unit::layer;
  co.blocks = {};
  CHECK_NOTHROW(adaquant_calibrate(net, q, co, ctx));
}
