#!/usr/bin/env bash
# Installs the Debian packages adaquant's build, tests and demo need (sourced by test.sh/demo.sh),
# and on request those of the Python/Node tooling under tools/ (never a library dependency).
# As root: apt-get installs what is missing. Otherwise: prints the exact command and fails.

# The text model's data (scripts/text_data.sh, tools/text_data.py: standard library only).
ADAQUANT_TEXT_DEBS=(python3 fortunes)

ADAQUANT_DEBS=(cmake g++ make libeigen3-dev libxtensor-dev libxsimd-dev catch2 libbenchmark-dev
  zlib1g-dev nlohmann-json3-dev dataset-fashion-mnist clang-14 libfuzzer-14-dev libclang-rt-14-dev
  libonnx-dev libprotobuf-dev protobuf-compiler libonnx-testdata "${ADAQUANT_TEXT_DEBS[@]}")

# tools/train_reference.py, tools/export_onnx.py and tools/train_text.py (run with
# /usr/bin/python3). Debian's torch calls the BLAS update-alternatives selects: OpenBLAS trains
# the text transformer about 15 times faster than the reference BLAS.
ADAQUANT_TOOL_DEBS=(python3-torch python3-onnx python3-numpy dataset-fashion-mnist fortunes
  libopenblas0-pthread)

# adaquant_install_debs PACKAGE...: apt-get installs the ones not installed yet.
adaquant_install_debs() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "adaquant: missing Debian packages; run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "adaquant: installing ${missing[*]}"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

adaquant_install_deps() { adaquant_install_debs "${ADAQUANT_DEBS[@]}"; }

adaquant_install_tool_deps() { adaquant_install_debs "${ADAQUANT_TOOL_DEBS[@]}"; }

adaquant_install_text_deps() { adaquant_install_debs "${ADAQUANT_TEXT_DEBS[@]}"; }

# tools/ort: Debian's nodejs and npm, unless a node and npm are already on PATH.
adaquant_install_node() {
  command -v node >/dev/null && command -v npm >/dev/null && return 0
  adaquant_install_debs nodejs npm
}

# adaquant_build ROOT TARGET...: configure ROOT/build (Release, with the ONNX component) and build
# the targets on every core: what the demo and the benchmark scripts run.
adaquant_build() {
  local root=$1
  shift
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release -DADAQUANT_WITH_ONNX=ON >/dev/null
  cmake --build "$root/build" -j "$(nproc)" --target "$@"
}

# The ONNX scripts' common set-up (scripts/onnx_check.sh, scripts/onnx_speed.sh): every
# dependency, adaquant_ptq and the .npy writer built in ROOT/build, ONNX Runtime in tools/ort, and
# the Fashion-MNIST data as .npy in ROOT/out/onnx/data.
adaquant_prepare_onnx_tools() {
  local root=$1
  adaquant_install_deps
  adaquant_install_node
  cmake -S "$root" -B "$root/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$root/build" -j "$(nproc)" --target adaquant_ptq fashion_mnist_npy
  "$root/tools/ort/install.sh" >/dev/null
  mkdir -p "$root/out/onnx"
  [ -s "$root/out/onnx/data/test.npy" ] ||
    "$root/build/examples/fashion_mnist_npy/fashion_mnist_npy" "$root/out/onnx/data"
}
