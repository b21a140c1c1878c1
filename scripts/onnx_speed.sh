#!/usr/bin/env bash
# FP32 evaluation speed of the ONNX importer against ONNX Runtime 1.30, side by side on this
# machine: both reference models, the 10k Fashion-MNIST test images, the same thread count and
# batch (chunk) size. Each side runs ROUNDS times, alternating, and the fastest run of each counts
# (the machine may be shared). Writes out/onnx/speed.md.
#   ONNX_SPEED_THREADS=N (default 1)   ONNX_SPEED_BATCH=B (default 16)   ONNX_SPEED_ROUNDS=R (default 3)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_prepare_onnx_tools "$here"
ptq="$here/build/examples/adaquant_ptq/adaquant_ptq"
out="$here/out/onnx"
data="$out/data"
mkdir -p "$out/speed"
threads=${ONNX_SPEED_THREADS:-1}
batch=${ONNX_SPEED_BATCH:-16}
rounds=${ONNX_SPEED_ROUNDS:-3}
field() { sed -n "s/^ *\"$2\": \\(.*\\),*\$/\\1/p" "$1" | head -1 | tr -d '",'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a + 0 < b + 0) ? a : b }'; }

table="| model | adaquant s | ONNX Runtime s | ratio | correct (adaquant / ORT) |
|---|---|---|---|---|"
for model in resnet_fm mobilenetv2_fm; do
  m="$here/models/$model.onnx"
  ours="" theirs=""
  for ((r = 0; r < rounds; ++r)); do
    j="$out/speed/${model}_adaquant.json"
    "$ptq" --model "$m" --fp32-only --test-data "$data/test.npy" --test-labels "$data/test_labels.npy" \
      --threads "$threads" --eval-batch "$batch" --json "$j" --quiet
    ours=$(min "$(field "$j" fp32_eval_seconds)" "$ours")
    k="$out/speed/${model}_ort.json"
    node "$here/tools/ort/run.js" --model "$m" --inputs "$data/test.npy" \
      --labels "$data/test_labels.npy" --threads "$threads" --batch "$batch" --json "$k" >/dev/null
    theirs=$(min "$(field "$k" seconds)" "$theirs")
  done
  row=$(awk -v m="$model" -v a="$ours" -v b="$theirs" -v ca="$(field "$j" fp32_correct)" \
    -v cb="$(field "$k" correct)" 'BEGIN { printf "| %s | %.2f | %.2f | %.2fx | %s / %s |", m, a, b, a / b, ca, cb }')
  table+=$'\n'"$row"
  echo "$row" >&2
done
{
  echo "FP32 evaluation of 10000 Fashion-MNIST test images, $threads thread(s), batches of $batch,"
  echo "fastest of $rounds alternating runs each; ONNX Runtime with all graph optimizations."
  echo
  echo "$table"
} | tee "$out/speed.md"
