#!/usr/bin/python3
"""The text classification task of models/text_classifier.onnx: corpus, split, tokenizer, .npy.

Standard library only (any python3), so scripts/text_data.sh needs nothing but the corpus:

    python3 tools/text_data.py --vocab models/text_vocab.txt --out OUT

writes OUT/calib/{input_ids,attention_mask}.npy, OUT/test/{input_ids,attention_mask}.npy and
OUT/test_labels.npy, all int64, byte for byte what numpy.save writes. tools/train_text.py imports
this module for the same corpus, split and tokenizer, and builds the vocabulary file.

Task: which file of Debian's `fortunes` package a fortune comes from, among CATEGORIES (the label
is the index in that list). A fortune is the text between "%" lines, stripped; duplicates within
a category are kept once, and texts that occur in two categories are dropped.

Split: by SHA-256 of the fortune's UTF-8 text, so it depends neither on file order nor on any
random generator. A fortune whose hash, as a 256-bit integer, is 0 mod TEST_MOD is a test item,
every other one a training item. The calibration set is the CALIB training items with the
smallest hashes; test items are ordered by hash.

Tokenizer: control characters (backspace overstrikes, bells) removed, lower case, then tokens are
maximal runs of [a-z0-9] and every other single non-space character (punctuation, non-ASCII
letters). Vocabulary (models/text_vocab.txt, UTF-8, line k = id k): [PAD] = 0, [UNK] = 1,
[CLS] = 2, then every token seen at least MIN_COUNT times in the training items, most frequent
first, ties by code point order. A sequence is [CLS] followed by the first SEQ_LEN - 1 tokens
(unknown ones as [UNK]), padded with [PAD] to SEQ_LEN; attention_mask is 1 on [CLS] and the
tokens, 0 on padding.
"""
import argparse
import hashlib
import json
import os
import re
import struct
import sys
import unicodedata

FORTUNES_DIR = "/usr/share/games/fortunes"
CATEGORIES = ["computers", "definitions", "people", "politics", "science", "songs-poems", "work",
              "men-women", "zippy", "platitudes"]
SEQ_LEN = 64
TEST_MOD = 5
CALIB = 1000
MIN_COUNT = 3
SPECIALS = ["[PAD]", "[UNK]", "[CLS]"]
PAD, UNK, CLS = 0, 1, 2

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")


# ---------------------------------------------------------------------------------------- corpus
def fortunes_of(path):
    """The fortunes of one file, stripped, empty ones dropped, each kept once (file order)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    seen, out = set(), []
    for s in re.split(r"^%\n", text, flags=re.M):
        s = s.strip()
        if s and s not in seen:
            seen.add(s)
            out.append(s)
    return out


def text_hash(s):
    return int.from_bytes(hashlib.sha256(s.encode("utf-8")).digest(), "big")


def load_corpus(fortunes_dir=FORTUNES_DIR, categories=CATEGORIES):
    """(train, test): lists of (hash, text, label), each sorted by hash."""
    per = [fortunes_of(os.path.join(fortunes_dir, c)) for c in categories]
    owners = {}
    for label, items in enumerate(per):
        for s in items:
            owners.setdefault(s, set()).add(label)
    train, test = [], []
    for label, items in enumerate(per):
        for s in items:
            if len(owners[s]) > 1:
                continue
            h = text_hash(s)
            (test if h % TEST_MOD == 0 else train).append((h, s, label))
    return sorted(train), sorted(test)


# ---------------------------------------------------------------------------------------- tokenizer
def tokenize(text):
    text = "".join(c for c in text if unicodedata.category(c) != "Cc" or c in "\t\n")
    return _TOKEN.findall(text.lower())


def build_vocab(texts, min_count=MIN_COUNT):
    counts = {}
    for t in texts:
        for w in tokenize(t):
            counts[w] = counts.get(w, 0) + 1
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return SPECIALS + words


def write_vocab(path, vocab):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(vocab) + "\n")


def read_vocab(path):
    with open(path, encoding="utf-8", newline="\n") as f:
        vocab = f.read().split("\n")
    if vocab[-1] != "" or vocab[:len(SPECIALS)] != SPECIALS or len(set(vocab[:-1])) != len(vocab) - 1:
        raise SystemExit(f"{path}: not a vocabulary file (one distinct token per line, "
                         f"starting with {' '.join(SPECIALS)})")
    return vocab[:-1]


def encode(texts, vocab, seq_len=SEQ_LEN):
    """(input_ids, attention_mask): flat lists of len(texts) * seq_len ints."""
    index = {w: k for k, w in enumerate(vocab)}
    ids, mask = [], []
    for t in texts:
        row = [CLS] + [index.get(w, UNK) for w in tokenize(t)][:seq_len - 1]
        ids += row + [PAD] * (seq_len - len(row))
        mask += [1] * len(row) + [0] * (seq_len - len(row))
    return ids, mask


# ---------------------------------------------------------------------------------------- .npy
def npy_int64_bytes(shape, values):
    """What numpy.save writes for an int64 array (format 1.0, header padded to 64 bytes)."""
    dims = ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "")
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (%s), }" % dims
    pad = 64 - (10 + len(header) + 1) % 64
    header = header + " " * (pad % 64) + "\n"
    return (b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") +
            struct.pack("<%dq" % len(values), *values))


def write_npy_int64(path, shape, values):
    with open(path, "wb") as f:
        f.write(npy_int64_bytes(shape, values))


def write_split(out_dir, texts, vocab):
    os.makedirs(out_dir, exist_ok=True)
    ids, mask = encode(texts, vocab)
    write_npy_int64(os.path.join(out_dir, "input_ids.npy"), (len(texts), SEQ_LEN), ids)
    write_npy_int64(os.path.join(out_dir, "attention_mask.npy"), (len(texts), SEQ_LEN), mask)


DATA_FILES = ["calib/input_ids.npy", "calib/attention_mask.npy", "test/input_ids.npy",
              "test/attention_mask.npy", "test_labels.npy"]


def write_data(out, vocab, fortunes_dir=FORTUNES_DIR):
    """Every file of DATA_FILES under out; returns (calibration items, test items)."""
    train, test = load_corpus(fortunes_dir)
    calib = train[:CALIB]
    write_split(os.path.join(out, "calib"), [s for _, s, _ in calib], vocab)
    write_split(os.path.join(out, "test"), [s for _, s, _ in test], vocab)
    labels = [y for _, _, y in test]
    write_npy_int64(os.path.join(out, "test_labels.npy"), (len(labels),), labels)
    return calib, test


def sha256_of(out):
    digests = {}
    for rel in DATA_FILES:
        with open(os.path.join(out, rel), "rb") as f:
            digests[rel] = hashlib.sha256(f.read()).hexdigest()
    return digests


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--fortunes", default=FORTUNES_DIR, help="the fortunes package's data folder")
    p.add_argument("--vocab", default="models/text_vocab.txt")
    p.add_argument("--out", required=True)
    p.add_argument("--check", help="the model's JSON sidecar: the files must have its data_sha256")
    args = p.parse_args()
    vocab = read_vocab(args.vocab)
    calib, test = write_data(args.out, vocab, args.fortunes)
    print(f"{args.out}: {len(calib)} calibration and {len(test)} test sequences of {SEQ_LEN} tokens "
          f"({len(CATEGORIES)} classes, vocabulary of {len(vocab)})", file=sys.stderr)
    if args.check:
        with open(args.check, encoding="utf-8") as f:
            want = json.load(f)["data_sha256"]
        got = sha256_of(args.out)
        bad = [rel for rel in DATA_FILES if got[rel] != want.get(rel)]
        if bad:
            raise SystemExit(f"{args.out}: {', '.join(bad)} differ from the data the model was "
                             f"trained and evaluated with ({args.check}: data_sha256); is "
                             f"{args.fortunes} from another version of the fortunes package?")


if __name__ == "__main__":
    main()
