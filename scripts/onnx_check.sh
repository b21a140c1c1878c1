#!/usr/bin/env bash
# The ONNX path checked in ONNX Runtime: both reference models (models/*.onnx) go through
# adaquant_ptq (import, pipeline, QDQ export) for naive W8A8, light W8A8, advanced W4A4 and
# advanced with bit allocation at 13% size, on the full 10k Fashion-MNIST test set; ONNX Runtime
# 1.30 (tools/ort) runs every exported file, and the script reports simulated vs ONNX Runtime top-1,
# the largest logit difference, file sizes and ONNX Runtime's latency (batch 1 and 64) for the
# FP32 and the exported models. Writes out/onnx/results.md and every JSON. Long (about 20 minutes
# on 2 cores): not part of CI, which runs the reduced e2e_ptq_cli test.
#   ONNX_CHECK_ITERATIONS=N   AdaQuant iterations per layer (default 200, as the demo)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_prepare_onnx_tools "$here"
ptq="$here/build/examples/adaquant_ptq/adaquant_ptq"
out="$here/out/onnx"
iters=${ONNX_CHECK_ITERATIONS:-200}
field() { sed -n "s/^ *\"$2\": \\(.*\\),*\$/\\1/p" "$1" | head -1 | tr -d '",'; }

runs=(
  "naive_w8a8 --pipeline naive --wbits 8 --abits 8"
  "light_w8a8 --pipeline light --wbits 8 --abits 8"
  "advanced_w4a4 --pipeline advanced --wbits 4 --abits 4 --iterations $iters"
  "advanced_w4a4_size13 --pipeline advanced --wbits 4 --abits 4 --iterations $iters --max-size-ratio 0.13 --bit-options 2,4,8"
)
ort() { node "$here/tools/ort/run.js" "$@"; }
table="| model | run | simulated top-1 | ORT top-1 (optimizations off) | ORT top-1 (all optimizations) | largest logit difference | file bytes | ORT ms batch 1 | ORT ms batch 64 |
|---|---|---|---|---|---|---|---|---|"
for model in resnet_fm mobilenetv2_fm; do
  m="$here/models/$model.onnx"
  ort --model "$m" --inputs "$out/data/test.npy" --labels "$out/data/test_labels.npy" --latency \
    --json "$out/${model}_fp32.ort.json" >/dev/null
  fp=$(field "$out/${model}_fp32.ort.json" top1)
  table+=$'\n'"| $model | fp32 | | $(awk -v x="$fp" 'BEGIN{printf "%.2f", 100*x}') | | | $(stat -c %s "$m") | $(node -e "const j=require('$out/${model}_fp32.ort.json');console.log(j.latency.batches.map(b=>b.median_ms.toFixed(3)).join(' | '))") |"
  for r in "${runs[@]}"; do
    set -- $r
    name=$1
    shift
    base="$out/${model}_$name"
    "$ptq" --model "$m" --calib "$out/data/calib.npy" --test-data "$out/data/test.npy" \
      --test-labels "$out/data/test_labels.npy" --output "$base.onnx" --encodings "$base.enc.json" \
      --json "$base.json" --logits "$base.logits.npy" --quiet "$@"
    ort --model "$base.onnx" --inputs "$out/data/test.npy" --labels "$out/data/test_labels.npy" \
      --level disabled --compare "$base.logits.npy" --json "$base.ort.json" >/dev/null
    ort --model "$base.onnx" --inputs "$out/data/test.npy" --labels "$out/data/test_labels.npy" \
      --level all --latency --json "$base.ort_all.json" >/dev/null
    sim=$(field "$base.json" quant_top1)
    o=$(field "$base.ort.json" top1)
    oa=$(field "$base.ort_all.json" top1)
    diff=$(field "$base.ort.json" max_abs_diff)
    lat=$(node -e "const j=require('$base.ort_all.json');console.log(j.latency.batches.map(b=>b.median_ms.toFixed(3)).join(' | '))")
    table+=$'\n'$(awk -v m="$model" -v n="$name" -v s="$sim" -v o="$o" -v oa="$oa" -v d="$diff" \
      -v b="$(stat -c %s "$base.onnx")" -v l="$lat" \
      'BEGIN { printf "| %s | %s | %.2f | %.2f | %.2f | %.2g | %d | %s |", m, n, 100*s, 100*o, 100*oa, d, b, l }')
    echo "$model $name: simulated $sim, ORT $o (all optimizations $oa), largest logit difference $diff" >&2
  done
done
echo "$table" | tee "$out/results.md"
