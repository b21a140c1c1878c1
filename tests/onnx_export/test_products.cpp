// Export of the input quantizers on both operands of a product of two activations
// (exported_product): QuantizeLinear/DequantizeLinear (+ Clip for 4-bit grids in 8-bit types) on
// both MatMul inputs, the encodings' "products" rows, and a round trip through the reference
// interpreter against onnx_network's quantized simulation.

#include <adaquant/onnx/encodings.hpp>
#include <adaquant/onnx/network.hpp>

#include "support/models.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cmath>
#include <map>
#include <string>

namespace ax = adaquant::onnx;
using namespace test_onnx;

namespace {

// scores [N, 2, 4, 4] = MatMul(a [N, 2, 4, 3], b [N, 2, 3, 4]), both graph inputs.
onnx::ModelProto product_model() {
  onnx::ModelProto m = empty_model(13);
  auto& g = *m.mutable_graph();
  add_io(g.add_input(), "a", {-1, 2, 4, 3});
  add_io(g.add_input(), "b", {-1, 2, 3, 4});
  add_node(g, "MatMul", "attn/MatMul", {"a", "b"}, {"scores"});
  add_io(g.add_output(), "scores", {-1, 2, 4, 4});
  return m;
}

ax::onnx_network network_of(const onnx::ModelProto& m, const std::vector<ax::tensor>& calib,
                            int bits) {
  const std::string bytes = m.SerializeAsString();
  ax::network_options o;
  o.threads = 1;
  ax::activation_products_options p;
  p.spec = adaquant::quantizer_spec::activations(bits);
  p.spec.rounding = adaquant::rounding_mode::onnx;  // what QuantizeLinear computes
  p.spec.range = adaquant::range_method::min_max;
  o.activation_products = p;
  return ax::onnx_network(
      ax::load_model_from_bytes(
          std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                        bytes.size()),
          "product.onnx"),
      calib, o);
}

std::vector<ax::tensor> operands(std::int64_t n, std::uint32_t seed) {
  return {
      ax::tensor({n, 2, 4, 3}, random_floats(static_cast<std::size_t>(n * 24), -2, 3, seed)),
      ax::tensor({n, 2, 3, 4}, random_floats(static_cast<std::size_t>(n * 24), -1, 1, seed + 1))};
}

}  // namespace

TEST_CASE("Products: both MatMul inputs get Q/DQ and the exported model computes the simulation") {
  const onnx::ModelProto m = product_model();
  for (const int bits : {8, 4}) {
    ax::onnx_network net = network_of(m, operands(10, 1), bits);
    net.estimate_activation_products();
    std::vector<ax::exported_product> products;
    for (const auto& p : net.activation_products())
      products.push_back(ax::make_exported_product(p));
    REQUIRE(products.size() == 1);
    CHECK(products[0].node == "attn/MatMul");
    CHECK(products[0].a.bits == bits);
    onnx::ModelProto out;
    ax::export_qdq(m, {.products = products}, {}, out);
    std::map<std::string, int> ops;
    for (const auto& n : out.graph().node()) ++ops[n.op_type()];
    CHECK(ops["QuantizeLinear"] == 2);
    CHECK(ops["DequantizeLinear"] == 2);
    CHECK(ops["Clip"] == (bits == 4 ? 2 : 0));  // a 4-bit grid in UINT8
    const auto& mm = out.graph().node(out.graph().node_size() - 1);
    REQUIRE(mm.op_type() == "MatMul");
    CHECK(mm.input(0) != "a");
    CHECK(mm.input(1) != "b");
    // Other samples than the calibration ones, some beyond the ranges (clamped).
    const auto test = operands(6, 7);
    ax::eval_options q;
    q.quantized = true;
    const ax::tensor sim = net.forward(test, q).at(0);
    const ax::tensor fp = net.forward(test).at(0);
    const auto ref = evaluator(out).run({{"a", float_value(test[0].shape, test[0].f)},
                                         {"b", float_value(test[1].shape, test[1].f)}},
                                        {"scores"})["scores"];
    REQUIRE(ref.f.size() == sim.f.size());
    double worst = 0.0, moved = 0.0;
    for (std::size_t k = 0; k < sim.f.size(); ++k) {
      worst = std::max(worst, static_cast<double>(std::abs(ref.f[k] - sim.f[k])));
      moved = std::max(moved, static_cast<double>(std::abs(fp.f[k] - sim.f[k])));
    }
    CHECK(worst < 1e-5);  // the same quantized operands; float sums in another order
    CHECK(moved > 1e-3);  // and they are quantized
    // The encodings list the product with both operands.
    const auto j = nlohmann::json::parse(ax::encodings_json(m, {.products = products}));
    REQUIRE(j["products"].size() == 1);
    CHECK(j["products"][0]["node"] == "attn/MatMul");
    CHECK(j["products"][0]["a"] == "a");
    CHECK(j["products"][0]["b_bits"] == bits);
    CHECK(j["products"][0]["b_encoding"] == "b");
    CHECK(j["tensors"]["a"]["kind"] == "activation");
    CHECK(j["tensors"]["a"]["qmax"] == (1 << bits) - 1);
    CHECK(j["tensors"]["b"]["scale"][0].get<float>() == products[0].b.params.scale);
    CHECK_FALSE(
        nlohmann::json::parse(ax::encodings_json(m, ax::export_parts{})).contains("products"));
  }
}

TEST_CASE("Products: bad exported products are refused naming the node") {
  const onnx::ModelProto m = product_model();
  ax::exported_product p{"attn/MatMul", {{0.1f, 0, 0, 255}, 8}, {{0.1f, 0, 0, 255}, 8}};
  onnx::ModelProto out;
  const auto refused = [&](const std::vector<ax::exported_product>& ps,
                           const onnx::ModelProto& model, const char* what) {
    CHECK_THROWS_WITH(ax::export_qdq(model, {.products = ps}, {}, out), Catch::Contains(what));
  };
  refused({{"nope", p.a, p.b}}, m, "no node named 'nope'");
  refused({p, p}, m, "appears in two exported layers or products");
  auto bad = p;
  bad.b.bits = 9;
  refused({bad}, m, "operand B: bits must be in [2, 8]");
  bad = p;
  bad.a.params.scale = -1.0f;
  refused({bad}, m, "operand A");
  // A MatMul with a constant right operand is a layer, not a product.
  onnx::ModelProto w = empty_model(13);
  auto& g = *w.mutable_graph();
  add_io(g.add_input(), "a", {1, 2, 4, 3});
  *g.add_initializer() = float_tensor("b", {3, 4}, random_floats(12, -1, 1, 3));
  add_node(g, "MatMul", "attn/MatMul", {"a", "b"}, {"scores"});
  refused({p}, w, "input 'b' is an initializer");
  // Refused before anything is written.
  CHECK(out.graph().node_size() == 0);
}
