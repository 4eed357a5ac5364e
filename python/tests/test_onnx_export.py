"""`limpq export --onnx` run by ONNX Runtime: the QDQ model of a finetuned mixed-precision
checkpoint predicts what `limpq eval` predicts on the Fashion-MNIST test set.

A small CNN is trained and finetuned briefly (a few hundred images, one epoch each) at a
hand-written mixed policy that uses every container the export writes (INT4 and INT8
weights, activations clipped to 3 to 8 bits), exported, and run by ONNX Runtime on the
10 000 test images, decoded here from the idx files and normalised as limpq's loader does.
Needs the `limpq` binary, a GPU adapter (lavapipe is enough) and the data set; skips
without them.
"""
import gzip
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

FMNIST = Path(os.environ.get("LIMPQ_DATA", "/usr/share/datasets")) / "fashion-mnist"
if not FMNIST.is_dir():
    FMNIST = Path("/usr/share/datasets/fashion-mnist")

# small_cnn: conv1 and fc are fixed at 8 bits; the searched layers get 4, 2/3 and 6/5 bits.
POLICY = """(
    model: "small_cnn",
    layers: [
        (name: "conv1", weight: 8, act: 8),
        (name: "conv2", weight: 4, act: 4),
        (name: "layer1.0.conv1", weight: 2, act: 3),
        (name: "conv3", weight: 6, act: 5),
        (name: "fc", weight: 8, act: 8),
    ],
    objective: 0.0,
    bitops: 0,
    weight_bits_total: 0,
    optimal: false,
)
"""


def idx(path):
    """An idx file (gzip) as a numpy array."""
    data = gzip.open(path, "rb").read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def normalised(images):
    """`pix * (1 / (255 std)) - mean / std` in f32, as trainer/src/data/loader.rs does."""
    mean, std = np.float32(0.2860), np.float32(0.3530)
    mul = np.float32(1.0) / (np.float32(255.0) * std)
    sub = mean / std
    return (images.astype(np.float32) * mul - sub)[:, None, :, :].astype(np.float32)


def ort_logits(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = [sess.run(["logits"], {"input": x[i : i + 1000]})[0] for i in range(0, len(x), 1000)]
    return np.concatenate(out)


def need_data_and_gpu(limpq):
    """Skips without the data set or a GPU adapter (lavapipe is enough)."""
    if not (FMNIST / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no Fashion-MNIST in {FMNIST} (scripts/setup.sh installs it)")
    probe = subprocess.run([str(limpq.path), "devices"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"no GPU adapter: {probe.stderr.strip()}")


@pytest.fixture(scope="module")
def run(limpq, tmp_path_factory):
    """Trains, finetunes at POLICY, evaluates (with predictions) and exports once."""
    need_data_and_gpu(limpq)
    d = tmp_path_factory.mktemp("onnx-export")
    common = ["--data-dir", FMNIST, "--batch", "64", "--subset", "4096", "--test-subset", "200"]
    limpq.run("train", "--model", "small_cnn", *common, "--epochs", "3", "--lr", "0.2",
              "--seed", "3", "-o", d / "fp.ckpt")
    (d / "policy.ron").write_text(POLICY)
    limpq.run("finetune", "--ckpt", d / "fp.ckpt", "--policy", d / "policy.ron", *common,
              "--lr", "0.02", "-o", d / "q.ckpt")
    report = limpq.json("eval", "--ckpt", d / "q.ckpt", "--data-dir", FMNIST,
                        "--predictions", d / "pred.npy", "--logits", d / "logits.npy")
    out = limpq.run("export", d / "q.ckpt", "--onnx", d / "q.onnx").stdout
    return d, report, out


def test_onnx_runtime_predicts_what_limpq_eval_predicts(run):
    d, report, _ = run
    images = idx(FMNIST / "t10k-images-idx3-ubyte.gz")
    labels = idx(FMNIST / "t10k-labels-idx1-ubyte.gz").astype(np.int64)
    pred = np.load(d / "pred.npy")
    assert pred.shape == (len(labels),) == (report["images"],)
    # A model that learned something (about 70 %), so agreeing is not agreeing on noise.
    assert report["accuracy"] > 0.5, report
    # The predictions file is what eval counted.
    assert int((pred == labels).sum()) == report["correct"]
    logits = ort_logits(d / "q.onnx", normalised(images))
    ours = np.load(d / "logits.npy")
    assert logits.shape == ours.shape == (len(labels), 10)
    ort_pred = logits.argmax(axis=1)
    agree = float((ort_pred == pred).mean())
    ort_acc = float((ort_pred == labels).mean())
    diff = float(np.abs(logits - ours).max())
    print(f"agreement {agree:.4%}, accuracy limpq {report['accuracy']:.4%} "
          f"onnxruntime {ort_acc:.4%}, max |logit difference| {diff:.3g}")
    assert agree >= 0.999, f"onnxruntime agrees with limpq eval on {agree:.4%} of images"
    assert abs(ort_acc - report["accuracy"]) <= 0.001


def test_exported_model_is_valid_qdq_with_the_bits(run):
    d, _, printed = run
    m = onnx.load(str(d / "q.onnx"))
    onnx.checker.check_model(m, full_check=True)
    assert m.opset_import[0].version == 21
    bits = {n: (w, a) for n, w, a in
            [(l["name"], l["weight_bits"], l["act_bits"])
             for l in json.loads({p.key: p.value for p in m.metadata_props}["limpq.layers"])]}
    assert bits == {"conv1": (8, 8), "conv2": (4, 4), "layer1.0.conv1": (2, 3),
                    "conv3": (6, 5), "fc": (8, 8)}
    init = {t.name: t for t in m.graph.initializer}
    INT4, INT8 = onnx.TensorProto.INT4, onnx.TensorProto.INT8
    for layer, (w, a) in bits.items():
        node = next(n for n in m.graph.node if n.name == layer)
        props = {p.key: p.value for p in node.metadata_props}
        assert (int(props["limpq.weight_bits"]), int(props["limpq.act_bits"])) == (w, a)
        assert f"W{w}A{a}" in node.doc_string and f"W{w}A{a}" in printed
        codes = init[f"{layer}.weight_quantized"]
        assert codes.data_type == (INT4 if w <= 4 else INT8)
        q = onnx.numpy_helper.to_array(codes).astype(np.int64)
        assert q.min() >= -(2 ** (w - 1)) and q.max() <= 2 ** (w - 1) - 1
        # The activation range is the b-bit one: a Clip below 8 bits, the container at 8.
        clip = [n for n in m.graph.node if n.name == f"{layer}.input_clip"]
        assert len(clip) == (1 if a < 8 else 0)
        if clip:
            s = float(onnx.numpy_helper.to_array(init[f"{layer}.input_scale"]))
            hi = float(onnx.numpy_helper.to_array(init[f"{layer}.input_max"]))
            assert hi == pytest.approx((2 ** a - 1) * s, rel=1e-6)


def test_runtime_formats_of_the_exported_model(run, limpq):
    d, _, _ = run
    # The policy's layers are found in a graph by their node names (here the exported one,
    # whose layers read dequantized tensors).
    overrides = json.loads(limpq.run("export", d / "policy.ron", "--format", "ort",
                                     "--onnx-model", d / "q.onnx").stdout)
    o = overrides["TensorQuantOverrides"]
    assert o["conv2.weight"] == [{"quant_type": "QInt4", "symmetric": True}]
    assert o["conv3.weight"] == [{"quant_type": "QInt8", "symmetric": True}]
    assert o["layer1.0.conv1.input_dequantized"] == [{"quant_type": "QUInt4"}]
    assert len(o) == 10
    from onnxruntime.quantization import QuantType
    for v in o.values():
        QuantType.from_string(v[0]["quant_type"])
    trt = limpq.run("export", d / "q.ckpt", "--format", "tensorrt").stdout
    assert "--layerPrecisions=conv1:int8,conv2:int8,layer1.0.conv1:int8,conv3:int8,fc:int8" in trt


def test_bad_inputs_are_named_errors(run, limpq, tmp_path):
    d, _, _ = run
    # A full-precision checkpoint holds no policy.
    r = limpq.run("export", d / "fp.ckpt", "--onnx", tmp_path / "x.onnx", expect=1)
    assert "holds no policy" in r.stderr and "fp.ckpt" in r.stderr, r.stderr
    # More than 8 bits has no QDQ container here.
    (tmp_path / "wide.ron").write_text(POLICY.replace('"conv3", weight: 6', '"conv3", weight: 12'))
    r = limpq.run("export", d / "q.ckpt", "--policy", tmp_path / "wide.ron",
                  "--onnx", tmp_path / "x.onnx", expect=1)
    assert "layer 'conv3'" in r.stderr and "W12A5" in r.stderr, r.stderr
    # Steps learned at other bits are not this policy's: refused, naming the layer.
    (tmp_path / "other_bits.ron").write_text(POLICY.replace('"conv3", weight: 6', '"conv3", weight: 4'))
    r = limpq.run("export", d / "q.ckpt", "--policy", tmp_path / "other_bits.ron",
                  "--onnx", tmp_path / "x.onnx", expect=1)
    assert "layer 'conv3'" in r.stderr and "W6A5" in r.stderr, r.stderr
    # A policy for another model is refused, naming both.
    (tmp_path / "other.ron").write_text(POLICY.replace('model: "small_cnn"', 'model: "resnet20"'))
    r = limpq.run("export", d / "q.ckpt", "--policy", tmp_path / "other.ron",
                  "--onnx", tmp_path / "x.onnx", expect=1)
    assert "resnet20" in r.stderr and "small_cnn" in r.stderr, r.stderr
    # A truncated ONNX model for --onnx-model.
    (tmp_path / "cut.onnx").write_bytes((d / "q.onnx").read_bytes()[:100])
    r = limpq.run("export", d / "policy.ron", "--format", "ort", "--onnx-model",
                  tmp_path / "cut.onnx", expect=1)
    assert "cut.onnx" in r.stderr and "not a valid ONNX model" in r.stderr, r.stderr
    # Neither --onnx nor --format: a usage error.
    limpq.run("export", d / "q.ckpt", expect=2)
    assert not list(tmp_path.glob("x.onnx"))


# A conv reading a BatchNorm's output with no ReLU between (a linear bottleneck, as in
# MobileNetV2): its activations can be negative, so limpq quantizes them signed, and the
# export must say so; ONNX Runtime then predicts what limpq predicts.
BOTTLENECK = """Model(name: "bottleneck", input: (1, 28, 28), classes: 10, nodes: [
  Node(name: "conv1", op: Conv2d(out_channels: 8, kernel: 3, stride: 2, padding: 1), inputs: ["input"]),
  Node(name: "bn1", op: BatchNorm, inputs: ["conv1"]),
  Node(name: "relu1", op: Relu, inputs: ["bn1"]),
  Node(name: "conv2", op: Conv2d(out_channels: 16, kernel: 3, padding: 1), inputs: ["relu1"]),
  Node(name: "bn2", op: BatchNorm, inputs: ["conv2"]),
  Node(name: "conv3", op: Conv2d(out_channels: 16, kernel: 1), inputs: ["bn2"]),
  Node(name: "bn3", op: BatchNorm, inputs: ["conv3"]),
  Node(name: "relu3", op: Relu, inputs: ["bn3"]),
  Node(name: "gap", op: GlobalAvgPool, inputs: ["relu3"]),
  Node(name: "fc", op: Linear(out_features: 10, bias: true), inputs: ["gap"]),
])
"""


def test_a_linear_bottleneck_is_exported_signed_and_runs_alike(limpq, tmp_path):
    need_data_and_gpu(limpq)
    d = tmp_path
    (d / "m.ron").write_text(BOTTLENECK)
    (d / "p.ron").write_text("""(model: "bottleneck", layers: [
        (name: "conv2", weight: 4, act: 4), (name: "conv3", weight: 4, act: 4)],
        objective: 0.0, bitops: 0, weight_bits_total: 0, optimal: false)""")
    common = ["--data-dir", FMNIST, "--batch", "64", "--subset", "1024", "--test-subset", "200"]
    limpq.run("train", "--model", d / "m.ron", *common, "--lr", "0.1", "-o", d / "fp.ckpt")
    limpq.run("finetune", "--ckpt", d / "fp.ckpt", "--policy", d / "p.ron", *common,
              "--lr", "0.01", "-o", d / "q.ckpt")
    report = limpq.json("eval", "--ckpt", d / "q.ckpt", "--data-dir", FMNIST,
                        "--logits", d / "logits.npy")
    limpq.run("export", d / "q.ckpt", "--onnx", d / "q.onnx")
    m = onnx.load(str(d / "q.onnx"))
    layers = json.loads({p.key: p.value for p in m.metadata_props}["limpq.layers"])
    containers = {l["name"]: l["act_container"] for l in layers}
    # The stem reads the image and conv3 the BatchNorm: signed; conv2 and fc a ReLU's output.
    assert containers == {"conv1": "INT8", "conv2": "UINT8", "conv3": "INT8", "fc": "UINT8"}
    logits = ort_logits(d / "q.onnx", normalised(idx(FMNIST / "t10k-images-idx3-ubyte.gz")))
    ours = np.load(d / "logits.npy")
    agree = float((logits.argmax(axis=1) == ours.argmax(axis=1)).mean())
    assert report["images"] == len(ours)
    assert agree >= 0.999, f"onnxruntime agrees with limpq eval on {agree:.4%} of images"
