#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/npy.hpp>

#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <string>

namespace adaquant::examples {
namespace {

constexpr std::uint8_t magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
constexpr std::size_t align = 64;          // numpy's ARRAY_ALIGN
constexpr std::size_t growth_digits = 21;  // numpy's GROWTH_AXIS_MAX_DIGITS (numpy >= 1.23)

template <class T>
constexpr std::string_view descr() {
  if constexpr (std::is_same_v<T, float>)
    return "<f4";
  else
    return "<i8";
}
template <class T>
using bits_of = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;

// The header dict, checked strictly: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// with spaces allowed around tokens, keys in any order, each exactly once.
class header_parser {
 public:
  header_parser(std::string_view text, std::string where) : s_(text), w_(std::move(where)) {}

  struct result {
    std::string descr;
    std::vector<std::size_t> shape;
  };

  result parse() {
    result r;
    std::optional<bool> fortran;
    bool have_descr = false, have_shape = false;
    expect('{');
    while (true) {
      spaces();
      if (peek() == '}') break;
      const std::string key = string();
      spaces();
      expect(':');
      spaces();
      if (key == "descr" && !have_descr) {
        r.descr = string();
        have_descr = true;
      } else if (key == "fortran_order" && !fortran) {
        fortran = keyword();
      } else if (key == "shape" && !have_shape) {
        r.shape = shape();
        have_shape = true;
      } else {
        fail("unexpected or repeated key '" + key + "'");
      }
      spaces();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      if (peek() != '}') fail("expected ',' or '}'");
    }
    ++i_;
    spaces();
    if (!(i_ + 1 == s_.size() && s_[i_] == '\n'))
      fail("the header must end with spaces and one '\\n' after the dict");
    if (!(have_descr && fortran && have_shape))
      fail("the dict needs 'descr', 'fortran_order' and 'shape'");
    if (*fortran) fail("fortran_order True is not supported (C order only)");
    return r;
  }

 private:
  [[noreturn]] void fail(const std::string& why) const {
    detail::fail(errc::corrupt_data, w_, "header at byte " + std::to_string(i_) + ": " + why);
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void spaces() {
    while (peek() == ' ') ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++i_;
  }
  std::string string() {
    expect('\'');
    const std::size_t b = i_;
    while (i_ < s_.size() && s_[i_] != '\'') {
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c < 0x20 || c > 0x7e || c == '\\') fail("unsupported character in a string");
      ++i_;
    }
    expect('\'');
    return std::string(s_.substr(b, i_ - 1 - b));
  }
  bool keyword() {
    for (const auto& [word, value] : {std::pair{"False", false}, std::pair{"True", true}})
      if (s_.substr(i_).starts_with(word)) {
        i_ += std::strlen(word);
        return value;
      }
    fail("expected False or True");
  }
  std::size_t integer() {
    const std::size_t b = i_;
    std::uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      const auto d = static_cast<std::uint64_t>(peek() - '0');
      if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) fail("dimension overflows");
      v = v * 10 + d;
      ++i_;
    }
    if (i_ == b) fail("expected a non-negative integer");
    if (i_ - b > 1 && s_[b] == '0') fail("leading zero in a dimension");
    if (v > std::numeric_limits<std::size_t>::max()) fail("dimension overflows");
    return static_cast<std::size_t>(v);
  }
  // Python tuple syntax: (), (n,), (a, b), (a, b,).
  std::vector<std::size_t> shape() {
    std::vector<std::size_t> dims;
    expect('(');
    spaces();
    bool comma = false;
    while (peek() != ')') {
      if (dims.size() == npy_max_rank) fail("rank exceeds " + std::to_string(npy_max_rank));
      dims.push_back(integer());
      spaces();
      comma = peek() == ',';
      if (comma) {
        ++i_;
        spaces();
      } else if (peek() != ')') {
        fail("expected ',' or ')' in the shape");
      }
    }
    if (dims.size() == 1 && !comma) fail("a one-element shape is written (n,)");
    ++i_;
    return dims;
  }

  std::string_view s_;
  std::string w_;
  std::size_t i_ = 0;
};

std::string shape_repr(std::span<const std::size_t> shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// product(shape), or nullopt when it or its size in bytes overflows size_t.
std::optional<std::size_t> element_count(std::span<const std::size_t> shape, std::size_t item) {
  for (std::size_t d : shape)
    if (d == 0) return 0;
  std::size_t count = 1;
  for (std::size_t d : shape) {
    if (!(count <= std::numeric_limits<std::size_t>::max() / d)) return std::nullopt;
    count *= d;
  }
  if (!(count <= std::numeric_limits<std::size_t>::max() / item)) return std::nullopt;
  return count;
}

}  // namespace

template <class T>
npy_array<T> parse_npy(std::span<const std::uint8_t> bytes, std::string_view source) {
  const std::string w = "parse_npy: " + std::string(source);
  if (!(bytes.size() >= 10))
    detail::fail(errc::corrupt_data, w,
                 "truncated: " + std::to_string(bytes.size()) + " bytes, a .npy file has >= 10");
  if (std::memcmp(bytes.data(), magic, sizeof magic) != 0)
    detail::fail(errc::corrupt_data, w, "bad magic (expected \\x93NUMPY)");
  const std::uint8_t major = bytes[6], minor = bytes[7];
  if (!((major == 1 || major == 2) && minor == 0))
    detail::fail(errc::corrupt_data, w,
                 "unsupported format version " + std::to_string(major) + "." +
                     std::to_string(minor) + " (1.0 and 2.0 only)");
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (!(bytes.size() >= 8 + len_bytes))
    detail::fail(errc::corrupt_data, w, "truncated: no header length");
  std::size_t header_len = 0;
  for (std::size_t i = 0; i < len_bytes; ++i) header_len |= std::size_t{bytes[8 + i]} << (8 * i);
  const std::size_t data_offset = 8 + len_bytes + header_len;
  if (!(header_len <= bytes.size() - 8 - len_bytes))
    detail::fail(errc::corrupt_data, w,
                 "truncated: the header declares " + std::to_string(header_len) + " bytes, " +
                     std::to_string(bytes.size() - 8 - len_bytes) + " follow");
  const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8 + len_bytes,
                              header_len);
  header_parser::result h = header_parser(text, w).parse();
  if (h.descr != descr<T>())
    detail::fail(errc::corrupt_data, w,
                 "element type '" + h.descr + "', expected '" + std::string(descr<T>()) + "'");

  const std::optional<std::size_t> count = element_count(h.shape, sizeof(T));
  if (!count) detail::fail(errc::corrupt_data, w, "shape " + shape_repr(h.shape) + " overflows");
  const std::size_t need = *count * sizeof(T), have = bytes.size() - data_offset;
  if (!(have >= need))
    detail::fail(errc::corrupt_data, w,
                 "truncated: shape " + shape_repr(h.shape) + " needs " + std::to_string(need) +
                     " data bytes, " + std::to_string(have) + " present");
  if (!(have == need))
    detail::fail(errc::corrupt_data, w,
                 "trailing data: shape " + shape_repr(h.shape) + " needs " + std::to_string(need) +
                     " data bytes, " + std::to_string(have) + " present");

  npy_array<T> a;
  a.shape = std::move(h.shape);
  a.values.resize(*count);
  const std::uint8_t* p = bytes.data() + data_offset;
  for (std::size_t i = 0; i < *count; ++i, p += sizeof(T)) {
    bits_of<T> u = 0;
    for (std::size_t b = 0; b < sizeof(T); ++b) u |= bits_of<T>{p[b]} << (8 * b);
    a.values[i] = std::bit_cast<T>(u);
  }
  return a;
}

template <class T>
std::vector<std::uint8_t> npy_bytes(std::span<const std::size_t> shape, std::span<const T> values) {
  const std::optional<std::size_t> count = element_count(shape, sizeof(T));
  if (!(count && *count == values.size()))
    detail::fail(errc::shape_mismatch, "npy_bytes: values",
                 "shape " + shape_repr(shape) + " does not hold " + std::to_string(values.size()) +
                     " values");
  if (!(shape.size() <= npy_max_rank))
    detail::fail(
        errc::invalid_argument, "npy_bytes: shape",
        "rank " + std::to_string(shape.size()) + " exceeds " + std::to_string(npy_max_rank));
  // What numpy.save writes: keys sorted, spare spaces for growing the first axis, then spaces up
  // to a multiple of 64 bytes and '\n'. Up to rank 32 the header always fits format 1.0.
  std::string dict = "{'descr': '" + std::string(descr<T>()) +
                     "', 'fortran_order': False, 'shape': " + shape_repr(shape) + ", }";
  if (!shape.empty()) dict.append(growth_digits - std::to_string(shape[0]).size(), ' ');
  const std::size_t pad = align - (10 + dict.size() + 1) % align;
  const std::size_t header_len = dict.size() + pad + 1;
  std::vector<std::uint8_t> out(magic, magic + sizeof magic);
  for (const std::size_t b : {std::size_t{1}, std::size_t{0}, header_len & 0xff, header_len >> 8})
    out.push_back(static_cast<std::uint8_t>(b));
  out.insert(out.end(), dict.begin(), dict.end());
  out.insert(out.end(), pad, ' ');
  out.push_back('\n');
  out.reserve(out.size() + values.size() * sizeof(T));
  for (const T v : values) {
    const auto u = std::bit_cast<bits_of<T>>(v);
    for (std::size_t b = 0; b < sizeof(T); ++b)
      out.push_back(static_cast<std::uint8_t>(u >> (8 * b)));
  }
  return out;
}

template <class T>
npy_array<T> read_npy(const std::filesystem::path& path) {
  return parse_npy<T>(read_binary_file(path), path.string());
}

template <class T>
void write_npy(const std::filesystem::path& path, std::span<const std::size_t> shape,
               std::span<const T> values) {
  const std::vector<std::uint8_t> b = npy_bytes<T>(shape, values);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!(out &&
        out.write(reinterpret_cast<const char*>(b.data()),
                  static_cast<std::streamsize>(b.size())) &&
        out.flush()))
    detail::fail(errc::corrupt_data, "write_npy: " + path.string(), "cannot write the file");
}

template npy_array<float> parse_npy<float>(std::span<const std::uint8_t>, std::string_view);
template npy_array<std::int64_t> parse_npy<std::int64_t>(std::span<const std::uint8_t>,
                                                         std::string_view);
template std::vector<std::uint8_t> npy_bytes<float>(std::span<const std::size_t>,
                                                    std::span<const float>);
template std::vector<std::uint8_t> npy_bytes<std::int64_t>(std::span<const std::size_t>,
                                                           std::span<const std::int64_t>);
template npy_array<float> read_npy<float>(const std::filesystem::path&);
template npy_array<std::int64_t> read_npy<std::int64_t>(const std::filesystem::path&);
template void write_npy<float>(const std::filesystem::path&, std::span<const std::size_t>,
                               std::span<const float>);
template void write_npy<std::int64_t>(const std::filesystem::path&, std::span<const std::size_t>,
                                      std::span<const std::int64_t>);

}  // namespace adaquant::examples
