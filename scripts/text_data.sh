#!/usr/bin/env bash
# Writes the text model's data as NumPy files into OUT (default out/text): calib/ (1000 sequences)
# and test/ (every test fortune), each with input_ids.npy and attention_mask.npy (int64 [N, 64]),
# and test_labels.npy (int64), from Debian's fortunes package (installed when missing) with the
# committed vocabulary models/text_vocab.txt; see tools/text_data.py for the task, split and
# tokenizer. Byte-for-byte reproducible: the files are checked against the SHA-256 sums recorded
# in models/text_classifier.json when the model was trained.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$here/out/text}
source "$here/scripts/deps.sh"
adaquant_install_text_deps
python3 "$here/tools/text_data.py" --vocab "$here/models/text_vocab.txt" --out "$out" \
  --check "$here/models/text_classifier.json"
