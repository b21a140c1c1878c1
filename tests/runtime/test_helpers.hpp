#pragma once
// Builders for small valid and invalid loader inputs and random tensors, shared by the runtime
// tests.

#include <adaquant_runtime/tensor.hpp>

#include <zlib.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace test_helpers {

using bytes = std::vector<std::uint8_t>;

inline bytes idx_bytes(std::vector<std::uint32_t> dims, std::uint8_t type = 0x08) {
  bytes b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
  std::size_t n = 1;
  for (auto d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<std::uint8_t>(d >> s));
    n *= d;
  }
  for (std::size_t i = 0; i < n; ++i) b.push_back(static_cast<std::uint8_t>(i * 7 % 10));
  return b;
}

inline bytes gzip(const bytes& in) {
  z_stream zs{};
  deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  bytes out(deflateBound(&zs, static_cast<uLong>(in.size())) + 32);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// A safetensors file from a header text and a data section.
inline bytes safetensors_bytes(const std::string& header, const bytes& data) {
  const std::uint64_t n = header.size();
  bytes b;
  b.reserve(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i) b.push_back(static_cast<std::uint8_t>(n >> (8 * i)));
  for (const char c : header) b.push_back(static_cast<std::uint8_t>(c));
  for (const std::uint8_t c : data) b.push_back(c);
  return b;
}

inline bytes floats(std::initializer_list<float> v) {
  bytes b(v.size() * 4);
  std::memcpy(b.data(), v.begin(), b.size());
  return b;
}

inline std::filesystem::path temp_dir(const std::string& tag) {
  static std::mt19937 rng(std::random_device{}());
  auto p =
      std::filesystem::temp_directory_path() / ("adaquant_" + tag + "_" + std::to_string(rng()));
  std::filesystem::create_directories(p);
  return p;
}

inline void write_file(const std::filesystem::path& p, const bytes& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Normal(0, sd) values of the given shape.
inline adaquant::examples::tensor randn(std::vector<std::size_t> shape, std::mt19937& rng,
                                        float sd) {
  adaquant::examples::tensor t(std::move(shape));
  std::normal_distribution<float> nd(0.0f, sd);
  for (float& v : t.span()) v = nd(rng);
  return t;
}

}  // namespace test_helpers
