#pragma once
// Loading an ONNX model: an untrusted parser. Files users download are checked before anything
// is allocated from them:
//   - the file is at most load_options::max_file_bytes and parses as a ModelProto;
//   - the default domain ("" / "ai.onnx") is imported at opset 9..21;
//   - every node is of a supported op type in the default domain (supported_op);
//   - every initializer and Constant tensor: a supported element type, non-negative dims whose
//     product (overflow-checked) equals the number of values present (raw_data bytes or typed
//     fields), no external data (refused: the file must be self-contained), no segments, and
//     finite values in floating tensors.
// Errors throw adaquant::error naming the file, then the node or tensor:
//   errc::corrupt_data      unreadable file, protobuf that does not parse, sizes that disagree,
//                           non-finite initializers, a graph whose nodes are not in order;
//   errc::invalid_argument  opsets outside 9..21, external data, unsupported ops, element types
//                           or attribute values (thrown as onnx::unsupported, a subclass);
//   errc::shape_mismatch    shapes that do not fit an op (found when the graph is compiled).

#include <adaquant/core/error.hpp>
#include <adaquant/onnx/tensor.hpp>

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant::onnx {

// An op, element type or attribute value the importer does not implement: errc::invalid_argument.
class unsupported : public adaquant::error {
 public:
  explicit unsupported(const std::string& message) : error(errc::invalid_argument, message) {}
};

struct load_options {
  std::size_t max_file_bytes = std::size_t{1} << 31;  // protobuf's own hard limit is 2 GiB
};

inline constexpr std::int64_t min_opset = 9, max_opset = 21;

// The op types of the default domain the executor implements (graph/ops.hpp).
[[nodiscard]] inline bool supported_op(std::string_view op) noexcept {
  static constexpr std::array<std::string_view, 44> ops = {
      "Add",         "AveragePool",        "BatchNormalization", "Cast",
      "Clip",        "Concat",             "Constant",           "ConstantOfShape",
      "Conv",        "ConvTranspose",      "Div",                "Erf",
      "Flatten",     "Gather",             "Gemm",               "GlobalAveragePool",
      "HardSigmoid", "HardSwish",          "Identity",           "LayerNormalization",
      "LeakyRelu",   "MatMul",             "MaxPool",            "Mul",
      "Pow",         "ReduceMean",         "Relu",               "Reshape",
      "Resize",      "Shape",              "Sigmoid",            "Slice",
      "Softmax",     "Sqrt",               "Squeeze",            "Sub",
      "Tanh",        "Transpose",          "Unsqueeze",          "GlobalMaxPool",
      "Dropout",     "Neg",                "Exp",                "Log"};
  return std::find(ops.begin(), ops.end(), op) != ops.end();
}

// A parsed, validated model. `proto` is the file's ModelProto unchanged (initializers included),
// so an exporter can write a modified copy back; `initializers` holds their decoded values.
struct model {
  std::string source;  // the file name (or the caller's label), used in every error
  ::onnx::ModelProto proto;
  std::int64_t opset = 0;  // of the default domain
  std::vector<std::pair<std::string, tensor>> initializers;
  std::vector<std::string> inputs;   // graph inputs that are not initializers, in order
  std::vector<std::string> outputs;  // graph outputs, in order

  [[nodiscard]] const ::onnx::GraphProto& graph() const noexcept { return proto.graph(); }
  // The declared shape of graph input k: -1 for a symbolic or missing extent.
  [[nodiscard]] shape_t declared_input_shape(std::size_t k) const;
  [[nodiscard]] const tensor* initializer(std::string_view name) const {
    for (const auto& [n, t] : initializers)
      if (n == name) return &t;
    return nullptr;
  }
};

namespace detail {

[[noreturn]] inline void fail(errc code, const std::string& where, const std::string& why) {
  adaquant::detail::fail(code, where, why);
}
[[noreturn]] inline void fail_unsupported(const std::string& where, const std::string& why) {
  throw unsupported(where + ": " + why);
}

inline float half_to_float(std::uint16_t h) noexcept {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(man & 0x400u)) {
        man <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
    }
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  return std::bit_cast<float>(bits);
}

// float -> IEEE half (round to nearest even) -> float: what a FLOAT16 tensor can hold.
inline float round_to_half(float f) noexcept {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t ax = x & 0x7fffffffu;
  std::uint16_t h;
  if (ax >= 0x7f800000u) {
    h = static_cast<std::uint16_t>(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
  } else if (ax >= 0x477ff000u) {  // rounds to >= 65520: infinity
    h = static_cast<std::uint16_t>(sign | 0x7c00u);
  } else if (ax < 0x38800000u) {  // subnormal half (or zero)
    const float v = std::bit_cast<float>(ax) * 16777216.0f;  // * 2^24: units of the smallest half
    h = static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(v)));
  } else {
    const std::uint32_t mant_odd = (ax >> 13) & 1u;
    const std::uint32_t r = ax + 0xc8000fffu + mant_odd;  // rebias (-112 << 23) and round half even
    h = static_cast<std::uint16_t>(sign | (r >> 13));
  }
  return half_to_float(h);
}

inline std::size_t element_bytes(dtype t) noexcept {
  switch (t) {
    case dtype::uint8:
    case dtype::int8:
    case dtype::boolean:
      return 1;
    case dtype::uint16:
    case dtype::int16:
    case dtype::float16:
      return 2;
    case dtype::float32:
    case dtype::int32:
    case dtype::uint32:
      return 4;
    default:
      return 8;
  }
}

template <class T>
T load_le(const char* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;  // little-endian host (x86-64, aarch64), as ONNX stores raw_data
}

}  // namespace detail

// Decodes a TensorProto. `where` names it in errors ("model.onnx: initializer conv1.weight").
// Floating tensors must be finite when require_finite.
[[nodiscard]] inline tensor decode_tensor(const ::onnx::TensorProto& t, const std::string& where,
                                          bool require_finite = true) {
  using detail::fail;
  if (t.data_location() == ::onnx::TensorProto::EXTERNAL || t.external_data_size() > 0)
    detail::fail_unsupported(where, "tensor \"" + t.name() +
                                        "\" stores its data in an external file; external data "
                                        "is not supported (save the model with its data inside)");
  if (t.has_segment())
    detail::fail_unsupported(where, "tensor \"" + t.name() + "\" is segmented");
  if (!is_supported_dtype(t.data_type()))
    detail::fail_unsupported(where, "tensor \"" + t.name() + "\" has element type " +
                                        std::to_string(t.data_type()) + ", not supported");
  const auto type = static_cast<dtype>(t.data_type());
  shape_t shape(t.dims().begin(), t.dims().end());
  const std::size_t n = onnx::detail::checked_count(shape, where + ": tensor \"" + t.name() + "\"");
  tensor out;
  out.type = type;
  out.shape = shape;
  const bool fl = is_float(type);
  const auto count_error = [&](std::size_t present, const char* field) {
    fail(errc::corrupt_data, where,
         "tensor \"" + t.name() + "\" of shape " + shape_string(shape) + " needs " +
             std::to_string(n) + " values, " + field + " holds " + std::to_string(present));
  };
  if (t.has_raw_data()) {
    const std::string& raw = t.raw_data();
    const std::size_t eb = detail::element_bytes(type);
    if (raw.size() % eb != 0 || raw.size() / eb != n) count_error(raw.size() / eb, "raw_data");
    if (fl) out.f.resize(n);
    else out.i.resize(n);
    const char* p = raw.data();
    for (std::size_t k = 0; k < n; ++k, p += eb) {
      switch (type) {
        case dtype::float32: out.f[k] = detail::load_le<float>(p); break;
        case dtype::float64: out.f[k] = static_cast<float>(detail::load_le<double>(p)); break;
        case dtype::float16: out.f[k] = detail::half_to_float(detail::load_le<std::uint16_t>(p)); break;
        case dtype::uint8: out.i[k] = detail::load_le<std::uint8_t>(p); break;
        case dtype::int8: out.i[k] = detail::load_le<std::int8_t>(p); break;
        case dtype::boolean: out.i[k] = detail::load_le<std::uint8_t>(p) != 0; break;
        case dtype::uint16: out.i[k] = detail::load_le<std::uint16_t>(p); break;
        case dtype::int16: out.i[k] = detail::load_le<std::int16_t>(p); break;
        case dtype::int32: out.i[k] = detail::load_le<std::int32_t>(p); break;
        case dtype::uint32: out.i[k] = detail::load_le<std::uint32_t>(p); break;
        case dtype::int64: out.i[k] = detail::load_le<std::int64_t>(p); break;
        case dtype::uint64: out.i[k] = static_cast<std::int64_t>(detail::load_le<std::uint64_t>(p)); break;
      }
    }
  } else {
    switch (type) {
      case dtype::float32:
        if (static_cast<std::size_t>(t.float_data_size()) != n) count_error(t.float_data_size(), "float_data");
        out.f.assign(t.float_data().begin(), t.float_data().end());
        break;
      case dtype::float64:
        if (static_cast<std::size_t>(t.double_data_size()) != n) count_error(t.double_data_size(), "double_data");
        for (const double d : t.double_data()) out.f.push_back(static_cast<float>(d));
        break;
      case dtype::int64:
        if (static_cast<std::size_t>(t.int64_data_size()) != n) count_error(t.int64_data_size(), "int64_data");
        out.i.assign(t.int64_data().begin(), t.int64_data().end());
        break;
      case dtype::uint32:
      case dtype::uint64:
        if (static_cast<std::size_t>(t.uint64_data_size()) != n) count_error(t.uint64_data_size(), "uint64_data");
        for (const std::uint64_t v : t.uint64_data()) out.i.push_back(wrap_to(type, static_cast<std::int64_t>(v)));
        break;
      default:  // float16, (u)int8/16, int32, bool: in int32_data
        if (static_cast<std::size_t>(t.int32_data_size()) != n) count_error(t.int32_data_size(), "int32_data");
        for (const std::int32_t v : t.int32_data()) {
          if (type == dtype::float16)
            out.f.push_back(detail::half_to_float(static_cast<std::uint16_t>(v)));
          else
            out.i.push_back(wrap_to(type, v));
        }
    }
  }
  if (fl && require_finite)
    for (std::size_t k = 0; k < n; ++k)
      if (!std::isfinite(out.f[k]))
        fail(errc::corrupt_data, where,
             "tensor \"" + t.name() + "\" holds a non-finite value at element " +
                 std::to_string(k));
  if (fl) out.type = dtype::float32;  // computed in float32
  return out;
}

inline shape_t model::declared_input_shape(std::size_t k) const {
  for (const auto& vi : graph().input()) {
    if (vi.name() != inputs.at(k)) continue;
    shape_t s;
    if (!vi.type().has_tensor_type() || !vi.type().tensor_type().has_shape()) return s;
    for (const auto& d : vi.type().tensor_type().shape().dim())
      s.push_back(d.has_dim_value() && d.dim_value() >= 0 ? d.dim_value() : -1);
    return s;
  }
  return {};
}

// Parses and validates model bytes; `source` names them in errors.
[[nodiscard]] inline model load_model_from_bytes(std::span<const std::uint8_t> bytes,
                                                 const std::string& source,
                                                 const load_options& opt = {}) {
  using detail::fail;
  if (bytes.size() > opt.max_file_bytes || bytes.size() > std::size_t{INT32_MAX})
    fail(errc::corrupt_data, source,
         "file of " + std::to_string(bytes.size()) + " bytes exceeds the limit of " +
             std::to_string(std::min<std::size_t>(opt.max_file_bytes, INT32_MAX)));
  model m;
  m.source = source;
  if (!m.proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    fail(errc::corrupt_data, source, "not a valid ONNX ModelProto (protobuf parsing failed)");
  bool found = false;
  for (const auto& o : m.proto.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") {
      m.opset = o.version();
      found = true;
    }
  if (!found)
    detail::fail_unsupported(source, "no opset is imported for the default ONNX domain");
  if (m.opset < min_opset || m.opset > max_opset)
    detail::fail_unsupported(source,
         "opset " + std::to_string(m.opset) + " of the default domain is outside the supported " +
             std::to_string(min_opset) + ".." + std::to_string(max_opset));
  const ::onnx::GraphProto& g = m.proto.graph();
  for (const auto& n : g.node()) {
    const std::string where = source + ": node \"" + n.name() + "\" (" + n.op_type() + ")";
    if (!(n.domain().empty() || n.domain() == "ai.onnx"))
      detail::fail_unsupported(where, "op " + n.op_type() + " of domain \"" + n.domain() +
                                          "\" is not supported");
    if (!supported_op(n.op_type()))
      detail::fail_unsupported(where, "op type " + n.op_type() + " is not supported");
    for (const auto& a : n.attribute())
      if (a.type() == ::onnx::AttributeProto::GRAPH || a.type() == ::onnx::AttributeProto::GRAPHS)
        detail::fail_unsupported(where, "subgraph attributes are not supported");
  }
  for (const auto& t : g.initializer()) {
    m.initializers.emplace_back(t.name(),
                                decode_tensor(t, source + ": initializer \"" + t.name() + "\""));
  }
  if (g.sparse_initializer_size() > 0)
    detail::fail_unsupported(source, "sparse initializers are not supported");
  for (const auto& vi : g.input()) {
    if (m.initializer(vi.name())) continue;
    if (!vi.type().has_tensor_type())
      detail::fail_unsupported(source + ": input \"" + vi.name() + "\"",
                               "only tensor inputs are supported (not sequences, maps or optionals)");
    const std::int32_t t = vi.type().tensor_type().elem_type();
    if (!is_supported_dtype(t))
      detail::fail_unsupported(source + ": input \"" + vi.name() + "\"",
                               "element type " + std::to_string(t) + " is not supported");
    m.inputs.push_back(vi.name());
  }
  for (const auto& vi : g.output()) m.outputs.push_back(vi.name());
  if (m.outputs.empty()) fail(errc::corrupt_data, source, "the graph has no outputs");
  return m;
}

// Reads and validates an ONNX file (errc::corrupt_data when it cannot be read).
[[nodiscard]] inline model load_model(const std::filesystem::path& path,
                                      const load_options& opt = {}) {
  const std::string source = path.string();
  std::error_code ec;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) detail::fail(errc::corrupt_data, source, "cannot read the file: " + ec.message());
  if (size > opt.max_file_bytes)
    detail::fail(errc::corrupt_data, source,
                 "file of " + std::to_string(size) + " bytes exceeds the limit of " +
                     std::to_string(opt.max_file_bytes));
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  std::ifstream f(path, std::ios::binary);
  if (!f.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size)))
    detail::fail(errc::corrupt_data, source, "cannot read the file");
  return load_model_from_bytes(bytes, source, opt);
}

}  // namespace adaquant::onnx
