#!/usr/bin/env bash
# adaquant_ptq end to end on the committed ONNX reference models:
#  - bad input (truncated model, unsupported op, calibration data of the wrong dtype or shape, bits
#    out of range, infeasible budget, missing output folder, missing flags, activation flags with
#    --weight-only, block-wise weights the export cannot write yet): exit 2, one-line
#    error naming the file or flag, nothing written;
#  - a naive W8A8 run and a short advanced W4A4 run write a QDQ model, encodings and a report;
#    the FP32 count on the test images equals the ONNX Runtime-verified reference count, and the
#    same arguments reproduce the report's accuracy and the model bytes exactly;
#  - when node is available: ONNX Runtime (installed by tools/ort/install.sh) runs the exported
#    models and its top-1 equals the simulated top-1 within one image (graph optimizations off,
#    where ORT computes each node as written), and within two images for naive W8A8 with all of
#    ONNX Runtime's optimizations (fused integer kernels, which round differently).
set -uo pipefail
ptq=$1 npy_tool=$2 work=$3
here=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$work" && mkdir -p "$work/out"
"$npy_tool" "$work/data" --calib 200 >/dev/null || exit 1
data=$work/data
source "$here/tests/e2e/common.sh"
model=$here/models/resnet_fm.onnx
common=(--calib "$data/calib.npy" --output "$work/out/q.onnx" --encodings "$work/out/e.json"
        --json "$work/out/r.json")
head -c 3000 "$model" > "$work/truncated.onnx"
perl -pe 's/Relu/Relx/g' "$model" > "$work/unsupported.onnx"
expect_error "truncated.onnx" --model "$work/truncated.onnx" "${common[@]}"
expect_error "Relx" --model "$work/unsupported.onnx" "${common[@]}"
expect_error "model input 'input' is float32" --model "$model" --calib "$data/test_labels.npy" \
  --output "$work/out/q.onnx"
expect_error "per-sample shape [1, 28, 28], the model input needs [1, 28, 27]" --model "$model" \
  "${common[@]}" --input-shape 1,28,27
expect_error "--wbits: must be in [2, 16]" --model "$model" "${common[@]}" --wbits 1
expect_error "--qdrop: must be in [0, 1]" --model "$model" "${common[@]}" --qdrop 2
expect_error "--lr-quant: must be > 0" --model "$model" "${common[@]}" --lr-quant -1
expect_error "--weight-rounding: must be one of learned_step, adaround, got 'up'" --model "$model" \
  "${common[@]}" --weight-rounding up
expect_error "--adaround-lambda: must be >= 0" --model "$model" "${common[@]}" --adaround-lambda nan
expect_error "smallest achievable" --model "$model" "${common[@]}" --pipeline light \
  --max-size-ratio 0.01
expect_error "--bit-rounds: must be >= 1" --model "$model" "${common[@]}" --pipeline light \
  --max-size-ratio 0.13 --bit-rounds 0
expect_error "--output: folder $work/missing does not exist" --model "$model" \
  --calib "$data/calib.npy" --output "$work/missing/q.onnx"
expect_error "--model is required" --calib "$data/calib.npy" --output "$work/out/q.onnx"
expect_error "unknown argument '--frobnicate'" --model "$model" "${common[@]}" --frobnicate
expect_error "--test-data and --test-labels go together" --model "$model" "${common[@]}" \
  --test-data "$data/test.npy"
expect_error "--fp32-only takes no --calib" --model "$model" --fp32-only --calib "$data/calib.npy" \
  --test-data "$data/test.npy" --test-labels "$data/test_labels.npy"
expect_error "--fp32-only needs --test-data" --model "$model" --fp32-only
expect_error "--eval-batch: must be > 0" --model "$model" "${common[@]}" --eval-batch 0
expect_error "--weight-only: activations stay float; --abits and --act-range do not apply" \
  --model "$model" "${common[@]}" --weight-only --abits 8
expect_error "--weight-granularity: must be channel or block:N with N >= 1, got 'block:0'" \
  --model "$model" "${common[@]}" --weight-granularity block:0
out=$("$ptq" --help)
if [[ "$out" == *"--iterations N"*"[1000]"* ]] && [[ "$out" == *"--rounding R"*"[onnx]"* ]]; then ok
else ko "--help does not state the defaults"; fi

field() { sed -n "s/^  \"$2\": \\(.*\\),\$/\\1/p" "$1" | head -1; }
test_args=(--test-data "$data/test.npy" --test-labels "$data/test_labels.npy" --test-count 2000)
run() {  # run NAME MODEL args...: a quantization run with logits
  local name=$1 m=$2
  shift 2
  "$ptq" --model "$here/models/$m.onnx" --calib "$data/calib.npy" "${test_args[@]}" --quiet \
    --output "$work/$name.onnx" --encodings "$work/$name.enc.json" --json "$work/$name.json" \
    --logits "$work/$name.logits.npy" "$@" || ko "run $name failed"
}
run r_naive resnet_fm --pipeline naive --wbits 8 --abits 8
run m_adv mobilenetv2_fm --pipeline advanced --iterations 30 --calib-count 100
run m_adv2 mobilenetv2_fm --pipeline advanced --iterations 30 --calib-count 100 --threads 1
# The reference counts of the first 2000 test images (ONNX Runtime and PyTorch agree on them).
fp=$(field "$work/r_naive.json" fp32_correct)
[ "$fp" = 1873 ] && ok || ko "resnet FP32 correct on 2000 images: $fp, expected 1873"
fp=$(field "$work/m_adv.json" fp32_correct)
[ "$fp" = 1867 ] && ok || ko "mobilenetv2 FP32 correct on 2000 images: $fp, expected 1867"
# --fp32-only evaluates the same FP32 model (in chunks of another size).
"$ptq" --model "$here/models/resnet_fm.onnx" --fp32-only "${test_args[@]}" --eval-batch 7 --quiet \
  --json "$work/fp_only.json" >/dev/null || ko "--fp32-only run failed"
fp=$(sed -n 's/^  "fp32_correct": \([0-9]*\),*$/\1/p' "$work/fp_only.json")
[ "$fp" = 1873 ] && ok || ko "--fp32-only: resnet FP32 correct on 2000 images: $fp, expected 1873"
q1=$(field "$work/m_adv.json" quant_correct) q2=$(field "$work/m_adv2.json" quant_correct)
[ "$q1" = "$q2" ] && cmp -s "$work/m_adv.onnx" "$work/m_adv2.onnx" && ok ||
  ko "same arguments, 1 thread: $q1 vs $q2 correct, or different model bytes"
for f in r_naive m_adv; do
  [ -s "$work/$f.onnx" ] && [ -s "$work/$f.enc.json" ] && ok || ko "$f: missing outputs"
done
# Packed int4 weights: the 4-bit file is smaller than the 8-bit one by about half a byte per
# weight (86,634 weights; scales, float biases and names stay).
run m_naive8 mobilenetv2_fm --pipeline naive --wbits 8 --abits 8 --all-layers
run m_naive4 mobilenetv2_fm --pipeline naive --wbits 4 --abits 8 --all-layers
s8=$(stat -c %s "$work/m_naive8.onnx") s4=$(stat -c %s "$work/m_naive4.onnx")
awk -v a="$s4" -v b="$s8" 'BEGIN { exit !(b - a > 0.45 * 86634) }' && ok ||
  ko "4-bit file $s4 bytes is not half a byte per weight smaller than the 8-bit one ($s8)"

if command -v node >/dev/null && "$here/tools/ort/install.sh" >/dev/null 2>&1; then
  # The first 2000 test images as ORT's input.
  node -e "
    const {readNpy, writeNpy} = require('$here/tools/ort/npy');
    for (const [src, dst] of [['test.npy', 'ort_test.npy'], ['test_labels.npy', 'ort_labels.npy']]) {
      const a = readNpy('$data/' + src);
      const per = a.data.length / a.shape[0];
      writeNpy('$work/' + dst, a.dtype, [2000, ...a.shape.slice(1)], a.data.slice(0, 2000 * per));
    }" || ko "could not slice the test data for ORT"
  for f in r_naive m_adv m_naive4; do
    node "$here/tools/ort/run.js" --model "$work/$f.onnx" --inputs "$work/ort_test.npy" \
      --labels "$work/ort_labels.npy" --level disabled --compare "$work/$f.logits.npy" \
      --json "$work/$f.ort.json" >/dev/null || { ko "ORT failed on $f"; continue; }
    sim=$(field "$work/$f.json" quant_correct)
    ort=$(ort_correct "$work/$f.ort.json")
    diff=$(sed -n 's/^ *"max_abs_diff": \([0-9.e+-]*\),*$/\1/p' "$work/$f.ort.json" | head -1)
    echo "$f: simulated $sim, ONNX Runtime $ort correct of 2000, largest logit difference $diff"
    within "$sim" "$ort" 1 && ok ||
      ko "$f: ONNX Runtime $ort vs simulated $sim"
  done
  # With ONNX Runtime's default optimizations (fused integer convolutions) too: 8-bit weights are
  # stored as UINT8, which its x86 kernels without VNNI do not saturate.
  node "$here/tools/ort/run.js" --model "$work/r_naive.onnx" --inputs "$work/ort_test.npy" \
    --labels "$work/ort_labels.npy" --level all --json "$work/r_naive.ort_all.json" >/dev/null ||
    ko "ORT (all optimizations) failed on r_naive"
  sim=$(field "$work/r_naive.json" quant_correct)
  ort=$(ort_correct "$work/r_naive.ort_all.json")
  echo "r_naive: simulated $sim, ONNX Runtime with all optimizations $ort correct of 2000"
  within "$sim" "$ort" 2 && ok ||
    ko "r_naive: ONNX Runtime (all optimizations) $ort vs simulated $sim"
else
  echo "note: node or onnxruntime-node unavailable: ONNX Runtime checks skipped"
fi
echo "$passed passed, $fails failed"
[ "$fails" -eq 0 ]
