#!/usr/bin/env bash
# The main job: builds the examples and runs the end-to-end demo.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_install_deps
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$here/build" -j "$(nproc)" --target quantize_tensor
"$here/build/examples/quantize_tensor"
