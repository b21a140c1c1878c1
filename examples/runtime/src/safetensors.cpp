#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/safetensors.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

namespace adaquant::examples {
namespace {

std::size_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, std::size_t, std::less<>> sizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"I64", 8}, {"U64", 8},     {"F64", 8}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

std::uint64_t as_offset(const nlohmann::json& v, const std::string& w, const std::string& what) {
  if (!(v.is_number_unsigned() || (v.is_number_integer() && v.get<std::int64_t>() >= 0)))
    detail::fail(errc::corrupt_data, w, what + " must be a non-negative integer");
  return v.get<std::uint64_t>();
}

}  // namespace

const tensor& safetensors_file::get(const std::string& name,
                                    const std::vector<std::size_t>& shape) const {
  const auto it = tensors.find(name);
  if (!(it != tensors.end()))
    detail::fail(errc::corrupt_data, "safetensors_file::get: " + name, "tensor missing");
  if (!(it->second.shape() == shape))
    detail::fail(
        errc::corrupt_data, "safetensors_file::get: " + name,
        "expected shape " + shape_string(shape) + ", got " + shape_string(it->second.shape()));
  return it->second;
}

safetensors_file parse_safetensors(std::span<const std::uint8_t> bytes, std::string_view source) {
  const std::string w = "parse_safetensors: " + std::string(source);
  if (!(bytes.size() >= 8))
    detail::fail(errc::corrupt_data, w,
                 "truncated: expected an 8-byte header length, got " +
                     std::to_string(bytes.size()) + " bytes");
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[static_cast<std::size_t>(i)];
  if (!(n >= 2 && n <= max_safetensors_header))
    detail::fail(errc::corrupt_data, w,
                 "header length " + std::to_string(n) + " outside [2, " +
                     std::to_string(max_safetensors_header) + "]");
  if (!(n <= bytes.size() - 8))
    detail::fail(errc::corrupt_data, w,
                 "truncated: header of " + std::to_string(n) + " bytes, but only " +
                     std::to_string(bytes.size() - 8) + " follow");
  const auto* hbeg = reinterpret_cast<const char*>(bytes.data() + 8);
  const nlohmann::json header =
      nlohmann::json::parse(hbeg, hbeg + n, /*callback=*/nullptr, /*allow_exceptions=*/false);
  if (!(!header.is_discarded())) detail::fail(errc::corrupt_data, w, "header is not valid JSON");
  if (!(header.is_object())) detail::fail(errc::corrupt_data, w, "header is not a JSON object");

  const std::span<const std::uint8_t> data = bytes.subspan(8 + n);
  safetensors_file f;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  struct entry {
    std::string name;
    std::vector<std::size_t> shape;
    std::uint64_t begin;
  };
  std::vector<entry> entries;
  for (const auto& [name, v] : header.items()) {
    const std::string wt = w + ": tensor \"" + name + "\"";
    if (name == "__metadata__") {
      if (!(v.is_object())) detail::fail(errc::corrupt_data, w, "__metadata__ is not an object");
      for (const auto& [k, s] : v.items()) {
        if (!(s.is_string()))
          detail::fail(errc::corrupt_data, w,
                       "__metadata__ value of \"" + k + "\" is not a string");
        f.metadata[k] = s.get<std::string>();
      }
      continue;
    }
    if (!(v.is_object())) detail::fail(errc::corrupt_data, wt, "entry is not an object");
    if (!(v.contains("dtype") && v["dtype"].is_string()))
      detail::fail(errc::corrupt_data, wt, "missing string \"dtype\"");
    if (!(v.contains("shape") && v["shape"].is_array()))
      detail::fail(errc::corrupt_data, wt, "missing array \"shape\"");
    if (!(v.contains("data_offsets") && v["data_offsets"].is_array() &&
          v["data_offsets"].size() == 2))
      detail::fail(errc::corrupt_data, wt, "\"data_offsets\" must be an array of two integers");
    if (!(v.size() == 3)) detail::fail(errc::corrupt_data, wt, "unexpected keys in entry");
    const std::string dtype = v["dtype"].get<std::string>();
    const std::size_t esize = dtype_size(dtype);
    if (!(esize != 0)) detail::fail(errc::corrupt_data, wt, "unknown dtype \"" + dtype + "\"");
    if (!(dtype == "F32"))
      detail::fail(errc::corrupt_data, wt, "unsupported dtype \"" + dtype + "\" (only F32)");
    if (!(v["shape"].size() <= max_rank))
      detail::fail(errc::corrupt_data, wt, "rank above " + std::to_string(max_rank));
    std::vector<std::size_t> shape;
    std::uint64_t count = 1;
    for (const auto& d : v["shape"]) {
      const std::uint64_t e = as_offset(d, wt, "shape extent");
      if (!(e == 0 || count <= std::numeric_limits<std::uint64_t>::max() / esize / e))
        detail::fail(errc::corrupt_data, wt, "shape overflows");
      count *= e;
      shape.push_back(static_cast<std::size_t>(e));
    }
    const std::uint64_t begin = as_offset(v["data_offsets"][0], wt, "data_offsets[0]");
    const std::uint64_t end = as_offset(v["data_offsets"][1], wt, "data_offsets[1]");
    if (!(begin <= end && end <= data.size()))
      detail::fail(errc::corrupt_data, wt,
                   "data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                       ") outside the " + std::to_string(data.size()) + "-byte data section");
    if (!(end - begin == count * esize))
      detail::fail(errc::corrupt_data, wt,
                   "shape " + shape_string(shape) + " needs " + std::to_string(count * esize) +
                       " bytes, data_offsets span " + std::to_string(end - begin));
    ranges.emplace_back(begin, end);
    entries.push_back({name, std::move(shape), begin});
  }
  // The data section must be covered exactly: sorted ranges are contiguous from 0 to the end.
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t pos = 0;
  for (const auto& [b, e] : ranges) {
    if (!(b == pos))
      detail::fail(errc::corrupt_data, w,
                   b < pos ? "tensors overlap at byte " + std::to_string(b)
                           : "hole in the data section at byte " + std::to_string(pos));
    pos = e;
  }
  if (!(pos == data.size()))
    detail::fail(errc::corrupt_data, w,
                 "data section has " + std::to_string(data.size()) + " bytes, tensors cover " +
                     std::to_string(pos));
  for (auto& e : entries) {
    tensor t(e.shape);
    static_assert(std::endian::native == std::endian::little, "F32 data is little-endian");
    if (t.size() != 0) std::memcpy(t.data(), data.data() + e.begin, t.size() * sizeof(float));
    f.tensors.emplace(std::move(e.name), std::move(t));
  }
  return f;
}

safetensors_file read_safetensors(const std::filesystem::path& path) {
  const std::vector<std::uint8_t> bytes = read_binary_file(path);
  return parse_safetensors(bytes, path.string());
}

}  // namespace adaquant::examples
