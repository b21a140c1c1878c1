#!/usr/bin/env bash
# Builds and runs every test, each unit test once:
#   1. release (-O3): everything users build (library headers each on their own, examples, CLIs,
#      benchmarks, consumers via install + find_package and add_subdirectory), the end-to-end tests
#      on Fashion-MNIST and the text model, and the unit tests whose result may depend on the ISA
#      or the optimisation level (label "isa": SIMD kernels against their scalar twins at the
#      baseline and the native ISA, the -march=native example runtime);
#   2. every unit test under AddressSanitizer + UndefinedBehaviorSanitizer (-Og);
#   3. each parser fuzzer briefly.
# A developer build (ADAQUANT_UNIT_TESTS=ALL, the default) builds and runs every unit test at -O3.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_install_deps
jobs=$(nproc)

echo "== release build + tests"
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DADAQUANT_WITH_ONNX=ON \
  -DADAQUANT_UNIT_TESTS=ISA >/dev/null
cmake --build "$here/build" -j "$jobs"
ctest --test-dir "$here/build" --output-on-failure -j "$jobs"

echo "== ASan + UBSan build + unit tests"
cmake -S "$here" -B "$here/build-asan" -DCMAKE_BUILD_TYPE=Release -DADAQUANT_SANITIZE=ON -DADAQUANT_WITH_ONNX=ON \
  -DADAQUANT_BUILD_BENCHMARKS=OFF -DADAQUANT_BUILD_EXAMPLES=OFF -DADAQUANT_HEADER_CHECKS=OFF >/dev/null
cmake --build "$here/build-asan" -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$here/build-asan" --output-on-failure -j "$jobs" -L unit

if [ -x "$here/scripts/fuzz.sh" ]; then
  echo "== fuzzers"
  "$here/scripts/fuzz.sh"
fi
