#pragma once
// Builders for small ONNX models in tests (the protobuf API directly, so malformed models are
// as easy to write as valid ones), and a one-node runner.

#include <adaquant/onnx/onnx.hpp>

#include <functional>
#include <string>
#include <vector>

namespace onnx_test {

namespace aq = adaquant::onnx;
using P = ::onnx::TensorProto;

class builder {
 public:
  explicit builder(std::int64_t opset = 13) {
    m.set_ir_version(8);
    auto* o = m.add_opset_import();
    o->set_domain("");
    o->set_version(opset);
  }
  ::onnx::GraphProto& g() { return *m.mutable_graph(); }

  // A graph input; -1 extents become the symbolic "N".
  void input(const std::string& name, std::vector<std::int64_t> dims, int type = P::FLOAT) {
    auto* vi = g().add_input();
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(type);
    for (const auto d : dims) {
      auto* dim = tt->mutable_shape()->add_dim();
      if (d < 0) dim->set_dim_param("N");
      else dim->set_dim_value(d);
    }
  }
  void output(const std::string& name) { g().add_output()->set_name(name); }

  ::onnx::NodeProto& node(const std::string& op, std::vector<std::string> in,
                          std::vector<std::string> out, const std::string& name = "") {
    auto* n = g().add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? op + std::to_string(g().node_size()) : name);
    for (auto& s : in) n->add_input(s);
    for (auto& s : out) n->add_output(s);
    return *n;
  }

  static P tensor_f(const std::string& name, std::vector<std::int64_t> dims, std::vector<float> v) {
    P t = header(name, P::FLOAT, dims);
    for (float x : v) t.add_float_data(x);
    return t;
  }
  static P tensor_i(const std::string& name, std::vector<std::int64_t> dims, std::vector<std::int64_t> v) {
    P t = header(name, P::INT64, dims);
    for (auto x : v) t.add_int64_data(x);
    return t;
  }
  static P header(const std::string& name, int type, const std::vector<std::int64_t>& dims) {
    P t;
    t.set_name(name);
    t.set_data_type(type);
    for (auto d : dims) t.add_dims(d);
    return t;
  }
  P& init_f(const std::string& name, std::vector<std::int64_t> dims, std::vector<float> v) {
    return *g().add_initializer() = tensor_f(name, std::move(dims), std::move(v));
  }
  P& init_i(const std::string& name, std::vector<std::int64_t> dims, std::vector<std::int64_t> v) {
    return *g().add_initializer() = tensor_i(name, std::move(dims), std::move(v));
  }

  [[nodiscard]] std::string bytes() const { return m.SerializeAsString(); }
  [[nodiscard]] aq::model load(const std::string& source = "test.onnx") const {
    const std::string b = bytes();
    return aq::load_model_from_bytes(
        std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(b.data()), b.size()),
        source);
  }

  ::onnx::ModelProto m;
};

inline void attr_i(::onnx::NodeProto& n, const std::string& k, std::int64_t v) {
  auto* a = n.add_attribute();
  a->set_name(k);
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(v);
}
inline void attr_f(::onnx::NodeProto& n, const std::string& k, float v) {
  auto* a = n.add_attribute();
  a->set_name(k);
  a->set_type(::onnx::AttributeProto::FLOAT);
  a->set_f(v);
}
inline void attr_s(::onnx::NodeProto& n, const std::string& k, const std::string& v) {
  auto* a = n.add_attribute();
  a->set_name(k);
  a->set_type(::onnx::AttributeProto::STRING);
  a->set_s(v);
}
inline void attr_ints(::onnx::NodeProto& n, const std::string& k, std::vector<std::int64_t> v) {
  auto* a = n.add_attribute();
  a->set_name(k);
  a->set_type(::onnx::AttributeProto::INTS);
  for (auto x : v) a->add_ints(x);
}
inline void attr_t(::onnx::NodeProto& n, const std::string& k, const P& t) {
  auto* a = n.add_attribute();
  a->set_name(k);
  a->set_type(::onnx::AttributeProto::TENSOR);
  *a->mutable_t() = t;
}

// Runs one node: input 0 is a graph input of x's shape (computed at run time), the others are
// initializers (folded when the node only reads them). Returns output `which`.
inline aq::tensor run_op(const std::string& op, const aq::tensor& x, std::vector<aq::tensor> consts = {},
                         const std::function<void(::onnx::NodeProto&)>& attrs = {},
                         std::int64_t opset = 13, std::size_t outputs = 1, std::size_t which = 0) {
  builder b(opset);
  b.input("x", x.shape, x.floating() ? P::FLOAT : P::INT64);
  std::vector<std::string> in = {"x"}, out;
  for (std::size_t k = 0; k < consts.size(); ++k) {
    std::string name = std::to_string(k);
    name.insert(0, 1, 'c');  // (not "c" + ...: GCC 12 -Wrestrict false positive)
    in.push_back(consts[k].size() || consts[k].rank() ? name : "");
    if (in.back().empty()) continue;
    if (consts[k].floating()) b.init_f(name, consts[k].shape, consts[k].f);
    else b.init_i(name, consts[k].shape, consts[k].i);
  }
  for (std::size_t k = 0; k < outputs; ++k) out.push_back(std::string(1, 'y').append(std::to_string(k)));
  auto& n = b.node(op, in, out, "the_node");
  if (attrs) attrs(n);
  b.output(out[which]);
  aq::compile_options co;
  co.batch_axis = false;
  co.sample_shapes = {x.shape};
  const aq::graph g = aq::graph::compile(b.load(), co);
  return g.forward({x}).at(0);
}

inline aq::tensor f(std::vector<std::int64_t> shape, std::vector<float> v) { return aq::tensor(std::move(shape), std::move(v)); }
inline aq::tensor i64(std::vector<std::int64_t> shape, std::vector<std::int64_t> v) {
  return aq::tensor(aq::dtype::int64, std::move(shape), std::move(v));
}

}  // namespace onnx_test
