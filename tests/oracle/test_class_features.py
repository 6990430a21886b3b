#!/usr/bin/python3
"""analysis/class_features.py against the independent model definitions (models_ref.py, a forward hook on the linear
layer's input):

1. 256 real CIFAR-10 test images with their true labels on the real resnet20, grouped by predicted class and by
   target: every printed figure (agreement, the distance's mean, p5, p95 and shares, the centroid cosine, the norm)
   equals the one computed here from the hooked features, to the printed precision.
2. Ten images of ten different predicted classes, each repeated five times: every distance is 0 (share below the low
   margin 1.000) and the centroid cosine is the mean cosine between the ten images' own features.
3. Bad input: --by target on a set whose labels are -1, a file without labels, a file of another model, a missing
   file, low >= high: exit 2, one line naming the file or the option."""
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_ref  # noqa: E402
from oracle_util import check, check_input_error, cifar10_test, default_data_dir, finish  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis", "class_features.py")
LINE = re.compile(r"^(\S+): (\d+) images in (\d+) classes \((\d+) single\), agree (\S+); distance (\S+) p5 (\S+) "
                  r"p95 (\S+), < \S+ (\S+), > \S+ (\S+); centroid cosine (\S+); norm (\S+)$")


def write_set(path, images, labels, model="resnet20", weights=""):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = np.bytes_("dsgq-synth/1")
        f.attrs["model"] = np.bytes_(model)
        f.attrs["weights"] = np.bytes_(weights)
        f.create_dataset("images", data=images.numpy().astype(np.float32))
        if labels is not None:
            f.create_dataset("labels", data=labels.numpy().astype(np.int32))


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args, "--threads", "1"], capture_output=True, text=True)


def parse(out):
    rows = {}
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            g = m.groups()
            rows[g[0]] = [int(g[1]), int(g[2]), int(g[3]), None if g[4] == "-" else float(g[4])] + \
                [float(v) for v in g[5:]]
    return rows


def features(model, x):
    got = {}
    h = model.linear.register_forward_hook(lambda mod, inp, out: got.__setitem__("f", inp[0].double()))
    with torch.no_grad():
        logits = model(x)
    h.remove()
    return got["f"], logits.argmax(1)


def expected(f, classes):
    """[distance mean, p5, p95, share < 0.05, share > 0.8, centroid cosine, norm] written out with plain loops."""
    dist, cents = [], []
    for k in sorted(set(classes.tolist())):
        idx = [i for i in range(len(classes)) if classes[i] == k]
        if len(idx) < 2:
            continue
        c = sum(f[i] for i in idx) / len(idx)
        cents.append(c)
        dist += [1.0 - float(torch.dot(f[i], c) / (f[i].norm() * c.norm())) for i in idx]
    d = torch.tensor(dist, dtype=torch.float64)
    cos = [float(torch.dot(a, b) / (a.norm() * b.norm())) for i, a in enumerate(cents) for j, b in enumerate(cents)
           if i != j]
    return [d.mean().item(), d.quantile(0.05).item(), d.quantile(0.95).item(), (d < 0.05).double().mean().item(),
            (d > 0.8).double().mean().item(), sum(cos) / len(cos), f.norm(dim=1).mean().item()]


def main():
    data = default_data_dir()
    weights = os.path.join(data, "models", "cifar10_resnet20.pt")
    x, y = cifar10_test(data)
    x, y = x[:256], torch.as_tensor(y[:256]).long()
    model = models_ref.ResNetCifar(20)
    model.load_state_dict(torch.load(weights))
    model.eval()
    f, pred = features(model, x)
    with tempfile.TemporaryDirectory() as tmp:
        pa = os.path.join(tmp, "real.h5")
        write_set(pa, x, y, weights=weights)
        for by, classes in (("predicted", pred), ("target", y)):
            r = run(pa, "--by", by)
            check(r.returncode == 0, f"--by {by}: exit {r.returncode} ({r.stderr.strip()[-200:]})")
            row = parse(r.stdout).get("real.h5")
            check(row is not None, f"--by {by}: one line for real.h5 ({r.stdout.strip()[-300:]!r})")
            if row is None:
                continue
            want = expected(f, classes)
            acc = (pred == y).double().mean().item()
            check(row[0] == 256 and abs(row[3] - acc) <= 5e-4,
                  f"--by {by}: 256 images, agreement {row[3]} as the hooked model's accuracy {acc:.4f}")
            tol = [5e-4] * 6 + [5e-3]
            diffs = [abs(g - w) for g, w in zip(row[4:], want)]
            check(all(dv <= t for dv, t in zip(diffs, tol)),
                  f"--by {by}: distance, percentiles, shares, centroid cosine and norm {row[4:]} as computed from "
                  f"the hooks {[round(v, 4) for v in want]}")

        # Ten images of ten predicted classes, each five times: distance 0, centroids = the images' own features.
        pick = [int((pred == k).nonzero()[0]) for k in range(10)]
        rep = torch.tensor(pick).repeat_interleave(5)
        p10 = os.path.join(tmp, "rep.h5")
        write_set(p10, x[rep], torch.full((50,), -1), weights=weights)
        r = run(p10)
        row = parse(r.stdout).get("rep.h5")
        fn = F.normalize(f[pick], dim=1)
        cos = ((fn @ fn.T).sum() - 10) / 90
        check(row is not None and row[1] == 10 and row[3] is None and max(row[4:7]) <= 5e-4 and row[7] == 1.0
              and abs(row[9] - cos.item()) <= 5e-4,
              f"ten images repeated five times: 10 classes, no agreement, distance 0, share below 0.05 1, centroid "
              f"cosine {cos.item():.4f} ({row})")

        # Bad input: exit 2, one line naming the file or the option.
        pno, p56 = os.path.join(tmp, "nolabels.h5"), os.path.join(tmp, "r56.h5")
        write_set(pno, x, None, weights=weights)
        write_set(p56, x, y, model="resnet56", weights=weights)
        for args, want, what in (([p10, "--by", "target"], "rep.h5: labels of 50 images are -1", "no class targets"),
                                 ([pno], "nolabels.h5: no 'labels' of shape (256,)", "no labels"),
                                 ([pa, p56], "r56.h5: model 'resnet56', expected 'resnet20'", "another model"),
                                 ([os.path.join(tmp, "missing.h5")], "missing.h5: cannot open", "a missing file"),
                                 ([pa, "--low", "0.5", "--high", "0.5"], "--low 0.5 --high 0.5: expected 0 <= low",
                                  "low >= high")):
            check_input_error(run(*args), want, what)
    finish("class_features")


if __name__ == "__main__":
    main()
