#!/usr/bin/env bash
# run.sh MODE SOURCE_DIR WORK_DIR: builds and runs the consumer app of MODE.
set -euo pipefail
mode=$1 src=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work"
if [ "$mode" = find_package ]; then
  cmake -S "$src" -B "$work/lib" -DADAQUANT_BUILD_TESTS=OFF -DADAQUANT_BUILD_EXAMPLES=OFF \
        -DADAQUANT_BUILD_BENCHMARKS=OFF -DCMAKE_INSTALL_PREFIX="$work/prefix" >/dev/null
  cmake --install "$work/lib" >/dev/null
  cmake -S "$here/find_package" -B "$work/app" -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
else
  cmake -S "$here/add_subdirectory" -B "$work/app" -DADAQUANT_SOURCE_DIR="$src" >/dev/null
fi
cmake --build "$work/app" >/dev/null
"$work/app/consumer_app"
