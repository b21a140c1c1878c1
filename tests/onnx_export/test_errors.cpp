// Every bad input to export_qdq throws adaquant::error naming the node or tensor, and leaves the
// output model untouched.

#include <adaquant/onnx/export.hpp>

#include "support/inspect.hpp"
#include "support/models.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>

namespace aq = adaquant;
namespace ax = adaquant::onnx;
using namespace test_onnx;

namespace {

// Exports make_cnn() with cnn_layers() after `edit`; returns the error (code, message).
std::pair<aq::errc, std::string> failure(const std::function<void(std::vector<ax::exported_layer>&)>& edit,
                                         onnx::ModelProto model = make_cnn()) {
  auto ls = cnn_layers({4, 8, 8, 8, 8, 8});
  edit(ls);
  onnx::ModelProto out;
  out.set_producer_name("untouched");
  try {
    ax::export_qdq(model, ls, {}, out);
  } catch (const aq::error& e) {
    CHECK(out.producer_name() == "untouched");
    CHECK(out.graph().node_size() == 0);
    return {e.code(), e.what()};
  }
  FAIL("no error");
  return {};
}

}  // namespace

TEST_CASE("Unknown, ambiguous or unsuitable nodes") {
  auto [c1, m1] = failure([](auto& ls) { ls[1].node = "conv9"; });
  CHECK(c1 == aq::errc::invalid_argument);
  CHECK(mentions(m1, "'conv9'"));
  auto [c2, m2] = failure([](auto& ls) { ls[1].node = "relu1"; });
  CHECK(mentions(m2, "'relu1' (Relu)"));
  auto [c3, m3] = failure([](auto& ls) { ls[2] = ls[1]; });
  CHECK(mentions(m3, "two exported layers"));
  onnx::ModelProto dup = make_cnn();
  dup.mutable_graph()->mutable_node(2)->set_name("conv2");
  auto [c4, m4] = failure([](auto&) {}, dup);
  CHECK(mentions(m4, "several nodes are named 'conv2'"));
}

TEST_CASE("Weight initializers that are not the node's, or whose sizes disagree") {
  auto [c1, m1] = failure([](auto& ls) { ls[1].weight_initializer = "conv1.weight"; });
  CHECK(c1 == aq::errc::invalid_argument);
  CHECK(mentions(m1, "reads its weight from 'conv2.weight', not 'conv1.weight'"));
  auto [c2, m2] = failure([](auto& ls) { ls[1].weight.pop_back(); });
  CHECK(c2 == aq::errc::shape_mismatch);
  CHECK(mentions(m2, "'conv2.weight'"));
  CHECK(mentions(m2, "4608"));
  auto [c3, m3] = failure([](auto& ls) {
    ls[2].weight_params.scale.pop_back();
    ls[2].weight_params.zero_point.pop_back();
  });
  CHECK(c3 == aq::errc::shape_mismatch);
  CHECK(mentions(m3, "weight 'fc.weight': has 10 output channels [10, 512], weight_params has 9"));
  auto [c4, m4] = failure([](auto& ls) { ls[1].weight_params.axis = 1; });
  CHECK(mentions(m4, "axis must be 0"));
  auto [c5, m5] = failure([](auto& ls) { ls[1].weight_integers.assign(4608, 0); });
  CHECK(mentions(m5, "exactly one of weight and weight_integers"));
  onnx::ModelProto missing = make_cnn();
  missing.mutable_graph()->mutable_initializer()->DeleteSubrange(5, 1);  // conv2.weight
  auto [c6, m6] = failure([](auto&) {}, missing);
  CHECK(mentions(m6, "no initializer 'conv2.weight'"));
}

TEST_CASE("Bits out of range and grids that do not fit their bits or type") {
  auto [c1, m1] = failure([](auto& ls) { ls[1].weight_bits = 9; });
  CHECK(c1 == aq::errc::invalid_argument);
  CHECK(mentions(m1, "bits must be in [2, 8] for ONNX export, got 9"));
  CHECK(mentions(m1, "'conv2.weight'"));
  auto [c2, m2] = failure([](auto& ls) { ls[1].weight_bits = 1; });
  CHECK(mentions(m2, "got 1"));
  auto [c3, m3] = failure([](auto& ls) { ls[1].weight_bits = 4; });  // an 8-bit grid
  CHECK(mentions(m3, "more than 2^4 levels"));
  auto [c4, m4] = failure([](auto& ls) { ls[2].input->bits = 12; });
  CHECK(mentions(m4, "'fc' (Gemm): input quantizer"));
  auto [c5, m5] = failure([](auto& ls) {  // 8 levels, but [9, 16] fits neither int4 nor uint4
    ls[1].input->params = {0.1f, 9, 9, 16};
    ls[1].input->bits = 3;
  });
  CHECK(mentions(m5, "does not fit uint4"));
}

TEST_CASE("Non-finite values and weights off their grid") {
  auto [c1, m1] = failure([](auto& ls) { ls[1].weight[5] = std::numeric_limits<float>::quiet_NaN(); });
  CHECK(c1 == aq::errc::non_finite);
  CHECK(mentions(m1, "weight[5] is nan"));
  auto [c2, m2] = failure([](auto& ls) { ls[1].bias[3] = std::numeric_limits<float>::infinity(); });
  CHECK(c2 == aq::errc::non_finite);
  CHECK(mentions(m2, "bias[3] is inf"));
  auto [c3, m3] = failure([](auto& ls) { ls[0].input->params.scale = std::numeric_limits<float>::quiet_NaN(); });
  CHECK(c3 == aq::errc::invalid_argument);
  CHECK(mentions(m3, "'conv1' (Conv): input quantizer"));
  auto [c4, m4] = failure([](auto& ls) { ls[2].weight_params.scale[3] = std::numeric_limits<float>::infinity(); });
  CHECK(c4 == aq::errc::non_finite);
  auto [c5, m5] = failure([](auto& ls) { ls[1].weight[7] = std::nextafter(ls[1].weight[7], 1.0f); });
  CHECK(c5 == aq::errc::invalid_argument);
  CHECK(mentions(m5, "'conv2.weight'"));
  CHECK(mentions(m5, "weight[7]"));
  CHECK(mentions(m5, "not on the grid of channel 0"));
  auto [c6, m6] = failure([](auto& ls) { ls[1].weight[100] = 1e3f; });  // beyond the grid
  CHECK(mentions(m6, "weight[100]"));
  auto [c7, m7] = failure([](auto& ls) {
    ls[1].weight_integers.assign(4608, 0);
    ls[1].weight_integers[9] = 128;
    ls[1].weight.clear();
  });
  CHECK(mentions(m7, "weight_integers[9] = 128 is outside [-128, 127]"));
}

TEST_CASE("Bias and batch-norm names that do not match the graph") {
  auto [c1, m1] = failure([](auto& ls) { ls[1].bias_initializer = "fc.bias"; });
  CHECK(mentions(m1, "reads its bias from 'conv2.bias', not 'fc.bias'"));
  auto [c2, m2] = failure([](auto& ls) { ls[1].bias_initializer.clear(); });
  CHECK(mentions(m2, "reads its bias from 'conv2.bias'"));
  auto [c3, m3] = failure([](auto& ls) { ls[1].bias.resize(5); });
  CHECK(c3 == aq::errc::shape_mismatch);
  CHECK(mentions(m3, "'conv2' (Conv): bias"));
  auto [c4, m4] = failure([](auto& ls) { ls[0].bias.clear(); });
  CHECK(mentions(m4, "folds a batch norm, so its bias must be given"));
  auto [c5, m5] = failure([](auto& ls) { ls[0].folded_batch_norm = "bn9"; });
  CHECK(mentions(m5, "no node named 'bn9'"));
  auto [c6, m6] = failure([](auto& ls) { ls[1].folded_batch_norm = "bn1"; });
  CHECK(mentions(m6, "does not read the layer's output 'conv2_out'"));
  auto [c7, m7] = failure([](auto& ls) { ls[0].folded_batch_norm = "relu1"; });
  CHECK(mentions(m7, "folded node 'relu1' (Relu): is not a BatchNormalization"));
  onnx::ModelProto extra = make_cnn();  // a second reader of conv1's output
  test_onnx::add_node(*extra.mutable_graph(), "Relu", "spy", {"conv1_out"}, {"spy_out"});
  auto [c8, m8] = failure([](auto&) {}, extra);
  CHECK(mentions(m8, "has other readers than the batch norm"));
}

TEST_CASE("Opsets the exporter does not handle") {
  onnx::ModelProto old = make_cnn();
  old.mutable_opset_import(0)->set_version(8);
  auto [c1, m1] = failure([](auto&) {}, old);
  CHECK(c1 == aq::errc::invalid_argument);
  CHECK(mentions(m1, "opset must be in [9, 21], got 8"));
}
