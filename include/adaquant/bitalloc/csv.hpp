#pragma once
// Reading a bit-allocation problem from CSV, the format of the allocate_bits example:
//
//   layer,option,bits_w,bits_a,loss_delta,size_bytes,bops
//   conv1,0,8,8,0,9408,118013952
//   conv1,1,4,8,0.0021,4704,59006976
//
// One row per layer option; `option` is the option's id within its layer (any distinct
// non-negative integers). Layers appear in order of first occurrence; rows of a layer need not be
// adjacent. Fields may be double-quoted ("" escapes a quote); blank lines and lines starting with
// '#' are skipped; CRLF line ends are accepted. size_bytes and bops must be integers in
// [0, 2^53] so that their sums stay exact in double precision. Every malformed line throws
// errc::corrupt_data with "<source>:<line>" in the message.

#include <adaquant/bitalloc/problem.hpp>
#include <adaquant/core/error.hpp>

#include <charconv>
#include <cmath>
#include <cstdint>
#include <istream>
#include <map>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace adaquant {

struct bit_allocation_csv {
  bit_allocation_problem problem;              // resources {"size_bytes", "bops"}
  std::vector<std::vector<std::int64_t>> ids;  // ids[l][o]: the CSV `option` of problem option o
};

namespace detail {
inline std::vector<std::string> split_csv_line(std::string_view line, const std::string& where) {
  std::vector<std::string> out;
  std::string cur;
  std::size_t i = 0;
  for (;;) {
    cur.clear();
    while (i < line.size() && line[i] == ' ') ++i;
    if (i < line.size() && line[i] == '"') {
      ++i;
      for (;;) {
        if (i >= line.size()) fail(errc::corrupt_data, where, "unterminated quoted field");
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            cur += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        cur += line[i++];
      }
      while (i < line.size() && line[i] == ' ') ++i;
      if (i < line.size() && line[i] != ',')
        fail(errc::corrupt_data, where, "unexpected text after a quoted field");
    } else {
      while (i < line.size() && line[i] != ',') cur += line[i++];
      while (!cur.empty() && cur.back() == ' ') cur.pop_back();
    }
    out.push_back(cur);
    if (i >= line.size()) break;
    ++i;  // the comma
  }
  return out;
}

inline std::int64_t parse_csv_integer(const std::string& s, std::string_view column,
                                      std::int64_t lo, std::int64_t hi, const std::string& where) {
  std::int64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) {
    // accept integral values written as decimals, e.g. "4096.0" or "1e6"
    double d = 0.0;
    const auto [p2, e2] = std::from_chars(s.data(), s.data() + s.size(), d);
    if (s.empty() || e2 != std::errc() || p2 != s.data() + s.size() || !std::isfinite(d) ||
        d != std::floor(d) || d < static_cast<double>(lo) || d > static_cast<double>(hi))
      fail(errc::corrupt_data, where,
           "column " + std::string(column) + ": expected an integer in [" + std::to_string(lo) +
               ", " + std::to_string(hi) + "], got '" + s + "'");
    return static_cast<std::int64_t>(d);
  }
  if (v < lo || v > hi)
    fail(errc::corrupt_data, where,
         "column " + std::string(column) + ": expected an integer in [" + std::to_string(lo) +
             ", " + std::to_string(hi) + "], got " + s);
  return v;
}
}  // namespace detail

[[nodiscard]] inline bit_allocation_csv read_bit_allocation_csv(std::istream& in,
                                                                std::string_view source = "<csv>") {
  constexpr std::string_view header = "layer,option,bits_w,bits_a,loss_delta,size_bytes,bops";
  constexpr std::int64_t max_exact = std::int64_t{1} << 53;
  bit_allocation_csv out;
  out.problem.resource_names = {"size_bytes", "bops"};
  std::map<std::string, std::size_t> layer_index;
  std::map<std::pair<std::size_t, std::int64_t>, std::size_t> seen;  // (layer, id) -> line
  std::string line;
  std::size_t lineno = 0;
  bool have_header = false;
  auto where = [&](std::size_t n) {
    return "read_bit_allocation_csv: " + std::string(source) + ":" + std::to_string(n);
  };
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string_view v = line;
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.empty() || v.front() == '#') continue;
    const std::string w = where(lineno);
    if (!have_header) {
      std::string h;
      for (const auto& f : detail::split_csv_line(v, w)) h += (h.empty() ? "" : ",") + f;
      if (!(h == header))
        detail::fail(
            errc::corrupt_data, w,
            "expected the header '" + std::string(header) + "', got '" + std::string(v) + "'");
      have_header = true;
      continue;
    }
    const auto f = detail::split_csv_line(v, w);
    if (!(f.size() == 7))
      detail::fail(
          errc::corrupt_data, w,
          "expected 7 fields (" + std::string(header) + "), got " + std::to_string(f.size()));
    if (!(!f[0].empty())) detail::fail(errc::corrupt_data, w, "column layer: empty layer name");
    const std::int64_t id = detail::parse_csv_integer(f[1], "option", 0, max_exact, w);
    const int bw = static_cast<int>(detail::parse_csv_integer(f[2], "bits_w", 1, 64, w));
    const int ba = static_cast<int>(detail::parse_csv_integer(f[3], "bits_a", 1, 64, w));
    double loss = 0.0;
    {
      const auto& s = f[4];
      const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), loss);
      if (s.empty() || ec != std::errc() || ptr != s.data() + s.size())
        detail::fail(errc::corrupt_data, w,
                     "column loss_delta: expected a number, got '" + s + "'");
      if (!(std::isfinite(loss)))
        detail::fail(errc::corrupt_data, w, "column loss_delta: must be finite, got " + s);
      if (!(loss >= 0.0))
        detail::fail(errc::corrupt_data, w, "column loss_delta: must be >= 0, got " + s);
    }
    const std::int64_t size = detail::parse_csv_integer(f[5], "size_bytes", 0, max_exact, w);
    const std::int64_t bops = detail::parse_csv_integer(f[6], "bops", 0, max_exact, w);

    auto [it, inserted] = layer_index.try_emplace(f[0], out.problem.layers.size());
    if (inserted) {
      out.problem.layers.push_back({f[0], {}});
      out.ids.emplace_back();
    }
    const std::size_t l = it->second;
    auto [sit, fresh] = seen.try_emplace({l, id}, lineno);
    if (!fresh)
      detail::fail(errc::corrupt_data, w,
                   "duplicate option " + std::to_string(id) + " for layer '" + f[0] +
                       "' (first on line " + std::to_string(sit->second) + ")");
    bit_option o;
    o.bits = {bw, ba};
    o.loss_delta = loss;
    o.resources = {static_cast<double>(size), static_cast<double>(bops)};
    out.problem.layers[l].options.push_back(std::move(o));
    out.ids[l].push_back(id);
  }
  if (!(have_header))
    detail::fail(errc::empty_input, "read_bit_allocation_csv: " + std::string(source),
                 "no header line (expected '" + std::string(header) + "')");
  if (!(!out.problem.layers.empty()))
    detail::fail(errc::empty_input, "read_bit_allocation_csv: " + std::string(source),
                 "no data rows after the header");
  return out;
}

}  // namespace adaquant
