#!/usr/bin/python3
"""ImageNet-size models and calibration data for the scale benchmark (scripts/scale_bench.sh).

Run with Debian's interpreter (python3-torch 1.13, python3-torchvision 0.14, python3-onnx):

    /usr/bin/python3 tools/imagenet_models.py --out DIR [--models resnet18,resnet50,mobilenet_v2]
                                              [--images 256] [--seed 0]

No pretrained weights can be downloaded, so accuracy is not the point: cost and memory are. For
each model the script
  * builds torchvision's architecture with random initialisation (torch.manual_seed(seed));
  * sets the batch-norm statistics by forward passes in training mode (cumulative averages,
    momentum None) over `--bn-batches` batches of the same image generator, so every layer's
    activations have the ranges of a trained network's (unit-variance pre-activations, no dead or
    exploding channels);
  * exports DIR/<model>.onnx: opset 13, input "input" [N, 3, 224, 224] float32, output "logits"
    [N, 1000], N dynamic, BatchNormalization kept as its own node (adaquant folds it), no
    doc strings.
It also writes DIR/calib/input.npy: `--images` images [N, 3, 224, 224] float32 from a
fixed-seed generator (smooth random fields: a 7x7 Gaussian draw per channel upsampled bilinearly,
plus fine noise, normalised per channel like ImageNet inputs), and DIR/calib2x/input.npy with
twice as many (the first half identical), for the benchmark's memory-vs-samples rows.

Everything is reproducible from the seed: the same command writes the same bytes.
Tooling only: nothing in the C++ build or tests runs it.
"""
import argparse
import io
import os

import numpy as np
import onnx
import torch
import torchvision

OPSET = 13
PRODUCER = ("adaquant tools/imagenet_models.py", f"torch {torch.__version__}")
BUILDERS = {
    "resnet18": torchvision.models.resnet18,
    "resnet50": torchvision.models.resnet50,
    "mobilenet_v2": torchvision.models.mobilenet_v2,
}


def images(n, seed):
    """n smooth random images [n, 3, 224, 224] float32, ImageNet-normalised statistics."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 7, 7, generator=g)
    x = torch.nn.functional.interpolate(coarse, size=(224, 224), mode="bilinear",
                                        align_corners=False)
    x = x + 0.25 * torch.randn(n, 3, 224, 224, generator=g)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    return x.contiguous()


def build(name, seed, bn_batches, batch):
    torch.manual_seed(seed)
    model = BUILDERS[name](weights=None)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
    model.train()
    with torch.no_grad():
        for b in range(bn_batches):
            model(images(batch, seed + 1000 + b))
    model.eval()
    return model


def export(model, path):
    buf = io.BytesIO()
    # PRESERVE on an eval-mode model keeps BatchNormalization nodes (EVAL folds them into Conv).
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), buf, opset_version=OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
                          training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    m = onnx.load_from_string(buf.getvalue())
    m.producer_name, m.producer_version = PRODUCER
    m.doc_string = ""
    for n in m.graph.node:
        n.doc_string = ""
    onnx.checker.check_model(m)
    with open(path, "wb") as f:
        f.write(m.SerializeToString())


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--models", default="resnet18,resnet50,mobilenet_v2")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bn-batches", type=int, default=4)
    p.add_argument("--bn-batch", type=int, default=16)
    a = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    os.makedirs(a.out, exist_ok=True)
    for name in a.models.split(","):
        if name not in BUILDERS:
            raise SystemExit(f"--models: unknown model '{name}' (known: {', '.join(BUILDERS)})")
        path = os.path.join(a.out, f"{name}.onnx")
        if not os.path.exists(path):
            export(build(name, a.seed, a.bn_batches, a.bn_batch), path)
        print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB")
    for sub, n in (("calib", a.images), ("calib2x", 2 * a.images)):
        d = os.path.join(a.out, sub)
        path = os.path.join(d, "input.npy")
        if os.path.exists(path):
            continue
        os.makedirs(d, exist_ok=True)
        # The 2x set's first half is the 1x set: chunks of 64 images, each from seed + chunk.
        chunks = [images(min(64, n - s), a.seed + s // 64).numpy() for s in range(0, n, 64)]
        np.save(path, np.concatenate(chunks).astype(np.float32))
        print(f"{path}: {n} images")


if __name__ == "__main__":
    main()
