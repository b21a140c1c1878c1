// libFuzzer target: .npy parsing (float32 and int64). Any input must either parse or throw
// adaquant::error; a parsed array must hold product(shape) values and survive a write/read round
// trip unchanged. Anything else (crash, sanitizer report, other exception) is a bug.
#include <adaquant_runtime/npy.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace {
template <class T>
void check(std::span<const std::uint8_t> bytes) {
  try {
    const auto a = adaquant::examples::parse_npy<T>(bytes, "fuzz");
    std::size_t n = 1;
    for (auto d : a.shape) n *= d;
    if (n != a.values.size()) __builtin_trap();
    const auto again = adaquant::examples::parse_npy<T>(
        adaquant::examples::npy_bytes<T>(a.shape, std::span<const T>(a.values)), "round trip");
    if (again.shape != a.shape || again.values.size() != a.values.size() ||
        (n != 0 && std::memcmp(again.values.data(), a.values.data(), n * sizeof(T)) != 0))
      __builtin_trap();
  } catch (const adaquant::error&) {
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  check<float>(bytes);
  check<std::int64_t>(bytes);
  return 0;
}
