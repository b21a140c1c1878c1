#!/usr/bin/env python3
"""Generates golden vectors for adaquant's rounding policies (tests/quant/golden/golden_vectors.inc).

- pytorch:   torch.ops.aten.fake_quantize_per_{tensor,channel}_affine_cachemask from Debian's
             python3-torch (1.13): output and straight-through mask, computed by PyTorch itself.
- onnx:      ONNX QuantizeLinear/DequantizeLinear as the spec defines them, in numpy float32:
             q = saturate(rint(x / scale) + zero_point); y = (q - zero_point) * scale.
- half_away: ncnn-style: q = round_half_away(x * float32(1/scale)) + zero_point, the rounding done
             exactly in float64 on the float32 product.
Inputs include exact ties, values one ulp either side of ties, saturation, zeros and denormals.
+-inf and NaN are left out: PyTorch 1.13 mishandles +inf (casts nearbyint(inf) to int64); adaquant's
tests assert its own documented saturation for them. Run: /usr/bin/python3 tools/gen_golden_vectors.py
"""
import os
import struct

import numpy as np
import torch

rng = np.random.default_rng(20261123)
f32 = np.float32


def bits(a):
    return [struct.unpack("<I", struct.pack("<f", float(v)))[0] for v in np.asarray(a, dtype=f32).ravel()]


def probe_values(scale, qmin, qmax, zp, n_random=200):
    s = f32(scale)
    ks = np.arange(qmin - zp - 3, qmax - zp + 3, dtype=np.float64)
    ties = (ks + 0.5).astype(f32) * s  # real ties of the ideal grid, rounded to float32
    up = np.nextafter(ties, f32(np.inf))
    down = np.nextafter(ties, f32(-np.inf))
    big = np.array([1e6, -1e6, 3.4e38, -3.4e38, 1e-40, -1e-40, 0.0, -0.0], dtype=f32)
    span = f32((qmax - qmin) * scale)
    rnd = (rng.standard_normal(n_random) * span / 3).astype(f32)
    return np.concatenate([ties, up, down, big, rnd]).astype(f32)


def to_grid(policy, x, s):
    with np.errstate(over="ignore"):
        if policy == "onnx":
            return np.rint((x / s).astype(f32)).astype(f32)
        inv = (f32(1.0) / s).astype(f32)
        t = (x * inv).astype(f32)
    if policy == "half_away":
        t64 = t.astype(np.float64)
        return (np.sign(t64) * np.floor(np.abs(t64) + 0.5)).astype(f32)
    raise ValueError(policy)


def numpy_fake_quant(policy, x, scale, zp, qmin, qmax, axis):
    x = x.astype(f32)
    if axis is None:
        s = f32(scale)
        z = f32(zp)
    else:
        shape = [1] * x.ndim
        shape[axis] = -1
        s = np.asarray(scale, dtype=f32).reshape(shape)
        z = np.asarray(zp, dtype=f32).reshape(shape)
    g = (to_grid(policy, x, s) + z).astype(f32)
    mask = (g >= qmin) & (g <= qmax)
    q = np.clip(g, qmin, qmax).astype(f32)
    return ((q - z) * s).astype(f32), mask


def torch_safe(x, scale, axis):
    """Replaces inputs whose x * (1/scale) overflows float32: PyTorch then casts inf to int64
    (undefined behaviour; on x86 it lands on qmin). adaquant saturates those, tested separately."""
    x = x.astype(f32).copy()
    if axis is None:
        inv = f32(f32(1.0) / f32(scale))
    else:
        shape = [1] * x.ndim
        shape[axis] = -1
        inv = (f32(1.0) / np.asarray(scale, dtype=f32)).reshape(shape)
    with np.errstate(over="ignore"):
        bad = np.isinf((x * inv).astype(f32))
    x[bad] = np.sign(x[bad]) * f32(1e6)
    return x


def torch_fake_quant(x, scale, zp, qmin, qmax, axis):
    t = torch.from_numpy(x.astype(f32).copy())
    if axis is None:
        y, m = torch.ops.aten.fake_quantize_per_tensor_affine_cachemask(t, float(f32(scale)), int(zp), qmin, qmax)
    else:
        y, m = torch.ops.aten.fake_quantize_per_channel_affine_cachemask(
            t, torch.tensor(np.asarray(scale, dtype=f32)), torch.tensor(np.asarray(zp, dtype=np.int32)), axis, qmin, qmax)
    return y.numpy().astype(f32), m.numpy()


def grid(bits_, signed, narrow=False):
    if signed:
        return -(1 << (bits_ - 1)) + (1 if narrow else 0), (1 << (bits_ - 1)) - 1
    return 0, (1 << bits_) - 1 - (1 if narrow else 0)


PER_TENSOR = [  # name, bits, signed, narrow, scale, zero_point
    ("s8_sym_0p1", 8, True, False, 0.1, 0),
    ("u8_affine", 8, False, False, 0.0235, 113),
    ("s8_narrow", 8, True, True, 0.037, 0),
    ("s4_third", 4, True, False, 1.0 / 3.0, 0),
    ("u4_affine", 4, False, False, 0.37, 7),
    ("s4_affine_odd_zp", 4, True, False, 0.21, -3),
    ("s2", 2, True, False, 0.5, 0),
    ("s3_affine", 3, True, False, 0.7, 1),
    ("u16_affine", 16, False, False, 1e-3, 30001),
    ("s16", 16, True, False, 3.3e-4, 0),
]

cases = []
for policy in ("pytorch", "onnx", "half_away"):
    for name, b, sg, nr, scale, zp in PER_TENSOR:
        qmin, qmax = grid(b, sg, nr)
        x = probe_values(scale, qmin, qmax, zp) if b <= 8 else probe_values(scale, -300, 300, 0)
        if policy == "pytorch":
            x = torch_safe(x, scale, None)
            y, m = torch_fake_quant(x, scale, zp, qmin, qmax, None)
        else:
            y, m = numpy_fake_quant(policy, x, scale, zp, qmin, qmax, None)
        cases.append(dict(name=f"{policy}_{name}", policy=policy, axis=-1, dims=[x.size], qmin=qmin, qmax=qmax,
                          scale=[scale], zp=[zp], x=x, y=y, mask=m))

    for b, sg in ((4, True), (8, False), (3, True)):
        qmin, qmax = grid(b, sg)
        for axis, dims in ((0, (6, 5, 34)), (1, (3, 7, 19)), (2, (4, 9, 21)), (1, (40, 20))):
            c = dims[axis]
            scale = (rng.uniform(0.01, 0.5, c)).astype(f32)
            zp = rng.integers(qmin, qmax + 1, c).astype(np.int32) if not sg else rng.integers(-2, 3, c).astype(np.int32)
            n = int(np.prod(dims))
            base = probe_values(float(scale.mean()), qmin, qmax, 0, n_random=n)
            x = np.resize(base, n).reshape(dims)
            # every channel also gets ties of its own grid
            moved = np.moveaxis(x, axis, 0).copy()
            for ci in range(c):
                ks = np.arange(qmin - zp[ci] - 2, qmax - zp[ci] + 2, dtype=np.float64)
                t = (ks + 0.5).astype(f32) * scale[ci]
                row = moved[ci].reshape(-1)
                k = min(row.size, t.size)
                row[:k] = t[:k]
                moved[ci] = row.reshape(moved[ci].shape)
            x = np.moveaxis(moved, 0, axis).astype(f32).copy()
            if policy == "pytorch":
                x = torch_safe(x, scale, axis)
                y, m = torch_fake_quant(x, scale, zp, qmin, qmax, axis)
            else:
                y, m = numpy_fake_quant(policy, x, scale, zp, qmin, qmax, axis)
            cases.append(dict(name=f"{policy}_pc_{b}{'s' if sg else 'u'}_axis{axis}_{'x'.join(map(str, dims))}",
                              policy=policy, axis=axis, dims=list(dims), qmin=qmin, qmax=qmax,
                              scale=list(scale), zp=list(zp), x=x, y=y, mask=m))


def arr(ctype, name, values, per_line=8):
    body = ",".join(("\n    " if i % per_line == 0 else " ") + v for i, v in enumerate(values))
    return f"inline const {ctype} {name}[] = {{{body}}};\n"


out = ["// Generated by tools/gen_golden_vectors.py with torch " + torch.__version__ + " and numpy " + np.__version__ + ".\n",
       "// Do not edit. Floats are stored as IEEE-754 bit patterns.\n", "#pragma once\n#include <cstdint>\n#include <cstddef>\n\n",
       "namespace golden {\n"]
table = []
for i, c in enumerate(cases):
    x, y, m = c["x"], c["y"], np.asarray(c["mask"]).astype(np.uint8)
    out.append(arr("std::uint32_t", f"x{i}", [hex(v) for v in bits(x)]))
    out.append(arr("std::uint32_t", f"y{i}", [hex(v) for v in bits(y)]))
    out.append(arr("std::uint8_t", f"m{i}", [str(v) for v in m.ravel()], 32))
    out.append(arr("std::uint32_t", f"s{i}", [hex(v) for v in bits(c["scale"])]))
    out.append(arr("std::int32_t", f"z{i}", [str(int(v)) for v in c["zp"]]))
    dims = list(c["dims"]) + [1] * (3 - len(c["dims"]))
    table.append(f'  {{"{c["name"]}", "{c["policy"]}", {c["axis"]}, {len(c["dims"])}, {{{dims[0]}, {dims[1]}, {dims[2]}}}, '
                 f'{c["qmin"]}, {c["qmax"]}, s{i}, z{i}, {len(c["zp"])}, x{i}, y{i}, m{i}, {x.size}}},\n')
out.append("""
struct fake_quant_case {
  const char* name;
  const char* policy;
  int axis;  // -1: per tensor
  std::size_t rank;
  std::size_t dims[3];
  std::int32_t qmin, qmax;
  const std::uint32_t* scale_bits;
  const std::int32_t* zero_point;
  std::size_t channels;
  const std::uint32_t* x_bits;
  const std::uint32_t* y_bits;
  const std::uint8_t* mask;
  std::size_t n;
};

inline const fake_quant_case cases[] = {
""")
out.extend(table)
out.append("};\n")

# Observer formulas: torch.ao.quantization.MinMaxObserver's calculate_qparams on random ranges.
from torch.ao.quantization import MinMaxObserver  # noqa: E402

obs_rows = []
for b, sg, sym in ((8, True, True), (8, False, False), (4, True, True), (4, False, False), (4, True, False),
                   (8, False, True), (3, True, False), (2, False, False)):
    qmin, qmax = grid(b, sg)
    for lo, hi in ((-1.3, 2.7), (0.0, 5.0), (-4.0, -0.5), (-0.001, 0.002), (0.25, 0.75), (-7.1, 7.1), (-3e-8, 2e-8)):
        o = MinMaxObserver(dtype=torch.qint8 if sg else torch.quint8,
                           qscheme=torch.per_tensor_symmetric if sym else torch.per_tensor_affine,
                           quant_min=qmin, quant_max=qmax)
        o(torch.tensor([lo, hi], dtype=torch.float32))
        sc, zp = o.calculate_qparams()
        obs_rows.append(f"  {{{b}, {str(sg).lower()}, {str(sym).lower()}, {hex(bits([lo])[0])}, {hex(bits([hi])[0])}, "
                        f"{hex(bits([sc.item()])[0])}, {int(zp.item())}}},\n")
out.append("""
// MinMaxObserver(dtype, qscheme, quant_min, quant_max).calculate_qparams() for [lo, hi].
struct observer_case {
  int bits;
  bool is_signed;
  bool symmetric;
  std::uint32_t lo_bits, hi_bits, scale_bits;
  std::int32_t zero_point;
};

inline const observer_case observer_cases[] = {
""")
out.extend(obs_rows)
out.append("};\n}  // namespace golden\n")
path = os.path.join(os.path.dirname(__file__), "..", "tests", "quant", "golden", "golden_vectors.inc")
with open(path, "w") as f:
    f.write("".join(out))
print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")
