#!/usr/bin/env python3
"""Writes a small ResNet-style ONNX model as `torch.onnx.export` of an eval-mode model
would: torch's node and tensor names, every BatchNorm folded into the conv before it.
A stand-in for your own exported model in docs/DEPLOY.md; its weights are seeded random
(He init), not trained.

    python3 scripts/resnet-onnx.py OUT.onnx [--input 1,28,28] [--classes 10] [--width 16]

conv1/bn1/relu, layer1.0 (BasicBlock width→width), layer2.0 (width→2·width, stride 2,
downsample), avgpool, flatten, fc. Needs the `onnx` and `numpy` packages.
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EPS = 1e-5


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--input", default="1,28,28", help="C,H,W")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    c, h, w = (int(v) for v in a.input.split(","))
    rng = np.random.default_rng(a.seed)
    nodes, inits = [], []
    anon = [0]

    def init(array):
        anon[0] += 1
        name = f"onnx::Conv_{100 + anon[0]}"
        inits.append(numpy_helper.from_array(np.asarray(array, np.float32), name))
        return name

    def scope(path):
        parts = []
        for p in path.split("."):
            parts.append(f"{parts[-1]}.{p}" if p.isdigit() and parts else p)
        return "/" + "/".join(parts)

    def conv_bn(path, x, c_in, c_out, k, stride):
        wt = rng.normal(0, np.sqrt(2.0 / (c_in * k * k)), (c_out, c_in, k, k))
        gamma, beta = rng.uniform(0.8, 1.2, c_out), rng.normal(0, 0.05, c_out)
        scale = gamma / np.sqrt(1.0 + EPS)  # running mean 0, var 1
        y = f"{scope(path)}/Conv_output_0"
        nodes.append(helper.make_node(
            "Conv", [x, init(wt * scale[:, None, None, None]), init(beta)], [y],
            name=f"{scope(path)}/Conv", kernel_shape=[k, k], strides=[stride, stride],
            pads=[k // 2] * 4))
        return y

    def op(kind, path, inputs, **attrs):
        y = f"{scope(path)}/{kind}_output_0"
        nodes.append(helper.make_node(kind, inputs, [y], name=f"{scope(path)}/{kind}", **attrs))
        return y

    x = op("Relu", "relu", [conv_bn("conv1", "input", c, a.width, 3, 1)])
    for name, c_in, c_out, s in [("layer1.0", a.width, a.width, 1),
                                 ("layer2.0", a.width, 2 * a.width, 2)]:
        y = op("Relu", f"{name}.relu", [conv_bn(f"{name}.conv1", x, c_in, c_out, 3, s)])
        y = conv_bn(f"{name}.conv2", y, c_out, c_out, 3, 1)
        skip = x if s == 1 else conv_bn(f"{name}.downsample.0", x, c_in, c_out, 1, s)
        x = op("Relu", f"{name}.relu_1", [op("Add", name, [y, skip])])
    x = op("Flatten", "flatten", [op("GlobalAveragePool", "avgpool", [x])], axis=1)
    fw = numpy_helper.from_array(rng.normal(0, 0.1, (a.classes, 2 * a.width)).astype(np.float32), "fc.weight")
    fb = numpy_helper.from_array(np.zeros(a.classes, np.float32), "fc.bias")
    inits += [fw, fb]
    nodes.append(helper.make_node("Gemm", [x, "fc.weight", "fc.bias"], ["logits"],
                                  name="/fc/Gemm", transB=1))
    graph = helper.make_graph(
        nodes, "resnet_small",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", a.classes])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="pytorch")
    m.ir_version = min(m.ir_version, 8)
    onnx.checker.check_model(m)
    onnx.save(m, a.out)
    print(f"wrote {a.out}: {len(nodes)} nodes, input {c}x{h}x{w}, {a.classes} classes")


if __name__ == "__main__":
    main()
