#!/usr/bin/python3
"""Where does the accuracy gap between two calibration sets come from: the rounded weights or the activation steps?

Given two result records of the same CIFAR ResNet point (protocol qdrop or adaround, which export BN-folded
weights) calibrated on different data (say A = synthetic, B = real), this rebuilds A's quantized network from its
exported files alone (<key>.pt: the rounded, folded weights; <key>.encodings.json: the activation quantizers, AIMET
layout) and evaluates it on the 10,000 CIFAR-10 test images as it is, then with B's activation encodings put in place
of A's: at every site, and per group of sites (the stem, each stage, the first and second ReLU of the blocks); and
B's weights with A's steps. If A's weights with B's steps reach B's top-1, the gap is in the steps.
docs/campaigns.md section 4 has a measurement.

usage: analysis/swap_steps.py A.json B.json [--data DIR] [--threads N]
  A.json, B.json: dsgq result records (runs/<dir>/results/<key>.json) of the same arch and precision.
  --data: the folder holding cifar10/test_batch.bin ($DSGQ_DATA, else ../shared/data beside the checkout).
Needs python3-torch. Exit 2 with one line on bad input."""
import argparse
import json
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)  # the CIFAR models' normalisation (src/models/resnet_cifar.cpp)
STD = (0.229, 0.224, 0.225)


def fail(msg):
    print(f"swap_steps: {msg}", file=sys.stderr)
    sys.exit(2)


def load_point(path):
    try:
        with open(path) as f:
            rec = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: cannot read a result record ({e})")
    if rec.get("format") != "dsgq-result/1":
        fail(f"{path}: format {rec.get('format')!r}, expected 'dsgq-result/1'")
    p, out = rec["point"], rec.get("outputs", {})
    if p.get("protocol") not in ("qdrop", "adaround"):
        fail(f"{path}: protocol {p.get('protocol')!r}; only qdrop and adaround export folded weights")
    if not re.fullmatch(r"resnet(20|32|44|56|110)", p.get("arch", "")):
        fail(f"{path}: arch {p.get('arch')!r}; expected a CIFAR ResNet (resnet20/32/44/56/110)")
    files = {}
    for k in ("state_dict", "encodings"):
        # As recorded (relative paths are relative to where dsgq ran), else beside the record: <dir>/quant/<name>.
        beside = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "quant",
                              os.path.basename(out.get(k) or ""))
        files[k] = next((f for f in (out.get(k), beside) if f and os.path.isfile(f)), None)
        if files[k] is None:
            fail(f"{path}: outputs.{k} = {out.get(k)!r} does not exist (nor {beside})")
    sd = {k: v.float().contiguous() for k, v in torch.load(files["state_dict"]).items()}
    with open(files["encodings"]) as f:
        enc = {k: v["output"]["0"] for k, v in json.load(f)["activation_encodings"].items()}
    return rec, sd, enc


def fake_quant(x, e):
    if e is None:
        return x
    scale, offset, qmax = float(e["scale"]), float(e["offset"]), float(2 ** int(e["bitwidth"]) - 1)
    return (torch.clamp(torch.round(x / scale) - offset, 0.0, qmax) + offset) * scale


def forward(sd, enc, depth, x):
    """The folded CIFAR ResNet (basic blocks, option-A shortcuts), each activation site fake-quantized."""
    n = (depth - 2) // 6
    x = fake_quant(F.relu(F.conv2d(x, sd["conv1.weight"], sd["conv1.bias"], 1, 1)), enc.get("relu"))
    for s, planes in ((1, 16), (2, 32), (3, 64)):
        for i in range(n):
            p = f"layer{s}.{i}"
            stride = 2 if (s > 1 and i == 0) else 1
            out = F.relu(F.conv2d(x, sd[p + ".conv1.weight"], sd[p + ".conv1.bias"], stride, 1))
            out = fake_quant(out, enc.get(p + ".relu1"))
            out = F.conv2d(out, sd[p + ".conv2.weight"], sd[p + ".conv2.bias"], 1, 1)
            if stride != 1 or x.shape[1] != planes:  # option A: subsample, zero-pad planes/4 channels each side
                sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            else:
                sc = x
            x = fake_quant(F.relu(out + sc), enc.get(p + ".relu2"))
    return F.linear(x.mean((2, 3)), sd["linear.weight"], sd["linear.bias"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--data", default=os.environ.get("DSGQ_DATA") or os.path.join(here, "..", "..", "shared", "data"))
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ra, sda, enca = load_point(a.a)
    rb, sdb, encb = load_point(a.b)
    for k in ("arch", "precision"):
        if ra["point"][k] != rb["point"][k]:
            fail(f"{a.b}: point.{k} = {rb['point'][k]!r}, expected {ra['point'][k]!r} as in {a.a}")
    if set(enca) != set(encb):
        fail(f"{a.b}: activation sites {sorted(set(encb) ^ set(enca))} differ from {a.a}'s")
    test = os.path.join(a.data, "cifar10", "test_batch.bin")
    if not os.path.exists(test):
        fail(f"{test}: the CIFAR-10 test batch is missing (--data or $DSGQ_DATA)")
    raw = np.fromfile(test, dtype=np.uint8).reshape(-1, 3073)
    y = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].copy()).view(-1, 3, 32, 32).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    depth = int(ra["point"]["arch"][6:])

    def top1(sd, enc):
        with torch.no_grad():
            hits = sum((forward(sd, enc, depth, x[i:i + 100]).argmax(1) == y[i:i + 100]).sum().item()
                       for i in range(0, len(y), 100))  # small batches stay in cache: 10x faster here
        return 100.0 * hits / len(y)

    print(f"A: {ra['key']} (record top1 {ra['metrics']['top1']:.2f})")
    print(f"B: {rb['key']} (record top1 {rb['metrics']['top1']:.2f})")
    print(f"A's weights, A's steps: {top1(sda, enca):.2f}  (rebuilt from A's files)", flush=True)
    sites = sorted(enca)
    groups = [("every site", sites), ("stem (relu)", ["relu"])]
    groups += [(f"layer{s}", [t for t in sites if t.startswith(f"layer{s}.")]) for s in (1, 2, 3)]
    groups += [("blocks' relu1", [t for t in sites if t.endswith(".relu1")]),
               ("blocks' relu2", [t for t in sites if t.endswith(".relu2")])]
    for name, group in groups:
        enc = dict(enca)
        enc.update({t: encb[t] for t in group})
        print(f"A's weights, B's steps at {name}: {top1(sda, enc):.2f}", flush=True)
    print(f"B's weights, A's steps at every site: {top1(sdb, enca):.2f}", flush=True)


if __name__ == "__main__":
    main()
