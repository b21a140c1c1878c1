#!/usr/bin/env bash
# Builds and runs every test: unit, static-concept, header self-containment, consumer (install +
# find_package, add_subdirectory), examples, end-to-end on Fashion-MNIST; then the unit tests
# again under AddressSanitizer + UndefinedBehaviorSanitizer, then each parser fuzzer briefly.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_install_deps
jobs=$(nproc)

echo "== release build + tests"
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release -DADAQUANT_WITH_ONNX=ON >/dev/null
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
