#!/usr/bin/python3
"""Compare quantized logits with FP32 ones (the "changed" and "KL" columns of docs/text.md).

  /usr/bin/python3 tools/logits_kl.py --fp32 fp32.logits.npy --labels OUT/test_labels.npy \
      q1.logits.npy [q2.logits.npy ...]

fp32.logits.npy: ONNX Runtime's FP32 logits (node tools/ort/run.js --outputs). For each file:
correct count, top-1, "changed" (samples whose argmax differs from FP32's) and the mean
KL(p_fp32 || p_q) of the softmax outputs, in float64. Needs python3-numpy.
"""
import argparse

import numpy as np


def log_softmax(z):
    z = z.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fp32", required=True)
    ap.add_argument("--labels", required=True)
    ap.add_argument("logits", nargs="+")
    a = ap.parse_args()
    fp = np.load(a.fp32)
    labels = np.load(a.labels)
    lp = log_softmax(fp)
    for f in a.logits:
        q = np.load(f)
        if q.shape != fp.shape:
            raise SystemExit(f"{f}: shape {q.shape}, the FP32 logits are {fp.shape}")
        lq = log_softmax(q)
        kl = (np.exp(lp) * (lp - lq)).sum(axis=1).mean()
        correct = int((q.argmax(axis=1) == labels).sum())
        changed = int((q.argmax(axis=1) != fp.argmax(axis=1)).sum())
        print(f"{f}: {correct} correct ({100 * correct / len(labels):.2f}%), changed {changed}, "
              f"KL {kl:.5f}")


if __name__ == "__main__":
    main()
