#!/usr/bin/env python3
"""Runs an ONNX model (e.g. `limpq export Q.ckpt --onnx q.onnx`) with ONNX Runtime on the
val/ split of an image folder and compares with `limpq eval --predictions`.

    python3 scripts/ort-folder-eval.py q.onnx FOLDER --mean 0.286 --std 0.353 [--pred pred.npy]

The images are decoded here (Pillow), independently of limpq: gray or RGB to the model's
channels, the model's input size (they must already have it: no resize), normalised as
`(pixel / 255 - mean) / std`. Classes are the sorted sub-folders of val/, files sorted
within a class: limpq's order. Needs numpy, onnxruntime and pillow.
"""
import argparse
import os

import numpy as np
import onnxruntime as ort
from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("folder")
ap.add_argument("--mean", type=float, nargs="+", required=True)
ap.add_argument("--std", type=float, nargs="+", required=True)
ap.add_argument("--pred", help="limpq eval --predictions file to compare with")
a = ap.parse_args()

sess = ort.InferenceSession(a.model, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
c = inp.shape[1]
val = os.path.join(a.folder, "val")
xs, ys = [], []
for label, cls in enumerate(sorted(d for d in os.listdir(val) if not d.startswith("."))):
    for root, dirs, files in sorted(os.walk(os.path.join(val, cls))):
        for f in sorted(files):
            if f.lower().endswith((".png", ".jpg", ".jpeg")) and not f.startswith("."):
                img = Image.open(os.path.join(root, f)).convert("L" if c == 1 else "RGB")
                x = np.asarray(img, np.float32).reshape(img.height, img.width, c).transpose(2, 0, 1)
                xs.append(x)
                ys.append(label)
x = np.stack(xs)
mean = np.array(a.mean, np.float32).reshape(1, -1, 1, 1)
std = np.array(a.std, np.float32).reshape(1, -1, 1, 1)
x = ((x / np.float32(255.0) - mean) / std).astype(np.float32)
logits = sess.run(None, {inp.name: x})[0]
pred = logits.argmax(1)
acc = (pred == np.array(ys)).mean() * 100
print(f"ONNX Runtime {ort.__version__}: {len(ys)} images, accuracy {acc:.2f}%")
if a.pred:
    lp = np.load(a.pred)
    same = (lp == pred).mean() * 100
    lacc = (lp == np.array(ys)).mean() * 100
    print(f"limpq eval: accuracy {lacc:.2f}%; same predicted class on {same:.2f}% of images")
