// IDX, safetensors and .npy loaders: valid files load; truncated, mis-sized and garbage files are
// rejected with errc::corrupt_data and a message naming the file and the problem.
#include "test_helpers.hpp"

#include <adaquant_runtime/idx.hpp>
#include <adaquant_runtime/npy.hpp>
#include <adaquant_runtime/safetensors.hpp>

#include <catch2/catch.hpp>

#include <algorithm>

using namespace adaquant::examples;
using namespace test_helpers;
using Catch::Matchers::Contains;

namespace {
// Runs f and checks it throws adaquant::error(corrupt_data) whose message contains `part`.
template <class F>
void require_corrupt(F&& f, const std::string& part) {
  try {
    f();
    FAIL("expected adaquant::error containing \"" << part << "\"");
  } catch (const adaquant::error& e) {
    CHECK(e.code() == adaquant::errc::corrupt_data);
    CHECK_THAT(e.what(), Contains(part));
  }
}
}  // namespace

TEST_CASE("parse_idx reads a valid unsigned-byte IDX file", "[idx]") {
  const bytes b = idx_bytes({3, 2, 4});
  const idx_array a = parse_idx(b, "mem");
  CHECK(a.dims == std::vector<std::uint32_t>{3, 2, 4});
  REQUIRE(a.data.size() == 24);
  CHECK(a.data[5] == 5 * 7 % 10);
}

TEST_CASE("parse_idx rejects bad magic, types, ranks and lengths", "[idx]") {
  const bytes good = idx_bytes({3, 2, 4});
  require_corrupt([] { (void)parse_idx(bytes{0, 0}, "f.idx"); }, "f.idx: truncated");
  bytes b = good;
  b[0] = 1;
  require_corrupt([&] { (void)parse_idx(b, "f.idx"); }, "bad magic");
  require_corrupt([] { (void)parse_idx(idx_bytes({3}, 0x0D), "f.idx"); }, "element type");
  b = good;
  b[3] = 0;
  require_corrupt([&] { (void)parse_idx(b, "f.idx"); }, "rank");
  b = good;
  b[3] = 9;
  require_corrupt([&] { (void)parse_idx(b, "f.idx"); }, "rank");
  b.assign(good.begin(), good.begin() + 10);
  require_corrupt([&] { (void)parse_idx(b, "f.idx"); }, "truncated: expected a 16-byte header");
  b.assign(good.begin(), good.end() - 1);
  require_corrupt([&] { (void)parse_idx(b, "f.idx"); }, "truncated: expected 40 bytes, got 39");
  b = good;
  b.push_back(0);
  require_corrupt([&] { (void)parse_idx(b, "f.idx"); }, "trailing data");
  // Extents whose product is absurd must fail cleanly, not allocate.
  bytes huge = {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  require_corrupt([&] { (void)parse_idx(huge, "f.idx"); }, "overflow");
}

TEST_CASE("gunzip round-trips and rejects truncated or garbage streams", "[idx]") {
  const bytes raw = idx_bytes({50, 28, 28});
  const bytes gz = gzip(raw);
  CHECK(gunzip(gz, "mem") == raw);
  bytes cut(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() / 2));
  require_corrupt([&] { (void)gunzip(cut, "x.gz"); }, "x.gz: truncated");
  bytes bad = gz;
  for (std::size_t i = 20; i < 60 && i < bad.size(); ++i) bad[i] ^= 0x5a;
  require_corrupt([&] { (void)gunzip(bad, "x.gz"); }, "x.gz");
  require_corrupt([&] { (void)gunzip(raw, "x.gz"); }, "not a gzip stream");
  require_corrupt([&] { (void)gunzip(gz, "x.gz", 1000); }, "exceeds the limit");
  bytes trailing = gz;
  trailing.insert(trailing.end(), {1, 2, 3, 4});
  require_corrupt([&] { (void)gunzip(trailing, "x.gz"); }, "x.gz");
}

TEST_CASE("load_fashion_mnist rejects mis-sized and inconsistent files", "[idx]") {
  const auto dir = temp_dir("fmnist");
  auto write_split = [&](std::vector<std::uint32_t> img_dims, std::vector<std::uint32_t> lbl_dims) {
    write_file(dir / "t10k-images-idx3-ubyte.gz", gzip(idx_bytes(img_dims)));
    write_file(dir / "t10k-labels-idx1-ubyte.gz", gzip(idx_bytes(lbl_dims)));
  };
  write_split({4, 28, 28}, {4});
  const image_dataset d = load_fashion_mnist(dir, "test");
  CHECK(d.count == 4);
  CHECK(d.pixels.size() == 4 * 784);
  const tensor t = make_batch(d, 1, 2, normalisation{0.5f, 0.25f});
  CHECK(t.shape() == std::vector<std::size_t>{2, 1, 28, 28});
  CHECK(t[0] == (static_cast<float>(d.pixels[784]) / 255.0f - 0.5f) / 0.25f);

  write_split({4, 27, 28}, {4});
  require_corrupt([&] { (void)load_fashion_mnist(dir, "test"); }, "N x 28 x 28");
  write_split({4, 28, 28}, {5});
  require_corrupt([&] { (void)load_fashion_mnist(dir, "test"); }, "5 labels for 4 images");
  // A truncated .gz on disk is named in the message.
  const bytes gz = gzip(idx_bytes({4, 28, 28}));
  write_file(dir / "t10k-images-idx3-ubyte.gz",
             bytes(gz.begin(), gz.begin() + static_cast<std::ptrdiff_t>(gz.size() - 10)));
  require_corrupt([&] { (void)load_fashion_mnist(dir, "test"); }, "t10k-images-idx3-ubyte.gz");
  write_file(dir / "t10k-images-idx3-ubyte.gz", bytes(5000, 0x42));
  require_corrupt([&] { (void)load_fashion_mnist(dir, "test"); }, "t10k-images-idx3-ubyte.gz");
  std::filesystem::remove(dir / "t10k-images-idx3-ubyte.gz");
  require_corrupt([&] { (void)load_fashion_mnist(dir, "test"); }, "cannot open");
  std::filesystem::remove_all(dir);
}

TEST_CASE("parse_safetensors reads F32 tensors and metadata", "[safetensors]") {
  const bytes data = floats({1, 2, 3, 4, 5, 6, 7});
  const std::string h =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[1],"data_offsets":[24,28]},)"
      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  const safetensors_file f = parse_safetensors(safetensors_bytes(h, data), "mem");
  CHECK(f.metadata.at("format") == "pt");
  REQUIRE(f.tensors.size() == 2);
  CHECK(f.get("a", {2, 3})[5] == 6.0f);
  CHECK(f.get("b", {1})[0] == 7.0f);
  require_corrupt([&] { (void)f.get("a", {3, 2}); }, "expected shape [3, 2], got [2, 3]");
  require_corrupt([&] { (void)f.get("c", {1}); }, "tensor missing");
}

TEST_CASE("parse_safetensors rejects bad headers, dtypes, shapes and offsets", "[safetensors]") {
  const bytes d8 = floats({1, 2});
  auto entry = [](const std::string& dtype, const std::string& shape, const std::string& offs) {
    return R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape + R"(,"data_offsets":)" + offs +
           "}}";
  };
  auto parse = [](const bytes& b) { (void)parse_safetensors(b, "m.safetensors"); };
  require_corrupt([&] { parse(bytes{1, 2, 3}); }, "m.safetensors: truncated");
  bytes big = safetensors_bytes("{}", {});
  big[5] = 1;  // header length 2^40
  require_corrupt([&] { parse(big); }, "header length");
  bytes lying = safetensors_bytes("{}", {});
  lying[0] = 200;
  require_corrupt([&] { parse(lying); }, "truncated: header of 200 bytes");
  require_corrupt([&] { parse(safetensors_bytes("{\"w\":", d8)); }, "not valid JSON");
  require_corrupt([&] { parse(safetensors_bytes("[1,2]", d8)); }, "not a JSON object");
  require_corrupt([&] { parse(safetensors_bytes(R"({"w":3})", d8)); }, "not an object");
  require_corrupt([&] { parse(safetensors_bytes(entry("Q7", "[2]", "[0,8]"), d8)); },
                  "unknown dtype");
  require_corrupt([&] { parse(safetensors_bytes(entry("F16", "[4]", "[0,8]"), d8)); },
                  "unsupported dtype");
  require_corrupt([&] { parse(safetensors_bytes(entry("F32", "[3]", "[0,8]"), d8)); },
                  "needs 12 bytes");
  require_corrupt([&] { parse(safetensors_bytes(entry("F32", "[-2]", "[0,8]"), d8)); },
                  "non-negative");
  require_corrupt([&] { parse(safetensors_bytes(entry("F32", "[2]", "[0,16]"), d8)); },
                  "outside the 8-byte data section");
  require_corrupt([&] { parse(safetensors_bytes(entry("F32", "[2]", "[8,0]"), d8)); }, "outside");
  require_corrupt(
      [&] {
        parse(safetensors_bytes(entry("F32", "[4294967296,4294967296,4294967296]", "[0,8]"), d8));
      },
      "overflows");
  require_corrupt([&] { parse(safetensors_bytes(entry("F32", "[1]", "[4,8]"), d8)); }, "hole");
  require_corrupt([&] { parse(safetensors_bytes(entry("F32", "[1]", "[0,4]"), d8)); },
                  "data section has 8 bytes");
  const std::string overlap = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                              R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  require_corrupt([&] { parse(safetensors_bytes(overlap, d8)); }, "overlap");
  require_corrupt([&] { parse(safetensors_bytes(R"({"__metadata__":{"k":1}})", {})); },
                  "is not a string");
}

namespace {
// A .npy file from a header dict (padded and terminated here unless raw) and a data section.
bytes npy_file(const std::string& dict, const bytes& data, std::uint8_t major = 1,
               bool raw = false) {
  const std::string h = raw ? dict : dict + std::string(3, ' ') + "\n";
  bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', major, 0};
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  b.resize(8 + len_bytes);  // (a push_back loop here trips GCC 12's -Wstringop-overflow at -march=native)
  for (std::size_t i = 0; i < len_bytes; ++i)
    b[8 + i] = static_cast<std::uint8_t>(h.size() >> (8 * i));
  b.insert(b.end(), h.begin(), h.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}
std::string f4(const std::string& shape) {
  return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
}
}  // namespace

TEST_CASE("npy_bytes writes what numpy.save writes and parse_npy reads it back", "[npy]") {
  const std::vector<float> v = {1.5f, -2.0f, 0.25f};
  const std::size_t s3[] = {3};
  const bytes b = npy_bytes<float>(s3, v);
  // numpy 1.24's np.save of np.float32([1.5, -2, 0.25]): format 1.0, header length 118, the dict,
  // spaces to byte 127, '\n', then the values.
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
  REQUIRE(b.size() == 128 + 12);
  CHECK(bytes(b.begin(), b.begin() + 10) == bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 118, 0});
  CHECK(std::string(b.begin() + 10, b.begin() + 10 + static_cast<std::ptrdiff_t>(dict.size())) ==
        dict);
  CHECK(std::all_of(b.begin() + 10 + static_cast<std::ptrdiff_t>(dict.size()), b.begin() + 127,
                    [](std::uint8_t c) { return c == ' '; }));
  CHECK(b[127] == '\n');
  CHECK(bytes(b.begin() + 128, b.begin() + 132) == bytes{0x00, 0x00, 0xc0, 0x3f});
  const npy_array<float> a = parse_npy<float>(b, "mem");
  CHECK(a.shape == std::vector<std::size_t>{3});
  CHECK(a.values == v);

  const std::vector<std::int64_t> labels = {0, -1, std::int64_t{1} << 40, 9};
  const std::size_t s22[] = {2, 2};
  const npy_array<std::int64_t> l =
      parse_npy<std::int64_t>(npy_bytes<std::int64_t>(s22, labels), "mem");
  CHECK(l.shape == std::vector<std::size_t>{2, 2});
  CHECK(l.values == labels);
  // Scalars, empty arrays, format 2.0, other spacing and key order are valid .npy too.
  CHECK(parse_npy<float>(npy_bytes<float>({}, std::vector<float>{7.0f}), "mem").values ==
        std::vector<float>{7.0f});
  const std::size_t s203[] = {2, 0, 3};
  CHECK(parse_npy<float>(npy_bytes<float>(s203, std::vector<float>{}), "mem").shape ==
        std::vector<std::size_t>{2, 0, 3});
  const npy_array<float> v2 = parse_npy<float>(
      npy_file("{'shape':(1,2),'fortran_order':False,'descr':'<f4'}", floats({1, 2}), 2), "mem");
  CHECK(v2.shape == std::vector<std::size_t>{1, 2});
  CHECK(v2.values == std::vector<float>{1, 2});
  // A tensor round-trips through a file; a missing file is named.
  const auto dir = temp_dir("npy");
  const tensor t({2, 1, 2, 2}, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8});
  write_npy(dir / "t.npy", t);
  const npy_array<float> r = read_npy<float>(dir / "t.npy");
  CHECK(r.shape == t.shape());
  CHECK(r.values == t.values());
  require_corrupt([&] { (void)read_npy<float>(dir / "missing.npy"); }, "missing.npy");
  std::filesystem::remove_all(dir);
  const std::size_t s2[] = {2};
  CHECK_THROWS_AS(npy_bytes<float>(s2, v), adaquant::error);
}

TEST_CASE("parse_npy rejects malformed files naming the file and the rule", "[npy]") {
  const bytes d8 = floats({1, 2});
  auto parse = [](const bytes& b) { (void)parse_npy<float>(b, "x.npy"); };
  auto dict = [](const std::string& descr, const std::string& fortran, const std::string& shape) {
    return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + "}";
  };
  const bytes good = npy_file(f4("(2,)"), d8);
  CHECK_NOTHROW(parse(good));
  // Magic, version, header length.
  require_corrupt([&] { parse(bytes(good.begin(), good.begin() + 9)); }, "x.npy: truncated");
  bytes b = good;
  b[1] = 'n';
  require_corrupt([&] { parse(b); }, "bad magic");
  b = good;
  b[6] = 3;
  require_corrupt([&] { parse(b); }, "unsupported format version 3.0");
  b = good;
  b[7] = 1;
  require_corrupt([&] { parse(b); }, "unsupported format version 1.1");
  b = npy_file(f4("(2,)"), d8, 2);
  require_corrupt([&] { parse(bytes(b.begin(), b.begin() + 11)); }, "no header length");
  b = good;
  b[9] = 0x7f;  // header length far beyond the file
  require_corrupt([&] { parse(b); }, "truncated: the header declares");
  // The dict: syntax, keys, values.
  require_corrupt([&] { parse(npy_file(f4("(2,)"), d8, 1, true)); }, "one '\\n'");
  require_corrupt([&] { parse(npy_file(f4("(2,)") + "x", d8)); }, "one '\\n'");
  require_corrupt([&] { parse(npy_file("{'descr': '<f4', 'shape': (2,)}", d8)); },
                  "needs 'descr', 'fortran_order' and 'shape'");
  require_corrupt([&] { parse(npy_file(f4("(2,)").substr(1).insert(0, "{'x': 1, "), d8)); },
                  "unexpected or repeated key 'x'");
  require_corrupt([&] { parse(npy_file("{'descr': '<f4', 'descr': '<f4'}", d8)); },
                  "repeated key 'descr'");
  require_corrupt([&] { parse(npy_file("{\"descr\": '<f4'}", d8)); }, "expected '''");
  require_corrupt([&] { parse(npy_file("{'descr': '<f\x01'}", d8)); }, "unsupported character");
  require_corrupt([&] { parse(npy_file("{'descr' '<f4'}", d8)); }, "expected ':'");
  require_corrupt([&] { parse(npy_file("{'descr': '<f4' 'shape': (2,)}", d8)); },
                  "expected ',' or '}'");
  require_corrupt([&] { parse(npy_file(dict("<f4", "false", "(2,)"), d8)); },
                  "expected False or True");
  require_corrupt([&] { parse(npy_file(dict("<f4", "True", "(2,)"), d8)); }, "fortran_order True");
  for (const std::string descr : {"<f8", ">f4", "<i8", "|u1", ""})
    require_corrupt([&] { parse(npy_file(dict(descr, "False", "(2,)"), d8)); },
                    "element type '" + descr + "', expected '<f4'");
  require_corrupt([&] { (void)parse_npy<std::int64_t>(good, "y.npy"); },
                  "y.npy: element type '<f4', expected '<i8'");
  require_corrupt([&] { parse(npy_file(f4("(2)"), d8)); }, "one-element shape is written (n,)");
  require_corrupt([&] { parse(npy_file(f4("(-2,)"), d8)); }, "expected a non-negative integer");
  require_corrupt([&] { parse(npy_file(f4("(02,)"), d8)); }, "leading zero");
  require_corrupt([&] { parse(npy_file(f4("(2 1)"), d8)); }, "expected ',' or ')'");
  require_corrupt([&] { parse(npy_file(f4("(2,"), d8)); }, "x.npy: header at byte");
  require_corrupt([&] { parse(npy_file(f4("[2]"), d8)); }, "expected '('");
  require_corrupt([&] { parse(npy_file(f4("(99999999999999999999999,)"), d8)); },
                  "dimension overflows");
  std::string rank33 = "(";
  for (int i = 0; i < 33; ++i) rank33 += "1, ";
  require_corrupt([&] { parse(npy_file(f4(rank33 + ")"), d8)); }, "rank exceeds 32");
  // Declared sizes are checked, overflow included, before anything is allocated.
  require_corrupt([&] { parse(npy_file(f4("(4294967296, 4294967296)"), d8)); }, "overflows");
  require_corrupt([&] { parse(npy_file(f4("(4611686018427387904,)"), d8)); }, "overflows");
  require_corrupt([&] { parse(npy_file(f4("(1000000000, 1000000000)"), d8)); },
                  "truncated: shape (1000000000, 1000000000) needs 4000000000000000000 data bytes");
  require_corrupt([&] { parse(npy_file(f4("(3,)"), d8)); }, "truncated: shape (3,) needs 12");
  require_corrupt([&] { parse(npy_file(f4("(1,)"), d8)); }, "trailing data: shape (1,) needs 4");
  require_corrupt([&] { parse(npy_file(f4("(2, 0)"), d8)); }, "trailing data");
}

TEST_CASE("loaders survive random garbage without crashing", "[idx][safetensors][npy]") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    bytes b(rng() % 64);
    for (auto& x : b) x = static_cast<std::uint8_t>(rng());
    if (trial % 3 == 0 && b.size() >= 8) {  // plausible header length
      std::fill(b.begin(), b.begin() + 8, 0);
      b[0] = static_cast<std::uint8_t>(b.size() - 8);
    }
    if (trial % 3 == 1 && b.size() >= 4) b[0] = b[1] = 0, b[2] = 8, b[3] = 1 + b[3] % 4;
    try {
      (void)parse_safetensors(b, "g");
    } catch (const adaquant::error&) {
    }
    try {
      (void)parse_idx(b, "g");
    } catch (const adaquant::error&) {
    }
    try {
      (void)gunzip(b, "g");
    } catch (const adaquant::error&) {
    }
    try {
      (void)parse_npy<float>(b, "g");
    } catch (const adaquant::error&) {
    }
  }
  SUCCEED();
}
