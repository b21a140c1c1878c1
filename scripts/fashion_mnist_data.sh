#!/usr/bin/env bash
# Writes Fashion-MNIST as NumPy files into OUT (default out/fashion_mnist_npy): calib.npy (the PTQ
# demo's calibration images: DATA_CALIB=1000 images chosen by DATA_SEED=0), test.npy (all 10k test
# images) and test_labels.npy (int64), images normalised as the reference models expect.
# Builds only the fashion_mnist_npy example (Release, in build/). Output is byte-for-byte
# reproducible.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/out/fashion_mnist_npy}
source "$here/scripts/deps.sh"
adaquant_install_deps
cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$here/build" -j "${ADAQUANT_JOBS:-2}" --target fashion_mnist_npy
"$here/build/examples/fashion_mnist_npy/fashion_mnist_npy" "$out" \
  --calib "${DATA_CALIB:-1000}" --seed "${DATA_SEED:-0}"
