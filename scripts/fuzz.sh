#!/usr/bin/env bash
# Builds the parser fuzzers (tests/fuzz: IDX, safetensors, ONNX) with clang-14 + libFuzzer + ASan + UBSan in build-fuzz/,
# seeds each corpus with small valid and invalid files, and runs each fuzzer for a bounded time
# (ADAQUANT_FUZZ_SECONDS, default 10). Fails on any crash, sanitizer report or leak. Examples are
# off: tests/fuzz adds the runtime itself, without the examples' GCC-specific flags.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build-fuzz"
seconds=${ADAQUANT_FUZZ_SECONDS:-10}
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"

CC=clang-14 CXX=clang++-14 cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DADAQUANT_BUILD_FUZZERS=ON -DADAQUANT_BUILD_TESTS=ON -DADAQUANT_BUILD_EXAMPLES=OFF -DADAQUANT_WITH_ONNX=ON \
  -DADAQUANT_BUILD_BENCHMARKS=OFF \
  -DCMAKE_CXX_FLAGS_RELEASE="-O1 -gline-tables-only" \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link $san -Wno-unknown-warning-option" \
  -DCMAKE_EXE_LINKER_FLAGS="$san" >/dev/null
cmake --build "$build" -j "$(nproc)" --target fuzz_idx fuzz_safetensors fuzz_npy fuzz_onnx

# Seeds: a few valid files and their truncated / corrupted variants.
corpus="$build/corpus"
rm -rf "$corpus"
mkdir -p "$corpus/idx" "$corpus/safetensors" "$corpus/npy" "$corpus/onnx"
idx_header() { printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x02'; }
{ idx_header; printf 'abcdefghijkl'; } >"$corpus/idx/valid3"
printf '\x00\x00\x08\x01\x00\x00\x00\x04\x01\x02\x03\x09' >"$corpus/idx/labels"
gzip -c "$corpus/idx/valid3" >"$corpus/idx/valid3.gz"
head -c 20 "$corpus/idx/valid3" >"$corpus/idx/truncated"
head -c 25 "$corpus/idx/valid3.gz" >"$corpus/idx/truncated.gz"
printf '\x1f\x8b\x08\x00garbage-garbage' >"$corpus/idx/garbage.gz"
st() {  # st <file> <json header> <data bytes printf format>
  local h=$2 n=${#2}
  printf "$(printf '\\x%02x\\x%02x\\x00\\x00\\x00\\x00\\x00\\x00' $((n % 256)) $((n / 256)))" >"$1"
  printf '%s' "$h" >>"$1"
  printf "$3" >>"$1"
}
st "$corpus/safetensors/valid" \
  '{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1,1],"data_offsets":[8,12]}}' \
  '\x00\x00\x80\x3f\x00\x00\x00\x40\x00\x00\x40\x40'
st "$corpus/safetensors/bad_dtype" '{"a":{"dtype":"F16","shape":[2],"data_offsets":[0,4]}}' '\x00\x00\x00\x00'
st "$corpus/safetensors/bad_offsets" '{"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}' '\x00\x00\x00\x00'
head -c 30 "$corpus/safetensors/valid" >"$corpus/safetensors/truncated"
npy() {  # npy <file> <major version> <header dict> <data bytes printf format>
  local n=$((${#3} + 1)) len
  len=$(printf '\\x%02x\\x%02x' $((n % 256)) $((n / 256)))
  [ "$2" = 2 ] && len="$len\\x00\\x00"
  printf "\\x93NUMPY\\x0$2\\x00$len" >"$1"
  printf '%s\n' "$3" >>"$1"
  printf "$4" >>"$1"
}
npy "$corpus/npy/f4" 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 1), }" \
  '\x00\x00\x80\x3f\x00\x00\x00\x40'
npy "$corpus/npy/i8" 1 "{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }" \
  '\x07\x00\x00\x00\x00\x00\x00\x00'
npy "$corpus/npy/v2_scalar" 2 "{'shape': (), 'descr': '<f4', 'fortran_order': False}" \
  '\x00\x00\x80\x3f'
npy "$corpus/npy/overflow" 1 "{'descr': '<f4', 'fortran_order': False, 'shape': (65536, 65536)}" ''
head -c 70 "$corpus/npy/f4" >"$corpus/npy/truncated"

# ONNX: small valid models (tests/fuzz/onnx_seeds, written with the protobuf API) and truncations.
cp "$here"/tests/fuzz/onnx_seeds/*.onnx "$corpus/onnx/"
head -c 200 "$here/tests/fuzz/onnx_seeds/cnn.onnx" >"$corpus/onnx/truncated"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
for parser in idx safetensors npy onnx; do
  echo "== fuzz_$parser for ${seconds}s"
  dict=()
  [ -f "$here/tests/fuzz/$parser.dict" ] && dict=(-dict="$here/tests/fuzz/$parser.dict")
  mkdir -p "$build/artifacts/$parser"
  (cd "$build" && "./tests/fuzz/fuzz_$parser" "${dict[@]}" -max_total_time="$seconds" -max_len=4096 \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/$parser/" "$corpus/$parser") 2>&1 | tail -n 12
done
