#!/usr/bin/python3
"""The scale benchmark's table (scripts/scale_bench.sh writes the runs; this reads them).

    /usr/bin/python3 tools/scale_report.py RUNS_DIR > table.md

RUNS_DIR holds, per run <tag>: <tag>.time (GNU time -f "%e %U %S %M": wall seconds, user and
system CPU seconds, peak resident KiB), <tag>.json (adaquant_ptq --json) and <tag>.args (model
path, pipeline, calibration samples, AdaQuant iterations). For each run the table gives wall time,
CPU utilisation ((user + sys) / wall / cores), peak RSS, each pipeline step's seconds (and its CPU
utilisation, from the step's cpu_seconds, in parentheses), the load average when the run ended
(<tag>.load, the first field of /proc/loadavg, when present), and the
memory bound of issue #14: 2 x (model weights + the largest layer's calibration inputs and outputs
+ the calibration input batch), all float32, read off the ONNX model with shape inference.
"""
import json
import os
import sys

import onnx
from onnx import numpy_helper, shape_inference


def per_sample_elems(vi):
    dims = vi.type.tensor_type.shape.dim
    n = 1
    for d in dims[1:]:
        if not d.HasField("dim_value"):
            return None
        n *= d.dim_value
    return n


def memory_terms(model_path):
    """(weight bytes, largest layer's (input + output) floats per sample, input floats/sample)."""
    m = onnx.load(model_path)
    weights = sum(numpy_helper.to_array(t).nbytes for t in m.graph.initializer)
    g = shape_inference.infer_shapes(m).graph
    shapes = {vi.name: vi for vi in list(g.value_info) + list(g.input) + list(g.output)}
    largest = 0
    for n in g.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        i, o = shapes.get(n.input[0]), shapes.get(n.output[0])
        if i is None or o is None:
            continue
        a, b = per_sample_elems(i), per_sample_elems(o)
        if a is not None and b is not None:
            largest = max(largest, a + b)
    inputs = per_sample_elems(g.input[0])
    return weights, largest, inputs


def step_text(s, cores):
    """'name seconds (CPU % of cores)'; the CPU share only where the run reports cpu_seconds."""
    text = f"{s['name']} {s['seconds']:.0f}"
    if "cpu_seconds" in s and s["seconds"] > 0:
        text += f" ({100.0 * s['cpu_seconds'] / s['seconds'] / cores:.0f}%)"
    return text


def main():
    runs = sys.argv[1]
    cores = os.cpu_count() or 1
    tags = sorted(f[:-5] for f in os.listdir(runs) if f.endswith(".time"))
    terms = {}
    print("| run | images | iterations | wall s | CPU s | CPU % of cores | load | peak RSS MB | "
          "bound MB | steps: s (CPU % of cores) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for tag in tags:
        with open(os.path.join(runs, tag + ".args")) as f:
            model, pipeline, images, iterations = f.read().split()
        with open(os.path.join(runs, tag + ".time")) as f:
            fields = f.read().split()
        if len(fields) < 4:  # still running, or killed before GNU time wrote its line
            continue
        wall, user, sys_, rss_kib = (float(x) for x in fields[-4:])
        steps = ""
        jpath = os.path.join(runs, tag + ".json")
        if os.path.exists(jpath):
            with open(jpath) as f:
                j = json.load(f)
            steps = ", ".join(step_text(s, cores) for s in j.get("steps", []))
        if model not in terms:
            terms[model] = memory_terms(model)
        w, layer, inp = terms[model]
        bound = 2 * (w + 4 * int(images) * (layer + inp))
        cpu = 100.0 * (user + sys_) / wall / cores
        load = "-"
        lpath = os.path.join(runs, tag + ".load")
        if os.path.exists(lpath):
            with open(lpath) as f:
                load = f.read().split()[0]
        print(f"| {tag} | {images} | {iterations} | {wall:.0f} | {user + sys_:.0f} | {cpu:.0f} | "
              f"{load} | {rss_kib / 1024:.0f} | {bound / 2**20:.0f} | {steps} |")


if __name__ == "__main__":
    main()
