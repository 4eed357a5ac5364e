#!/usr/bin/env python3
"""Writes the indicator file the fixed `limpq indicators` (d63ea19 and later) writes, from the
one the device run's build wrote (resnet50_64_trained.raw.indicators.ron): every step size
stored below STEP_MIN = 1e-5 written as 1e-5, the step the quantizer used, `clamped_steps`
listed in the meta and `non_monotone` judged again on the clamped values, with the same messages
the trainer writes. Standard library only.

    python3 clamp.py resnet50_64_trained.raw.indicators.ron > resnet50_64_trained.indicators.ron
"""
import re
import struct
import sys

STEP_MIN = struct.unpack("f", struct.pack("f", 1e-5))[0]  # the f32 constant, as f64


def e4(v):
    """Rust's `{:.4e}`: 1.0967e-2, not Python's 1.0967e-02."""
    m, e = f"{v:.4e}".split("e")
    return f"{m}e{int(e)}"


text = open(sys.argv[1]).read()
bits = [int(b) for b in re.search(r"weight_bits: \[([^\]]*)\]", text).group(1).replace(",", " ").split()]
out, clamped, non_monotone = [], [], []
layer, what, vals = None, None, None
for line in text.splitlines():
    m = re.match(r'\s+name: "([^"]+)",', line)
    if m:
        layer = m.group(1)
    m = re.match(r"\s+(weight_scale|act_scale): \[", line)
    if m:
        what, vals = ("weight" if m.group(1) == "weight_scale" else "activation"), []
    elif vals is not None and re.match(r"\s+-?\d+\.\d+(e-?\d+)?,$", line):
        v = float(line.strip().rstrip(","))
        c = max(v, STEP_MIN)
        if c != v:
            clamped.append(f"{layer} {what}: s({bits[len(vals)]}) = {e4(v)} stored, {e4(c)} used")
            line = line[: len(line) - len(line.lstrip())] + repr(c) + ","
        vals.append(c)
    elif vals is not None and line.strip().startswith("]"):
        for k in range(len(vals) - 1):
            if vals[k] < vals[k + 1]:
                non_monotone.append(f"{layer} {what}: s({bits[k]}) = {e4(vals[k])} < s({bits[k + 1]}) = {e4(vals[k + 1])}")
        vals = None
    if re.match(r'\s+\("non_monotone(\.\d+)?", ', line):
        continue
    if line.strip() == "meta: [":
        meta_at = len(out)
    out.append(line)
end = max(i for i, l in enumerate(out) if l.strip() == "],")
extra = []
if clamped:
    extra.append(f'        ("clamped_steps", "{len(clamped)}"),')
    extra += [f'        ("clamped_steps.{i}", "{m}"),' for i, m in enumerate(clamped)]
extra.append(f'        ("non_monotone", "{len(non_monotone)}"),')
extra += [f'        ("non_monotone.{i}", "{m}"),' for i, m in enumerate(non_monotone)]
out[end:end] = extra
print("\n".join(out))
