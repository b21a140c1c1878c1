#!/usr/bin/env bash
# The main job: quantize the two reference models (ResNet- and MobileNetV2-style, trained on
# Fashion-MNIST, loaded from models/*.onnx through the ONNX importer) with the naive, light and
# advanced pipelines; accuracy on the full 10k test set.
# Then the text model (models/text_classifier.onnx, a 4-layer transformer encoder) through
# adaquant_ptq (scripts/text_bench.sh): naive and light W8A8, advanced W4A8 and W4A4,
# weight-only W4A16 in blocks of 32 round-to-nearest; top-1 on its 1615 test sequences.
# scripts/text_bench.sh runs those and three slower rows (W4A8 with the attention products
# quantized, W4A16 with AdaQuant, bit allocation at 13%).
# Prints two markdown tables and writes every run's JSON to out/demo/ (text runs in
# out/demo/text/), with the picture of top-1 against weight size, out/demo/accuracy_vs_size.svg
# (tools/plot_results.py). DEMO_CALIB=N changes the images' calibration size (default 1000);
# DEMO_TEXT=0 skips the text model.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_install_deps
adaquant_build "$here" fashion_mnist_ptq adaquant_ptq
ptq="$here/build/examples/fashion_mnist_ptq/fashion_mnist_ptq"
out="$here/out/demo"
mkdir -p "$out"
calib=${DEMO_CALIB:-1000}
# AdaQuant iterations per layer (the paper's code uses up to 1000; 200 keeps the demo within
# 15 minutes on 2 cores, see README).
iters=${DEMO_ITERATIONS:-200}
text_rows="naive_w8a8 light_w8a8 advanced_w4a8 advanced_w4a4 naive_w4a16_block32"

# One process runs every line (data loaded and each model's FP32 accuracy measured once).
plan="$out/plan.txt"
{
  echo "# name  arguments (common: --calib $calib --iterations $iters --seed 0)"
  for model in resnet mobilenetv2; do
    echo "naive_w8a8 --model $model --pipeline naive --wbits 8 --abits 8"
    echo "naive_w4a4 --model $model --pipeline naive --wbits 4 --abits 4"
    echo "light_w8a8 --model $model --pipeline light --wbits 8 --abits 8"
    echo "light_w4a4_ranges --model $model --pipeline light --wbits 4 --abits 4 --no-bn-tuning --no-bias"
    echo "light_w4a4_bn --model $model --pipeline light --wbits 4 --abits 4 --no-bias"
    echo "light_w4a4 --model $model --pipeline light --wbits 4 --abits 4"
    echo "advanced_w4a4_adaquant --model $model --pipeline advanced --wbits 4 --abits 4 --no-bn-tuning --no-bias"
    echo "advanced_w4a4 --model $model --pipeline advanced --wbits 4 --abits 4"
    echo "advanced_w4a4_size13 --model $model --pipeline advanced --wbits 4 --abits 4 --max-size-ratio 0.13 --bit-options 2,4,8"
  done
} > "$plan"

json_field() { sed -n "s/^  \"$2\": \(.*\),\$/\1/p" "$1" | head -1 | tr -d '"'; }

start=$(date +%s)
extra=()
"$ptq" --plan "$plan" --json-dir "$out" --calib "$calib" --iterations "$iters" --seed 0
table="| model | run | first/last 8-bit | weights % of FP32 | FP32 top-1 | quantized top-1 | delta | seconds |
|---|---|---|---|---|---|---|---|"
while read -r name args; do
  case $name in '#'*|'') continue ;; esac
  model=$(set -- $args; echo "$2")
  j="$out/${model}_${name}.json"
  fp=$(json_field "$j" fp32_top1)
  q=$(json_field "$j" quant_top1)
  table+=$'\n'$(awk -v m="$model" -v n="$name" -v fl="$(json_field "$j" first_last_8bit)" \
    -v r="$(json_field "$j" size_ratio)" -v fp="$fp" -v q="$q" -v s="$(json_field "$j" seconds)" \
    'BEGIN { printf "| %s | %s | %s | %.1f | %.2f | %.2f | %+.2f | %.0f |", m, n, fl, 100 * r, 100 * fp, 100 * q, 100 * (q - fp), s }')
done < "$plan"
echo
echo "$table" | tee "$out/results.md"

# The text model's quick rows (scripts/text_bench.sh runs all eight; the others are in
# docs/text.md).
if [ "${DEMO_TEXT:-1}" != 0 ]; then
  echo
  TEXT_OUT="$out/text" TEXT_ITERATIONS="$iters" TEXT_ROWS="$text_rows" "$here/scripts/text_bench.sh"
  extra+=("$out/text")
fi

# Top-1 against weight size, every run of both models (and scripts/lowbit_bench.sh's runs when
# they are in out/lowbit).
[ -d "$here/out/lowbit" ] && extra+=("$here/out/lowbit")
python3 "$here/tools/plot_results.py" "$out/accuracy_vs_size.svg" "$out" "${extra[@]}"
echo
echo "demo finished in $(( $(date +%s) - start )) s; JSON in $out"
