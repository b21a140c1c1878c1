#pragma once
// NumPy .npy files: float32 ('<f4') and int64 ('<i8') arrays, little-endian, C order.
//
// Layout: magic "\x93NUMPY", version (1.0: 2-byte little-endian header length; 2.0: 4-byte), an
// ASCII header that is a Python dict literal ending in '\n', then the raw elements.
// The writer makes exactly what numpy.save (numpy >= 1.23) makes: version 1.0, header padded with
// spaces so the data start at a multiple of 64; output is byte-for-byte reproducible. The reader
// parses untrusted files: the dict must have exactly the keys 'descr', 'fortran_order' (False) and
// 'shape' (a tuple of non-negative integers, rank <= 32), and the data must be exactly
// product(shape) * itemsize bytes, checked with overflow checks before anything is allocated. Every
// failure throws adaquant::error with errc::corrupt_data naming the source.

#include <adaquant_runtime/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

namespace adaquant::examples {

// T is float or std::int64_t (the templates below are instantiated for these two in npy.cpp).
template <class T>
struct npy_array {
  std::vector<std::size_t> shape;  // () is a scalar: one value
  std::vector<T> values;           // C order, product(shape) values
};

inline constexpr std::size_t npy_max_rank = 32;

// Parses a whole .npy file held in memory; `source` names it in errors. A file of the other
// element type is rejected (e.g. '<i8' when T = float).
template <class T>
[[nodiscard]] npy_array<T> parse_npy(std::span<const std::uint8_t> bytes, std::string_view source);

// Serialises values with `shape` (product(shape) must equal values.size(): errc::shape_mismatch;
// rank <= npy_max_rank: errc::invalid_argument).
template <class T>
[[nodiscard]] std::vector<std::uint8_t> npy_bytes(std::span<const std::size_t> shape,
                                                  std::span<const T> values);

template <class T>
[[nodiscard]] npy_array<T> read_npy(const std::filesystem::path& path);

// errc::corrupt_data when the file cannot be written.
template <class T>
void write_npy(const std::filesystem::path& path, std::span<const std::size_t> shape,
               std::span<const T> values);

inline void write_npy(const std::filesystem::path& path, const tensor& t) {
  write_npy<float>(path, t.shape(), t.span());
}

}  // namespace adaquant::examples
