#include <adaquant_runtime/idx.hpp>

#include <adaquant/calibrate/adaquant.hpp>

#include <zlib.h>

#include <array>
#include <fstream>
#include <limits>
#include <numeric>

namespace adaquant::examples {
namespace {
std::string where(std::string_view fn, std::string_view source) {
  return std::string(fn) + ": " + std::string(source);
}
}  // namespace

std::vector<std::uint8_t> read_binary_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in)
    detail::fail(errc::corrupt_data, where("read_binary_file", path.string()), "cannot open");
  const std::streamoff size = in.tellg();
  if (!(size >= 0))
    detail::fail(errc::corrupt_data, where("read_binary_file", path.string()), "cannot size");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.seekg(0);
  if (!bytes.empty() && !in.read(reinterpret_cast<char*>(bytes.data()), size))
    detail::fail(errc::corrupt_data, where("read_binary_file", path.string()), "read failed");
  return bytes;
}

std::vector<std::uint8_t> gunzip(std::span<const std::uint8_t> bytes, std::string_view source,
                                 std::size_t max_bytes) {
  const std::string w = where("gunzip", source);
  if (!(bytes.size() >= 18))
    detail::fail(
        errc::corrupt_data, w,
        "truncated: a gzip stream has at least 18 bytes, got " + std::to_string(bytes.size()));
  if (!(bytes[0] == 0x1f && bytes[1] == 0x8b))
    detail::fail(errc::corrupt_data, w, "not a gzip stream (bad magic)");
  z_stream zs{};
  if (inflateInit2(&zs, 15 + 16) != Z_OK)
    detail::fail(errc::corrupt_data, w, "inflateInit2 failed");
  std::vector<std::uint8_t> out;
  std::array<std::uint8_t, 1 << 16> buf{};
  std::size_t consumed = 0;
  int rc = Z_OK;
  auto fail = [&](const std::string& why) {
    inflateEnd(&zs);
    detail::fail(errc::corrupt_data, w, why);
  };
  while (true) {
    if (zs.avail_in == 0 && consumed < bytes.size()) {
      const std::size_t chunk =
          std::min<std::size_t>(bytes.size() - consumed, std::numeric_limits<uInt>::max());
      zs.next_in = const_cast<Bytef*>(bytes.data() + consumed);  // zlib's API is not const
      zs.avail_in = static_cast<uInt>(chunk);
      consumed += chunk;
    }
    zs.next_out = buf.data();
    zs.avail_out = static_cast<uInt>(buf.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    const std::size_t produced = buf.size() - zs.avail_out;
    if (!(out.size() + produced <= max_bytes))
      fail("decompressed size exceeds the limit of " + std::to_string(max_bytes) + " bytes");
    out.insert(out.end(), buf.data(), buf.data() + produced);
    if (rc == Z_STREAM_END) {
      // Concatenated gzip members are legal; anything else after the end is garbage.
      const std::size_t rest = zs.avail_in + (bytes.size() - consumed);
      if (rest == 0) break;
      if (inflateReset(&zs) != Z_OK) fail("inflateReset failed");
      continue;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && consumed == bytes.size())
      fail("truncated: the gzip stream ends early after " + std::to_string(out.size()) +
           " decompressed bytes");
    if (rc != Z_OK && rc != Z_BUF_ERROR)
      fail(std::string("corrupt gzip stream: ") +
           (zs.msg ? zs.msg : "zlib error " + std::to_string(rc)));
  }
  inflateEnd(&zs);
  return out;
}

idx_array parse_idx(std::span<const std::uint8_t> bytes, std::string_view source) {
  const std::string w = where("parse_idx", source);
  if (!(bytes.size() >= 4))
    detail::fail(errc::corrupt_data, w,
                 "truncated: expected a 4-byte magic number, got " + std::to_string(bytes.size()) +
                     " bytes");
  if (!(bytes[0] == 0 && bytes[1] == 0))
    detail::fail(errc::corrupt_data, w, "bad magic: the first two bytes must be zero");
  if (!(bytes[2] == 0x08))
    detail::fail(
        errc::corrupt_data, w,
        "unsupported element type " + std::to_string(bytes[2]) + " (only 0x08 unsigned byte)");
  const std::size_t rank = bytes[3];
  if (!(rank >= 1 && rank <= 4))
    detail::fail(errc::corrupt_data, w, "rank must be in [1, 4], got " + std::to_string(rank));
  const std::size_t header = 4 + 4 * rank;
  if (!(bytes.size() >= header))
    detail::fail(errc::corrupt_data, w,
                 "truncated: expected a " + std::to_string(header) + "-byte header, got " +
                     std::to_string(bytes.size()) + " bytes");
  idx_array a;
  std::size_t count = 1;
  for (std::size_t i = 0; i < rank; ++i) {
    const std::uint8_t* p = bytes.data() + 4 + 4 * i;
    const std::uint32_t d = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                            (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
    a.dims.push_back(d);
    if (!(d == 0 || count <= (std::size_t{1} << 40) / d))
      detail::fail(errc::corrupt_data, w, "dimensions overflow");
    count *= d;
  }
  const std::size_t expected = header + count;
  if (!(bytes.size() >= expected))
    detail::fail(errc::corrupt_data, w,
                 "truncated: expected " + std::to_string(expected) + " bytes, got " +
                     std::to_string(bytes.size()));
  if (!(bytes.size() == expected))
    detail::fail(errc::corrupt_data, w,
                 "trailing data: expected " + std::to_string(expected) + " bytes, got " +
                     std::to_string(bytes.size()));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

idx_array read_idx(const std::filesystem::path& path, std::size_t max_bytes) {
  const std::vector<std::uint8_t> raw = read_binary_file(path);
  if (raw.size() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b)
    return parse_idx(gunzip(raw, path.string(), max_bytes), path.string());
  return parse_idx(raw, path.string());
}

image_dataset load_fashion_mnist(const std::filesystem::path& dir, std::string_view split) {
  if (!(split == "train" || split == "test"))
    detail::fail(errc::invalid_argument, "load_fashion_mnist: split",
                 "must be \"train\" or \"test\", got \"" + std::string(split) + "\"");
  const std::string prefix = split == "train" ? "train" : "t10k";
  const auto img_path = dir / (prefix + "-images-idx3-ubyte.gz");
  const auto lbl_path = dir / (prefix + "-labels-idx1-ubyte.gz");
  idx_array img = read_idx(img_path);
  idx_array lbl = read_idx(lbl_path);
  if (!(img.dims.size() == 3 && img.dims[1] == 28 && img.dims[2] == 28))
    detail::fail(errc::corrupt_data, where("load_fashion_mnist", img_path.string()),
                 "expected N x 28 x 28 images");
  if (!(lbl.dims.size() == 1))
    detail::fail(errc::corrupt_data, where("load_fashion_mnist", lbl_path.string()),
                 "expected a rank-1 label vector");
  if (!(lbl.dims[0] == img.dims[0]))
    detail::fail(
        errc::corrupt_data, where("load_fashion_mnist", lbl_path.string()),
        std::to_string(lbl.dims[0]) + " labels for " + std::to_string(img.dims[0]) + " images");
  for (std::size_t i = 0; i < lbl.data.size(); ++i)
    if (!(lbl.data[i] < 10))
      detail::fail(errc::corrupt_data, where("load_fashion_mnist", lbl_path.string()),
                   "label " + std::to_string(lbl.data[i]) + " at index " + std::to_string(i) +
                       " is not in [0, 10)");
  image_dataset d;
  d.count = img.dims[0];
  d.rows = img.dims[1];
  d.cols = img.dims[2];
  d.pixels = std::move(img.data);
  d.labels = std::move(lbl.data);
  return d;
}

tensor make_batch(const image_dataset& d, std::size_t begin, std::size_t n,
                  const normalisation& norm) {
  if (!(begin <= d.count && n <= d.count - begin))
    detail::fail(errc::invalid_argument, "make_batch: begin, n",
                 "images [" + std::to_string(begin) + ", " + std::to_string(begin + n) +
                     ") exceed the " + std::to_string(d.count) + " in the data set");
  const std::size_t px = d.rows * d.cols;
  tensor t({n, 1, d.rows, d.cols});
  const std::uint8_t* src = d.pixels.data() + begin * px;
  for (std::size_t i = 0; i < n * px; ++i) t[i] = norm(src[i]);
  return t;
}

tensor calibration_images(const image_dataset& train, const normalisation& norm, std::size_t count,
                          std::uint64_t seed) {
  if (!(count > 0 && count <= train.count))
    detail::fail(
        errc::invalid_argument, "calibration_images: count",
        "must be in [1, " + std::to_string(train.count) + "], got " + std::to_string(count));
  std::vector<std::size_t> idx(train.count);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  detail::splitmix64 rng{seed};
  for (std::size_t i = 0; i < count; ++i)  // partial Fisher-Yates: the first `count` are chosen
    std::swap(idx[i], idx[i + rng.below(train.count - i)]);
  const std::size_t px = train.rows * train.cols;
  tensor out({count, 1, train.rows, train.cols});
  for (std::size_t i = 0; i < count; ++i)
    for (std::size_t p = 0; p < px; ++p) out[i * px + p] = norm(train.pixels[idx[i] * px + p]);
  return out;
}

}  // namespace adaquant::examples
