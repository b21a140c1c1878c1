#!/usr/bin/env python3
"""PyTorch's side of adaquant_bench: the same layers' FP32 forward and one AdaQuant step.

    python3 tools/torch_adaquant_step.py [--bench build/benchmarks/adaquant_bench]
                                         [--threads 1] [--repeats 30] [--warmup-s 1.0]
                                         [--json out.json]

Shapes and bit widths as adaquant_bench (benchmarks/adaquant_bench.cpp):
    conv   64 -> 64, 3x3, padding 1, 14x14, batch 32        W4A4
    linear 512 -> 512, batch 256                              W4A4
    token  256 -> 1024 over 32 x 64 = 2048 rows               W4A8
and, forward only, ResNet-18's layer shapes at batch 8 (adaquant_bench's
BM_fp32_forward_resnet18_*): 64 -> 64 3x3 at 56x56, 256 -> 256 3x3 at 14x14, and the 1x1
downsample 64 -> 128 at stride 2 from 56x56.
One AdaQuant step, as adaquant's objective computes it: the input fake-quantized per tensor
(affine, learnable scale and zero point), the weight W + V fake-quantized per output channel
(symmetric, learnable scales), straight-through rounding with LSQ-style scale gradients, the
layer's output against the FP32 output (mean squared error), backward, and Adam on V, the bias
and both scales. Debian's python3-torch (1.13, oneDNN convolution), float32, `--threads` intra-op
threads (default 1, as adaquant_bench's single-threaded objective).

With --bench, adaquant_bench runs in the same process tree right after (Google Benchmark JSON,
CPU time), and the script prints the ratios that matter: our forward and step against PyTorch's,
and each framework's step against its own forward. A speed-up below 1 means PyTorch is faster.
Times are medians of --repeats runs, CPU seconds of the measuring process (time.process_time) and
wall seconds, after a warm-up of at least --warmup-s seconds per function: oneDNN ran the
14x14 conv's forward 4-6x slower for its first hundred or so calls on this machine.

PyTorch is measured twice, each in its own process: with glibc's default allocator settings, and
with glibc told to keep freed memory (MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ at 4 GiB).
With the defaults, PyTorch's step returned its large buffers to the system and took them back
every step (about 1300 page faults and a third of its time in the kernel at the 14x14 conv), and
its step time moved between 11 and 30 ms from run to run; kept, it was 10.4-10.5 ms in every run.
The ratios are taken against the faster of the two, per figure.
"""
import os
import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def fake_quant(x, scale, zero, qmin, qmax):
    """Fake quantization with straight-through rounding; gradients reach x, scale and zero."""
    v = x / scale + zero
    r = v + (torch.round(v) - v).detach()
    q = torch.clamp(r, qmin, qmax)
    return (q - zero) * scale


def shapes():
    return {
        "conv64_3x3_14x14_b32": dict(kind="conv", x=(32, 64, 14, 14), w=(64, 64, 3, 3), wbits=4, abits=4),
        "linear512_b256": dict(kind="linear", x=(256, 512), w=(512, 512), wbits=4, abits=4),
        "token256x1024_32x64": dict(kind="linear", x=(32 * 64, 256), w=(1024, 256), wbits=4, abits=8),
        "resnet18_layer1_3x3_b8": dict(kind="conv", x=(8, 64, 56, 56), w=(64, 64, 3, 3), forward_only=True),
        "resnet18_layer3_3x3_b8": dict(kind="conv", x=(8, 256, 14, 14), w=(256, 256, 3, 3), forward_only=True),
        "resnet18_downsample_1x1_b8": dict(kind="conv", x=(8, 64, 56, 56), w=(128, 64, 1, 1), stride=2,
                                           padding=0, forward_only=True),
    }


def layer(s, x, w, b):
    if s["kind"] == "conv":
        return F.conv2d(x, w, b, stride=s.get("stride", 1), padding=s.get("padding", 1))
    return F.linear(x, w, b)


def timed(fn, repeats, warmup_s):
    start, calls = time.perf_counter(), 0
    while calls < 3 or time.perf_counter() - start < warmup_s:
        fn()
        calls += 1
    cpu, wall = [], []
    for _ in range(repeats):
        c, t = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - t)
    return statistics.median(cpu), statistics.median(wall)


def measure(name, s, repeats, warmup_s):
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(*s["x"], generator=g))
    w = 0.05 * torch.randn(*s["w"], generator=g)
    b = 0.1 * torch.randn(s["w"][0], generator=g)
    def forward():
        with torch.no_grad():
            return layer(s, x, w, b)

    fwd = timed(forward, repeats, warmup_s)
    if s.get("forward_only"):
        return {"forward_cpu_s": fwd[0], "forward_wall_s": fwd[1]}
    y = forward()
    oc = s["w"][0]
    per_channel = (oc,) + (1,) * (len(s["w"]) - 1)
    qw = 2 ** (s["wbits"] - 1) - 1
    v = torch.zeros_like(w, requires_grad=True)
    bias = b.clone().requires_grad_(True)
    ws = (w.abs().reshape(oc, -1).amax(1) / qw).reshape(per_channel).clone().requires_grad_(True)
    qa = 2 ** s["abits"] - 1
    lo, hi = float(x.min()), float(x.max())
    a_scale = torch.tensor((hi - lo) / qa, requires_grad=True)
    a_zero = torch.tensor(float(round(-lo / ((hi - lo) / qa))), requires_grad=True)
    opt = torch.optim.Adam([{"params": [v], "lr": 1e-4}, {"params": [bias], "lr": 1e-3},
                            {"params": [ws, a_scale, a_zero], "lr": 1e-5}])

    def step():
        xq = fake_quant(x, a_scale, a_zero, 0, qa)
        wq = fake_quant(w + v, ws, 0.0, -qw - 1, qw)
        loss = F.mse_loss(layer(s, xq, wq, bias), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    stp = timed(step, repeats, warmup_s)
    return {"forward_cpu_s": fwd[0], "forward_wall_s": fwd[1], "step_cpu_s": stp[0], "step_wall_s": stp[1]}


def run_bench(path, repeats):
    # Not the ImageNet-size steps (BM_adaquant_step_resnet18_*: seconds each, no PyTorch twin here).
    out = subprocess.run([path, "--benchmark_filter=adaquant_step_[clw]|fp32_forward", "--benchmark_format=json",
                          f"--benchmark_repetitions={max(3, repeats // 10)}",
                          "--benchmark_report_aggregates_only=true"],
                         check=True, capture_output=True, text=True).stdout
    unit = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    res = {}
    for bm in json.loads(out)["benchmarks"]:
        if bm.get("aggregate_name") != "median":
            continue
        name = bm["run_name"]
        res[name] = bm["cpu_time"] * unit[bm["time_unit"]]
    return res


def warn_reference_blas():
    """Debian's python3-torch calls whichever libblas.so.3 the system's alternatives select; with
    the reference BLAS (package libblas3 alone) its linear layers run about 27x slower on this
    machine, which would flatter adaquant. The tool packages include OpenBLAS
    (`source scripts/deps.sh && adaquant_install_tool_deps`)."""
    import glob
    import os
    for lib in glob.glob("/usr/lib/*/libblas.so.3"):
        real = os.path.realpath(lib)
        if not any(k in real for k in ("openblas", "blis", "mkl", "atlas")):
            print(f"torch_adaquant_step: warning: {lib} is the reference BLAS ({real}); PyTorch's "
                  "GEMMs will be slow. Install libopenblas0-pthread.", file=sys.stderr)


KEEP_MEMORY = {"MALLOC_MMAP_THRESHOLD_": str(4 << 30), "MALLOC_TRIM_THRESHOLD_": str(4 << 30)}


def torch_worker(a):
    """Measures every shape in this process and prints the figures as JSON."""
    torch.set_num_threads(a.threads)
    out = {name: measure(name, s, a.repeats, a.warmup_s) for name, s in shapes().items()}
    json.dump(out, sys.stdout)


def torch_runs(a):
    """PyTorch's figures under both allocator settings (module docstring), each in a subprocess."""
    runs = {}
    for label, extra in (("default", {}), ("kept", KEEP_MEMORY)):
        env = dict(os.environ, **extra)
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", f"--threads={a.threads}",
               f"--repeats={a.repeats}", f"--warmup-s={a.warmup_s}"]
        runs[label] = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True,
                                                text=True).stdout)
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench", help="path of adaquant_bench, run after PyTorch for the ratios")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--json")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.threads < 1 or a.repeats < 1 or not a.warmup_s >= 0:
        sys.exit("torch_adaquant_step: --threads and --repeats must be >= 1, --warmup-s >= 0")
    if a.worker:
        torch_worker(a)
        return
    warn_reference_blas()
    runs = torch_runs(a)
    report = {"torch": torch.__version__, "threads": a.threads, "allocator_runs": runs, "layers": {}}
    ours = run_bench(a.bench, a.repeats) if a.bench else {}
    ms = lambda v: f"{1e3 * v:.2f} ms"
    for name, s in shapes().items():
        # Per figure the faster of the two allocator settings (module docstring).
        r = {k: min(runs["default"][name][k], runs["kept"][name][k]) for k in runs["kept"][name]}
        if s.get("forward_only"):
            line = f"{name}: PyTorch forward {ms(r['forward_cpu_s'])}, CPU"
        else:
            line = (f"{name}: PyTorch forward {ms(r['forward_cpu_s'])}, step {ms(r['step_cpu_s'])} "
                    f"(default allocator {ms(runs['default'][name]['step_cpu_s'])}; "
                    f"step/forward {r['step_cpu_s'] / r['forward_cpu_s']:.2f}x), CPU")
        fwd_name = next((k for k in ours if k.startswith("BM_fp32_forward") and k.endswith(name)), None)
        step_name = next((k for k in ours if k.startswith("BM_adaquant_step") and k.endswith(name)), None)
        if fwd_name:
            r["adaquant_forward_cpu_s"] = ours[fwd_name]
            line += (f"; adaquant forward {ms(ours[fwd_name])}, speed-up over PyTorch "
                     f"(PyTorch time / adaquant time) {r['forward_cpu_s'] / ours[fwd_name]:.2f}x")
        if step_name and fwd_name and not s.get("forward_only"):
            r["adaquant_step_cpu_s"] = ours[step_name]
            line += (f"; adaquant step {ms(ours[step_name])} (step/forward "
                     f"{ours[step_name] / ours[fwd_name]:.2f}x), speed-up over PyTorch "
                     f"{r['step_cpu_s'] / ours[step_name]:.2f}x")
        print(line)
        report["layers"][name] = r
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
