#pragma once
// Fashion-MNIST loader: IDX files (big-endian magic 0x0000 08 <rank>, rank uint32 extents, then
// unsigned bytes), usually gzip-compressed. Every check names the file and the broken rule and
// throws adaquant::error with errc::corrupt_data; no input makes the parser read out of bounds.

#include <adaquant_runtime/tensor.hpp>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace adaquant::examples {

struct idx_array {
  std::vector<std::uint32_t> dims;  // e.g. {60000, 28, 28}
  std::vector<std::uint8_t> data;   // row-major, product(dims) bytes
};

// Default cap on a decompressed file: far above Fashion-MNIST's 47 MB, far below exhausting RAM.
inline constexpr std::size_t default_max_idx_bytes = std::size_t{256} << 20;

// Reads a whole file; errc::corrupt_data if it cannot be opened or read.
[[nodiscard]] std::vector<std::uint8_t> read_binary_file(const std::filesystem::path& path);

// Decompresses a gzip stream (one or more members); `source` names it in errors. Throws on a
// truncated or corrupt stream, or when the output would exceed max_bytes.
[[nodiscard]] std::vector<std::uint8_t> gunzip(std::span<const std::uint8_t> bytes,
                                               std::string_view source,
                                               std::size_t max_bytes = default_max_idx_bytes);

// Parses an uncompressed IDX image. Only the unsigned-byte type (0x08) is accepted; rank 1..4;
// the data length must equal the product of the extents exactly.
[[nodiscard]] idx_array parse_idx(std::span<const std::uint8_t> bytes, std::string_view source);

// Reads `path`; gunzips it when it starts with the gzip magic 1f 8b, then parse_idx.
[[nodiscard]] idx_array read_idx(const std::filesystem::path& path,
                                 std::size_t max_bytes = default_max_idx_bytes);

// One split of Fashion-MNIST: images N x rows x cols (uint8) and labels in [0, 10).
struct image_dataset {
  std::size_t count = 0, rows = 0, cols = 0;
  std::vector<std::uint8_t> pixels;  // count * rows * cols
  std::vector<std::uint8_t> labels;  // count
};

// split is "train" or "test"; dir holds {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz.
// Checks ranks, 28 x 28 images, matching counts, labels < 10.
[[nodiscard]] image_dataset load_fashion_mnist(const std::filesystem::path& dir,
                                               std::string_view split);

// The input normalisation the reference models were trained with, bit-exact with the script:
// x = ((float(pixel) / 255.0f) - mean) / std, each step rounded to float32.
struct normalisation {
  float mean = 0.0f, std = 1.0f;
  [[nodiscard]] float operator()(std::uint8_t p) const noexcept {
    return (static_cast<float>(p) / 255.0f - mean) / std;
  }
};

// Images [begin, begin + n) as an N x 1 x rows x cols normalised tensor.
[[nodiscard]] tensor make_batch(const image_dataset& d, std::size_t begin, std::size_t n,
                                const normalisation& norm);

// Calibration images [count, 1, rows, cols]: `count` distinct images of `train` chosen by `seed`
// (partial Fisher-Yates with SplitMix64, so the choice is the same on every platform). The PTQ
// demo and the .npy export both use this one selection.
[[nodiscard]] tensor calibration_images(const image_dataset& train, const normalisation& norm,
                                        std::size_t count, std::uint64_t seed);

}  // namespace adaquant::examples
