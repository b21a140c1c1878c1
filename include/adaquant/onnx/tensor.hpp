#pragma once
// The values an imported ONNX graph computes with: a row-major tensor of one element type.
// Floating types (FLOAT, DOUBLE, FLOAT16) compute in float32; integer and bool types are held
// as int64 and keep their ONNX type tag, so Cast and the integer ops round-trip. Shapes are
// int64 extents, as ONNX declares them.

#include <adaquant/core/error.hpp>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace adaquant::onnx {

// ONNX TensorProto::DataType numbers of the types the executor holds.
enum class dtype : std::int32_t {
  float32 = 1,
  uint8 = 2,
  int8 = 3,
  uint16 = 4,
  int16 = 5,
  int32 = 6,
  int64 = 7,
  boolean = 9,
  float16 = 10,
  float64 = 11,
  uint32 = 12,
  uint64 = 13,
};

[[nodiscard]] constexpr bool is_float(dtype t) noexcept {
  return t == dtype::float32 || t == dtype::float16 || t == dtype::float64;
}
// Whether the executor can hold an ONNX type number (STRING, complex, bfloat16, 4-bit: no).
[[nodiscard]] constexpr bool is_supported_dtype(std::int32_t t) noexcept {
  return (t >= 1 && t <= 7) || (t >= 9 && t <= 13);
}

using shape_t = std::vector<std::int64_t>;

[[nodiscard]] inline std::string shape_string(const shape_t& s) {
  std::string out = "[";
  for (std::size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Tensors of higher rank are refused (no supported model needs more; it bounds per-element work).
inline constexpr std::size_t max_rank = 32;

namespace detail {
// Product of the extents; errc::corrupt_data (naming `what`) on a negative extent or overflow
// past `limit`.
[[nodiscard]] inline std::size_t checked_count(const shape_t& s, const std::string& what,
                                               std::size_t limit = std::size_t{1} << 40) {
  if (s.size() > max_rank)
    adaquant::detail::fail(errc::corrupt_data, what,
                           "rank " + std::to_string(s.size()) + " exceeds " + std::to_string(max_rank));
  std::size_t n = 1, nonzero = 1;  // every extent is bounded, even next to a 0
  for (const std::int64_t d : s) {
    if (d < 0)
      adaquant::detail::fail(errc::corrupt_data, what,
                             "negative extent in shape " + shape_string(s));
    if (d != 0 && nonzero > limit / static_cast<std::size_t>(d))
      adaquant::detail::fail(errc::corrupt_data, what,
                             "shape " + shape_string(s) + " has too many elements");
    if (d != 0) nonzero *= static_cast<std::size_t>(d);
    n *= static_cast<std::size_t>(d);
  }
  return n;
}
}  // namespace detail

struct tensor {
  dtype type = dtype::float32;
  shape_t shape;
  std::vector<float> f;         // floating types
  std::vector<std::int64_t> i;  // integer and bool types

  tensor() = default;
  tensor(shape_t s, std::vector<float> values)
      : type(dtype::float32), shape(std::move(s)), f(std::move(values)) {}
  tensor(dtype t, shape_t s, std::vector<std::int64_t> values)
      : type(t), shape(std::move(s)), i(std::move(values)) {}

  [[nodiscard]] static tensor zeros(dtype t, shape_t s) {
    const std::size_t n = detail::checked_count(s, "tensor");
    tensor out;
    out.type = t;
    out.shape = std::move(s);
    if (is_float(t))
      out.f.assign(n, 0.0f);
    else
      out.i.assign(n, 0);
    return out;
  }
  [[nodiscard]] static tensor scalar(float v) { return tensor({}, {v}); }
  [[nodiscard]] static tensor ints(std::vector<std::int64_t> v) {
    const auto n = static_cast<std::int64_t>(v.size());
    return tensor(dtype::int64, {n}, std::move(v));
  }

  [[nodiscard]] bool floating() const noexcept { return is_float(type); }
  [[nodiscard]] std::size_t size() const noexcept { return floating() ? f.size() : i.size(); }
  [[nodiscard]] std::size_t rank() const noexcept { return shape.size(); }
  [[nodiscard]] std::int64_t dim(std::size_t axis) const { return shape.at(axis); }
  // Element k as double / int64, whatever the storage.
  [[nodiscard]] double as_double(std::size_t k) const {
    return floating() ? static_cast<double>(f[k]) : static_cast<double>(i[k]);
  }
  [[nodiscard]] std::int64_t as_int(std::size_t k) const {
    return floating() ? static_cast<std::int64_t>(f[k]) : i[k];
  }
  // Elements per item of the leading axis.
  [[nodiscard]] std::size_t item_size() const noexcept {
    return shape.empty() || shape[0] <= 0 ? 0 : size() / static_cast<std::size_t>(shape[0]);
  }
  // Items [begin, end) of the leading axis.
  [[nodiscard]] tensor items(std::size_t begin, std::size_t end) const {
    if (!(!shape.empty() && begin <= end && end <= static_cast<std::size_t>(shape[0])))
      adaquant::detail::fail(errc::invalid_argument, "onnx::tensor::items: begin, end",
                             std::to_string(begin) + " to " + std::to_string(end) +
                                 " is not within the leading axis of " + shape_string(shape));
    tensor out;
    out.type = type;
    out.shape = shape;
    out.shape[0] = static_cast<std::int64_t>(end - begin);
    const auto per = static_cast<std::ptrdiff_t>(item_size());
    const auto b = static_cast<std::ptrdiff_t>(begin) * per,
               e = static_cast<std::ptrdiff_t>(end) * per;
    if (floating())
      out.f.assign(f.begin() + b, f.begin() + e);
    else
      out.i.assign(i.begin() + b, i.begin() + e);
    return out;
  }
};

// Rounds/wraps an int64 to what ONNX type t can hold (Cast's integer semantics: two's complement
// wrap; bool: nonzero -> 1).
[[nodiscard]] inline std::int64_t wrap_to(dtype t, std::int64_t v) noexcept {
  switch (t) {
    case dtype::uint8:
      return static_cast<std::uint8_t>(v);
    case dtype::int8:
      return static_cast<std::int8_t>(v);
    case dtype::uint16:
      return static_cast<std::uint16_t>(v);
    case dtype::int16:
      return static_cast<std::int16_t>(v);
    case dtype::int32:
      return static_cast<std::int32_t>(v);
    case dtype::uint32:
      return static_cast<std::uint32_t>(v);
    case dtype::boolean:
      return v != 0;
    default:
      return v;
  }
}

}  // namespace adaquant::onnx
