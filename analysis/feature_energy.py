#!/usr/bin/python3
"""How far a calibration set is from a reference set in what the batch statistics leave free: each channel's energy.

Batch-statistics synthesis holds, at every BN layer, each channel's mean and variance of the convolution's output.
What it does not hold is how much energy each channel of a convolution's *input* carries (the image's, and the ReLU
outputs'): the next layer's statistics constrain that energy only along its filters. Rounding a convolution's
weights is fitted to its inputs' second moments (the AdaRound objective of docs/method.md), so a set whose input
energies differ per channel from real images' weights the rounding errors differently. For every convolution of a
CIFAR ResNet this prints the log of E[x_c^2] (over images and positions) of each input channel, set against
reference, averaged over the channels (signed: > 0 when the set carries more energy) and the mean over channels of
its absolute value; at the end the mean over layers of the latter. Two samples of real images differ by about 0.03.
docs/campaigns.md section 4 has a measurement.

usage: analysis/feature_energy.py REF.h5 SET.h5 [SET.h5 ...] [--images N] [--weights FILE] [--threads N]
  REF.h5, SET.h5: dsgq-synth/1 files (dsgq synth/sweep output, real sets included) made for the same CIFAR ResNet.
  --images: how many images of each file to use (the first N; default 512).
  --weights: the model's state_dict (default: the one recorded in REF.h5).
Needs python3-torch and python3-h5py. Exit 2 with one line on bad input."""
import argparse
import os
import re
import sys

import h5py
import torch
import torch.nn.functional as F


def fail(msg):
    print(f"feature_energy: {msg}", file=sys.stderr)
    sys.exit(2)


def load_set(path, n):
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        fail(f"{path}: cannot open as HDF5 ({e})")
    fmt = f.attrs.get("format", b"")
    fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
    if fmt != "dsgq-synth/1" or "images" not in f:
        fail(f"{path}: format {fmt!r} with datasets {sorted(f)}, expected 'dsgq-synth/1' with 'images'")
    model = f.attrs.get("model", b"")
    model = model.decode() if isinstance(model, bytes) else str(model)
    weights = f.attrs.get("weights", b"")
    weights = weights.decode() if isinstance(weights, bytes) else str(weights)
    images = f["images"]
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, 32, 32):
        fail(f"{path}: images of shape {tuple(images.shape)}, expected (N, 3, 32, 32)")
    return model, weights, torch.from_numpy(images[: min(n, images.shape[0])])


def conv_input_energy(sd, depth, x):
    """E[x_c^2] per input channel of every convolution of the CIFAR ResNet (basic blocks, option-A shortcuts, BN in
    inference mode), in forward order, as (name, tensor) pairs."""
    out = []

    def conv(name, a, stride):
        out.append((name, (a.double() ** 2).mean((0, 2, 3))))
        return F.conv2d(a, sd[name + ".weight"], None, stride, 1)

    def bn(name, a):
        return F.batch_norm(a, sd[name + ".running_mean"], sd[name + ".running_var"], sd[name + ".weight"],
                            sd[name + ".bias"], False, 0.0, 1e-5)

    n = (depth - 2) // 6
    x = F.relu(bn("bn1", conv("conv1", x, 1)))
    for s, planes in ((1, 16), (2, 32), (3, 64)):
        for i in range(n):
            p = f"layer{s}.{i}"
            stride = 2 if (s > 1 and i == 0) else 1
            h = F.relu(bn(p + ".bn1", conv(p + ".conv1", x, stride)))
            h = bn(p + ".bn2", conv(p + ".conv2", h, 1))
            if stride != 1 or x.shape[1] != planes:
                sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            else:
                sc = x
            x = F.relu(h + sc)
    return out


def log_ratio(e, er):
    """log(E[x_c^2] / reference's) over the channels the reference uses (energy > 1e-6); a channel dead in the set
    counts as 1e-6, so it shows as a large mismatch rather than an infinite one."""
    ok = er > 1e-6
    return (e[ok].clamp_min(1e-6) / er[ok]).log()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ref")
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--weights")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.images < 1:
        fail(f"--images {a.images}: expected at least 1")
    torch.set_num_threads(a.threads)
    model, weights, xr = load_set(a.ref, a.images)
    m = re.fullmatch(r"resnet(20|32|44|56|110)", model)
    if not m:
        fail(f"{a.ref}: model {model!r}, expected a CIFAR ResNet (resnet20/32/44/56/110)")
    weights = a.weights or weights
    if not os.path.isfile(weights):
        fail(f"{a.ref}: weights {weights!r} (recorded in the file) do not exist; name them with --weights")
    sd = {k: v.float() for k, v in torch.load(weights).items()}
    depth = int(m.group(1))
    with torch.no_grad():
        ref = conv_input_energy(sd, depth, xr)
        rows = []
        for path in a.sets:
            mod, _, x = load_set(path, a.images)
            if mod != model:
                fail(f"{path}: model {mod!r}, expected {model!r} as in {a.ref}")
            rows.append((os.path.basename(path), conv_input_energy(sd, depth, x)))
    print(f"reference: {os.path.basename(a.ref)} ({xr.shape[0]} images); per convolution, over its input channels "
          "with reference energy > 1e-6: mean log(E[x^2] / reference's), then mean |log ratio|")
    for j, (name, er) in enumerate(ref):
        cells = []
        for _, e in rows:
            lr = log_ratio(e[j][1], er)
            cells.append(f"{lr.mean().item():+6.3f} {lr.abs().mean().item():5.3f}")
        print(f"{name:16s} " + "   ".join(cells))
    for label, e in rows:
        total = sum(log_ratio(e[j][1], er).abs().mean().item() for j, (_, er) in enumerate(ref))
        stages = []
        for stage in ("conv1", "layer1.", "layer2.", "layer3."):
            v = [log_ratio(e[j][1], er).mean().item() for j, (name, er) in enumerate(ref) if name.startswith(stage)]
            stages.append(f"{stage.rstrip('.')} {sum(v) / len(v):+.2f}")
        print(f"{label}: mean over {len(ref)} convolutions of mean |log ratio| {total / len(ref):.3f}; signed, "
              f"per stage: {', '.join(stages)}")


if __name__ == "__main__":
    main()
