#!/usr/bin/env bash
# A reduced demo run (200 calibration images, 80 AdaQuant iterations per layer, the first 2000
# test images): on the MobileNetV2-style model, advanced W4A4 must beat naive W4A4 by a clear
# margin and stay within a few points of FP32; the same seed must reproduce the same accuracy,
# also on one thread instead of all (captures, ranges and losses are split across threads).
set -euo pipefail
ptq=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
common=(--model mobilenetv2 --wbits 4 --abits 4 --calib 200 --iterations 80 --test-limit 2000 --quiet)
field() { sed -n "s/^  \"$2\": \\(.*\\),\$/\\1/p" "$1" | head -1; }

# The first two runs go through --plan (one process, FP32 measured once), the repeat alone.
printf '%s\n' "# e2e plan" "naive --pipeline naive" "adv1 --pipeline advanced --seed 3" > "$work/plan.txt"
"$ptq" --plan "$work/plan.txt" --json-dir "$work" "${common[@]}"
mv "$work/mobilenetv2_naive.json" "$work/naive.json"
mv "$work/mobilenetv2_adv1.json" "$work/adv1.json"
"$ptq" "${common[@]}" --pipeline advanced --seed 3 --threads 1 --json "$work/adv2.json"

fp=$(field "$work/naive.json" fp32_top1)
naive=$(field "$work/naive.json" quant_top1)
adv=$(field "$work/adv1.json" quant_top1)
adv2=$(field "$work/adv2.json" quant_top1)
echo "fp32 $fp naive $naive advanced $adv (repeat $adv2)"
fails=0
check() {  # check "description" awk-condition
  if awk -v fp="$fp" -v naive="$naive" -v adv="$adv" -v adv2="$adv2" "BEGIN { exit !($2) }"; then
    echo "ok: $1"
  else
    echo "FAILED: $1"
    fails=$((fails + 1))
  fi
}
check "advanced W4A4 beats naive W4A4 by at least 5 points" "adv - naive >= 0.05"
check "advanced W4A4 is within 4 points of FP32" "fp - adv <= 0.04"
check "the same seed reproduces the same accuracy exactly, on 1 thread too" "adv == adv2"
passed=$((3 - fails))
echo "$passed passed, $fails failed"
[ "$fails" -eq 0 ]
