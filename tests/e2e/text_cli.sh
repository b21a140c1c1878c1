#!/usr/bin/env bash
# adaquant_ptq on the text model (models/text_classifier.onnx, int64 token ids and mask):
#  - tools/text_data.py writes the data from Debian's fortunes package byte for byte as when the
#    model was trained (SHA-256 in models/text_classifier.json);
#  - --fp32-only on every test sequence gives the training script's FP32 correct count exactly;
#  - bad input (a token id outside the vocabulary, a mask that does not fit the ids, sequences
#    longer than the model's positions, another sample count, float ids, a missing input file; a
#    model without any quantizable layer): exit 2, one-line error naming the node or input,
#    nothing written;
#  - a naive W8A8 run quantizes the classifier and the 24 token-wise MatMuls (padding from
#    attention_mask), says what stays float (the attention products), and writes a QDQ model;
#    a --token-mask that does not fit is refused naming the input;
#  - the token embedding is quantized per row (8 bits by default, 4 in the block-wise run): the
#    run says so, the encodings list the table, and the exported model reads it through a
#    DequantizeLinear; --embedding-bits out of range is refused naming the flag;
#  - with --act-products the 8 attention products get input quantizers on both operands: the run
#    says so, the encodings list them, and ONNX Runtime agrees with the simulation; bad
#    --act-products flags and a model without such a product are refused;
#  - a weight-only W4 run with blocks of 32 writes blocked DequantizeLinear (block_size 32 in the
#    encodings);
#  - when node is available: ONNX Runtime gives the same FP32 correct count on the test set, and
#    on each exported model the simulated count within one sequence (the block-wise one also with
#    ORT's optimizations on, which fuse its DequantizeLinear + MatMul into MatMulNBits).
set -uo pipefail
ptq=$1 work=$2
here=$(cd "$(dirname "$0")/../.." && pwd)
model=$here/models/text_classifier.onnx sidecar=$here/models/text_classifier.json
rm -rf "$work" && mkdir -p "$work/out"
python3 "$here/tools/text_data.py" --vocab "$here/models/text_vocab.txt" --out "$work/data" \
  --check "$sidecar" 2>/dev/null || { echo "FAILED: tools/text_data.py"; exit 1; }
data=$work/data
source "$here/tests/e2e/common.sh"
field() { sed -n "s/^  \"$2\": \\([0-9.e+-]*\\),*\$/\\1/p" "$1" | head -1; }
expected=$(python3 -c "import json; print(json.load(open('$sidecar'))['test']['correct'])")

# FP32 on all test sequences: the training script's count.
"$ptq" --model "$model" --fp32-only --test-data "$data/test" --test-labels "$data/test_labels.npy" \
  --quiet --json "$work/fp32.json" >/dev/null || ko "--fp32-only failed"
fp=$(field "$work/fp32.json" fp32_correct)
[ "$fp" = "$expected" ] && ok || ko "FP32 correct: $fp, the training script's: $expected"

# Bad input: small .npy sets written by tools/text_data.py's writer.
bad() {  # bad NAME IDS_ROWS IDS_LEN MASK_ROWS MASK_LEN [TOKEN]: NAME/{input_ids,attention_mask}.npy
  python3 - "$here/tools" "$work/$1" "$2" "$3" "$4" "$5" "${6:-7}" <<'PY'
import os, sys
sys.path.insert(0, sys.argv[1])
import text_data as td
out, n, t, mn, mt, tok = sys.argv[2], *map(int, sys.argv[3:])
os.makedirs(out, exist_ok=True)
td.write_npy_int64(os.path.join(out, "input_ids.npy"), (n, t), ([td.CLS, tok] + [td.PAD] * (t - 2)) * n)
td.write_npy_int64(os.path.join(out, "attention_mask.npy"), (mn, mt), ([1, 1] + [0] * (mt - 2)) * mn)
td.write_npy_int64(os.path.join(out, "labels.npy"), (n,), [0] * n)
PY
}
fp32() { echo --model "$model" --fp32-only --test-data "$work/$1" --test-labels "$work/$1/labels.npy"; }
vocab=$(grep -c '' "$here/models/text_vocab.txt")
bad oov 2 64 2 64 "$vocab"
expect_error "node \"/tok/Gather\" (Gather): index $vocab is outside [-$vocab, $vocab)" $(fp32 oov)
bad short_mask 2 64 2 32
expect_error "--test-data: input 'attention_mask' has per-sample shape [32], the model input needs [64]" \
  $(fp32 short_mask)
bad long 2 80 2 80
expect_error "--test-data: input 'input_ids' has per-sample shape [80], the model input needs [64] (declared by" \
  $(fp32 long)
expect_error "--calib: input 'input_ids' has per-sample shape [80], the model input needs [64]" \
  --model "$model" --calib "$work/long" --output "$work/out/q.onnx"
bad count 2 64 3 64
expect_error "input 'attention_mask' has 3 samples, input 'input_ids' has 2" $(fp32 count)
mkdir -p "$work/no_mask" && cp "$work/oov/input_ids.npy" "$work/oov/labels.npy" "$work/no_mask/"
expect_error "has no attention_mask.npy for model input 'attention_mask'" $(fp32 no_mask)
mkdir -p "$work/float_ids" && cp "$work/oov/attention_mask.npy" "$work/oov/labels.npy" "$work/float_ids/"
zeros_f4() {  # zeros_f4 FILE D,D,...: a float32 .npy of zeros
  python3 -c "
import math, struct, sys
dims = [int(d) for d in sys.argv[2].split(',')]
h = \"{'descr': '<f4', 'fortran_order': False, 'shape': (%s,), }\" % ', '.join(map(str, dims))
h += ' ' * (63 - (10 + len(h)) % 64) + '\n'
open(sys.argv[1], 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h.encode() + bytes(4 * math.prod(dims)))" "$1" "$2"
}
zeros_f4 "$work/float_ids/input_ids.npy" 2,64
expect_error "model input 'input_ids' takes int64 token ids" $(fp32 float_ids)
# A model without any Conv, Gemm or MatMul has nothing to quantize.
zeros_f4 "$work/x4.npy" 4,4
expect_error "layernorm_slice.onnx: no quantizable layer" \
  --model "$here/tests/fuzz/onnx_seeds/layernorm_slice.onnx" --calib "$work/x4.npy" --output "$work/out/q.onnx"
# A MatMul on rank-3 activations is a token-wise layer; a --token-mask that is not an integer
# [samples, tokens] input, or no input at all, is refused, naming it.
zeros_f4 "$work/x.npy" 4,2,3
resize=$here/tests/fuzz/onnx_seeds/matmul_resize.onnx
expect_error "token mask: input 'x' is float [4, 2, 3]; a token mask must be integer [samples, 2] for layer \"MatMul1\"" \
  --model "$resize" --calib "$work/x.npy" --output "$work/out/q.onnx" --token-mask x
expect_error "token mask: the model has no input 'mask' (its inputs: 'x')" \
  --model "$resize" --calib "$work/x.npy" --output "$work/out/q.onnx" --token-mask mask
expect_error "--token-mask needs an input name or none" --model "$resize" --calib "$work/x.npy" \
  --output "$work/out/q.onnx" --token-mask ""
for b in 1 9 x; do
  expect_error "--embedding-bits: " --model "$model" --calib "$data/calib" --output "$work/out/q.onnx" \
    --embedding-bits $b
done
expect_error "--8bit-layers: no layer's node name contains 'attn/x/'" --model "$model" \
  --calib "$data/calib" --calib-count 8 --output "$work/out/q.onnx" --8bit-layers attn/q/,attn/x/

# The 24 projection and feed-forward MatMuls are token-wise layers, padding taken from
# attention_mask; only the 8 attention products (no constant weight) stay float.
out=$("$ptq" --model "$model" --calib "$data/calib" --calib-count 32 --test-data "$data/test" \
  --test-labels "$data/test_labels.npy" --test-count 200 --pipeline naive --wbits 8 --abits 8 \
  --output "$work/q.onnx" --json "$work/q.json" --logits "$work/q.logits.npy" --quiet) ||
  ko "naive W8A8 run failed: $out"
[[ "$out" == *"token-wise layers: 24, padding from input 'attention_mask'"* ]] &&
  [[ "$out" == *"stays float: 8 x MatMul: the weight is not a constant float initializer"* ]] &&
  [[ "$out" == *"embedding table 'tok.weight' [6403, 128] (/tok/Gather): 8 bits per row"* ]] &&
  [ -s "$work/q.onnx" ] && ok ||
  ko "the naive run does not quantize the token-wise MatMuls, or wrote no model: $out"

# Input quantizers on both operands of Q K^T and softmax V (4 bits: the Clip-narrowed UINT8).
out=$("$ptq" --model "$model" --calib "$data/calib" --calib-count 32 --test-data "$data/test" \
  --test-labels "$data/test_labels.npy" --test-count 200 --pipeline naive --wbits 8 --abits 8 \
  --act-products-bits 4 --output "$work/p.onnx" --encodings "$work/p.enc.json" --json "$work/p.json" \
  --logits "$work/p.logits.npy" --quiet) || ko "--act-products run failed: $out"
[[ "$out" == *"activation products: 8 MatMuls of two activations, both operands quantized at 4 bits (mse ranges)"* ]] &&
  [[ "$out" != *"stays float"* ]] && [ "$(grep -c '"a_bits": 4' "$work/p.enc.json")" = 8 ] && ok ||
  ko "the --act-products run does not quantize the 8 products: $out"
expect_error "--act-products-bits: must be in [2, 16], got 1" --model "$model" --calib "$data/calib" \
  --output "$work/out/q.onnx" --act-products-bits 1
expect_error "--act-products-range and --act-products-8bit need --act-products" --model "$model" \
  --calib "$data/calib" --output "$work/out/q.onnx" --act-products-range mse
expect_error "activation_products.eight_bit: no product's node name ends with 'attn/MatMul_7'" --model "$model" \
  --calib "$data/calib" --calib-count 8 --output "$work/out/q.onnx" --act-products --act-products-8bit attn/MatMul_7
expect_error "matmul_resize.onnx: network_options::activation_products: the model has no MatMul of two activations" \
  --model "$resize" --calib "$work/x.npy" --output "$work/out/q.onnx" --act-products

# Weight-only, 4-bit blocks of 32: blocked DequantizeLinear.
out=$("$ptq" --model "$model" --calib "$data/calib" --calib-count 32 --test-data "$data/test" \
  --test-labels "$data/test_labels.npy" --test-count 200 --pipeline light --weight-only --wbits 4 \
  --weight-granularity block:32 --all-layers --output "$work/b.onnx" --encodings "$work/b.enc.json" \
  --json "$work/b.json" --logits "$work/b.logits.npy" --embedding-bits 4 --quiet) ||
  ko "block-wise W4 run failed: $out"
grep -q '"block_size": 32' "$work/b.enc.json" && ok || ko "the encodings have no block_size 32"
grep -q '"kind": "embedding", "bits": 4' "$work/b.enc.json" && [ "$(field "$work/b.json" embedding_bytes)" = 409792 ] &&
  ok || ko "the encodings or the report lack the 4-bit embedding table"

if command -v node >/dev/null && "$here/tools/ort/install.sh" >/dev/null 2>&1; then
  node "$here/tools/ort/run.js" --model "$model" --inputs "$data/test" \
    --labels "$data/test_labels.npy" --json "$work/ort_fp32.json" >/dev/null || ko "ORT failed on the model"
  ort=$(ort_correct "$work/ort_fp32.json")
  [ "$ort" = "$expected" ] && ok || ko "ONNX Runtime FP32 correct: $ort, expected $expected"
  # The quantized model on the first 200 test sequences.
  node -e "
    const {readNpy, writeNpy} = require('$here/tools/ort/npy');
    require('fs').mkdirSync('$work/ort200', {recursive: true});
    for (const f of ['test/input_ids', 'test/attention_mask', 'test_labels']) {
      const a = readNpy('$data/' + f + '.npy'), per = a.data.length / a.shape[0];
      writeNpy('$work/ort200/' + f.replace('test/', '') + '.npy', a.dtype, [200, ...a.shape.slice(1)],
               a.data.slice(0, 200 * per));
    }" || ko "could not slice the test data for ORT"
  mkdir -p "$work/ort200/in" && mv "$work/ort200/input_ids.npy" "$work/ort200/attention_mask.npy" "$work/ort200/in/"
  node "$here/tools/ort/run.js" --model "$work/q.onnx" --inputs "$work/ort200/in" \
    --labels "$work/ort200/test_labels.npy" --level disabled --compare "$work/q.logits.npy" \
    --json "$work/ort_q.json" >/dev/null || ko "ORT failed on the quantized model"
  sim=$(field "$work/q.json" quant_correct)
  ort=$(ort_correct "$work/ort_q.json")
  echo "text W8A8 (naive, 25 layers): simulated $sim, ONNX Runtime $ort correct of 200"
  within "$sim" "$ort" 1 && ok ||
    ko "quantized: ONNX Runtime $ort vs simulated $sim"
  node "$here/tools/ort/run.js" --model "$work/p.onnx" --inputs "$work/ort200/in" \
    --labels "$work/ort200/test_labels.npy" --level disabled --compare "$work/p.logits.npy" \
    --json "$work/ort_p.json" >/dev/null || ko "ORT failed on the --act-products model"
  sim=$(field "$work/p.json" quant_correct)
  ort=$(ort_correct "$work/ort_p.json")
  echo "text W8A8 + 4-bit product operands (naive): simulated $sim, ONNX Runtime $ort correct of 200"
  within "$sim" "$ort" 1 && ok || ko "--act-products: ONNX Runtime $ort vs simulated $sim"
  sim=$(field "$work/b.json" quant_correct)
  for level in disabled all; do
    # Accuracy level 0: the fused MatMulNBits computes in float32, as the simulation does (ORT's
    # default, 4, quantizes the activations inside the kernel).
    node "$here/tools/ort/run.js" --model "$work/b.onnx" --inputs "$work/ort200/in" \
      --labels "$work/ort200/test_labels.npy" --level $level --matmulnbits-accuracy 0 \
      --json "$work/ort_b.json" >/dev/null ||
      ko "ORT ($level) failed on the block-wise model"
    ort=$(ort_correct "$work/ort_b.json")
    echo "text W4 weight-only blocks of 32, ORT level $level: simulated $sim, ONNX Runtime $ort of 200"
    within "$sim" "$ort" 1 && ok || ko "block-wise, ORT level $level: $ort vs simulated $sim"
  done
else
  echo "note: node or onnxruntime-node unavailable: ONNX Runtime checks skipped"
fi
echo "$passed passed, $fails failed"
[ "$fails" -eq 0 ]
