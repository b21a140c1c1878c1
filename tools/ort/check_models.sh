#!/usr/bin/env bash
# Runs models/{resnet_fm,mobilenetv2_fm}.onnx in ONNX Runtime on the 10k Fashion-MNIST test
# images and fails unless each gets the correct count its sidecar (models/<name>.json) records.
#   tools/ort/check_models.sh [OUT]   (default out/ort)
# Writes OUT/<name>_ort.json and OUT/<name>_ort_logits.npy; the test data go to OUT/data
# (scripts/fashion_mnist_data.sh). When OUT/<name>_torch_logits.npy exists (written by
# tools/export_onnx.py --logits OUT) the report includes the largest difference to PyTorch.
# ORT_LATENCY=1 also measures latency at batch 1 and 64 for every thread count in ORT_THREADS
# (default "1 2"), with ORT's spinning thread pool and with --no-spinning, writing
# OUT/<name>_ort_latency_t<N>.json and OUT/<name>_ort_latency_t<N>_nospin.json.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "${1:-$here/out/ort}"
out=$(cd "${1:-$here/out/ort}" && pwd)
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
  field() { node -p 'const [f, ...keys] = process.argv.slice(1);
    keys.reduce((o, k) => o[k], JSON.parse(require("fs").readFileSync(f, "utf8")))' "$@"; }
  want=$(field "$here/models/$m.json" test correct)
  got=$(field "$out/${m}_ort.json" correct)
  if [ "$got" != "$want" ]; then
    echo "$m: ONNX Runtime got $got correct, the sidecar records $want" >&2
    status=1
  fi
  if [ "${ORT_LATENCY:-0}" = 1 ]; then
    for t in ${ORT_THREADS:-1 2}; do
      for spin in "" --no-spinning; do
        "${run[@]}" --model "$here/models/$m.onnx" --threads "$t" --latency --warmup 20 \
          --repeats 200 $spin --json "$out/${m}_ort_latency_t$t${spin:+_nospin}.json"
      done
    done
  fi
done
exit $status
