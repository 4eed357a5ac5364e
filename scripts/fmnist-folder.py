#!/usr/bin/env python3
"""Writes Fashion-MNIST (or MNIST) as an image folder: OUT/train/<class>/N.png and
OUT/val/<class>/N.png, the layout `limpq --data folder` reads (docs/DATA.md).

    python3 scripts/fmnist-folder.py OUT [--idx /usr/share/datasets/fashion-mnist]
                                         [--train 600] [--val 100]

--train / --val: images per class (the first ones of each class in file order; 0: all).
Standard library only: the IDX files (gzipped or not) are read and the 8-bit gray PNGs
written by hand, so it runs anywhere Python 3 does.
"""
import argparse
import gzip
import os
import struct
import sys
import zlib

CLASSES = ["0-tshirt", "1-trouser", "2-pullover", "3-dress", "4-coat",
           "5-sandal", "6-shirt", "7-sneaker", "8-bag", "9-boot"]


def read_idx(path):
    for p in (path + ".gz", path):
        if os.path.isfile(p):
            with open(p, "rb") as f:
                data = f.read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            if data[:3] != b"\x00\x00\x08":
                sys.exit(f"{p}: not an IDX file of unsigned bytes")
            n = data[3]
            dims = struct.unpack(">" + "I" * n, data[4:4 + 4 * n])
            return dims, data[4 + 4 * n:]
    sys.exit(f"neither {path}.gz nor {path} found")


def png(width, height, pixels):
    """An 8-bit grayscale PNG of `pixels` (rows top to bottom)."""
    def chunk(kind, body):
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def write_split(idx_dir, prefix, out, per_class):
    (n, h, w), images = read_idx(os.path.join(idx_dir, f"{prefix}-images-idx3-ubyte"))
    (_,), labels = read_idx(os.path.join(idx_dir, f"{prefix}-labels-idx1-ubyte"))
    counts = [0] * 10
    for i in range(n):
        c = labels[i]
        if per_class and counts[c] >= per_class:
            continue
        d = os.path.join(out, CLASSES[c])
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"{i:05d}.png"), "wb") as f:
            f.write(png(w, h, images[i * h * w:(i + 1) * h * w]))
        counts[c] += 1
    return sum(counts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--idx", default=os.environ.get("LIMPQ_DATA", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--train", type=int, default=600, help="training images per class (0: all)")
    ap.add_argument("--val", type=int, default=100, help="test images per class (0: all)")
    a = ap.parse_args()
    nt = write_split(a.idx, "train", os.path.join(a.out, "train"), a.train)
    nv = write_split(a.idx, "t10k", os.path.join(a.out, "val"), a.val)
    print(f"wrote {nt} training and {nv} test images to {a.out}/train and {a.out}/val")


if __name__ == "__main__":
    main()
