// libFuzzer target: IDX parsing, raw and through gunzip. Any input must either parse or throw
// adaquant::error; anything else (crash, sanitizer report, other exception) is a bug.
#include <adaquant_runtime/idx.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  try {
    const auto a = adaquant::examples::parse_idx(bytes, "fuzz");
    std::size_t n = 1;
    for (auto d : a.dims) n *= d;
    if (n != a.data.size()) __builtin_trap();
  } catch (const adaquant::error&) {
  }
  try {
    const auto raw = adaquant::examples::gunzip(bytes, "fuzz", std::size_t{1} << 22);
    (void)adaquant::examples::parse_idx(raw, "fuzz");
  } catch (const adaquant::error&) {
  }
  return 0;
}
