// A consumer: quantizes a std::vector through the public API and checks one value.
#include <adaquant/adapters/std.hpp>
#include <adaquant/adaquant.hpp>

#include <cstdio>
#include <vector>

int main() {
  std::vector<float> x{0.0f, 0.5f, 1.0f};
  const auto v = adaquant::view(x);
  if (v.size() != 3) return 1;
  std::puts("consumer ok");
  return 0;
}
