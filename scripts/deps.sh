#!/usr/bin/env bash
# Installs the Debian packages adaquant's build, tests and demo need (sourced by test.sh/demo.sh).
# As root: apt-get installs what is missing. Otherwise: prints the exact command and fails.
ADAQUANT_DEBS=(cmake g++ make libeigen3-dev libxtensor-dev libxsimd-dev catch2 libbenchmark-dev
  zlib1g-dev nlohmann-json3-dev dataset-fashion-mnist clang-14 libfuzzer-14-dev libclang-rt-14-dev
  libonnx-dev libprotobuf-dev protobuf-compiler libonnx-testdata)

adaquant_install_deps() {
  local missing=()
  for p in "${ADAQUANT_DEBS[@]}"; do
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
