// The reference models' ONNX exports import into the same quantizable layers, folded batch norms
// and activations as the runtime's models built in code, and reproduce the training script's
// logits of the first test images; the text model reproduces its script's logits of the first
// test sequences (token ids and masks recorded in its sidecar).
#include "reference_util.hpp"

#include <nlohmann/json.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>

using namespace onnx_ref;

TEST_CASE("ONNX reference models match the runtime's layers and the script's logits", "[onnx][models]") {
  const ex::image_dataset test = ex::load_fashion_mnist(ADAQUANT_FASHION_MNIST_DIR, "test");
  for (const std::string name : {"resnet_fm", "mobilenetv2_fm"}) {
    INFO(name);
    const ex::reference_sidecar ref = ex::load_reference_sidecar(ADAQUANT_MODELS_DIR, name);
    const aq::tensor calib = test_images(test, ref, 0, 32);
    aq::network_options o;
    o.threads = 2;
    aq::onnx_network net(load_onnx(name), {calib}, o);

    ex::network folded = code_built::load(ADAQUANT_MODELS_DIR, ref);
    const auto bns = ex::fold_batch_norms_recorded(folded);
    const ex::calibration_network runtime(folded, ex::make_batch(test, 0, 32, ref.norm), 1);
    const auto mine = net.quantizable_layers(), theirs = runtime.quantizable_layers();
    REQUIRE(mine.size() == theirs.size());
    CHECK(mine.size() == (name == "resnet_fm" ? 17u : 23u));
    std::size_t folded_here = 0;
    for (std::size_t k = 0; k < mine.size(); ++k) {
      INFO("layer " << k << " " << net.full_precision().at(mine[k].id).name);
      const auto& a = mine[k].geometry;
      const auto& b = theirs[k].geometry;
      CHECK(a.kind == b.kind);
      CHECK(a.weight_size() == b.weight_size());
      CHECK(a.input_per_sample() == b.input_per_sample());
      CHECK(a.output_per_sample() == b.output_per_sample());
      CHECK(a.conv.groups == b.conv.groups);
      CHECK(a.conv.pad_h == b.conv.pad_h);
      CHECK(a.conv.stride_h == b.conv.stride_h);
      CHECK(mine[k].activation == theirs[k].activation);
      CHECK((net.folded_batch_norm(mine[k].id) != nullptr) == (bns.count(theirs[k].id) == 1));
      folded_here += net.folded_batch_norm(mine[k].id) != nullptr;
      float diff = 0.0f;
      for (std::size_t j = 0; j < mine[k].weight.size(); ++j)
        diff = std::max(diff, std::abs(mine[k].weight[j] - theirs[k].weight[j]));
      CHECK(diff < 1e-6f);
    }
    CHECK(folded_here == bns.size());
    // The script's logits of its reference images.
    aq::tensor x({static_cast<std::int64_t>(ref.reference_images.size()), 1, 28, 28}, std::vector<float>{});
    for (const std::size_t i : ref.reference_images) {
      const aq::tensor one = test_images(test, ref, i, 1);
      x.f.insert(x.f.end(), one.f.begin(), one.f.end());
    }
    const aq::tensor logits = net.forward({x}).at(0);
    REQUIRE(logits.size() == ref.reference_logits.size());
    float diff = 0.0f;
    for (std::size_t j = 0; j < logits.size(); ++j) diff = std::max(diff, std::abs(logits.f[j] - ref.reference_logits[j]));
    CHECK(diff < 1e-4f);
  }
}

TEST_CASE("the text model's ONNX file reproduces its script's logits", "[onnx][models][text]") {
  std::ifstream in(std::string(ADAQUANT_MODELS_DIR) + "/text_classifier.json");
  REQUIRE(in);
  const auto ref = nlohmann::json::parse(in)["reference_logits"];
  const auto rows = [&](const char* key) {
    std::vector<std::int64_t> v;
    for (const auto& r : ref[key])
      for (const auto& x : r) v.push_back(x.get<std::int64_t>());
    const auto n = static_cast<std::int64_t>(ref[key].size());
    return aq::tensor(aq::dtype::int64, {n, n ? static_cast<std::int64_t>(v.size()) / n : 0}, v);
  };
  const aq::tensor ids = rows("input_ids"), mask = rows("attention_mask");
  REQUIRE(ids.shape == aq::shape_t{16, 64});
  aq::network_options o;
  o.threads = 2;
  o.loss_samples = 0;  // no calibration pass: this runs under the sanitizers too
  const aq::onnx_network net(load_onnx("text_classifier"), {ids, mask}, o);
  const aq::tensor logits = net.forward({ids, mask}).at(0);
  std::vector<float> want;
  for (const auto& r : ref["logits"])
    for (const auto& x : r) want.push_back(x.get<float>());
  REQUIRE(logits.f.size() == want.size());
  float diff = 0.0f;
  for (std::size_t j = 0; j < want.size(); ++j) diff = std::max(diff, std::abs(logits.f[j] - want[j]));
  CHECK(diff < 1e-4f);
  // The 24 projection and feed-forward MatMuls are token-wise layers (64 rows, their bias taken
  // from the Add after them), then the classifier; padding from attention_mask.
  const auto layers = net.quantizable_layers();
  REQUIRE(layers.size() == 25);
  for (std::size_t l = 0; l < 24; ++l) {
    CHECK(net.full_precision().at(layers[l].id).op_type == "MatMul");
    CHECK(layers[l].geometry.linear.rows == 64);
    CHECK_FALSE(net.layer_origins()[l].bias_initializer.empty());
  }
  CHECK(net.full_precision().at(layers.back().id).name == "/fc/Gemm");
  CHECK(net.token_mask() == "attention_mask");
}
