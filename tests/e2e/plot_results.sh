#!/usr/bin/env bash
# tools/plot_results.py: one panel per model, one marker per run (hollow for ablations and bit
# allocation), a line per pipeline through at least two uniform runs, the same bytes for the same
# input; a directory without run reports and a malformed report are errors naming them.
set -uo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd) work=$1
source "$here/tests/e2e/common.sh"
rm -rf "$work" && mkdir -p "$work/runs" "$work/empty" "$work/bad"
run() {  # run FILE MODEL PIPELINE SIZE TOP1 [MAX_SIZE_RATIO]
  printf '{"model": "%s", "pipeline": "%s", "size_ratio": %s, "fp32_top1": 0.93, "quant_top1": %s, "max_size_ratio": %s}\n' \
    "$2" "$3" "$4" "$5" "${6:-null}" > "$work/runs/$1.json"
}
run m1_naive_w8a8 m1 naive 0.25 0.929
run m1_naive_w4a4 m1 naive 0.125 0.90
run m1_advanced_w4a4 m1 advanced 0.125 0.925
run m1_advanced_w2a2 m1 advanced 0.0625 0.91
run m1_advanced_w4a4_adaquant m1 advanced 0.125 0.92
run m1_advanced_size13 m1 advanced 0.13 0.927 0.13
run m2_light_w4a4 m2 light 0.126 0.91
echo '{"not": "a run"}' > "$work/runs/other.json"
# adaquant_ptq's report: model path and settings nested; a weight-only run is hollow, not joined.
ptq_run() {  # ptq_run FILE PIPELINE SIZE TOP1 WEIGHT_ONLY
  printf '{"tool": "adaquant_ptq", "model": {"path": "/x/m3.onnx", "sha256": "0"}, "settings": {"pipeline": "%s", "max_size_ratio": null, "weight_only": %s}, "size_ratio": %s, "fp32_top1": 0.93, "quant_top1": %s}\n' \
    "$2" "$5" "$3" "$4" > "$work/runs/$1.json"
}
ptq_run m3_light_w8a8 light 0.25 0.93 false
ptq_run m3_light_w4a4 light 0.125 0.92 false
ptq_run m3_light_w4a16 light 0.125 0.925 true
py=(python3 "$here/tools/plot_results.py")
"${py[@]}" "$work/a.svg" "$work/runs" >/dev/null && ok || ko "plot failed"
"${py[@]}" "$work/b.svg" "$work/runs" >/dev/null && cmp -s "$work/a.svg" "$work/b.svg" && ok ||
  ko "two runs on the same input differ"
count() { grep -o "$1" "$work/a.svg" | wc -l; }
[ "$(grep -c 'font-weight="bold">m[123] (FP32 93.00%)' "$work/a.svg")" = 3 ] && ok || ko "not one panel per model"
# Markers: 2 naive circles, 4 light squares, 4 advanced triangles (+ one of each in the legend).
[ "$(count '<circle')" = 3 ] && [ "$(count 'stroke="#1f77b4" stroke-width')" = 5 ] &&
  [ "$(count '<polygon')" = 5 ] && ok ||
  ko "markers: $(count '<circle') circles, $(count 'stroke="#1f77b4" stroke-width') squares, $(count '<polygon') triangles"
[ "$(count 'fill="none" stroke="#d62728" stroke-width')" = 2 ] && ok || ko "ablation and allocation not hollow"
[ "$(count 'fill="none" stroke="#1f77b4" stroke-width')" = 1 ] && ok || ko "weight-only run not hollow"
# Lines: m1 naive and advanced (2 uniform runs each), m3 light (2 quantized-activation runs; the
# weight-only run is not joined); m2 light has one run, no line.
[ "$(count '<polyline')" = 3 ] && ok || ko "$(count '<polyline') lines, expected 3"
grep -q "points=\"[0-9., ]*\" fill=\"none\" stroke=\"#1f77b4\"/>" "$work/a.svg" && ok || ko "no light line"
out=$("${py[@]}" "$work/c.svg" "$work/empty" 2>&1) && ko "no error without runs" ||
  { [[ "$out" == *"no run reports"*"$work/empty"* ]] && ok || ko "unclear error: $out"; }
echo '{"model": ' > "$work/bad/broken.json"
out=$("${py[@]}" "$work/c.svg" "$work/bad" 2>&1) && ko "no error on a malformed report" ||
  { [[ "$out" == *"$work/bad/broken.json"* ]] && ok || ko "error does not name the file: $out"; }
[ ! -e "$work/c.svg" ] && ok || ko "an SVG was written despite the error"
echo "$passed passed, $fails failed"
[ "$fails" -eq 0 ]
