// A consumer of adaquant::onnx: builds a one-node model (Relu) with the ONNX protobuf classes,
// loads it through the untrusted parser and runs it.
#include <adaquant/onnx/onnx.hpp>

#include <cstdio>
#include <string>

int main() {
  ::onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(13);
  auto* g = m.mutable_graph();
  auto* in = g->add_input();
  in->set_name("x");
  auto* tt = in->mutable_type()->mutable_tensor_type();
  tt->set_elem_type(::onnx::TensorProto::FLOAT);
  tt->mutable_shape()->add_dim()->set_dim_param("N");
  tt->mutable_shape()->add_dim()->set_dim_value(2);
  auto* n = g->add_node();
  n->set_op_type("Relu");
  n->add_input("x");
  n->add_output("y");
  g->add_output()->set_name("y");
  const std::string bytes = m.SerializeAsString();
  const auto model = adaquant::onnx::load_model_from_bytes(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()),
      "consumer.onnx");
  const auto graph = adaquant::onnx::graph::compile(model);
  const auto y = graph.forward({adaquant::onnx::tensor({1, 2}, {-1.0f, 2.0f})}).at(0);
  if (!(y.f.size() == 2 && y.f[0] == 0.0f && y.f[1] == 2.0f)) return 1;
  std::puts("consumer onnx ok");
  return 0;
}
