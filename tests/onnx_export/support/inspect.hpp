#pragma once
// Queries on exported models and comparisons the export tests share.

#include <onnx/onnx_pb.h>

#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace test_onnx {

inline std::vector<std::string> op_types(const onnx::ModelProto& m) {
  std::vector<std::string> ops;
  for (const auto& n : m.graph().node()) ops.push_back(n.op_type());
  return ops;
}

inline const onnx::TensorProto* initializer(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& t : m.graph().initializer())
    if (t.name() == name) return &t;
  return nullptr;
}

inline const onnx::NodeProto& node(const onnx::ModelProto& m, const std::string& name) {
  for (const auto& n : m.graph().node())
    if (n.name() == name) return n;
  throw std::runtime_error("no node " + name);
}

inline std::int64_t opset(const onnx::ModelProto& m) {
  for (const auto& o : m.opset_import())
    if (o.domain().empty()) return o.version();
  return 0;
}

inline bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) return false;
  return true;
}

// Whether the error message `what` contains `s` (printed when not).
inline bool mentions(const std::string& what, const std::string& s) {
  if (what.find(s) != std::string::npos) return true;
  UNSCOPED_INFO(what);
  return false;
}

}  // namespace test_onnx
