// Two TUs include every public header; linking them together catches non-inline definitions.
#include <adaquant/adapters/eigen.hpp>
#include <adaquant/adapters/std.hpp>
#include <adaquant/adapters/xtensor.hpp>
#include <adaquant/adaquant.hpp>

#include <cstdio>

int odr_second();

int main() {
  const int a = adaquant::version_major * 100 + adaquant::version_minor;
  const int b = odr_second();
  if (a != b) {
    std::puts("version mismatch between translation units");
    return 1;
  }
  std::puts("1 passed, 0 failed");
  return 0;
}
