# Sourced by the e2e scripts: pass/fail counting and reading ONNX Runtime's run reports.
fails=0 passed=0
ok() { passed=$((passed + 1)); }
ko() { echo "FAILED: $*"; fails=$((fails + 1)); }
# ort_correct REPORT: the "correct" count of a tools/ort/run.js --json report.
ort_correct() { sed -n 's/^ *"correct": \([0-9]*\),*$/\1/p' "$1" | head -1; }
# within A B TOL: success when |A - B| <= TOL.
within() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; exit !(d <= t && d >= -t) }'; }
