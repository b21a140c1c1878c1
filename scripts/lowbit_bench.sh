#!/usr/bin/env bash
# Below 4 bits (docs/lowbit.md): the advanced pipeline at W3A3, W2A4, W2A2, every layer 4-bit and
# bit allocation at 13% and 8% of FP32 weights over {2, 3, 4, 8} bits, on both reference models, at
# its defaults (1000 AdaQuant iterations, seed 0, 1000 calibration images, full 10k test set;
# below 4 weight bits AdaRound and block reconstruction of the residual blocks, with an input below
# 3 bits of the whole network as one block with the inner term at weight 1 and a trial run of 2000
# iterations kept when it lowers the network's calibration loss, below 4 bits anywhere QDrop
# p = 0.5 on every layer),
# with the uniform rows the allocations are compared with
# (w4a4 at 13%; at 8% only w2a4 fits). Comparison rows: *_q0 without QDrop (--qdrop 0), *_ls
# with AdaQuant's learned step instead of AdaRound, *_l01 / *_l003 with AdaRound's lambda at
# 0.1 / 0.03, *_lay per layer instead of by block, *_b3 with blocks of up to 3 layers
# (--blocks 3), w2a2_res with the residual blocks instead of the whole network
# (--reconstruction block), w2a2_iw0 / w2a2_iw05 with the inner term's weight at 0 (the default
# before) / 0.5 (--inner-weight), w2a2_t0 without the trial run (--trial-iterations 0, the
# default before); w8a2, w8a3, w6a2 (weights above 4 bits with inputs below 4 bits, at
# the larger default rate of V) and their *_v0 rows at the rate 2e-3 that applied before. Too slow
# for scripts/demo.sh: about 5-15 minutes per ResNet run and 10-45 per MobileNetV2 run on a shared
# 2-core machine (bit allocation rows: AdaQuant at 2, 3 and 4 bits, about three times longer).
# The two models run as two processes side by side (one thread each). Prints one markdown table
# and writes every run's JSON to out/lowbit/.
#   LOWBIT_MODELS="resnet mobilenetv2"   models to run
#   LOWBIT_ROWS="w3a3 w2a4 ..."          rows to run (names below)
#   LOWBIT_SEEDS="0 1 2"                 AdaQuant seeds (default 0); with more than one, a row's
#                                        line gives each seed's delta and their mean
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_install_deps
adaquant_build "$here" fashion_mnist_ptq
ptq="$here/build/examples/fashion_mnist_ptq/fashion_mnist_ptq"
out="$here/out/lowbit"
mkdir -p "$out"
models=${LOWBIT_MODELS:-resnet mobilenetv2}
rows=${LOWBIT_ROWS:-w3a3 w2a4 w2a2 w4a4_all w4a4 ba13 ba8}

row_args() {
  case $1 in
    w3a3) echo "--wbits 3 --abits 3" ;;
    w3a3_q0) echo "--wbits 3 --abits 3 --qdrop 0" ;;
    w2a4) echo "--wbits 2 --abits 4" ;;
    w2a2) echo "--wbits 2 --abits 2" ;;
    w2a2_q0) echo "--wbits 2 --abits 2 --qdrop 0" ;;
    w3a3_ls) echo "--wbits 3 --abits 3 --weight-rounding learned_step" ;;
    w2a4_ls) echo "--wbits 2 --abits 4 --weight-rounding learned_step" ;;
    w2a2_ls) echo "--wbits 2 --abits 2 --weight-rounding learned_step" ;;
    w3a3_l01) echo "--wbits 3 --abits 3 --adaround-lambda 0.1" ;;
    w2a4_l01) echo "--wbits 2 --abits 4 --adaround-lambda 0.1" ;;
    w2a2_l01) echo "--wbits 2 --abits 2 --adaround-lambda 0.1" ;;
    w3a3_l003) echo "--wbits 3 --abits 3 --adaround-lambda 0.03" ;;
    w2a4_l003) echo "--wbits 2 --abits 4 --adaround-lambda 0.03" ;;
    w2a2_l003) echo "--wbits 2 --abits 2 --adaround-lambda 0.03" ;;
    w3a3_lay) echo "--wbits 3 --abits 3 --reconstruction layer" ;;
    w2a4_lay) echo "--wbits 2 --abits 4 --reconstruction layer" ;;
    w2a2_lay) echo "--wbits 2 --abits 2 --reconstruction layer" ;;
    w3a3_b3) echo "--wbits 3 --abits 3 --reconstruction block --blocks 3" ;;
    w2a4_b3) echo "--wbits 2 --abits 4 --reconstruction block --blocks 3" ;;
    w2a2_b3) echo "--wbits 2 --abits 2 --reconstruction block --blocks 3" ;;
    w2a2_res) echo "--wbits 2 --abits 2 --reconstruction block" ;;
    w2a2_iw0) echo "--wbits 2 --abits 2 --inner-weight 0" ;;
    w2a2_iw05) echo "--wbits 2 --abits 2 --inner-weight 0.5" ;;
    w2a2_t0) echo "--wbits 2 --abits 2 --trial-iterations 0" ;;
    w4a4_all) echo "--wbits 4 --abits 4 --all-layers" ;;
    w4a4_all_b3) echo "--wbits 4 --abits 4 --all-layers --reconstruction block --blocks 3" ;;
    w4a4) echo "--wbits 4 --abits 4" ;;
    w8a2) echo "--wbits 8 --abits 2" ;;
    w8a3) echo "--wbits 8 --abits 3" ;;
    w6a2) echo "--wbits 6 --abits 2" ;;
    w8a2_v0) echo "--wbits 8 --abits 2 --lr-weight 0.002" ;;
    w8a3_v0) echo "--wbits 8 --abits 3 --lr-weight 0.002" ;;
    w6a2_v0) echo "--wbits 6 --abits 2 --lr-weight 0.002" ;;
    ba13) echo "--wbits 4 --abits 4 --max-size-ratio 0.13" ;;
    ba8) echo "--wbits 4 --abits 4 --max-size-ratio 0.08" ;;
    *) echo "lowbit_bench.sh: unknown row $1" >&2; exit 2 ;;
  esac
}

seeds=${LOWBIT_SEEDS:-0}
for s in $seeds; do
  case $s in '' | *[!0-9]*) echo "lowbit_bench.sh: LOWBIT_SEEDS: not a seed: $s" >&2; exit 2 ;; esac
done
for r in $rows; do row_args "$r" > /dev/null; done  # every row name checked before any run
# One run's name: the row, with the seed unless it is 0 (seed 0's names are the ones before seeds).
run_name() { if [ "$2" = 0 ]; then echo "$1"; else echo "$1_s$2"; fi; }
json_field() { sed -n "s/^  \"$2\": \(.*\),\$/\1/p" "$1" | head -1 | tr -d '"'; }

start=$(date +%s)
pids=()
for model in $models; do
  plan="$out/$model.plan"
  for sd in $seeds; do
    for r in $rows; do
      echo "$(run_name "$r" "$sd") --model $model $(row_args "$r") --seed $sd"
    done
  done > "$plan"
  "$ptq" --plan "$plan" --json-dir "$out" --pipeline advanced --threads 1 --quiet \
    > "$out/$model.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done

table="| model | run | seed(s) | weights % of FP32 | FP32 top-1 | quantized top-1 (mean) | delta |\
 seconds (mean) |
|---|---|---|---|---|---|---|---|"
for model in $models; do
  for r in $rows; do
    deltas="" sum=0 n=0 secs=0 qsum=0
    for sd in $seeds; do
      j="$out/${model}_$(run_name "$r" "$sd").json"
      fp=$(json_field "$j" fp32_top1)
      q=$(json_field "$j" quant_top1)
      r_size=$(json_field "$j" size_ratio)
      d=$(awk -v q="$q" -v fp="$fp" 'BEGIN { printf "%+.2f", 100 * (q - fp) }')
      deltas+="${deltas:+ / }$d"
      sum=$(awk -v a="$sum" -v d="$d" 'BEGIN { print a + d }')
      qsum=$(awk -v a="$qsum" -v q="$q" 'BEGIN { print a + q }')
      secs=$(awk -v a="$secs" -v s="$(json_field "$j" seconds)" 'BEGIN { print a + s }')
      n=$((n + 1))
    done
    if [ "$n" -gt 1 ]; then
      delta=$(awk -v s="$sum" -v n="$n" -v ds="$deltas" \
        'BEGIN { printf "%s: mean %+.2f", ds, s / n }')
    else
      delta=$deltas
    fi
    quant=$(awk -v q="$qsum" -v n="$n" 'BEGIN { printf "%.2f", 100 * q / n }')  # mean over seeds
    table+=$'\n'$(awk -v m="$model" -v n="$r" -v sd="$seeds" -v r="$r_size" -v fp="$fp" \
      -v q="$quant" -v d="$delta" -v s="$secs" -v k="$n" \
      'BEGIN { printf "| %s | %s | %s | %.1f | %.2f | %s | %s | %.0f |",
               m, n, sd, 100 * r, 100 * fp, q, d, s / k }')
  done
done
echo
echo "$table" | tee "$out/results.md"
echo
echo "lowbit bench finished in $(( $(date +%s) - start )) s; JSON in $out"
