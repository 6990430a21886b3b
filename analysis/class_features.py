#!/usr/bin/python3
"""How a calibration set's images sit around their classes in the features the classifier reads.

For every set this takes the global-average-pooled features f_i of the last stage (the linear layer's input) of a
CIFAR ResNet, groups the images by class (the network's predicted class by default; --by target: the labels stored
in the file, as dsgq's class-target methods write them), and prints one line:
  - agree: the share of images whose predicted class is their stored label (sets without labels: "-");
  - intra-class cosine distance 1 - cos(f_i, c_k) of each image to its class centroid c_k (the mean feature of its
    class in the set): mean, 5th and 95th percentile, and the shares below --low and above --high. IntraQ's marginal
    distance constraint (Zhong et al., CVPR 2022) holds synthetic images inside [0.05, 0.8] of such a centroid, the
    defaults here, so the shares say how much of the set such a constraint would push;
  - the mean cosine between the centroids of two different classes (lower: classes further apart);
  - the mean feature norm.
Classes with fewer than two images are left out (their count is printed). Real images of the CIFAR ResNets in this
repository: intra-class distance about 0.06 and centroid cosine 0.54-0.61. docs/campaigns.md section 4 has a
measurement.

usage: analysis/class_features.py SET.h5 [SET.h5 ...] [--images N] [--by predicted|target] [--low L] [--high H]
                                  [--weights FILE] [--threads N]
  SET.h5: dsgq-synth/1 files (dsgq synth/sweep output, real sets included) of one CIFAR ResNet.
  --images: how many images of each file to use (the first N; default 1024).
  --weights: the model's state_dict (default: the one recorded in the first file).
Needs python3-torch and python3-h5py. Exit 2 with one line on bad input."""
import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cifar_sets import fail, forward, load_set, load_weights  # noqa: E402

TOOL = "class_features"


def class_figures(f, classes, n_classes, low, high):
    """The figures of one set from its features f [N, D] and a class per image; see the module's docstring."""
    dist, centroids, few = [], [], 0
    for k in range(n_classes):
        fk = f[classes == k]
        if fk.shape[0] < 2:
            few += fk.shape[0] > 0
            continue
        c = fk.mean(0)
        centroids.append(c)
        dist.append(1.0 - F.cosine_similarity(fk, c[None], dim=1, eps=1e-12))
    if len(centroids) < 2:
        return None
    d = torch.cat(dist)
    cn = F.normalize(torch.stack(centroids), dim=1)
    off = (cn @ cn.T)[~torch.eye(len(centroids), dtype=torch.bool)]
    return {"n": d.numel(), "classes": len(centroids), "few": few, "mean": d.mean().item(),
            "p5": d.quantile(0.05).item(), "p95": d.quantile(0.95).item(), "low": (d < low).double().mean().item(),
            "high": (d > high).double().mean().item(), "centroid_cos": off.mean().item(),
            "norm": f.norm(dim=1).mean().item()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("sets", nargs="+")
    ap.add_argument("--images", type=int, default=1024)
    ap.add_argument("--by", choices=("predicted", "target"), default="predicted")
    ap.add_argument("--low", type=float, default=0.05)
    ap.add_argument("--high", type=float, default=0.8)
    ap.add_argument("--weights")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.images < 2:
        fail(TOOL, f"--images {a.images}: expected at least 2")
    if not 0.0 <= a.low < a.high <= 2.0:
        fail(TOOL, f"--low {a.low} --high {a.high}: expected 0 <= low < high <= 2 (cosine distances)")
    torch.set_num_threads(a.threads)
    model = sd = depth = None
    print(f"features: the pooled input of the classifier; classes: {a.by}; cosine distance to the class centroid: "
          f"mean, p5, p95, share < {a.low:g}, share > {a.high:g}; mean cosine between class centroids; mean norm")
    for path in a.sets:
        mod, weights, x, labels = load_set(TOOL, path, a.images, labels=True)
        if model is None:
            model = mod
            sd, depth = load_weights(TOOL, path, model, a.weights or weights)
        elif mod != model:
            fail(TOOL, f"{path}: model {mod!r}, expected {model!r} as in {a.sets[0]}")
        with torch.no_grad():
            f = forward(sd, depth, x).double()
            pred = (f @ sd["linear.weight"].double().T + sd["linear.bias"].double()).argmax(1)
        n_classes = sd["linear.weight"].shape[0]
        has_labels = bool((labels >= 0).all())
        if a.by == "target" and not has_labels:
            fail(TOOL, f"{path}: labels of {int((labels < 0).sum())} images are -1 (a set without class targets), "
                       "expected every label in 0..K-1 with --by target")
        if has_labels and int(labels.max()) >= n_classes:
            fail(TOOL, f"{path}: label {int(labels.max())}, expected below the network's {n_classes} classes")
        agree = f"{(pred == labels).double().mean().item():5.3f}" if has_labels else "-"
        r = class_figures(f, labels if a.by == "target" else pred, n_classes, a.low, a.high)
        name = os.path.basename(path)
        if r is None:
            print(f"{name}: {x.shape[0]} images, fewer than two classes with two images or more; agree {agree}")
            continue
        print(f"{name}: {r['n']} images in {r['classes']} classes ({r['few']} single), agree {agree}; distance "
              f"{r['mean']:.3f} p5 {r['p5']:.3f} p95 {r['p95']:.3f}, < {a.low:g} {r['low']:.3f}, > {a.high:g} "
              f"{r['high']:.3f}; centroid cosine {r['centroid_cos']:.3f}; norm {r['norm']:.2f}")


if __name__ == "__main__":
    main()
