#!/usr/bin/env bash
# run.sh MODE SOURCE_DIR WORK_DIR: builds and runs the consumer app of MODE:
#   find_package, add_subdirectory, find_package_onnx (COMPONENTS onnx), or missing_component
#   (configuring a project that requires an unknown component must fail, naming it).
set -euo pipefail
mode=$1 src=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
install_lib() {
  cmake -S "$src" -B "$work/lib" -DADAQUANT_BUILD_TESTS=OFF -DADAQUANT_BUILD_EXAMPLES=OFF \
        -DADAQUANT_BUILD_BENCHMARKS=OFF -DCMAKE_INSTALL_PREFIX="$work/prefix" "$@" >/dev/null
  cmake --install "$work/lib" >/dev/null
}
case "$mode" in
  find_package)
    install_lib
    cmake -S "$here/find_package" -B "$work/app" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null ;;
  find_package_onnx)
    install_lib -DADAQUANT_WITH_ONNX=ON
    cmake -S "$here/find_package_onnx" -B "$work/app" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null ;;
  missing_component)
    install_lib
    mkdir -p "$work/missing"
    printf 'cmake_minimum_required(VERSION 3.21)\nproject(missing LANGUAGES CXX)\nfind_package(adaquant CONFIG REQUIRED COMPONENTS no_such_component)\n' \
      >"$work/missing/CMakeLists.txt"
    if cmake -S "$work/missing" -B "$work/missing/build" -DCMAKE_PREFIX_PATH="$work/prefix" \
         >"$work/missing.log" 2>&1; then
      echo "configuring with a missing component succeeded" >&2
      exit 1
    fi
    grep -q "no_such_component" "$work/missing.log" || { cat "$work/missing.log" >&2; exit 1; }
    echo "missing component reported"
    exit 0 ;;
  *)
    cmake -S "$here/add_subdirectory" -B "$work/app" -DADAQUANT_SOURCE_DIR="$src" >/dev/null ;;
esac
cmake --build "$work/app" >/dev/null
"$work/app/consumer_app"
