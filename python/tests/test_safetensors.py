"""`limpq import-safetensors` and `limpq export --safetensors`: PyTorch weights without ONNX.

A state_dict is written here with the `safetensors` package (numpy, no torch needed) for a
model description whose layers carry PyTorch-style names (`features.0`, `classifier`): one
tensor as float16, PyTorch's `num_batches_tracked` counters included. limpq imports it, and
(1) its logits on random inputs equal a numpy forward of the same network with the same
tensors — so every tensor reached the layer and role its name says (a swapped BN scale and
shift, or a transposed weight, would not pass); (2) exported back, every tensor is the one
written (the float16 one as its exact float32 value), the counters are gone, the model's
name is in the metadata; (3) a tensor of the wrong shape or a missing one is an error naming
it (exit 1).
"""
import numpy as np
import pytest

st = pytest.importorskip("safetensors.numpy")

MODEL = """Model(
    format_version: 1,
    name: "tiny_pt",
    input: (1, 8, 8),
    classes: 3,
    nodes: [
        Node(name: "features.0", op: Conv2d(out_channels: 4, kernel: 3, stride: 1, padding: 1, groups: 1, bias: false), inputs: ["input"]),
        Node(name: "features.1", op: BatchNorm, inputs: ["features.0"]),
        Node(name: "features.2", op: Relu, inputs: ["features.1"]),
        Node(name: "features.3", op: Conv2d(out_channels: 6, kernel: 3, stride: 2, padding: 1, groups: 2, bias: true), inputs: ["features.2"]),
        Node(name: "pool", op: GlobalAvgPool, inputs: ["features.3"]),
        Node(name: "classifier", op: Linear(out_features: 3, bias: true), inputs: ["pool"]),
    ],
)
"""


def state_dict(seed=3):
    rng = np.random.default_rng(seed)
    f = lambda *s: rng.normal(0, 0.5, s).astype(np.float32)  # noqa: E731
    return {
        "features.0.weight": f(4, 1, 3, 3),
        "features.1.weight": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "features.1.bias": f(4),
        "features.1.running_mean": f(4),
        "features.1.running_var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
        "features.1.num_batches_tracked": np.array(17, dtype=np.int64),
        "features.3.weight": f(6, 2, 3, 3).astype(np.float16),
        "features.3.bias": f(6),
        "classifier.weight": f(3, 6),
        "classifier.bias": f(3),
    }


def conv(x, w, b, stride, pad, groups):
    n, c, h, wd = x.shape
    co, cg, k, _ = w.shape
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    y = np.zeros((n, co, ho, wo))
    og = co // groups
    for o in range(co):
        g = o // og
        for i in range(ho):
            for j in range(wo):
                patch = xp[:, g * cg:(g + 1) * cg, i * stride:i * stride + k, j * stride:j * stride + k]
                y[:, o, i, j] = (patch * w[o].astype(np.float64)).sum(axis=(1, 2, 3))
    if b is not None:
        y += b.astype(np.float64)[None, :, None, None]
    return y


def forward(sd, x):
    t = {k: v.astype(np.float64) for k, v in sd.items()}
    y = conv(x, t["features.0.weight"], None, 1, 1, 1)
    inv = 1.0 / np.sqrt(t["features.1.running_var"] + 1e-5)
    y = (y - t["features.1.running_mean"][None, :, None, None]) * (inv * t["features.1.weight"])[None, :, None, None]
    y = np.maximum(y + t["features.1.bias"][None, :, None, None], 0)
    y = conv(y, t["features.3.weight"], t["features.3.bias"], 2, 1, 2)
    g = y.mean(axis=(2, 3))
    return g @ t["classifier.weight"].T + t["classifier.bias"]


@pytest.fixture
def files(tmp_path):
    model = tmp_path / "tiny.model.ron"
    model.write_text(MODEL)
    sd = state_dict()
    st.save_file(sd, str(tmp_path / "w.safetensors"))
    return tmp_path, model, sd


def test_imported_weights_compute_what_pytorch_would(limpq, files):
    d, model, sd = files
    limpq.run("import-safetensors", d / "w.safetensors", "--model", model, "-o", d / "m.ckpt")
    x = np.random.default_rng(5).normal(0, 1, (7, 1, 8, 8)).astype(np.float32)
    np.save(d / "x.npy", x)
    limpq.run("infer", d / "m.ckpt", "--input", d / "x.npy", "--output", d / "y.npy")
    got = np.load(d / "y.npy")
    want = forward(sd, x)
    # f32 on the GPU against f64 here: a few roundings of values of order 1 per layer.
    assert got.shape == (7, 3)
    assert np.max(np.abs(got - want)) < 1e-4 * max(1.0, np.max(np.abs(want))), (got, want)


def test_exported_weights_are_the_imported_ones(limpq, files):
    d, model, sd = files
    limpq.run("import-safetensors", d / "w.safetensors", "--model", model, "-o", d / "m.ckpt")
    limpq.run("export", d / "m.ckpt", "--safetensors", d / "back.safetensors")
    back = st.load_file(str(d / "back.safetensors"))
    want = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    assert set(back) == set(want)
    for k, v in want.items():
        assert back[k].dtype == np.float32, k
        assert back[k].shape == v.shape, k
        assert np.array_equal(back[k], v.astype(np.float32)), k
    from safetensors import safe_open

    with safe_open(str(d / "back.safetensors"), framework="numpy") as f:
        assert f.metadata()["limpq.model"] == "tiny_pt"


def test_a_tensor_that_does_not_fit_is_named(limpq, files):
    d, model, sd = files
    bad = dict(sd)
    bad["classifier.weight"] = np.zeros((3, 7), dtype=np.float32)
    st.save_file(bad, str(d / "bad.safetensors"))
    r = limpq.run("import-safetensors", d / "bad.safetensors", "--model", model, "-o", d / "x.ckpt", expect=1)
    assert "classifier.weight" in r.stderr and "[3, 6]" in r.stderr, r.stderr
    del bad["classifier.weight"]
    st.save_file(bad, str(d / "missing.safetensors"))
    r = limpq.run("import-safetensors", d / "missing.safetensors", "--model", model, "-o", d / "x.ckpt", expect=1)
    assert "no tensor 'classifier.weight'" in r.stderr, r.stderr
    assert not (d / "x.ckpt").exists()


MODEL28 = """Model(
    format_version: 1,
    name: "tiny28",
    input: (1, 28, 28),
    classes: 10,
    nodes: [
        Node(name: "features.0", op: Conv2d(out_channels: 4, kernel: 3, stride: 2, padding: 1, groups: 1, bias: false), inputs: ["input"]),
        Node(name: "features.1", op: BatchNorm, inputs: ["features.0"]),
        Node(name: "features.2", op: Relu, inputs: ["features.1"]),
        Node(name: "pool", op: GlobalAvgPool, inputs: ["features.2"]),
        Node(name: "classifier", op: Linear(out_features: 10, bias: true), inputs: ["pool"]),
    ],
)
"""


def test_the_data_set_is_recorded_checked_or_said(limpq, tmp_path):
    """MNIST's and Fashion-MNIST's images have one shape: the data set an import records is
    the one later commands read, a wrong one is refused, and none recorded is said."""
    import os
    import subprocess

    (tmp_path / "m.ron").write_text(MODEL28)
    rng = np.random.default_rng(0)
    sd = {
        "features.0.weight": rng.normal(0, 0.5, (4, 1, 3, 3)).astype(np.float32),
        "features.1.weight": np.ones(4, np.float32),
        "features.1.bias": np.zeros(4, np.float32),
        "features.1.running_mean": np.zeros(4, np.float32),
        "features.1.running_var": np.ones(4, np.float32),
        "classifier.weight": rng.normal(0, 0.5, (10, 4)).astype(np.float32),
        "classifier.bias": np.zeros(10, np.float32),
    }
    st.save_file(sd, str(tmp_path / "w.safetensors"))
    w, m = tmp_path / "w.safetensors", tmp_path / "m.ron"
    r = limpq.run("import-safetensors", w, "--model", m, "-o", tmp_path / "c.ckpt", "--data", "cifar10", expect=2)
    assert "(3, 32, 32)" in r.stderr and "tiny28" in r.stderr, r.stderr
    assert not (tmp_path / "c.ckpt").exists()
    limpq.run("import-safetensors", w, "--model", m, "-o", tmp_path / "plain.ckpt")
    limpq.run("import-safetensors", w, "--model", m, "-o", tmp_path / "mnist.ckpt", "--data", "mnist")

    # An empty data root: each evaluation stops at the data set it chose, which its
    # message names.
    empty = tmp_path / "no-data"
    empty.mkdir()

    def evaluate(ckpt):
        env = dict(os.environ, LIMPQ_DATA=str(empty))
        cmd = [str(limpq.path), "eval", "--ckpt", str(tmp_path / ckpt), "--test-subset", "8"]
        return subprocess.run(cmd, capture_output=True, text=True, env=env)

    r = evaluate("mnist.ckpt")
    assert r.returncode == 1 and "note:" not in r.stderr, r.stderr
    assert "mnist" in r.stderr and "fashion-mnist" not in r.stderr, r.stderr
    r = evaluate("plain.ckpt")
    assert r.returncode == 1, r.stderr
    assert "records no data set" in r.stderr and "fashion-mnist" in r.stderr, r.stderr
