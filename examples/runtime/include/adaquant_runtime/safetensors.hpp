#pragma once
// safetensors reader (https://github.com/huggingface/safetensors): 8-byte little-endian header
// length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__":
// {str: str}}, then the data section. Validated before any tensor byte is read: header bounds
// and JSON syntax, known dtypes, shape * dtype size == end - begin without overflow, offsets
// inside the data section, no overlaps and no holes. Only F32 tensors are materialised (the
// reference models are F32); other known dtypes are rejected as unsupported. Every failure throws
// adaquant::error(errc::corrupt_data) naming the source and the problem.

#include <adaquant_runtime/tensor.hpp>

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>

namespace adaquant::examples {

struct safetensors_file {
  std::map<std::string, tensor> tensors;
  std::map<std::string, std::string> metadata;

  // The tensor called `name`, checked against `shape`; errc::corrupt_data when either is wrong.
  [[nodiscard]] const tensor& get(const std::string& name,
                                  const std::vector<std::size_t>& shape) const;
};

inline constexpr std::size_t max_safetensors_header = std::size_t{100} << 20;

[[nodiscard]] safetensors_file parse_safetensors(std::span<const std::uint8_t> bytes,
                                                 std::string_view source);
[[nodiscard]] safetensors_file read_safetensors(const std::filesystem::path& path);

}  // namespace adaquant::examples
