#!/usr/bin/env python3
"""Scale one conv's weights by K and compensate the batch norm after it, so the network
computes the same function (docs/RESULTS.md, "Does the policy follow the function?").

    python3 scripts/scale_probe.py IN.safetensors OUT.safetensors CONV BN K

IN is what `limpq export CKPT --safetensors IN.safetensors` writes (PyTorch names). The
conv's weight (and bias, if any) are multiplied by K; the batch norm's running mean by K
and its running variance set to K²·(var + eps) − eps, so that in evaluation
(y·K − mean·K) / sqrt(var' + eps) equals (y − mean) / sqrt(var + eps) exactly; in training
mode the batch statistics scale the same way (up to eps). Needs numpy and safetensors.
"""
import sys

import numpy as np
from safetensors.numpy import load_file, save_file

BN_EPS = 1e-5  # limpq's batch-norm epsilon (trainer/src/kernels/norm.rs)


def main(argv):
    if len(argv) != 6:
        sys.exit(__doc__)
    src, dst, conv, bn, k = argv[1], argv[2], argv[3], argv[4], float(argv[5])
    t = load_file(src)
    for name in (f"{conv}.weight", f"{bn}.running_mean", f"{bn}.running_var"):
        if name not in t:
            sys.exit(f"error: {src} has no tensor '{name}'")
    t[f"{conv}.weight"] = (t[f"{conv}.weight"].astype(np.float64) * k).astype(np.float32)
    if f"{conv}.bias" in t:
        t[f"{conv}.bias"] = (t[f"{conv}.bias"].astype(np.float64) * k).astype(np.float32)
    mean = t[f"{bn}.running_mean"].astype(np.float64)
    var = t[f"{bn}.running_var"].astype(np.float64)
    t[f"{bn}.running_mean"] = (mean * k).astype(np.float32)
    t[f"{bn}.running_var"] = (k * k * (var + BN_EPS) - BN_EPS).astype(np.float32)
    save_file(t, dst)
    print(f"{dst}: {conv} x {k:g}, {bn} compensated")


if __name__ == "__main__":
    main(sys.argv)
