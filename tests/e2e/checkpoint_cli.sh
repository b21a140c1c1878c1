#!/usr/bin/env bash
# adaquant_ptq --checkpoint DIR: a run killed with SIGKILL at random points resumes to the same
# exported model and encodings, byte for byte, as an uninterrupted run:
#  - killed twice mid-write (the test hook ADAQUANT_TEST_KILL_IN_SAVE=N kills the process after
#    writing half of its N-th record), then resumed on 1 thread;
#  - killed after a random time on 2 threads, resumed on 1;
#  - rerun on a complete folder (nothing recomputed).
# A folder from other arguments, another model, other calibration data or another revision of the
# defaults, a damaged or truncated record, a folder of other files: exit 2 with a one-line error
# naming the folder or file and what differs, nothing written. Kill points come from
# CHECKPOINT_TEST_SEED (printed; default: random).
set -uo pipefail
ptq=$1 npy_tool=$2 work=$3
here=$(cd "$(dirname "$0")/../.." && pwd)
seed=${CHECKPOINT_TEST_SEED:-$$}
RANDOM=$seed
echo "kill points from CHECKPOINT_TEST_SEED=$seed"
rm -rf "$work" && mkdir -p "$work/out"
"$npy_tool" "$work/data" --calib 48 >/dev/null || exit 1
source "$here/tests/e2e/common.sh"

model=$here/models/resnet_fm.onnx
# AdaQuant at 2 bits for bit allocation's options, then per layer at the chosen bits, BN tuning
# and bias tuning: every kind of record.
run_args=(--calib "$work/data/calib.npy" --pipeline advanced --iterations 8 --max-size-ratio 0.15
          --bit-options 2,8 --bit-rounds 1 --loss-samples 16 --quiet)
ptq_cmd() {  # ptq_cmd NAME DIR: the command, in $cmd, writing NAME.onnx and NAME.enc.json
  cmd=("$ptq" --model "$model" "${run_args[@]}" --checkpoint "$2" --output "$work/out/$1.onnx"
       --encodings "$work/out/$1.enc.json")
}
ptq_run() {  # ptq_run NAME DIR args...
  ptq_cmd "$1" "$2"
  shift 2
  "${cmd[@]}" "$@"
}
same_as_ref() {  # same_as_ref NAME what
  if cmp -s "$work/out/$1.onnx" "$work/out/ref.onnx" &&
     cmp -s "$work/out/$1.enc.json" "$work/out/ref.enc.json"; then ok
  else ko "$2: the outputs differ from the uninterrupted run's"; fi
}
records() { find "$1" -name '*.rec' | wc -l; }
flip_byte() {  # flip_byte FILE OFFSET: the lowest bit of one byte
  local b
  b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  printf "\\$(printf '%03o' $((b ^ 1)))" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null
}

# The uninterrupted run; its folder holds every unit.
t0=$(date +%s.%N)
ptq_run ref "$work/ref" --threads 2 >/dev/null || ko "the uninterrupted run failed"
t1=$(date +%s.%N)
units=$(records "$work/ref")
run_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", 1000 * (b - a) }')
echo "uninterrupted run: $units units, $run_ms ms"
[ "$units" -ge 40 ] && ok || ko "only $units records saved"
ptq_run rerun "$work/ref" >/dev/null && same_as_ref rerun "a rerun on the complete folder"

# Killed mid-write twice (the second kill counts the resumed run's own saves), then resumed.
k1=$((1 + RANDOM % (units / 2))) k2=$((1 + RANDOM % (units / 2)))
echo "mid-write kills at save $k1, then at the resumed run's save $k2"
ADAQUANT_TEST_KILL_IN_SAVE=$k1 ptq_run w1 "$work/w" --threads 2 >/dev/null 2>&1
rc=$?
[ $rc -eq 137 ] && [ "$(records "$work/w")" -eq $((k1 - 1)) ] &&
  [ -n "$(find "$work/w" -name '.tmp-*')" ] && [ ! -e "$work/out/w1.onnx" ] && ok ||
  ko "kill in save $k1: exit $rc, $(records "$work/w") records, no half-written temporary file"
ADAQUANT_TEST_KILL_IN_SAVE=$k2 ptq_run w2 "$work/w" --threads 2 >/dev/null 2>&1
rc=$?
[ $rc -eq 137 ] && [ "$(records "$work/w")" -eq $((k1 + k2 - 2)) ] && ok ||
  ko "kill in the resumed run's save $k2: exit $rc, $(records "$work/w") records"
ptq_run w3 "$work/w" --threads 1 >/dev/null || ko "resuming after mid-write kills failed"
same_as_ref w3 "killed in saves $k1 and $k2, resumed on 1 thread"
[ -z "$(find "$work/w" -name '.tmp-*')" ] && [ "$(records "$work/w")" -eq "$units" ] && ok ||
  ko "after resuming: leftover temporary files or $(records "$work/w") of $units records"

# Killed twice after a random time (within the uninterrupted run's) on 2 threads, resumed on 1.
for kill in 1 2; do
  ms=$((run_ms * (5 + RANDOM % 90) / 100))
  ptq_cmd t$kill "$work/t"
  "${cmd[@]}" --threads 2 >/dev/null 2>&1 &
  pid=$!
  sleep "$(awk -v m="$ms" 'BEGIN { printf "%.3f", m / 1000 }')"
  kill -KILL $pid 2>/dev/null
  wait $pid 2>/dev/null
  echo "SIGKILL after $ms ms: $(records "$work/t") of $units units saved"
done
ptq_run t3 "$work/t" --threads 1 >/dev/null || ko "resuming after timed kills failed"
same_as_ref t3 "killed twice after a random time on 2 threads, resumed on 1"

# Refusals: exit 2, the message, nothing written.
expect_refusal() {  # expect_refusal "message fragment" args...
  local want=$1 out rc
  shift
  rm -rf "$work/out/x.onnx" "$work/out/x.enc.json"
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -eq 2 ] && [[ "$out" == *"$want"* ]] && [ ! -e "$work/out/x.onnx" ]; then ok; else
    ko "expected exit 2 and '$want', got $rc: $out"
  fi
}
cp -r "$work/ref" "$work/bad"
bad="--checkpoint $work/bad: was made"
expect_refusal "$bad with other arguments: argument --wbits is 4 there, 3 here" \
  ptq_run x "$work/bad" --wbits 3
expect_refusal "$bad with other arguments: argument --calib-count is 0 there, 40 here" \
  ptq_run x "$work/bad" --calib-count 40
expect_refusal "$bad with other arguments: argument --weight-rounding is default there, adaround here" \
  ptq_run x "$work/bad" --weight-rounding adaround
# A folder made under another revision of the defaults (calibrate/adaquant_options.hpp:
# defaults_revision): what an unset option resolves to has changed since.
rev=$(awk -F'\t' '$1 == "build" && $2 == "defaults" { print $3 }' "$work/bad/manifest")
cp "$work/bad/manifest" "$work/manifest.saved"
awk -F'\t' -v OFS='\t' '$1 == "build" && $2 == "defaults" { $3 = $3 + 1 } 1' \
  "$work/manifest.saved" > "$work/bad/manifest"
expect_refusal "$bad by another build: build defaults is $((rev + 1)) there, $rev here" \
  ptq_run x "$work/bad"
cp "$work/manifest.saved" "$work/bad/manifest"
resnet=$model model=$here/models/mobilenetv2_fm.onnx
expect_refusal "$bad for another model: the model ($resnet there, $model here)" ptq_run x "$work/bad"
model=$resnet
cp "$work/data/calib.npy" "$work/calib2.npy"
flip_byte "$work/calib2.npy" 2000
expect_refusal \
  "$bad with other calibration data: input 'input' ($work/data/calib.npy there, $work/calib2.npy" \
  ptq_run x "$work/bad" --calib "$work/calib2.npy"
victim=$(find "$work/bad" -name '*.rec' | sort | sed -n "$((1 + RANDOM % units))p")
flip_byte "$victim" 60
expect_refusal "checkpoint: $victim: checksum mismatch" ptq_run x "$work/bad"
rm -rf "$work/bad" && cp -r "$work/ref" "$work/bad"
victim=$(find "$work/bad" -name '*.rec' | sort | sed -n "$((1 + RANDOM % units))p")
truncate -s $(($(stat -c %s "$victim") / 2)) "$victim"
expect_refusal "checkpoint: $victim: truncated" ptq_run x "$work/bad"
mkdir -p "$work/other" && touch "$work/other/notes.txt"
expect_refusal "--checkpoint $work/other: holds files but no manifest (notes.txt)" \
  ptq_run x "$work/other"
expect_refusal "--fp32-only takes no --calib, --output, --encodings, --logits or --checkpoint" \
  "$ptq" --model "$model" --fp32-only --checkpoint "$work/ref" --test-data "$work/data/test.npy" \
  --test-labels "$work/data/test_labels.npy"

echo "$passed passed, $fails failed"
[ "$fails" -eq 0 ]
