#!/usr/bin/env bash
# The text model (models/text_classifier.onnx, a 4-layer transformer encoder; data from Debian's
# fortunes package, scripts/text_data.sh) through adaquant_ptq: naive and light W8A8, advanced
# W4A8 and W4A4, advanced W4A8 with the attention products' operands quantized too
# (--act-products), weight-only W4A16 in blocks of 32 (round-to-nearest and AdaQuant), bit
# allocation at 13% size; top-1 on its 1615 test sequences (docs/text.md has the other rows:
# advanced W8A8, W3A16, the products' range study). Each run quantizes the 25 layers (24
# token-wise MatMuls and the classifier), calibrating on 1000 sequences (padding tokens count
# nowhere); the token embedding is quantized per row at 8 bits in every run (adaquant_ptq's
# default). scripts/demo.sh runs five of them (TEXT_ROWS); all eight take about 10 minutes on 2
# cores. Prints a markdown table (also OUT/results.md) and writes every run's JSON
# and quantized model to OUT.
#   TEXT_OUT=DIR          where the runs go (default out/text_bench)
#   TEXT_ROWS="a b ..."   rows to run (names below; default all)
#   TEXT_ITERATIONS=N     AdaQuant iterations per layer (default 200, as the demo)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_install_deps
adaquant_build "$here" adaquant_ptq
aq_ptq="$here/build/examples/adaquant_ptq/adaquant_ptq"
out=${TEXT_OUT:-$here/out/text_bench}
iters=${TEXT_ITERATIONS:-200}
rows=${TEXT_ROWS:-naive_w8a8 light_w8a8 advanced_w4a8 advanced_w4a4 advanced_w4a8_products naive_w4a16_block32 advanced_w4a16_block32 advanced_w4a4_size13}

row_args() {
  case $1 in
    naive_w8a8) echo "--pipeline naive --wbits 8 --abits 8" ;;
    light_w8a8) echo "--pipeline light --wbits 8 --abits 8" ;;
    advanced_w4a8) echo "--pipeline advanced --wbits 4 --abits 8" ;;
    advanced_w4a4) echo "--pipeline advanced --wbits 4 --abits 4" ;;
    advanced_w4a8_products) echo "--pipeline advanced --wbits 4 --abits 8 --act-products" ;;
    naive_w4a16_block32) echo "--pipeline naive --weight-only --wbits 4 --weight-granularity block:32 --all-layers" ;;
    advanced_w4a16_block32) echo "--pipeline advanced --weight-only --wbits 4 --weight-granularity block:32 --all-layers" ;;
    advanced_w4a4_size13) echo "--pipeline advanced --wbits 4 --abits 4 --max-size-ratio 0.13 --bit-options 2,4,8" ;;
    *) echo "text_bench.sh: unknown row '$1'" >&2; return 2 ;;
  esac
}
for row in $rows; do row_args "$row" >/dev/null; done  # every name checked before any run

text="$here/out/text"
"$here/scripts/text_data.sh" "$text" >/dev/null
mkdir -p "$out"
for row in $rows; do
  # shellcheck disable=SC2046
  "$aq_ptq" --model "$here/models/text_classifier.onnx" --calib "$text/calib" \
    --test-data "$text/test" --test-labels "$text/test_labels.npy" --iterations "$iters" --seed 0 \
    $(row_args "$row") --output "$out/$row.onnx" --json "$out/$row.json" --quiet >/dev/null
done
# shellcheck disable=SC2086
python3 - "$out" $rows <<'PY' | tee "$out/results.md"
import json, sys
d, names = sys.argv[1], sys.argv[2:]
print("| model | run | first/last 8-bit | weights % of FP32 | FP32 top-1 | quantized top-1 | delta | seconds |")
print("|---|---|---|---|---|---|---|---|")
for n in names:
    j = json.load(open(f"{d}/{n}.json"))
    fp, q = 100 * j["fp32_top1"], 100 * j["quant_top1"]
    print(f"| text_classifier | {n} | {str(j['settings']['first_last_8bit']).lower()} | "
          f"{100 * j['size_ratio']:.1f} | {fp:.2f} | {q:.2f} | {q - fp:+.2f} | {j['seconds']:.0f} |")
PY
