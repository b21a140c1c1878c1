#!/usr/bin/python3
"""Export the committed Fashion-MNIST reference models to ONNX.

Run with Debian's interpreter (python3-torch 1.13, python3-onnx 1.12, numpy):

    /usr/bin/python3 tools/export_onnx.py --models models --out models

For each model the script loads models/<name>.safetensors into the model class of
tools/train_reference.py, puts it in eval mode and writes models/<name>.onnx:
opset 13, input "input" [N, 1, 28, 28] float32 (already normalised exactly as the C++ runtime
feeds it: ((pixel / 255) - mean) / std), output "logits" [N, 10], N dynamic, BatchNormalization
kept as its own node after every Conv (no Conv-BN folding, no constant folding). The file is
byte-for-byte reproducible: no doc strings, fixed producer fields.

Checks before writing: the graph holds the expected Conv -> BatchNormalization -> Relu/Clip
chains, and the PyTorch model reproduces the sidecar's test count and reference logits.
--logits DIR also writes DIR/<name>_torch_logits.npy (PyTorch's logits on the 10k test images),
for comparing an ONNX runtime's output (tools/ort/run.js --compare).
Tooling only: nothing in the C++ build or tests runs it.
"""
import argparse
import io
import json
import os
import struct
import sys

import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_reference as ref  # noqa: E402  (the model classes and data loading)

OPSET = 13
PRODUCER = ("adaquant tools/export_onnx.py", f"torch {torch.__version__}")
ARCH_OF = {a["name"]: arch for arch, a in ref.ARCHS.items()}


def read_safetensors(path):
    """F32 tensors of a safetensors file (the format write_safetensors in train_reference makes)."""
    with open(path, "rb") as f:
        data = f.read()
    n, = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise ValueError(f"{path}: {name}: dtype {t['dtype']}, expected F32")
        b, e = t["data_offsets"]
        out[name] = torch.from_numpy(
            np.frombuffer(body[b:e], dtype="<f4").reshape(t["shape"]).copy())
    return out


def load_model(models_dir, name):
    with open(os.path.join(models_dir, f"{name}.json")) as f:
        sidecar = json.load(f)
    model = ref.build(ARCH_OF[name])
    state = read_safetensors(os.path.join(models_dir, f"{name}.safetensors"))
    # num_batches_tracked is not stored (unused in eval mode): strict on everything else.
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"{name}: missing {missing}, unexpected {unexpected}")
    model.eval()
    return model, sidecar


def relu6_as_clip(g, x):
    """ReLU6 as one Clip(x, 0, 6), the usual ONNX form (torch 1.13 writes Relu, Clip of Casts)."""
    lo = g.op("Constant", value_t=torch.tensor(0.0, dtype=torch.float32))
    hi = g.op("Constant", value_t=torch.tensor(6.0, dtype=torch.float32))
    return g.op("Clip", x, lo, hi)


def export_bytes(model):
    torch.onnx.register_custom_op_symbolic("aten::relu6", relu6_as_clip, OPSET)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 1, 28, 28), buf, export_params=True,
                          opset_version=OPSET, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.PRESERVE,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    return reproducible(buf.getvalue(), PRODUCER)


def reproducible(onnx_bytes, producer):
    """The exported model with fixed producer fields and no doc strings, checked by onnx."""
    m = onnx.load_from_string(onnx_bytes)
    m.producer_name, m.producer_version = producer
    m.doc_string = ""
    m.graph.doc_string = ""
    for node in m.graph.node:
        node.doc_string = ""
    onnx.checker.check_model(m, full_check=True)
    return m


def bn_chains(m):
    """(convs, convs followed by BatchNormalization, BNs followed by Relu/Clip/Add)."""
    consumers = {}
    for node in m.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    conv_bn = [n for n in convs
               if [c.op_type for c in consumers.get(n.output[0], [])] == ["BatchNormalization"]]
    bn_next = {}
    for n in m.graph.node:
        if n.op_type == "BatchNormalization":
            for c in consumers.get(n.output[0], []):
                bn_next[c.op_type] = bn_next.get(c.op_type, 0) + 1
    return len(convs), len(conv_bn), bn_next


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", default="models", help="directory of <name>.{json,safetensors}")
    p.add_argument("--out", default="models", help="where <name>.onnx goes")
    p.add_argument("--names", nargs="+", default=sorted(ARCH_OF))
    p.add_argument("--logits", help="also write <name>_torch_logits.npy (10k test images) here")
    args = p.parse_args()
    torch.set_num_threads(1)

    x_u8, y_u8 = ref.load_split("test")
    x, y = ref.normalise(x_u8), torch.from_numpy(y_u8.astype(np.int64))
    for name in args.names:
        model, sidecar = load_model(args.models, name)
        correct, ce, logits = ref.evaluate(model, x, y)
        want = sidecar["test"]["correct"]
        r = sidecar["reference_logits"]
        ref_err = float((logits[r["images"]] - torch.tensor(r["logits"])).abs().max())
        print(f"{name}: PyTorch {correct}/10000 correct (sidecar {want}), "
              f"reference logits within {ref_err:.2e}")
        if correct != want or ref_err > 1e-4:
            raise SystemExit(f"{name}: the loaded weights do not reproduce the sidecar")

        m = export_bytes(model)
        convs, conv_bn, bn_next = bn_chains(m)
        bns = sum(1 for n in m.graph.node if n.op_type == "BatchNormalization")
        print(f"{name}: {len(m.graph.node)} nodes, {convs} Conv, "
              f"{conv_bn} Conv->BatchNormalization, {bns} BatchNormalization feeding {bn_next}")
        if not (convs > 0 and conv_bn == convs == bns):
            raise SystemExit(f"{name}: expected every Conv followed by its own BatchNormalization")
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, f"{name}.onnx")
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        print(f"{name}: wrote {path} ({os.path.getsize(path)} bytes)")
        if args.logits:
            os.makedirs(args.logits, exist_ok=True)
            lp = os.path.join(args.logits, f"{name}_torch_logits.npy")
            np.save(lp, logits.numpy().astype("<f4"), allow_pickle=False)
            print(f"{name}: wrote {lp}")


if __name__ == "__main__":
    main()
