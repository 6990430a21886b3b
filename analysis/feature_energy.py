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
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar_sets import fail, forward, load_set, load_weights  # noqa: E402

TOOL = "feature_energy"


def conv_input_energy(sd, depth, x):
    """E[x_c^2] per input channel of every convolution of the CIFAR ResNet, in forward order, as (name, tensor)
    pairs."""
    out = []
    forward(sd, depth, x, lambda name, a: out.append((name, (a.double() ** 2).mean((0, 2, 3)))))
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
        fail(TOOL, f"--images {a.images}: expected at least 1")
    torch.set_num_threads(a.threads)
    model, weights, xr = load_set(TOOL, a.ref, a.images)
    sd, depth = load_weights(TOOL, a.ref, model, a.weights or weights)
    with torch.no_grad():
        ref = conv_input_energy(sd, depth, xr)
        rows = []
        for path in a.sets:
            mod, _, x = load_set(TOOL, path, a.images)
            if mod != model:
                fail(TOOL, f"{path}: model {mod!r}, expected {model!r} as in {a.ref}")
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
