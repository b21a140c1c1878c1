// The encodings JSON: parses, names tensors as the original model does, and its floats read back
// to the exact float32 scales.

#include <adaquant/onnx/encodings.hpp>

#include "support/models.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

namespace aq = adaquant;
namespace ax = adaquant::onnx;
using namespace test_onnx;

TEST_CASE("Encodings: per-channel weights, per-tensor activations, bits per layer") {
  const auto ls = cnn_layers({4, 8, 3, 8, 4, 8});
  const auto j = nlohmann::json::parse(ax::encodings_json(make_cnn(), ls));
  CHECK(j["format"] == "adaquant-encodings");
  CHECK(j["version"] == 1);
  CHECK(j["opset"] == 21);
  REQUIRE(j["layers"].size() == 3);
  CHECK(j["layers"][0]["node"] == "conv1");
  CHECK(j["layers"][0]["weight_bits"] == 4);
  CHECK(j["layers"][0]["input"] == "x");
  CHECK(j["layers"][0]["folded_batch_norm"] == "bn1");
  CHECK(j["layers"][1]["folded_batch_norm"].is_null());
  CHECK(j["layers"][2]["weight_bits"] == 3);
  const auto& w = j["tensors"]["conv1.weight"];
  CHECK(w["kind"] == "weight");
  CHECK(w["dtype"] == "int4");
  CHECK(w["signed"] == true);
  CHECK(w["axis"] == 0);
  REQUIRE(w["scale"].size() == 16);
  for (std::size_t c = 0; c < 16; ++c) {
    CHECK(w["scale"][c].get<float>() == ls[0].weight_params.scale[c]);  // "%.9g" round-trips
    CHECK(w["zero_point"][c] == ls[0].weight_params.zero_point[c]);
  }
  const auto& a = j["tensors"]["relu1_out"];
  CHECK(a["kind"] == "activation");
  CHECK(a["axis"].is_null());
  CHECK(a["bits"] == 4);
  CHECK(a["dtype"] == "uint4");
  CHECK(a["signed"] == false);
  CHECK(a["scale"][0].get<float>() == ls[1].input->params.scale);
  CHECK(j["tensors"]["flat"]["signed"] == true);
  CHECK(j["tensors"]["fc.weight"]["qmin"] == -4);
  CHECK(j["tensors"]["fc.weight"]["qmax"] == 3);
}

TEST_CASE("Encodings: names are escaped, MatMul weights carry axis 1, conflicts are refused") {
  onnx::ModelProto m = empty_model(13);
  auto& g = *m.mutable_graph();
  add_io(g.add_input(), "in\"put\n", {1, 2});
  *g.add_initializer() = float_tensor("w", {2, 2}, {0, 0, 0, 0});
  add_node(g, "MatMul", "a", {"in\"put\n", "w"}, {"y1"});
  add_node(g, "MatMul", "b", {"in\"put\n", "w"}, {"y2"});
  std::vector<ax::exported_layer> ls(2);
  for (int i = 0; i < 2; ++i) {
    ls[i].node = i ? "b" : "a";
    ls[i].weight_initializer = "w";
    ls[i].weight.assign(4, 0.5f);
    ls[i].weight_params = {{0.5f, 0.25f}, {0, 0}, -128, 127, 0};
    ls[i].input = ax::input_quantizer{{0.1f, 0, -128, 127}, 8};
  }
  const auto j = nlohmann::json::parse(ax::encodings_json(m, {ls.data(), 1}));
  CHECK(j["tensors"]["in\"put\n"]["dtype"] == "int8");
  CHECK(j["tensors"]["w"]["axis"] == 1);
  // Two readers of one tensor with different grids: one entry per reader, named by the layers.
  ls[1].input->params.scale = 0.2f;
  const auto two = nlohmann::json::parse(ax::encodings_json(m, ls));
  CHECK(two["layers"][0]["input_encoding"] == "in\"put\n@a");
  CHECK(two["layers"][1]["input_encoding"] == "in\"put\n@b");
  CHECK(two["tensors"]["in\"put\n@a"]["scale"][0] == Approx(0.1));
  CHECK(two["tensors"]["in\"put\n@b"]["scale"][0] == Approx(0.2));
  CHECK_FALSE(two["tensors"].contains("in\"put\n"));
  // Readers that agree share the tensor's own entry.
  ls[1].input->params.scale = 0.1f;
  CHECK(nlohmann::json::parse(ax::encodings_json(m, ls))["layers"][1]["input_encoding"] ==
        "in\"put\n");
  // A weight shared by two layers with different grids cannot have one encoding.
  ls[1].weight_params.scale[0] = 0.25f;
  ls[1].weight.assign({0.5f, 0.5f, 0.5f, 0.5f});
  CHECK_THROWS_WITH(ax::encodings_json(m, ls), Catch::Contains("quantized with two different grids"));
  const auto path = std::filesystem::temp_directory_path() / "adaquant_encodings_test.json";
  ax::write_encodings(m, {ls.data(), 1}, path);
  std::ifstream f(path);
  CHECK(nlohmann::json::parse(f)["format"] == "adaquant-encodings");
  std::filesystem::remove(path);
}
