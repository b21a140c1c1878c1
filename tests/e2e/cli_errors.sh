#!/usr/bin/env bash
# Bad input to fashion_mnist_ptq: a clear error, a non-zero exit, nothing written.
set -uo pipefail
ptq=$1 work=$2
rm -rf "$work" && mkdir -p "$work"
fails=0 passed=0
expect_error() {  # expect_error "message fragment" args...
  local want=$1
  shift
  local out
  out=$("$ptq" "$@" --quiet --json "$work/out.json" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] && [[ "$out" == *"$want"* ]] && [ ! -e "$work/out.json" ]; then
    passed=$((passed + 1))
  else
    echo "FAILED: '$*' exited $rc, wrote $(ls "$work"), said: $out"
    fails=$((fails + 1))
  fi
  rm -f "$work/out.json"
}
expect_error "--calib must be > 0" --model resnet --pipeline naive --calib 0
expect_error "--calib must be at most 60000" --model resnet --pipeline naive --calib 60001
expect_error "--model must be resnet or mobilenetv2" --model vgg --pipeline naive
expect_error "--pipeline: must be one of naive, light, advanced, got 'heavy'" --model resnet --pipeline heavy
expect_error "--wbits: must be in [2, 16], got 1" --model resnet --pipeline light --wbits 1
expect_error "smallest achievable" --model resnet --pipeline light --max-size-ratio 0.01
expect_error "unknown argument" --model resnet --pipeline light --frobnicate
expect_error "not an integer" --model resnet --pipeline light --calib ten
expect_error "--bn-target: must be one of running, fp, got 'x'" --model resnet --pipeline light --bn-target x
expect_error "--no-recalibrate-allocation: only the advanced pipeline with bit allocation" --model resnet --pipeline advanced --no-recalibrate-allocation
expect_error "--qdrop: must be in [0, 1]" --model resnet --pipeline advanced --qdrop 1.5
expect_error "--qdrop: must be in [0, 1]" --model resnet --pipeline advanced --qdrop nan
expect_error "--qdrop: must be in [0, 1]" --model resnet --pipeline advanced --qdrop -0.1
expect_error "--weight-rounding: must be one of learned_step, adaround, got 'nearest'" \
  --model resnet --pipeline advanced --weight-rounding nearest
expect_error "--adaround-lambda: must be >= 0" --model resnet --pipeline advanced --adaround-lambda -1
expect_error "--lr-weight: must be > 0" --model resnet --pipeline advanced --lr-weight 0
expect_error "--loss-samples must be > 0" --model resnet --pipeline advanced --loss-samples 0
expect_error "--loss-samples must be at most --calib (8), got 9" --model resnet \
  --pipeline advanced --calib 8 --loss-samples 9
expect_error "--iterations: must be > 0" --model resnet --pipeline advanced --iterations 0
expect_error "--seed: must be >= 0" --model resnet --pipeline advanced --seed -1
expect_error "--threads: must be >= 0" --model resnet --pipeline advanced --threads -2
expect_error "--abits: must be in [2, 16], got 17" --model resnet --pipeline light --abits 17
expect_error "--order: must be one of sequential, parallel" --model resnet --pipeline advanced --order random
expect_error "--blocks: needs block reconstruction" --model resnet --pipeline advanced --blocks 3
expect_error "--blocks: a run needs at least 2 layers, got 1" --model resnet --pipeline advanced \
  --reconstruction block --blocks 1
# Named blocks are resolved and checked on the model before the pipeline changes anything.
expect_error "--blocks: no quantizable layer named 'nosuch'" --model resnet --pipeline advanced \
  --reconstruction block --blocks nosuch../stem/Conv --calib 8 --test-limit 50
expect_error "options.blocks.named[0]" --model resnet --pipeline advanced --reconstruction block \
  --blocks /stem/Conv../blocks.0/conv1/Conv --calib 8 --test-limit 50

# --8bit-layers: each part must name a layer (checked on the model before the pipeline runs).
expect_error "--8bit-layers: no layer's node name contains 'nosuch'" --model resnet \
  --pipeline light --all-layers --8bit-layers /stem/,nosuch --calib 8 --test-limit 50
expect_error "--8bit-layers: empty name part in '/stem/,'" --model resnet --pipeline light \
  --8bit-layers /stem/,

# --plan: every line is checked before anything runs, so nothing is written.
expect_plan_error() {  # expect_plan_error "message fragment" plan-lines
  local want=$1
  printf '%s\n' "$2" > "$work/plan.txt"
  mkdir -p "$work/runs"
  local out
  out=$("$ptq" --plan "$work/plan.txt" --json-dir "$work/runs" --quiet 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] && [[ "$out" == *"$want"* ]] && [ -z "$(ls "$work/runs")" ]; then
    passed=$((passed + 1))
  else
    echo "FAILED: plan '$2' exited $rc, wrote $(ls "$work/runs"), said: $out"
    fails=$((fails + 1))
  fi
  rm -rf "$work/runs" "$work/plan.txt"
}
expect_plan_error "run 'bad': --pipeline: must be" $'good --model resnet --pipeline naive\nbad --model resnet --pipeline heavy'
expect_plan_error "run 'big': --calib must be at most 60000" $'good --model resnet --pipeline naive\nbig --model resnet --pipeline naive --calib 70000'
expect_plan_error "has no runs" '# only a comment'
out=$("$ptq" --plan "$work/none.txt" 2>&1)
if [ $? -eq 2 ] && [[ "$out" == *"needs --json-dir"* ]]; then passed=$((passed + 1)); else
  echo "FAILED: --plan without --json-dir said: $out"; fails=$((fails + 1)); fi
# Output folders are checked before any work: a missing --json-dir or --json folder fails at once.
printf '%s\n' "one --model resnet --pipeline naive" > "$work/plan.txt"
start=$(date +%s)
out=$("$ptq" --plan "$work/plan.txt" --json-dir "$work/missing" --quiet 2>&1)
rc=$?
if [ $rc -eq 2 ] && [[ "$out" == *"--json-dir: folder $work/missing does not exist"* ]] &&
   [ $(( $(date +%s) - start )) -lt 5 ]; then passed=$((passed + 1)); else
  echo "FAILED: --json-dir missing exited $rc, said: $out"; fails=$((fails + 1)); fi
out=$("$ptq" --model resnet --pipeline naive --quiet --json "$work/missing/out.json" 2>&1)
rc=$?
if [ $rc -eq 2 ] && [[ "$out" == *"--json: folder $work/missing does not exist"* ]]; then
  passed=$((passed + 1)); else
  echo "FAILED: --json in a missing folder exited $rc, said: $out"; fails=$((fails + 1)); fi
# --8bit-layers holds exactly the named layers at 8 bits: with --all-layers at 4 bits, the stem
# (the first of ResNet's 17 layers) and nothing else. Without --loss-samples the loss takes every
# calibration image (--calib 8).
want='"eight_bit_layers":\["/stem/"\],.*"layer_weight_bits":\[8'$(printf ',4%.0s' $(seq 16))
want+='\],"loss_samples":8,'
if "$ptq" --model resnet --pipeline light --all-layers --8bit-layers /stem/ --calib 8 \
  --test-limit 50 --quiet --json "$work/eight.json" > /dev/null 2>&1 &&
  tr -d ' \n' < "$work/eight.json" | grep -q "$want"
then passed=$((passed + 1)); else
  echo "FAILED: --8bit-layers /stem/ held other layers: $(cat "$work/eight.json")"
  fails=$((fails + 1)); fi
echo "$passed passed, $fails failed"
[ "$fails" -eq 0 ]
