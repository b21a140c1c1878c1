#!/usr/bin/python3
"""Train adaquant's text reference model, a small transformer encoder, and export it to ONNX.

Run with Debian's interpreter (python3-torch 1.13, python3-onnx 1.12, numpy) and Debian's
`fortunes` package installed:

    /usr/bin/python3 tools/train_text.py --out models

Writes models/text_vocab.txt (the tokenizer's vocabulary, from the training split),
models/text_classifier.onnx and models/text_classifier.json (architecture, tokenizer, split,
recipe, FP32 test accuracy, the misclassified test items, reference logits, the SHA-256 of the
files scripts/text_data.sh writes). Corpus, split and tokenizer: tools/text_data.py.

Model: token embedding + learned positions, --layers pre-LayerNorm encoder blocks (multi-head
self-attention written out: Q, K, V and output projections as nn.Linear, Q K^T and softmax V as
plain matmuls, padding masked by adding -10000 to the scores of [PAD] keys; a GELU feed-forward
block), a final LayerNorm, and a linear classifier on the [CLS] position. Training batches are
cut to their longest sequence (padding is masked, so the logits do not change; checked at start).
Everything is seeded and runs on CPU with a fixed thread count: a rerun on the same machine and
BLAS repeats every epoch's figures exactly; the ONNX file has no doc strings and fixed producer
fields. The recipe and the BLAS used are recorded in the sidecar.

ONNX: opset 17 (LayerNormalization), constant-folded, inputs int64 input_ids [N, 64] and int64
attention_mask [N, 64] (1 = token, 0 = padding), output float32 logits [N, classes]; N dynamic.
Tooling only: nothing in the C++ build or tests runs it.
"""
import argparse
import io
import json
import math
import os
import sys
import tempfile
import time

# The BLAS torch calls (OpenBLAS when installed) takes its thread count from the environment,
# read when it loads: set it from --threads before importing torch.
if "--threads" in sys.argv[:-1]:
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[sys.argv.index("--threads") + 1]
else:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_onnx  # noqa: E402  (reproducible ONNX bytes)
import text_data as td  # noqa: E402  (corpus, split, tokenizer, .npy writer)

OPSET = 17
NAME = "text_classifier"
PRODUCER = ("adaquant tools/train_text.py", f"torch {torch.__version__}")
N_REF_LOGITS = 16
MASK_BIAS = -10000.0


# ---------------------------------------------------------------------------------------- model
class SelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def forward(self, x, bias, t):
        # t: the sequence length as a Python int, so the export has constant Reshape shapes.
        def heads(y):  # [N, T, D] -> [N, H, T, Dh]
            return y.reshape(-1, t, self.heads, self.dh).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        scores = torch.matmul(q, k.transpose(2, 3)) * (1.0 / math.sqrt(self.dh)) + bias
        a = torch.matmul(F.softmax(scores, dim=-1), v)  # [N, H, T, Dh]
        return self.out(a.transpose(1, 2).reshape(-1, t, self.heads * self.dh))


class EncoderBlock(nn.Module):
    def __init__(self, d, heads, ffn, dropout):
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, heads)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ffn)
        self.fc2 = nn.Linear(ffn, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, bias, t):
        x = x + self.drop(self.attn(self.ln1(x), bias, t))
        return x + self.drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class TextClassifier(nn.Module):
    def __init__(self, vocab, classes, seq_len, d, heads, layers, ffn, dropout):
        super().__init__()
        self.tok = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(seq_len, d))
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(EncoderBlock(d, heads, ffn, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.fc = nn.Linear(d, classes)

    def forward(self, input_ids, attention_mask, t=None):
        """Logits of [N, t] sequences; t (a Python int, default seq_len) lets training run on
        batches cut to their longest sequence: with padding masked out, the logits are the same."""
        t = self.pos.shape[0] if t is None else t
        # [N, T] -> [N, 1, 1, T]: 0 on tokens, MASK_BIAS on padding, added to every query's scores.
        bias = ((1.0 - attention_mask.to(torch.float32)) * MASK_BIAS).unsqueeze(1).unsqueeze(2)
        x = self.drop(self.tok(input_ids) + self.pos[:t])
        for b in self.blocks:
            x = b(x, bias, t)
        return self.fc(self.ln(x)[:, 0])


def build(cfg):
    return TextClassifier(cfg["vocab"], cfg["classes"], cfg["seq_len"], cfg["d_model"],
                          cfg["heads"], cfg["layers"], cfg["ffn"], cfg["dropout"])


def count_macs(cfg):
    """Multiply-adds of one sequence, dense layers and attention matmuls (not masked out)."""
    t, d, f, l = cfg["seq_len"], cfg["d_model"], cfg["ffn"], cfg["layers"]
    per_block = t * (4 * d * d + 2 * d * f) + 2 * t * t * d
    return l * per_block + d * cfg["classes"]


# ---------------------------------------------------------------------------------------- training
def tensors(items, vocab):
    ids, mask = td.encode([s for _, s, _ in items], vocab)
    n = len(items)
    return (torch.tensor(ids, dtype=torch.int64).reshape(n, td.SEQ_LEN),
            torch.tensor(mask, dtype=torch.int64).reshape(n, td.SEQ_LEN),
            torch.tensor([y for _, _, y in items], dtype=torch.int64))


def length_batches(lengths, batch, gen, pool=16):
    """Index batches of similar lengths: a random permutation cut into pools of `pool` batches,
    each pool sorted by length and cut into batches, the batches in random order."""
    perm = torch.randperm(lengths.shape[0], generator=gen)
    out = []
    for p in range(0, perm.shape[0], batch * pool):
        chunk = perm[p:p + batch * pool]
        chunk = chunk[torch.sort(lengths[chunk], stable=True).indices]
        out += [chunk[i:i + batch] for i in range(0, chunk.shape[0], batch)]
    return [out[i] for i in torch.randperm(len(out), generator=gen).tolist()]


def evaluate(model, ids, mask, y, batch=500):
    model.eval()
    logits = []
    with torch.no_grad():
        for i in range(0, ids.shape[0], batch):
            logits.append(model(ids[i:i + batch], mask[i:i + batch]))
    logits = torch.cat(logits)
    correct = int((logits.argmax(1) == y).sum())
    return correct, float(F.cross_entropy(logits, y)), logits


def export_bytes(model):
    model.eval()
    ids = torch.full((2, td.SEQ_LEN), td.PAD, dtype=torch.int64)
    ids[:, 0] = td.CLS
    mask = (ids != td.PAD).to(torch.int64)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask), buf, export_params=True, opset_version=OPSET,
                          do_constant_folding=True, training=torch.onnx.TrainingMode.EVAL,
                          input_names=["input_ids", "attention_mask"], output_names=["logits"],
                          dynamic_axes={"input_ids": {0: "N"}, "attention_mask": {0: "N"},
                                        "logits": {0: "N"}})
    return export_onnx.reproducible(buf.getvalue(), PRODUCER)


def blas_library():
    """The BLAS library torch calls (Debian's torch uses the one update-alternatives selects)."""
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.split()[-1]}
    return sorted(libs)


def data_hashes(vocab_path, fortunes_dir):
    """SHA-256 of every file tools/text_data.py writes (scripts/text_data.sh checks them)."""
    with tempfile.TemporaryDirectory() as out:
        td.write_data(out, td.read_vocab(vocab_path), fortunes_dir)
        return td.sha256_of(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--fortunes", default=td.FORTUNES_DIR)
    p.add_argument("--out", default="models")
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--wd", type=float, default=0.05)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--ffn", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--token-dropout", type=float, default=0.1,
                   help="probability of replacing a training token by [UNK]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch and BLAS threads (1: fastest on a busy 2-core machine)")
    p.add_argument("--no-write", action="store_true", help="train and report, write nothing")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)

    train, test = td.load_corpus(args.fortunes)
    vocab = td.build_vocab([s for _, s, _ in train])
    xtr, mtr, ytr = tensors(train, vocab)
    xte, mte, yte = tensors(test, vocab)
    counts = [int((ytr == c).sum()) for c in range(len(td.CATEGORIES))]
    print(f"{len(train)} training, {len(test)} test fortunes, vocabulary {len(vocab)}; "
          f"training items per class {counts}", flush=True)

    cfg = {"vocab": len(vocab), "classes": len(td.CATEGORIES), "seq_len": td.SEQ_LEN,
           "d_model": args.d_model, "heads": args.heads, "layers": args.layers, "ffn": args.ffn,
           "dropout": args.dropout}
    model = build(cfg)
    n_params = sum(p_.numel() for p_ in model.parameters())
    print(f"{n_params} parameters, {count_macs(cfg)} MACs/sequence", flush=True)

    steps_per_epoch = math.ceil(xtr.shape[0] / args.batch)
    decay, no_decay = [], []
    for n_, p_ in model.named_parameters():
        (decay if p_.ndim == 2 and n_ != "pos" else no_decay).append(p_)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.1)
    lengths = mtr.sum(1)
    model.eval()
    with torch.no_grad():  # cutting the padding does not change the logits
        t = int(lengths[:8].max())
        cut = float((model(xtr[:8], mtr[:8]) - model(xtr[:8, :t], mtr[:8, :t], t)).abs().max())
    if cut > 1e-5:
        raise SystemExit(f"logits of sequences cut to {t} tokens differ by {cut}")
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        loss_sum, te = 0.0, time.time()
        for idx in length_batches(lengths, args.batch, gen):
            t = int(lengths[idx].max())
            ids = xtr[idx, :t]
            if args.token_dropout > 0:  # words (not [CLS] or padding) replaced by [UNK]
                drop = (torch.rand(ids.shape, generator=gen) < args.token_dropout) & (ids > td.CLS)
                ids = torch.where(drop, torch.full_like(ids, td.UNK), ids)
            loss = F.cross_entropy(model(ids, mtr[idx, :t], t), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += float(loss)
        correct, ce, _ = evaluate(model, xte, mte, yte)
        print(f"epoch {epoch + 1}/{args.epochs}: train loss {loss_sum / steps_per_epoch:.4f}, "
              f"test {100 * correct / len(test):.2f}% ce {ce:.4f}, {time.time() - te:.0f}s",
              flush=True)
    train_seconds = time.time() - t0

    correct, ce, logits = evaluate(model, xte, mte, yte)
    wrong = (logits.argmax(1) != yte).nonzero().flatten().tolist()
    top2 = logits.topk(2, dim=1).values
    min_margin = float((top2[:, 0] - top2[:, 1]).min())
    print(f"{NAME}: FP32 test accuracy {100 * correct / len(test):.2f}% ({correct}/{len(test)}), "
          f"mean CE {ce:.4f}, min top-2 margin {min_margin:.2e}, trained in {train_seconds:.0f}s",
          flush=True)
    if args.no_write:
        return

    m = export_bytes(model)
    ops = sorted({n.op_type for n in m.graph.node})
    print(f"{NAME}: {len(m.graph.node)} ONNX nodes, ops {ops}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    vocab_path = os.path.join(args.out, "text_vocab.txt")
    td.write_vocab(vocab_path, vocab)
    onnx_path = os.path.join(args.out, f"{NAME}.onnx")
    with open(onnx_path, "wb") as f:
        f.write(m.SerializeToString())

    # Whether the file computes what PyTorch computed: the reference logits and the test count
    # (tests/onnx/test_reference_models.cpp, tests/e2e/text_cli.sh: adaquant and ONNX Runtime).
    sidecar = {
        "name": NAME,
        "task": {"corpus": "Debian package fortunes, " + args.fortunes,
                 "label": "index of the fortune's file in categories",
                 "categories": td.CATEGORIES,
                 "split": f"test: SHA-256 of the UTF-8 text = 0 mod {td.TEST_MOD}; calibration: "
                          f"the {td.CALIB} training items with the smallest hashes",
                 "train_items": len(train), "test_items": len(test), "calib_items": td.CALIB,
                 "train_items_per_class": counts},
        "tokenizer": {"vocab_file": "text_vocab.txt", "vocab_size": len(vocab),
                      "specials": td.SPECIALS, "min_count": td.MIN_COUNT,
                      "seq_len": td.SEQ_LEN,
                      "rule": "drop control characters, lower case, tokens = runs of [a-z0-9] "
                              "and single other non-space characters; [CLS] + first 63 tokens, "
                              "[PAD] to 64"},
        "inputs": {"input_ids": "int64 [N, 64], ids into text_vocab.txt",
                   "attention_mask": "int64 [N, 64], 1 = token ([CLS] included), 0 = padding"},
        "config": cfg,
        "parameters": n_params,
        "macs_per_sequence": count_macs(cfg),
        "onnx": {"opset": OPSET, "ops": ops, "nodes": len(m.graph.node)},
        "test": {"items": len(test), "correct": correct, "accuracy": correct / len(test),
                 "mean_cross_entropy": ce, "min_top2_margin": min_margin, "misclassified": wrong},
        "reference_logits": {"items": list(range(N_REF_LOGITS)),
                             "input_ids": xte[:N_REF_LOGITS].tolist(),
                             "attention_mask": mte[:N_REF_LOGITS].tolist(),
                             "labels": yte[:N_REF_LOGITS].tolist(),
                             "logits": logits[:N_REF_LOGITS].tolist()},
        "data_sha256": data_hashes(vocab_path, args.fortunes),
        "training": {"command": "/usr/bin/python3 " + " ".join(sys.argv),
                     "epochs": args.epochs, "batch": args.batch, "optimizer": "AdamW",
                     "lr_schedule": f"OneCycle max_lr={args.lr} pct_start=0.1",
                     "weight_decay": args.wd, "dropout": args.dropout,
                     "token_dropout": args.token_dropout, "seed": args.seed,
                     "threads": args.threads, "torch": torch.__version__,
                     "blas": blas_library(),
                     "seconds": round(train_seconds, 1)},
    }
    with open(os.path.join(args.out, f"{NAME}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
        f.write("\n")
    print(f"{NAME}: wrote {vocab_path}, {onnx_path} ({os.path.getsize(onnx_path)} bytes), "
          f"{NAME}.json", flush=True)


if __name__ == "__main__":
    main()
