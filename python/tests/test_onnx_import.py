"""`limpq import-onnx` and `limpq infer` against ONNX Runtime.

Two small networks are built here with `onnx.helper` from seeded random weights — a
ResNet-style one (BasicBlocks with a projection shortcut) and a MobileNetV2-style one
(depthwise convs, ReLU6 as Clip, inverted residuals) — each in the two shapes a
`torch.onnx.export` produces: BatchNorms kept as BatchNormalization nodes (constant folding
off) and BatchNorms folded into the conv before them (torch's eval-mode default; the conv
gets a bias and an `onnx::Conv_N` weight name). Names follow torch's (`layer1.0.conv1.weight`,
`/layer1/layer1.0/conv1/Conv`). limpq imports each and its logits on the same inputs must
equal ONNX Runtime's within the tolerance `tolerance()` states.

Bad files — a truncated protobuf, an unknown operator, an initializer of the wrong size, a
weight or an attribute of another type than ONNX requires, a symbolic image size — are each
an error naming the problem, with exit status 1 (the CLI's status for malformed input; 2 is
kept for usage errors), never a panic.

Needs the `onnx` and `onnxruntime` packages (CI installs them) and a GPU adapter (lavapipe
in CI); the shapes are tiny (3×32×32) so each run takes seconds.
"""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

EPS = 1e-5
# f32 unit roundoff.
U = 2.0**-24


class Builder:
    """Appends torch-named nodes and initializers; tracks the longest dot product (K) and
    the number of layers that sum products (depth), which bound the rounding error."""

    def __init__(self, seed, fold, opset, eps=EPS, tiny_var=False):
        self.rng = np.random.default_rng(seed)
        self.fold = fold
        self.opset = opset
        # BatchNormalization's epsilon, and running variances of 1e-8..1e-6 (the conv's
        # weights and the running mean scaled to match, so activations stay O(1)).
        self.eps = eps
        self.tiny_var = tiny_var
        self.nodes = []
        self.inits = []
        self.k_max = 0
        self.depth = 0
        self.anon = 0

    def init(self, name, array):
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def anon_name(self):
        self.anon += 1
        return f"onnx::Conv_{100 + self.anon}"

    def conv_bn(self, path, x, c_in, c_out, k, stride, groups=1, bn_path=None):
        """Conv `path` (no bias) followed by BatchNorm `bn_path`: as two nodes, or folded."""
        scope = "/" + "/".join(path_scopes(path))
        fan_in = c_in // groups * k * k
        w = self.rng.normal(0, np.sqrt(2.0 / fan_in), (c_out, c_in // groups, k, k)).astype(np.float32)
        gamma = self.rng.uniform(0.5, 1.5, c_out).astype(np.float32)
        beta = self.rng.normal(0, 0.1, c_out).astype(np.float32)
        mean = self.rng.normal(0, 0.1, c_out).astype(np.float32)
        var = self.rng.uniform(0.5, 2.0, c_out).astype(np.float32)
        if self.tiny_var:
            var = self.rng.uniform(1e-8, 1e-6, c_out).astype(np.float32)
            w = (w * np.sqrt(var)[:, None, None, None]).astype(np.float32)
            mean = (mean * np.sqrt(var)).astype(np.float32)
        self.k_max = max(self.k_max, fan_in)
        self.depth += 1
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4, group=groups)
        y = f"{scope}/Conv_output_0"
        if self.fold:
            scale = gamma / np.sqrt(var + self.eps)
            wf = (w * scale[:, None, None, None]).astype(np.float32)
            bf = (beta - mean * scale).astype(np.float32)
            wn, bn = self.init(self.anon_name(), wf), self.init(self.anon_name(), bf)
            self.nodes.append(helper.make_node("Conv", [x, wn, bn], [y], name=f"{scope}/Conv", **attrs))
            return y
        wn = self.init(f"{path}.weight", w)
        self.nodes.append(helper.make_node("Conv", [x, wn], [y], name=f"{scope}/Conv", **attrs))
        bscope = "/" + "/".join(path_scopes(bn_path))
        z = f"{bscope}/BatchNormalization_output_0"
        names = [self.init(f"{bn_path}.{n}", v) for n, v in
                 [("weight", gamma), ("bias", beta), ("running_mean", mean), ("running_var", var)]]
        self.nodes.append(helper.make_node("BatchNormalization", [y, *names], [z],
                                           name=f"{bscope}/BatchNormalization", epsilon=self.eps))
        return z

    def unary(self, op, path, x, **attrs):
        scope = "/" + "/".join(path_scopes(path))
        y = f"{scope}/{op}_output_0"
        self.nodes.append(helper.make_node(op, [x], [y], name=f"{scope}/{op}", **attrs))
        return y

    def relu6(self, path, x, how):
        """ReLU6 as torch exports it: Clip with min/max from Constant nodes, or from
        initializers."""
        scope = "/" + "/".join(path_scopes(path))
        if how == "constant":
            lo, hi = f"{scope}/Constant_output_0", f"{scope}/Constant_1_output_0"
            self.nodes.append(helper.make_node("Constant", [], [lo], name=f"{scope}/Constant",
                                               value=numpy_helper.from_array(np.array(0, np.float32))))
            self.nodes.append(helper.make_node("Constant", [], [hi], name=f"{scope}/Constant_1",
                                               value=numpy_helper.from_array(np.array(6, np.float32))))
        else:
            lo = self.init(f"{path}.min", np.array(0, np.float32))
            hi = self.init(f"{path}.max", np.array(6, np.float32))
        y = f"{scope}/Clip_output_0"
        self.nodes.append(helper.make_node("Clip", [x, lo, hi], [y], name=f"{scope}/Clip"))
        return y

    def add(self, path, a, b):
        scope = "/" + "/".join(path_scopes(path))
        y = f"{scope}/Add_output_0"
        self.nodes.append(helper.make_node("Add", [a, b], [y], name=f"{scope}/Add"))
        return y

    def model(self, name, out, in_shape):
        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *in_shape])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 10])],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                              producer_name="pytorch")
        m.ir_version = min(m.ir_version, 8)
        onnx.checker.check_model(m)
        return m


def path_scopes(path):
    """torch's scope names of a module path: a child's name, or inside a Sequential the
    scope before extended by the index: `features.1.conv.0.0` → features, features.1, conv,
    conv.0, conv.0.0."""
    scopes = []
    for part in path.split("."):
        if part.isdigit() and scopes:
            scopes.append(f"{scopes[-1]}.{part}")
        else:
            scopes.append(part)
    return scopes


def view_flatten(b, x):
    """`x.view(x.size(0), -1)` as torch exports it with a free batch: Shape, Gather of
    entry 0, Unsqueeze of it and of -1 (axes an attribute before opset 13, an input from
    it), Concat, Reshape."""
    def const(name, value):
        b.nodes.append(helper.make_node("Constant", [], [name], name=f"/{name}",
                                        value=numpy_helper.from_array(np.array(value, np.int64))))
        return name

    b.nodes.append(helper.make_node("Shape", [x], ["/Shape_output_0"], name="/Shape"))
    b.nodes.append(helper.make_node("Gather", ["/Shape_output_0", const("zero", 0)],
                                    ["/Gather_output_0"], name="/Gather", axis=0))
    parts = []
    for i, v in enumerate(["/Gather_output_0", const("minus_one", -1)]):
        out = f"/Unsqueeze_{i}_output_0"
        if b.opset < 13:
            b.nodes.append(helper.make_node("Unsqueeze", [v], [out], name=f"/Unsqueeze_{i}", axes=[0]))
        else:
            b.nodes.append(helper.make_node("Unsqueeze", [v, const(f"axes_{i}", [0])], [out],
                                            name=f"/Unsqueeze_{i}"))
        parts.append(out)
    b.nodes.append(helper.make_node("Concat", parts, ["/Concat_output_0"], name="/Concat", axis=0))
    b.nodes.append(helper.make_node("Reshape", [x, "/Concat_output_0"], ["/Reshape_output_0"],
                                    name="/Reshape"))
    return "/Reshape_output_0"


def resnet_style(fold, seed=1, opset=17, view=False, **bn):
    """conv1/bn1/relu, maxpool, layer1.0 (BasicBlock 8→8), layer2.0 (8→16, stride 2,
    downsample), avgpool, flatten (or `view`: `x.view(x.size(0), -1)`), fc (Gemm) —
    3×32×32, 10 classes. `bn`: the Builder's `eps` and `tiny_var`."""
    b = Builder(seed, fold, opset, **bn)
    x = b.conv_bn("conv1", "input", 3, 8, 3, 1, bn_path="bn1")
    x = b.unary("Relu", "relu", x)
    x = b.unary("MaxPool", "maxpool", x, kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    for name, c_in, c_out, s in [("layer1.0", 8, 8, 1), ("layer2.0", 8, 16, 2)]:
        y = b.conv_bn(f"{name}.conv1", x, c_in, c_out, 3, s, bn_path=f"{name}.bn1")
        y = b.unary("Relu", f"{name}.relu", y)
        y = b.conv_bn(f"{name}.conv2", y, c_out, c_out, 3, 1, bn_path=f"{name}.bn2")
        skip = x
        if s != 1 or c_in != c_out:
            skip = b.conv_bn(f"{name}.downsample.0", x, c_in, c_out, 1, s, bn_path=f"{name}.downsample.1")
        y = b.add(name, y, skip)
        x = b.unary("Relu", f"{name}.relu_1", y)
    x = b.unary("GlobalAveragePool", "avgpool", x)
    x = view_flatten(b, x) if view else b.unary("Flatten", "flatten", x, axis=1)
    w = b.rng.normal(0, 0.25, (10, 16)).astype(np.float32)
    bias = b.rng.normal(0, 0.1, 10).astype(np.float32)
    b.k_max, b.depth = max(b.k_max, 16), b.depth + 1
    b.nodes.append(helper.make_node("Gemm", [x, b.init("fc.weight", w), b.init("fc.bias", bias)],
                                    ["logits"], name="/fc/Gemm", transB=1))
    return b.model("resnet_style", "logits", [3, 32, 32]), b


def mobilenet_style(fold, seed=2, opset=13):
    """features.0 (conv 3→16 s2, ReLU6), features.1 (t=1: depthwise + linear 1×1 → 8),
    features.2 (t=6, s2, 8→16), features.3 (t=6, 16→16, residual), features.4 (1×1 → 32,
    ReLU6), GAP, Dropout, Reshape, MatMul + Add — 3×32×32, 10 classes. Clip bounds from
    Constant nodes and from initializers alternately."""
    b = Builder(seed, fold, opset)
    hows = iter(["constant", "initializer"] * 20)

    def cbr(prefix, x, c_in, c_out, k, s, groups=1):
        y = b.conv_bn(f"{prefix}0", x, c_in, c_out, k, s, groups, bn_path=f"{prefix}1")
        return b.relu6(f"{prefix}2", y, next(hows))

    x = cbr("features.0.", "input", 3, 16, 3, 2)
    c_in = 16
    for i, (t, c, s) in enumerate([(1, 8, 1), (6, 16, 2), (6, 16, 1)], start=1):
        hidden, y, j = c_in * t, x, 0
        if t != 1:
            y = cbr(f"features.{i}.conv.0.", y, c_in, hidden, 1, 1)
            j = 1
        y = cbr(f"features.{i}.conv.{j}.", y, hidden, hidden, 3, s, groups=hidden)
        y = b.conv_bn(f"features.{i}.conv.{j + 1}", y, hidden, c, 1, 1, bn_path=f"features.{i}.conv.{j + 2}")
        x = b.add(f"features.{i}", y, x) if s == 1 and c_in == c else y
        c_in = c
    x = cbr("features.4.", x, c_in, 32, 1, 1)
    x = b.unary("GlobalAveragePool", "avgpool", x)
    x = b.unary("Dropout", "classifier.0", x)
    shape = b.init("onnx::Reshape_shape", np.array([0, -1], np.int64))
    b.nodes.append(helper.make_node("Reshape", [x, shape], ["flat"], name="/Reshape"))
    w = b.rng.normal(0, 0.2, (32, 10)).astype(np.float32)
    bias = b.rng.normal(0, 0.1, 10).astype(np.float32)
    b.k_max, b.depth = max(b.k_max, 32), b.depth + 1
    b.nodes.append(helper.make_node("MatMul", ["flat", b.init("classifier.1.weight", w)], ["mm"],
                                    name="/classifier/classifier.1/MatMul"))
    b.nodes.append(helper.make_node("Add", ["mm", b.init("classifier.1.bias", bias)], ["logits"],
                                    name="/classifier/classifier.1/Add"))
    return b.model("mobilenet_style", "logits", [3, 32, 32]), b


def tolerance(b, ref):
    """Both runtimes compute in f32 and differ only in the order of their sums. A dot
    product of K terms summed in any order is within K·u·Σ|terms| of the exact value (u =
    2⁻²⁴, the standard bound γ_K); taking Σ|terms| ≲ max|logit| (activations here are O(1),
    BN keeps them so) and letting each of the `depth` summing layers add its own such error,
    the logits agree within depth · K_max · u · max|logit| (about 6·10⁻⁵ relative for these
    models; the differences measured are about 10⁻⁶). A BN folded by the exporter and re-inserted by limpq adds one more rounding per
    value, covered by the same bound."""
    return b.depth * b.k_max * U * max(1.0, float(np.abs(ref).max()))


def run_both(limpq, tmp_path, model, name, *import_args):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    ron, ckpt = tmp_path / f"{name}.ron", tmp_path / f"{name}.ckpt"
    r = limpq.run("import-onnx", path, "-o", ron, "--weights", ckpt, *import_args)
    x = np.random.default_rng(7).normal(0, 1, (5, 3, 32, 32)).astype(np.float32)
    xp, lp = tmp_path / "x.npy", tmp_path / "logits.npy"
    np.save(xp, x)
    limpq.run("infer", ckpt, "--input", xp, "--output", lp, "--batch", "4")
    got = np.load(lp)
    sess = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
    want = sess.run(None, {"input": x})[0]
    return got, want, ron.read_text(), r.stderr


@pytest.mark.parametrize("fold", [False, True], ids=["bn-kept", "bn-folded"])
@pytest.mark.parametrize("build", [resnet_style, mobilenet_style], ids=["resnet", "mobilenetv2"])
def test_logits_equal_onnx_runtime(limpq, tmp_path, build, fold):
    model, b = build(fold)
    got, want, ron, _ = run_both(limpq, tmp_path, model, build.__name__)
    assert got.shape == want.shape == (5, 10)
    tol = tolerance(b, want)
    err = float(np.abs(got - want).max())
    assert err <= tol, f"max |limpq - onnxruntime| = {err:.3g} > {tol:.3g}"
    # torch's names survive, from initializers (kept) or from node names (folded).
    first = "features.0.0" if build is mobilenet_style else "layer1.0.conv1"
    assert f'name: "{first}"' in ron
    if fold:
        # The folded BNs come back as BatchNorm nodes, named as the modules they were.
        bn = "features.0.1" if build is mobilenet_style else "layer1.0.bn1"
        assert f'name: "{bn}"' in ron


def test_bn_epsilon_below_the_engines(limpq, tmp_path):
    """epsilon 1e-8 with running variances of 1e-8..1e-6: var + epsilon is below the
    engine's own eps (1e-5), which no running variance can make up. The importer moves the
    difference into the BN's scale; the logits were ~10 times ONNX Runtime's before."""
    model, b = resnet_style(False, eps=1e-8, tiny_var=True)
    got, want, _, _ = run_both(limpq, tmp_path, model, "tiny_eps")
    assert float(np.abs(want).max()) > 0.1
    assert float(np.abs(got - want).max()) <= tolerance(b, want)


@pytest.mark.parametrize("opset", [11, 17])
def test_a_view_on_the_batch_imports_as_flatten(limpq, tmp_path, opset):
    """`x.view(x.size(0), -1)` with a free batch exports to a shape computation (Shape,
    Gather, Unsqueeze, Concat) feeding the Reshape; it was refused as an unknown operator."""
    model, b = resnet_style(False, opset=opset, view=True)
    got, want, ron, _ = run_both(limpq, tmp_path, model, f"view{opset}")
    assert float(np.abs(got - want).max()) <= tolerance(b, want)
    assert "Flatten" in ron


def test_folded_bn_kept_as_bias(limpq, tmp_path):
    model, b = resnet_style(True)
    got, want, ron, err = run_both(limpq, tmp_path, model, "kept_bias", "--folded-bn", "keep")
    assert "BatchNorm" not in ron and "bias: true" in ron
    assert float(np.abs(got - want).max()) <= tolerance(b, want)


def test_the_data_set_given_is_checked_and_recorded(limpq, tmp_path):
    """--data is refused when its images do not fit the model's input, before anything is
    written; a fitting one is the data set later commands read."""
    import os
    import subprocess

    model, _ = resnet_style(False)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    ron, ckpt = tmp_path / "m.ron", tmp_path / "m.ckpt"
    r = limpq.run("import-onnx", path, "-o", ron, "--weights", ckpt, "--data", "fashion-mnist", expect=2)
    assert "(1, 28, 28)" in r.stderr and "(3, 32, 32)" in r.stderr, r.stderr
    assert not ckpt.exists() and not ron.exists()
    limpq.run("import-onnx", path, "-o", ron, "--weights", ckpt, "--data", "CIFAR-10")
    # An empty data root: the evaluation stops at the data set the import recorded.
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = dict(os.environ, LIMPQ_DATA=str(empty))
    cmd = [str(limpq.path), "eval", "--ckpt", str(ckpt), "--test-subset", "8"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert r.returncode == 1 and "cifar10" in r.stderr and "note:" not in r.stderr, r.stderr


def test_old_opset_clip_attributes(limpq, tmp_path):
    """Before opset 11 Clip's bounds are attributes."""
    b = Builder(3, False, 10)
    x = b.conv_bn("conv1", "input", 3, 4, 3, 1, bn_path="bn1")
    b.nodes.append(helper.make_node("Clip", [x], ["c"], name="/relu6/Clip", min=0.0, max=6.0))
    x = b.unary("GlobalAveragePool", "avgpool", "c")
    x = b.unary("Flatten", "flatten", x)
    w = b.rng.normal(0, 0.5, (10, 4)).astype(np.float32)
    c = b.init("fc.bias", np.zeros(10, np.float32))  # C is required before opset 11
    b.nodes.append(helper.make_node("Gemm", [x, b.init("fc.weight", w), c], ["logits"], name="/fc/Gemm", transB=1))
    b.k_max, b.depth = max(b.k_max, 4), b.depth + 1
    got, want, ron, _ = run_both(limpq, tmp_path, b.model("old", "logits", [3, 32, 32]), "old")
    assert "Relu6" in ron
    assert float(np.abs(got - want).max()) <= tolerance(b, want)


def import_error(limpq, tmp_path, data, name="bad"):
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(data)
    r = limpq.run("import-onnx", path, "-o", tmp_path / "m.ron", "--weights", tmp_path / "m.ckpt",
                  expect=1)
    assert "panicked" not in r.stderr, r.stderr
    assert str(path) in r.stderr, r.stderr
    assert not (tmp_path / "m.ron").exists()
    return r.stderr


def test_truncated_protobuf(limpq, tmp_path):
    model, _ = resnet_style(False)
    data = model.SerializeToString()
    for cut in (len(data) // 2, len(data) - 3, 7):
        err = import_error(limpq, tmp_path, data[:cut])
        assert "not a valid ONNX model" in err or "produced by no" in err or "no graph" in err, err


def test_unknown_op(limpq, tmp_path):
    model, _ = resnet_style(False)
    for n in model.graph.node:
        if n.name == "/layer1/layer1.0/relu/Relu":
            n.op_type = "LeakyRelu"
    err = import_error(limpq, tmp_path, model.SerializeToString())
    assert "/layer1/layer1.0/relu/Relu" in err and "LeakyRelu" in err and "supported: Conv" in err, err


def test_wrong_initializer_sizes(limpq, tmp_path):
    # Raw data shorter than the dims say.
    model, _ = resnet_style(False)
    w = next(t for t in model.graph.initializer if t.name == "layer1.0.conv2.weight")
    w.raw_data = w.raw_data[:-4]
    err = import_error(limpq, tmp_path, model.SerializeToString())
    assert "layer1.0.conv2.weight" in err and "bytes" in err, err
    # A weight whose input channels do not match its input (ONNX's checker does not know).
    model, _ = resnet_style(False)
    w = next(t for t in model.graph.initializer if t.name == "layer1.0.conv2.weight")
    arr = numpy_helper.to_array(w)[:, :4]
    w.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(arr), w.name))
    err = import_error(limpq, tmp_path, model.SerializeToString())
    assert "layer1.0.conv2" in err and "needs" in err, err
    # A BatchNorm statistic of the wrong length.
    model, _ = resnet_style(False)
    v = next(t for t in model.graph.initializer if t.name == "bn1.running_var")
    v.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(v)[:5], v.name))
    err = import_error(limpq, tmp_path, model.SerializeToString())
    assert "bn1.running_var" in err and "BatchNormalization" in err, err


def ort_refuses(model):
    """ONNX Runtime's error on `model` (graph optimisations off, so that none hides it)."""
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = np.zeros((1, 3, 32, 32), np.float32)
    with pytest.raises(Exception) as e:
        ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
            None, {"input": x})
    return str(e.value)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int64])
def test_a_weight_of_another_type_than_float(limpq, tmp_path, dtype):
    """A conv weight stored as DOUBLE, FLOAT16 or INT64 beside the float input: ONNX requires
    the input's type, ONNX Runtime refuses the model, and limpq refuses it naming the node,
    the tensor and its type (a DOUBLE or INT64 weight imported as if it held floats)."""
    model, _ = resnet_style(False)
    w = next(t for t in model.graph.initializer if t.name == "layer1.0.conv1.weight")
    w.CopyFrom(numpy_helper.from_array((numpy_helper.to_array(w) * 4).astype(dtype), w.name))
    ort_refuses(model)
    err = import_error(limpq, tmp_path, model.SerializeToString())
    name = TensorProto.DataType.Name(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
    assert ("node '/layer1/layer1.0/conv1/Conv' (Conv): weight 'layer1.0.conv1.weight' has "
            f"element type {name}; FLOAT expected") in err, err


def test_an_attribute_of_another_type(limpq, tmp_path):
    """A conv's `dilations` written as an INT rather than INTS: it was read as absent and the
    conv imported without its dilation; ONNX Runtime refuses the model, and limpq says which
    node, attribute and types."""
    model, _ = resnet_style(False)
    conv = next(n for n in model.graph.node if n.name == "/layer1/layer1.0/conv1/Conv")
    conv.attribute.append(helper.make_attribute("dilations", 2))
    assert "dilations" in ort_refuses(model)
    err = import_error(limpq, tmp_path, model.SerializeToString())
    assert ("node '/layer1/layer1.0/conv1/Conv' (Conv): attribute 'dilations' has type INT; "
            "INTS expected") in err, err


def test_old_opset_batch_norm_spatial_0(limpq, tmp_path):
    """Opsets 7 and 8: BatchNormalization with `spatial` 0 normalises each element (C×H×W
    statistics; ONNX Runtime, optimisations off, wants scales of that shape); the engine's
    BatchNorm is per channel. It was imported as spatial 1; it is refused."""
    model, _ = resnet_style(False, opset=7)
    bn = next(n for n in model.graph.node if n.name == "/bn1/BatchNormalization")
    bn.attribute.append(helper.make_attribute("spatial", 0))
    ort_refuses(model)
    err = import_error(limpq, tmp_path, model.SerializeToString())
    assert "node '/bn1/BatchNormalization' (BatchNormalization): spatial 0" in err, err


def test_opset15_batch_norm_statistics_in_float16(limpq, tmp_path):
    """From opset 15 a BatchNormalization's mean and variance may be FLOAT16 beside a float
    input, and ONNX Runtime runs it: limpq reads them as the numbers they hold (they were
    refused) and its logits agree."""
    model, b = resnet_style(False, opset=15)
    for t in model.graph.initializer:
        if t.name.endswith((".running_mean", ".running_var")):
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
    got, want, _, _ = run_both(limpq, tmp_path, model, "bn_f16")
    assert float(np.abs(got - want).max()) <= tolerance(b, want)


def test_symbolic_image_size(limpq, tmp_path):
    model, _ = resnet_style(False)
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    err = import_error(limpq, tmp_path, model.SerializeToString())
    assert "symbolic 'height'" in err and "fixed" in err, err


def test_runtime_formats_of_an_imported_model(limpq, tmp_path):
    """DEPLOY.md's recipe for ONNX Runtime's own quantizer, run: `limpq export --format ort`
    on the float model, `quantize_static` with those overrides, and the quantized model
    loaded and run. 4-bit types exist from opset 21; for an older model the export is
    refused with the remedy (ONNX Runtime wrote a model it then refused to load)."""
    import json

    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    layers = {"conv1": (8, 8), "layer1.0.conv1": (4, 4), "layer1.0.conv2": (3, 6),
              "layer2.0.conv1": (6, 2), "layer2.0.conv2": (5, 5),
              "layer2.0.downsample.0": (4, 8), "fc": (8, 8)}
    rows = "".join(f'(name: "{k}", weight: {w}, act: {a}), ' for k, (w, a) in layers.items())
    policy = tmp_path / "policy.ron"
    policy.write_text(f'(model: "resnet_style", layers: [{rows}], objective: 0.0, bitops: 0, '
                      f"weight_bits_total: 0, optimal: false)\n")
    old, _ = resnet_style(False, opset=17)
    onnx.save(old, tmp_path / "old.onnx")
    r = limpq.run("export", policy, "--format", "ort", "--onnx-model", tmp_path / "old.onnx",
                  expect=1)
    assert "opset 21" in r.stderr and "model is opset 17" in r.stderr, r.stderr

    model, _ = resnet_style(False, opset=21)
    float_path, ov_path, q_path = tmp_path / "m.onnx", tmp_path / "ov.json", tmp_path / "q.onnx"
    onnx.save(model, float_path)
    limpq.run("export", policy, "--format", "ort", "--onnx-model", float_path, "-o", ov_path)
    ov = json.loads(ov_path.read_text())["TensorQuantOverrides"]
    assert ov["layer1.0.conv1.weight"] == [{"quant_type": "QInt4", "symmetric": True}]
    for entries in ov.values():
        for e in entries:
            e["quant_type"] = QuantType.from_string(e["quant_type"])
    x = np.random.default_rng(3).normal(0, 1, (4, 3, 32, 32)).astype(np.float32)

    class Calibration(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(float_path), str(q_path), Calibration(), quant_format=QuantFormat.QDQ,
                    extra_options={"TensorQuantOverrides": ov})
    q = onnx.load(q_path)
    types = {t.name: t.data_type for t in q.graph.initializer}
    assert TensorProto.INT4 in types.values()
    sess = ort.InferenceSession(q_path.read_bytes(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x})[0]
    assert got.shape == (4, 10) and np.isfinite(got).all()

    # TensorRT's layer names: the float model's node names with --onnx-model; without it the
    # policy's, and a note says they are not the float model's.
    trt = limpq.run("export", policy, "--format", "tensorrt", "--onnx-model", float_path)
    assert "/layer1/layer1.0/conv1/Conv:int8" in trt.stdout and "note:" not in trt.stderr
    trt = limpq.run("export", policy, "--format", "tensorrt")
    assert "layer1.0.conv1:int8" in trt.stdout and "--onnx-model" in trt.stderr, trt.stderr
