#!/usr/bin/env python3
"""Top-1 against weight size: one SVG panel per model from fashion_mnist_ptq / adaquant_ptq JSON.

    python3 tools/plot_results.py OUT.svg DIR [DIR ...]

Reads every *.json run report in the directories (the demo's out/demo, a benchmark script's
folder) that has "model", "pipeline", "size_ratio", "fp32_top1" and "quant_top1" (adaquant_ptq's
reports hold the model as {"path": ...} and the pipeline, "max_size_ratio" and "weight_only"
under "settings": the panel is named after the model file). Per model: the
FP32 top-1 as a dotted line; each run a marker, its shape and colour by pipeline (naive, light,
advanced); runs at uniform bit-widths joined by a solid line per pipeline, bit-allocation runs
("max_size_ratio" set) by a dashed one, in order of size; ablations (runs without BN tuning or
bias correction, "_ranges"/"_bn"/"_adaquant" in the file name) and weight-only runs as hollow
markers, not joined.
Only the standard library: the SVG is written by hand, byte for byte the same for the same
input.
"""
import glob
import json
import os
import sys

STYLE = {"naive": ("#888888", "circle"), "light": ("#1f77b4", "square"),
         "advanced": ("#d62728", "triangle")}
ABLATIONS = ("_ranges", "_bn", "_adaquant")
W, H, PAD_L, PAD_R, PAD_T, PAD_B = 420, 320, 56, 14, 30, 44


def load(dirs):
    runs = []
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*.json"))):
            try:
                j = json.load(open(path))
            except (OSError, ValueError) as e:
                sys.exit(f"plot_results: {path}: {e}")
            if not isinstance(j, dict):
                continue
            settings = j.get("settings")
            if isinstance(settings, dict):  # adaquant_ptq
                for k in ("pipeline", "max_size_ratio", "weight_only"):
                    j.setdefault(k, settings.get(k))
            if isinstance(j.get("model"), dict) and isinstance(j["model"].get("path"), str):
                j["model"] = os.path.splitext(os.path.basename(j["model"]["path"]))[0]
            if not all(k in j for k in ("model", "pipeline", "size_ratio", "fp32_top1", "quant_top1")):
                continue
            name = os.path.basename(path)[:-5]
            j["ablation"] = any(a in name for a in ABLATIONS) or bool(j.get("weight_only"))
            j["allocated"] = j.get("max_size_ratio") is not None
            runs.append(j)
    if not runs:
        sys.exit("plot_results: no run reports (JSON with model, pipeline, size_ratio, top-1) in " + " ".join(dirs))
    return runs


def marker(shape, x, y, colour, hollow, r=4.5):
    fill = "none" if hollow else colour
    common = f'fill="{fill}" stroke="{colour}" stroke-width="1.3"'
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" {common}/>'
    if shape == "square":
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" {common}/>'
    pts = f"{x:.1f},{y - r - 1:.1f} {x - r - 1:.1f},{y + r:.1f} {x + r + 1:.1f},{y + r:.1f}"
    return f'<polygon points="{pts}" {common}/>'


def nice(lo, hi, ticks=6):
    """Tick step and range covering [lo, hi] with at most `ticks` round steps."""
    span = hi - lo
    for step in (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 25, 50):
        if span / step <= ticks - 1:
            break
    first = step * int(lo / step - (lo < 0))
    while first + step <= lo:
        first += step
    last = first
    while last < hi:
        last += step
    return step, first, last


def panel(model, runs, ox):
    fp32 = 100 * runs[0]["fp32_top1"]
    xs = [100 * r["size_ratio"] for r in runs]
    ys = [100 * r["quant_top1"] for r in runs] + [fp32]
    xstep, x0, x1 = nice(0.0, max(xs) * 1.05)
    ystep, y0, y1 = nice(min(ys) - 0.2, max(ys) + 0.2)
    px = lambda v: ox + PAD_L + (v - x0) / (x1 - x0) * (W - PAD_L - PAD_R)
    py = lambda v: PAD_T + (y1 - v) / (y1 - y0) * (H - PAD_T - PAD_B)
    out = [f'<text x="{ox + W / 2:.1f}" y="18" text-anchor="middle" font-weight="bold">{model} (FP32 {fp32:.2f}%)</text>',
           f'<rect x="{ox + PAD_L}" y="{PAD_T}" width="{W - PAD_L - PAD_R}" height="{H - PAD_T - PAD_B}" fill="none" stroke="#000"/>']
    for i in range(round((x1 - x0) / xstep) + 1):  # ticks
        xv = x0 + i * xstep
        out.append(f'<text x="{px(xv):.1f}" y="{H - PAD_B + 14}" text-anchor="middle">{xv:g}</text>')
    for i in range(round((y1 - y0) / ystep) + 1):
        yv = y0 + i * ystep
        out.append(f'<line x1="{ox + PAD_L}" y1="{py(yv):.1f}" x2="{ox + W - PAD_R}" y2="{py(yv):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{ox + PAD_L - 4}" y="{py(yv) + 4:.1f}" text-anchor="end">{yv:.4g}</text>')
    out.append(f'<text x="{ox + (W + PAD_L) / 2:.1f}" y="{H - 6}" text-anchor="middle">weights, % of FP32</text>')
    out.append(f'<text transform="translate({ox + 14},{(H - PAD_B + PAD_T) / 2:.1f}) rotate(-90)" text-anchor="middle">test top-1 %</text>')
    out.append(f'<line x1="{px(x0):.1f}" y1="{py(fp32):.1f}" x2="{px(x1):.1f}" y2="{py(fp32):.1f}" stroke="#000" stroke-dasharray="2,3"/>')
    for pipeline, (colour, shape) in STYLE.items():
        mine = [r for r in runs if r["pipeline"] == pipeline]
        for allocated, dash in ((False, ""), (True, ' stroke-dasharray="6,3"')):
            line = sorted((100 * r["size_ratio"], 100 * r["quant_top1"]) for r in mine
                          if not r["ablation"] and r["allocated"] == allocated)
            if len(line) > 1:
                pts = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in line)
                out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}"{dash}/>')
        for r in sorted(mine, key=lambda r: (r["size_ratio"], r["quant_top1"])):
            out.append(marker(shape, px(100 * r["size_ratio"]), py(100 * r["quant_top1"]), colour,
                              r["ablation"] or r["allocated"]))
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    runs = load(sys.argv[2:])
    models = sorted({r["model"] for r in runs})
    body = []
    for i, m in enumerate(models):
        body += panel(m, [r for r in runs if r["model"] == m], i * W)
    legend_y = H + 14
    x = 10
    for pipeline, (colour, shape) in STYLE.items():
        body.append(marker(shape, x, legend_y - 4, colour, False))
        body.append(f'<text x="{x + 10}" y="{legend_y}">{pipeline}</text>')
        x += 90
    body.append(f'<text x="{x}" y="{legend_y}">solid: uniform bits; dashed, hollow: bit allocation; '
                'hollow, not joined: ablations, weight-only; dotted: FP32</text>')
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W * len(models)}" height="{H + 24}" '
           f'font-family="sans-serif" font-size="11">\n<rect width="100%" height="100%" fill="#fff"/>\n'
           + "\n".join(body) + "\n</svg>\n")
    with open(sys.argv[1], "w") as f:
        f.write(svg)
    print(f"plot_results: {len(runs)} runs of {len(models)} models -> {sys.argv[1]}")


if __name__ == "__main__":
    main()
