#pragma once
// Protobuf helpers for the exporter: tensors written as little-endian raw_data, attribute access,
// name lookups and a generator of names the graph does not use yet.

#include <adaquant/core/error.hpp>

#include <onnx/onnx_pb.h>

#include <bit>
#include <cstddef>
#include <cstdio>
#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant::onnx::detail::exporting {

// ONNX TensorProto.DataType numbers the exporter writes (4-bit types are opset 21, IR 10; ONNX
// 1.12's enum does not name them, the field is a plain int32).
inline constexpr std::int32_t onnx_float = 1, onnx_uint8 = 2, onnx_int8 = 3, onnx_int64 = 7,
                              onnx_uint4 = 21, onnx_int4 = 22;

// A float32 written so that reading it back gives the same float ("%.9g"); non-finite values as
// "nan", "inf", "-inf".
inline std::string exact_float(float v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
  return buf;
}

inline std::string in_quotes(std::string_view s) {
  std::string out(1, '\'');  // appended, not "'" + s + "'": GCC 12 warns (-Wrestrict) on that
  out += s;
  out += '\'';
  return out;
}

inline std::string node_label(const ::onnx::NodeProto& n) {
  return "node " + in_quotes(n.name()) + " (" + n.op_type() + ")";
}

[[nodiscard]] inline bool is_default_domain(const ::onnx::NodeProto& n) {
  return n.domain().empty() || n.domain() == "ai.onnx";
}

// Raw little-endian bytes, independent of the host's byte order.
inline void append_le(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFFu));
}

inline ::onnx::TensorProto make_tensor(const std::string& name, std::int32_t type,
                                       std::span<const std::int64_t> dims, std::string raw) {
  ::onnx::TensorProto t;
  t.set_name(name);
  t.set_data_type(type);
  for (const std::int64_t d : dims) t.add_dims(d);
  t.set_raw_data(std::move(raw));
  return t;
}

inline ::onnx::TensorProto make_float_tensor(const std::string& name,
                                             std::span<const std::int64_t> dims,
                                             std::span<const float> values) {
  std::string raw;
  raw.reserve(values.size() * 4);
  for (const float v : values) append_le(raw, std::bit_cast<std::uint32_t>(v), 4);
  return make_tensor(name, onnx_float, dims, std::move(raw));
}

inline ::onnx::TensorProto make_int64_tensor(const std::string& name,
                                             std::span<const std::int64_t> dims,
                                             std::span<const std::int64_t> values) {
  std::string raw;
  raw.reserve(values.size() * 8);
  for (const std::int64_t v : values) append_le(raw, static_cast<std::uint64_t>(v), 8);
  return make_tensor(name, onnx_int64, dims, std::move(raw));
}

// Integers already on the type's range: one byte each, or two per byte for the 4-bit types
// (element 2i in the low nibble, 2i+1 in the high one; an odd count leaves the last high nibble 0).
inline ::onnx::TensorProto make_integer_tensor(const std::string& name, std::int32_t type,
                                               std::span<const std::int64_t> dims,
                                               std::span<const std::int32_t> values) {
  std::string raw;
  if (type == onnx_int4 || type == onnx_uint4) {
    raw.assign((values.size() + 1) / 2, '\0');
    for (std::size_t i = 0; i < values.size(); ++i) {
      const auto nib = static_cast<unsigned>(values[i]) & 0x0Fu;
      raw[i / 2] = static_cast<char>(static_cast<unsigned char>(raw[i / 2]) | (nib << (4 * (i % 2))));
    }
  } else {
    raw.reserve(values.size());
    for (const std::int32_t v : values) raw.push_back(static_cast<char>(static_cast<std::uint8_t>(v)));
  }
  return make_tensor(name, type, dims, std::move(raw));
}

inline void set_float_values(::onnx::TensorProto& t, std::span<const float> values) {
  std::string raw;
  raw.reserve(values.size() * 4);
  for (const float v : values) append_le(raw, std::bit_cast<std::uint32_t>(v), 4);
  t.clear_float_data();
  t.clear_double_data();
  t.clear_int32_data();
  t.set_data_type(onnx_float);
  t.set_raw_data(std::move(raw));
}

[[nodiscard]] inline std::size_t element_count(const ::onnx::TensorProto& t) {
  std::size_t n = 1;
  for (const std::int64_t d : t.dims()) n *= d < 0 ? 0 : static_cast<std::size_t>(d);
  return n;
}

inline std::string dims_string(const ::onnx::TensorProto& t) {
  std::string s = "[";
  for (int i = 0; i < t.dims_size(); ++i) s += (i ? ", " : "") + std::to_string(t.dims(i));
  return s + "]";
}

[[nodiscard]] inline const ::onnx::AttributeProto* find_attribute(const ::onnx::NodeProto& n,
                                                                   std::string_view name) {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}

[[nodiscard]] inline std::int64_t int_attribute(const ::onnx::NodeProto& n, std::string_view name,
                                                std::int64_t fallback) {
  const auto* a = find_attribute(n, name);
  return a ? a->i() : fallback;
}

inline void erase_attribute(::onnx::NodeProto& n, std::string_view name) {
  auto* attrs = n.mutable_attribute();
  for (int i = 0; i < attrs->size(); ++i)
    if (attrs->Get(i).name() == name) {
      attrs->DeleteSubrange(i, 1);
      return;
    }
}

inline void set_int_attribute(::onnx::NodeProto& n, const std::string& name, std::int64_t v) {
  erase_attribute(n, name);
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::INT);
  a->set_i(v);
}

inline void set_float_attribute(::onnx::NodeProto& n, const std::string& name, float v) {
  erase_attribute(n, name);
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(::onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

[[nodiscard]] inline bool has_subgraphs(const ::onnx::NodeProto& n) {
  for (const auto& a : n.attribute())
    if (a.type() == ::onnx::AttributeProto::GRAPH || a.type() == ::onnx::AttributeProto::GRAPHS ||
        a.has_g() || a.graphs_size() > 0)
      return true;
  return false;
}

[[nodiscard]] inline ::onnx::NodeProto make_node(const std::string& op, const std::string& name,
                                                 std::vector<std::string> inputs,
                                                 std::vector<std::string> outputs) {
  ::onnx::NodeProto n;
  n.set_op_type(op);
  n.set_name(name);
  for (auto& i : inputs) n.add_input(std::move(i));
  for (auto& o : outputs) n.add_output(std::move(o));
  return n;
}

// How many times tensor `name` is read: node inputs (subgraphs included, since they may read
// outer-scope values) and graph outputs.
[[nodiscard]] inline std::size_t count_uses(const ::onnx::GraphProto& g, const std::string& name) {
  std::size_t uses = 0;
  for (const auto& n : g.node()) {
    for (const auto& in : n.input()) uses += in == name;
    for (const auto& a : n.attribute()) {
      if (a.has_g()) uses += count_uses(a.g(), name);
      for (const auto& sg : a.graphs()) uses += count_uses(sg, name);
    }
  }
  for (const auto& o : g.output()) uses += o.name() == name;
  return uses;
}

[[nodiscard]] inline int find_initializer(const ::onnx::GraphProto& g, std::string_view name) {
  for (int i = 0; i < g.initializer_size(); ++i)
    if (g.initializer(i).name() == name) return i;
  return -1;
}

// Removes initializer `name` (and its graph input entry, which IR < 4 files carry) when nothing
// reads it any more.
inline void remove_initializer_if_unused(::onnx::GraphProto& g, const std::string& name) {
  if (count_uses(g, name) != 0) return;
  const int i = find_initializer(g, name);
  if (i >= 0) g.mutable_initializer()->DeleteSubrange(i, 1);
  auto* inputs = g.mutable_input();
  for (int k = 0; k < inputs->size(); ++k)
    if (inputs->Get(k).name() == name) {
      inputs->DeleteSubrange(k, 1);
      break;
    }
}

// Names not used by any node, tensor or value in the graph.
class unique_names {
 public:
  explicit unique_names(const ::onnx::GraphProto& g) { collect(g); }

  std::string make(const std::string& base) {
    std::string name = base;
    for (std::size_t k = 1; used_.count(name); ++k) name = base + "_" + std::to_string(k);
    used_.insert(name);
    return name;
  }

 private:
  void collect(const ::onnx::GraphProto& g) {
    for (const auto& n : g.node()) {
      used_.insert(n.name());
      used_.insert(n.input().begin(), n.input().end());
      used_.insert(n.output().begin(), n.output().end());
      for (const auto& a : n.attribute()) {
        if (a.has_g()) collect(a.g());
        for (const auto& sg : a.graphs()) collect(sg);
      }
    }
    for (const auto& t : g.initializer()) used_.insert(t.name());
    for (const auto& v : g.input()) used_.insert(v.name());
    for (const auto& v : g.output()) used_.insert(v.name());
    for (const auto& v : g.value_info()) used_.insert(v.name());
  }
  std::set<std::string> used_;
};

}  // namespace adaquant::onnx::detail::exporting
