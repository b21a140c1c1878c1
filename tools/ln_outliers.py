#!/usr/bin/python3
"""Outlier channels of the post-LayerNorm activations of an ONNX transformer (docs/text.md).

Writes a copy of the model whose only output is every LayerNormalization output concatenated
along the feature axis, runs it with ONNX Runtime (tools/ort/run.js --outputs), and prints, per
LayerNormalization output and over the real tokens only (attention_mask != 0):
  - per channel c: M_c = max |x[:, c]| over the tokens;
  - max/median: max_c M_c / median_c M_c (how far the largest channel sticks out; LLM.int8()
    calls channels above 6 "outliers" at scale);
  - channels whose M_c exceeds 6 x median_c M_c;
  - the 99.99th percentile of |x| over all values, against the largest |x| (what a per-tensor
    min/max range spends on the tail);
  - which layers read it (their node names).

  /usr/bin/python3 tools/ln_outliers.py --model models/text_classifier.onnx --data OUT/calib \
      --work /tmp/ln

Needs python3-onnx and python3-numpy (scripts/deps.sh, ADAQUANT_TOOL_DEBS) and node with
tools/ort installed.
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import helper


def ln_model(model, out_path):
    """The model with one output: the LayerNormalization outputs concatenated on the last axis."""
    g = model.graph
    lns = [n for n in g.node if n.op_type == "LayerNormalization"]
    if not lns:
        sys.exit(f"{out_path}: the model has no LayerNormalization")
    readers = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.name)
    names = [n.output[0] for n in lns]
    cat = helper.make_node("Concat", names, ["ln_outputs"], name="ln_outputs_concat", axis=-1)
    g.node.append(cat)
    del g.output[:]
    g.output.append(helper.make_tensor_value_info("ln_outputs", onnx.TensorProto.FLOAT, None))
    onnx.save(model, out_path)
    return [(n.name, [r for r in readers.get(n.output[0], [])]) for n in lns]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="folder with input_ids.npy, attention_mask.npy")
    ap.add_argument("--work", required=True, help="folder for the modified model and its output")
    ap.add_argument("--count", type=int, default=0, help="first N sequences (0: all)")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    model = onnx.load(a.model)
    width = None
    lns = ln_model(model, os.path.join(a.work, "ln.onnx"))
    data = a.data
    mask = np.load(os.path.join(a.data, "attention_mask.npy"))
    if a.count:
        data = os.path.join(a.work, "inputs")
        os.makedirs(data, exist_ok=True)
        for f in ("input_ids.npy", "attention_mask.npy"):
            np.save(os.path.join(data, f), np.load(os.path.join(a.data, f))[: a.count])
        mask = mask[: a.count]
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(a.work, "ln_outputs.npy")
    subprocess.run(["node", os.path.join(here, "ort", "run.js"), "--model",
                    os.path.join(a.work, "ln.onnx"), "--inputs", data, "--outputs", out,
                    "--json", os.path.join(a.work, "run.json")], check=True,
                   stdout=subprocess.DEVNULL)
    y = np.load(out)
    width = y.shape[-1] // len(lns)
    tokens = y[mask != 0]  # [real tokens, len(lns) * width]
    print(f"{tokens.shape[0]} real tokens of {mask.size} ({mask.shape[0]} sequences)")
    print("| LayerNorm | read by | max/median channel | channels > 6x median | largest channels "
          "(max abs) | p99.99 abs / max abs |")
    print("|---|---|---|---|---|---|")
    for k, (name, readers) in enumerate(lns):
        x = tokens[:, k * width:(k + 1) * width]
        m = np.abs(x).max(axis=0)
        med = np.median(m)
        top = np.argsort(-m)[:3]
        p = np.percentile(np.abs(x), 99.99)
        short = ", ".join(sorted({r.split("/")[-2] for r in readers if "/" in r}))
        print(f"| {name} | {short} | {m.max() / med:.1f} | {(m > 6 * med).sum()} | "
              + ", ".join(f"{c} ({m[c]:.1f})" for c in top)
              + f" | {p:.2f} / {np.abs(x).max():.2f} |")


if __name__ == "__main__":
    main()
