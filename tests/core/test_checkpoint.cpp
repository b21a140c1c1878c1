#include <adaquant/core/checkpoint.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <limits>
#include <string>

#include "support/expect_error.hpp"

namespace aq = adaquant;
using aq::detail::record_reader;
using aq::detail::record_writer;

namespace {
std::string sample_record() {
  record_writer w;
  w.u8(7);
  w.u64(0x0123456789abcdefull);
  w.i32(-5);
  w.f32(-0.0f);
  w.f32(std::bit_cast<float>(0x7fc01234u));  // a NaN with a payload
  w.f64(1.0 / 3.0);
  w.str("layer");
  w.values(std::vector<float>{1.5f, std::numeric_limits<float>::denorm_min()});
  w.values(std::vector<std::int32_t>{-128, 127});
  w.values(std::vector<double>{});
  return w.finish("ranges.layer-3");
}
}  // namespace

TEST_CASE("checkpoint records give back every value bit for bit") {
  record_reader r(sample_record(), "ranges.layer-3", "test");
  CHECK(r.u8() == 7);
  CHECK(r.u64() == 0x0123456789abcdefull);
  CHECK(r.i32() == -5);
  CHECK(std::bit_cast<std::uint32_t>(r.f32()) == 0x80000000u);
  CHECK(std::bit_cast<std::uint32_t>(r.f32()) == 0x7fc01234u);
  CHECK(r.f64() == 1.0 / 3.0);
  CHECK(r.str() == "layer");
  CHECK(r.values<float>() == std::vector<float>{1.5f, std::numeric_limits<float>::denorm_min()});
  CHECK(r.values<std::int32_t>() == std::vector<std::int32_t>{-128, 127});
  CHECK(r.values<double>().empty());
  r.done();
  adaquant_test::expect_error([&] { (void)r.u8(); }, aq::errc::corrupt_data, "payload truncated");
}

TEST_CASE("a truncated, damaged or misplaced checkpoint record is refused, naming where it is") {
  const std::string good = sample_record();
  for (std::size_t n = 0; n < good.size(); ++n)
    adaquant_test::expect_error(
        [&] { (void)record_reader(good.substr(0, n), "ranges.layer-3", "DIR/ranges.layer-3.rec"); },
        aq::errc::corrupt_data, "checkpoint: DIR/ranges.layer-3.rec: ");
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    adaquant_test::expect_error([&] { (void)record_reader(bad, "ranges.layer-3", "where"); },
                                aq::errc::corrupt_data, "checkpoint: where: ");
  }
  adaquant_test::expect_error([&] { (void)record_reader(good + "x", "ranges.layer-3", "where"); },
                              aq::errc::corrupt_data, "truncated or overlong");
  adaquant_test::expect_error([&] { (void)record_reader(good, "ranges.layer-4", "where"); },
                              aq::errc::corrupt_data, "holds the record of 'ranges.layer-3'");
  std::string next = good;  // a later format: refused by its version before the checksum
  const std::uint32_t version = aq::detail::checkpoint_version;
  next[8] = static_cast<char>(version + 1);
  adaquant_test::expect_error([&] { (void)record_reader(next, "ranges.layer-3", "where"); },
                              aq::errc::corrupt_data,
                              "format version " + std::to_string(version + 1) +
                                  ", this build reads version " + std::to_string(version));
  // A payload read past its end or not to its end: another layout than the reader expects.
  record_reader r(sample_record(), "ranges.layer-3", "where");
  adaquant_test::expect_error([&] { r.done(); }, aq::errc::corrupt_data, "left unread");
  record_writer w;
  w.u64(1000);  // 1000 floats declared, none present
  record_reader big(w.finish("k"), "k", "where");
  adaquant_test::expect_error([&] { (void)big.values<float>(); }, aq::errc::corrupt_data,
                              "1000 elements declared");
}
