# Sourced by the e2e scripts of adaquant_ptq: pass/fail counting, the error contract, and reading
# ONNX Runtime's run reports. The caller sets ptq (the binary) and work (with an empty work/out).
fails=0 passed=0
ok() { passed=$((passed + 1)); }
ko() { echo "FAILED: $*"; fails=$((fails + 1)); }
# ort_correct REPORT: the "correct" count of a tools/ort/run.js --json report.
ort_correct() { sed -n 's/^ *"correct": \([0-9]*\),*$/\1/p' "$1" | head -1; }
# within A B TOL: success when |A - B| <= TOL.
within() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; exit !(d <= t && d >= -t) }'; }
# expect_error "message fragment" ARGS...: `$ptq ARGS --quiet` exits 2, says the fragment and
# writes nothing into $work/out (emptied again afterwards).
expect_error() {
  local want=$1
  shift
  local out rc
  out=$("$ptq" "$@" --quiet 2>&1)
  rc=$?
  if [ $rc -eq 2 ] && [[ "$out" == *"$want"* ]] && [ -z "$(ls "$work/out")" ]; then ok; else
    ko "'$*' exited $rc, wrote [$(ls "$work/out")], said: $out"
  fi
  rm -rf "$work/out" && mkdir -p "$work/out"
}
