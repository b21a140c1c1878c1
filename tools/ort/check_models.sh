#!/usr/bin/env bash
# Runs models/{resnet_fm,mobilenetv2_fm}.onnx in ONNX Runtime on the 10k Fashion-MNIST test
# images and fails unless each gets the correct count its sidecar (models/<name>.json) records.
#   tools/ort/check_models.sh [OUT]   (default out/ort)
# Writes OUT/<name>_ort.json and OUT/<name>_ort_logits.npy; the test data go to OUT/data
# (scripts/fashion_mnist_data.sh). When OUT/<name>_torch_logits.npy exists (written by
# tools/export_onnx.py --logits OUT) the report includes the largest difference to PyTorch.
# ORT_LATENCY=1 also measures latency at batch 1 and 64 for every thread count in ORT_THREADS
# (default "1 2"), writing OUT/<name>_ort_latency_t<N>.json.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$here/out/ort}
"$here/tools/ort/install.sh"
"$here/scripts/fashion_mnist_data.sh" "$out/data" >/dev/null
run=(node "$here/tools/ort/run.js" --inputs "$out/data/test.npy"
  --labels "$out/data/test_labels.npy")
status=0
for m in resnet_fm mobilenetv2_fm; do
  compare=()
  [ -f "$out/${m}_torch_logits.npy" ] && compare=(--compare "$out/${m}_torch_logits.npy")
  "${run[@]}" --model "$here/models/$m.onnx" "${compare[@]}" --outputs "$out/${m}_ort_logits.npy" \
    --json "$out/${m}_ort.json"
  want=$(node -p "require('$here/models/$m.json').test.correct")
  got=$(node -p "require('$out/${m}_ort.json').correct")
  if [ "$got" != "$want" ]; then
    echo "$m: ONNX Runtime got $got correct, the sidecar records $want" >&2
    status=1
  fi
  if [ "${ORT_LATENCY:-0}" = 1 ]; then
    for t in ${ORT_THREADS:-1 2}; do
      "${run[@]}" --model "$here/models/$m.onnx" --threads "$t" --latency --warmup 20 \
        --repeats 200 --json "$out/${m}_ort_latency_t$t.json"
    done
  fi
done
exit $status
