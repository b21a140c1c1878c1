#!/usr/bin/env bash
# Scale benchmark (issue #14): ImageNet-size networks (torchvision ResNet-18, ResNet-50,
# MobileNetV2; random weights, BN statistics from forward passes, tools/imagenet_models.py)
# through `adaquant_ptq` end to end (import, pipeline, export) on this machine, each run under GNU
# time: wall time, CPU utilisation, peak RSS, the pipeline's step times, and the memory bound
# 2 x (weights + largest layer's calibration cache + input batch). Writes out/scale/scale.md.
#
#   SCALE_MODELS=resnet18,resnet50      which models                          [resnet18,resnet50]
#   SCALE_IMAGES=256                    calibration images (the 2x rows use twice as many)
#   SCALE_PIPELINES="light advanced"    pipelines                             [light advanced]
#   SCALE_ITERATIONS=N                  AdaQuant iterations of the advanced rows [20]
#   SCALE_DOUBLE=resnet18               models that also run with 2x the images [resnet18]
#
# Advanced at the default 1000 iterations is far beyond a 2-core machine for these models (README:
# Scale); the advanced rows run SCALE_ITERATIONS iterations, and README extrapolates from two
# iteration counts. The models and images are made once in out/scale/models (about 0.3 GB).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/scripts/deps.sh"
adaquant_install_deps
adaquant_install_debs python3-torch python3-torchvision python3-onnx python3-numpy time
models=${SCALE_MODELS:-resnet18,resnet50}
images=${SCALE_IMAGES:-256}
pipelines=${SCALE_PIPELINES:-light advanced}
iterations=${SCALE_ITERATIONS:-20}
double=${SCALE_DOUBLE:-resnet18}
out="$here/out/scale"
runs="$out/runs"
mkdir -p "$runs"

adaquant_build "$here" adaquant_ptq
ptq="$here/build/examples/adaquant_ptq/adaquant_ptq"
/usr/bin/python3 "$here/tools/imagenet_models.py" --out "$out/models" --models "$models" \
  --images "$images"

run() {  # run TAG MODEL PIPELINE CALIB_DIR
  local tag=$1 model=$2 pipeline=$3 calib=$4 n
  n=$(/usr/bin/python3 -c "import numpy as np; print(np.load('$calib/input.npy', mmap_mode='r').shape[0])")
  echo "$out/models/$model.onnx $pipeline $n $([ "$pipeline" = advanced ] && echo "$iterations" || echo -)" \
    >"$runs/$tag.args"
  echo "== $tag" >&2
  /usr/bin/time -f "%e %U %S %M" -o "$runs/$tag.time" \
    "$ptq" --model "$out/models/$model.onnx" --calib "$calib" --pipeline "$pipeline" \
    --wbits 4 --abits 4 --iterations "$iterations" --output "$runs/$tag.onnx" \
    --json "$runs/$tag.json" --quiet
  cp /proc/loadavg "$runs/$tag.load"  # the machine may be shared: the table shows the load
}

for model in ${models//,/ }; do
  for p in $pipelines; do
    run "${model}_${p}" "$model" "$p" "$out/models/calib"
    case ",$double," in *",$model,"*)
      run "${model}_${p}_2x" "$model" "$p" "$out/models/calib2x" ;;
    esac
  done
done
rm -f "$runs"/*.onnx
/usr/bin/python3 "$here/tools/scale_report.py" "$runs" | tee "$out/scale.md"
