"""The layer table the reference search counts BitOps with, as a `limpq import-limpq
--layers` CSV: `limpq layers resnet50 --format json | python3 reference_counting.py`.

The reference code measures each conv's output positions in floating point,
(H + 2p - k) / s + 1 per side, and floors only the product. Every stride-2 conv of
ResNet-50 has an even input H, so each side comes out as Hout + 0.5: layer2.0.conv2 is
counted at int(28.5 * 28.5) = 812 positions where the layer has 28 * 28 = 784 (+3.6%);
the layer3 and layer4 ones at 210 (196) and 56 (49). Stride-1 layers count exactly.
"""
import json
import sys

doc = json.load(sys.stdin)
print("name,macs,params,fixed_w,fixed_a")
for r in doc["rows"]:
    macs = r["macs"]
    (_, h_in, w_in), (_, h, w) = r["inputs"][0], r["output"]
    if r["kind"] == "conv" and (h_in, w_in) == (2 * h, 2 * w):
        macs = macs // (h * w) * int((h + 0.5) * (w + 0.5))
    fixed = "8,8" if r["fixed"] else ","
    print(f"{r['name']},{macs},{r['params']},{fixed}")
