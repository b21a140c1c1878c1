#!/usr/bin/python3
"""Train adaquant's two Fashion-MNIST reference models and export them for the C++ runtime.

Run with Debian's interpreter (python3-torch 1.13, numpy):

    /usr/bin/python3 tools/train_reference.py --arch resnet --epochs 15 --out models
    /usr/bin/python3 tools/train_reference.py --arch mobilenetv2 --epochs 15 --out models

Each run writes models/<name>.safetensors (F32 weights and BN statistics, BN kept unfolded) and
models/<name>.json (architecture, input normalisation, training recipe, FP32 test accuracy, the
number of correct test images and the logits of the first test images). The C++ runtime
(examples/runtime) builds the same graph and must reproduce those logits and that count.

Parameter names follow the C++ graph: "<layer>.weight", "<layer>.bias", "<bn>.running_mean", ...
The script is tooling only: nothing in the C++ build or tests runs it.
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = "/usr/share/datasets/fashion-mnist"
# Fashion-MNIST training-set statistics of x/255; C++ applies exactly ((x / 255) - MEAN) / STD in
# float32, in that order.
MEAN = 0.2860
STD = 0.3530
N_REF_LOGITS = 16


# ---------------------------------------------------------------------------------------- data
def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: bad magic {magic:#x}")
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {np.prod(dims)} values, got {arr.size}")
    return arr.reshape(dims)


def load_split(split):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(DATA_DIR, f"{prefix}-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(DATA_DIR, f"{prefix}-labels-idx1-ubyte.gz"))
    return x, y


def normalise(x_uint8):
    x = torch.from_numpy(x_uint8.astype(np.float32)).unsqueeze(1)
    x = x / 255.0
    return (x - MEAN) / STD


# ---------------------------------------------------------------------------------------- models
# Every conv has bias=False and is followed by a BatchNorm2d; only the classifier has a bias.
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)
            self.proj_bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.proj is None else self.proj_bn(self.proj(x))
        return F.relu(y + s)


class ResNetFM(nn.Module):
    """3x3 stem (stride 1), three stages of two basic blocks, each stage downsampling by 2."""

    def __init__(self, widths=(16, 32, 64), blocks=2, stem=16, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, stem, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        layers = []
        cin = stem
        for s, w in enumerate(widths):
            for b in range(blocks):
                layers.append(BasicBlock(cin, w, 2 if b == 0 else 1))
                cin = w
        self.blocks = nn.ModuleList(layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        for b in self.blocks:
            x = b(x)
        x = x.mean(dim=(2, 3))
        return self.fc(x)


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.expand = None
        if expand != 1:
            self.expand = nn.Conv2d(cin, hidden, 1, 1, 0, bias=False)
            self.expand_bn = nn.BatchNorm2d(hidden)
        self.dw = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.dw_bn = nn.BatchNorm2d(hidden)
        self.project = nn.Conv2d(hidden, cout, 1, 1, 0, bias=False)
        self.project_bn = nn.BatchNorm2d(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = x
        if self.expand is not None:
            y = F.relu6(self.expand_bn(self.expand(y)))
        y = F.relu6(self.dw_bn(self.dw(y)))
        y = self.project_bn(self.project(y))
        return x + y if self.residual else y


class MobileNetV2FM(nn.Module):
    """3x3 stem, inverted residual blocks (t, c, n, s), 1x1 head conv, global pool, linear."""

    def __init__(self, stem=16, cfg=((1, 16, 1, 2), (4, 24, 2, 1), (4, 32, 2, 2), (4, 64, 2, 2)),
                 head=128, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, stem, 3, 1, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(stem)
        layers = []
        cin = stem
        for t, c, n, s in cfg:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.blocks = nn.ModuleList(layers)
        self.head = nn.Conv2d(cin, head, 1, 1, 0, bias=False)
        self.head_bn = nn.BatchNorm2d(head)
        self.fc = nn.Linear(head, classes)

    def forward(self, x):
        x = F.relu6(self.stem_bn(self.stem(x)))
        for b in self.blocks:
            x = b(x)
        x = F.relu6(self.head_bn(self.head(x)))
        x = x.mean(dim=(2, 3))
        return self.fc(x)


ARCHS = {
    "resnet": dict(name="resnet_fm", ctor=ResNetFM,
                   config=dict(stem=16, widths=[16, 32, 64], blocks=2, classes=10)),
    "mobilenetv2": dict(name="mobilenetv2_fm", ctor=MobileNetV2FM,
                        config=dict(stem=16, cfg=[[1, 16, 1, 2], [4, 24, 2, 1], [4, 32, 2, 2],
                                                  [4, 64, 2, 2]], head=128, classes=10)),
}


def build(arch):
    a = ARCHS[arch]
    c = dict(a["config"])
    if arch == "resnet":
        return a["ctor"](widths=tuple(c["widths"]), blocks=c["blocks"], stem=c["stem"],
                         classes=c["classes"])
    return a["ctor"](stem=c["stem"], cfg=tuple(tuple(r) for r in c["cfg"]), head=c["head"],
                     classes=c["classes"])


def count_macs(model):
    macs = 0
    hooks = []

    def conv_hook(m, inp, out):
        nonlocal macs
        macs += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * \
            m.kernel_size[1]

    def fc_hook(m, inp, out):
        nonlocal macs
        macs += m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(fc_hook))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    return macs


# ---------------------------------------------------------------------------------------- training
def augment(x, gen, pad=2):
    """Random crop with zero padding (in normalised units: the background value) + h-flip."""
    n = x.shape[0]
    bg = (0.0 - MEAN) / STD
    xp = F.pad(x, (pad, pad, pad, pad), value=bg)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        c = xp[i, :, dy[i]:dy[i] + 28, dx[i]:dx[i] + 28]
        out[i] = torch.flip(c, dims=(2,)) if flip[i] else c
    return out


def evaluate(model, x, y, batch=1000):
    model.eval()
    correct = 0
    ce = 0.0
    logits_all = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            lo = model(x[i:i + batch])
            logits_all.append(lo)
            correct += int((lo.argmax(1) == y[i:i + batch]).sum())
            ce += float(F.cross_entropy(lo, y[i:i + batch], reduction="sum"))
    return correct, ce / x.shape[0], torch.cat(logits_all)


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    offset = 0
    blobs = []
    for name, t in tensors.items():
        a = np.ascontiguousarray(t.detach().cpu().numpy().astype("<f4"))
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # align the data section to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arch", choices=sorted(ARCHS), required=True)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="models")
    p.add_argument("--channels-last", action="store_true",
                   help="train in channels_last (about 2x faster with mkldnn on CPU)")
    p.add_argument("--time-epoch", action="store_true", help="time 50 training steps and exit")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    xtr_u8, ytr_u8 = load_split("train")
    xte_u8, yte_u8 = load_split("test")
    xtr, ytr = normalise(xtr_u8), torch.from_numpy(ytr_u8.astype(np.int64))
    xte, yte = normalise(xte_u8), torch.from_numpy(yte_u8.astype(np.int64))

    model = build(args.arch)
    n_params = sum(p.numel() for p in model.parameters())
    macs = count_macs(model)
    print(f"{args.arch}: {n_params} parameters, {macs} MACs/image", flush=True)

    steps_per_epoch = math.ceil(xtr.shape[0] / args.batch)
    decay, no_decay = [], []
    for n_, p_ in model.named_parameters():
        (no_decay if p_.ndim == 1 else decay).append(p_)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": args.wd},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=args.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.2)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(xtr.shape[0], generator=gen)
        loss_sum = 0.0
        te = time.time()
        for step in range(steps_per_epoch):
            idx = perm[step * args.batch:(step + 1) * args.batch]
            xb = augment(xtr[idx], gen).contiguous(memory_format=fmt)
            loss = F.cross_entropy(model(xb), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss)
            if args.time_epoch and step == 49:
                dt = time.time() - te
                print(f"50 steps: {dt:.1f}s -> epoch ~{dt / 50 * steps_per_epoch:.0f}s")
                return
        correct, ce, _ = evaluate(model, xte, yte)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {loss_sum / steps_per_epoch:.4f}, "
              f"test acc {correct / 100:.2f}% ce {ce:.4f}, {time.time() - te:.0f}s", flush=True)
    train_seconds = time.time() - t0

    model = model.to(memory_format=torch.contiguous_format)  # final numbers in plain NCHW
    model.eval()
    correct, ce, logits = evaluate(model, xte, yte)
    top2 = logits.topk(2, dim=1).values
    min_margin = float((top2[:, 0] - top2[:, 1]).min())
    wrong = (logits.argmax(1) != yte).nonzero().flatten().tolist()

    name = ARCHS[args.arch]["name"]
    os.makedirs(args.out, exist_ok=True)
    tensors = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    write_safetensors(os.path.join(args.out, f"{name}.safetensors"), tensors,
                      {"format": "pt", "arch": name})
    sidecar = {
        "name": name,
        "arch": args.arch,
        "config": ARCHS[args.arch]["config"],
        "input": {"shape": [1, 28, 28], "normalisation": "x = ((pixel / 255) - mean) / std, float32",
                  "mean": MEAN, "std": STD},
        "bn_eps": 1e-5,
        "parameters": n_params,
        "macs_per_image": macs,
        "test": {"images": int(xte.shape[0]), "correct": correct, "accuracy": correct / xte.shape[0],
                 "mean_cross_entropy": ce, "min_top2_margin": min_margin,
                 "misclassified": wrong},
        "reference_logits": {"images": list(range(N_REF_LOGITS)),
                             "labels": yte[:N_REF_LOGITS].tolist(),
                             "logits": logits[:N_REF_LOGITS].tolist()},
        "training": {"command": "/usr/bin/python3 " + " ".join(sys.argv),
                     "epochs": args.epochs, "batch": args.batch, "optimizer": "SGD nesterov 0.9",
                     "lr_schedule": f"OneCycle max_lr={args.lr} pct_start=0.2",
                     "weight_decay": args.wd, "augmentation": "random crop pad 2 + h-flip",
                     "seed": args.seed, "threads": args.threads, "torch": torch.__version__,
                     "seconds": round(train_seconds, 1)},
    }
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
    print(f"{name}: test accuracy {correct / 100:.2f}% ({correct}/10000), mean CE {ce:.4f}, "
          f"min top-2 margin {min_margin:.2e}, trained in {train_seconds:.0f}s", flush=True)


if __name__ == "__main__":
    main()
