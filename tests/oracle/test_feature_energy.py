#!/usr/bin/python3
"""analysis/feature_energy.py against the independent model definitions (models_ref.py, nn.Module with forward hooks):

1. Two samples of real CIFAR-10 test images (64 each) on the real resnet20: every convolution's signed and absolute
   mean log energy ratio as printed equals the one computed here from hooks on models_ref's network, to 2e-3
   (the script prints three decimals).
2. The same file against itself: every figure 0.000. The images doubled: the image's ratio is log 4 = 1.386 exactly
   (E[(2x)^2] = 4 E[x^2]) and the first ReLU's inputs move too.
3. Bad input: a file of another model, a file without images, a missing file: exit 2, one line naming the file."""
import math
import os
import re
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_ref  # noqa: E402
from oracle_util import check, check_input_error, cifar10_test, default_data_dir, finish  # noqa: E402

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis", "feature_energy.py")


def write_set(path, images, model="resnet20", weights=""):
    with h5py.File(path, "w") as f:
        f.attrs["format"] = np.bytes_("dsgq-synth/1")
        f.attrs["model"] = np.bytes_(model)
        f.attrs["weights"] = np.bytes_(weights)
        if images is not None:
            f.create_dataset("images", data=images.numpy().astype(np.float32))


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args, "--threads", "1"], capture_output=True, text=True)


def parse(out):
    """{conv name: [(signed, abs) per set]} and the summary lines."""
    rows = {}
    for line in out.splitlines():
        m = re.match(r"^(conv1|layer\d\.\d+\.conv\d)\s+(.*)$", line)
        if m:
            nums = [float(v) for v in m.group(2).split()]
            rows[m.group(1)] = list(zip(nums[0::2], nums[1::2]))
    return rows


def ref_energy(model, x):
    energy = {}
    hooks = [mod.register_forward_hook(lambda mod, inp, out, n=n: energy.__setitem__(
        n, (inp[0].double() ** 2).mean((0, 2, 3)))) for n, mod in model.named_modules()
        if isinstance(mod, torch.nn.Conv2d)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return energy


def main():
    data = default_data_dir()
    weights = os.path.join(data, "models", "cifar10_resnet20.pt")
    x, _ = cifar10_test(data)
    a, b = x[:64], x[64:128]
    model = models_ref.ResNetCifar(20)
    model.load_state_dict(torch.load(weights))
    model.eval()
    with tempfile.TemporaryDirectory() as tmp:
        pa, pb, p2 = (os.path.join(tmp, f) for f in ("a.h5", "b.h5", "a2.h5"))
        write_set(pa, a, weights=weights)
        write_set(pb, b, weights=weights)
        write_set(p2, 2 * a, weights=weights)

        r = run(pa, pb, pa, p2)
        check(r.returncode == 0, f"feature_energy.py on three sets: exit {r.returncode} ({r.stderr.strip()[-200:]})")
        rows = parse(r.stdout)
        ea, eb = ref_energy(model, a), ref_energy(model, b)
        check(len(rows) == 19 and set(rows) == set(ea),
              f"one row per convolution of resnet20: {len(rows)} rows, expected 19 named as the model's modules")
        worst = 0.0
        for name, cells in rows.items():
            ok = ea[name] > 1e-6
            lr = (eb[name][ok].clamp_min(1e-6) / ea[name][ok]).log()
            worst = max(worst, abs(cells[0][0] - lr.mean().item()), abs(cells[0][1] - lr.abs().mean().item()))
        check(worst <= 2e-3, f"another real sample: every printed ratio as models_ref's hooks give it "
                             f"(max |diff| {worst:.4f}, expected <= 2e-3)")
        same = max(abs(v) for cells in rows.values() for v in cells[1])
        check(same == 0.0, f"the reference against itself: every figure 0 (max {same})")
        img = rows.get("conv1", [(0, 0)] * 3)[2]
        check(abs(img[0] - math.log(4)) < 1e-3 and abs(img[1] - math.log(4)) < 1e-3,
              f"the images doubled: the image's ratio {img[0]:+.3f} / {img[1]:.3f}, expected log 4 = 1.386")
        check(abs(rows.get("layer1.0.conv1", [(0, 0)] * 3)[2][0]) > 0.05,
              "the images doubled: the first ReLU's outputs change energy too")
        check(re.search(r"a2\.h5: mean over 19 convolutions of mean \|log ratio\| \d\.\d{3}; signed, per stage: "
                        r"conv1 \+1\.39, layer1 ", r.stdout) is not None, "the summary line of the doubled set")

        # Bad input: exit 2, one line naming the file.
        p56, pno = os.path.join(tmp, "r56.h5"), os.path.join(tmp, "noimg.h5")
        write_set(p56, a, model="resnet56", weights=weights)
        write_set(pno, None, weights=weights)
        for args, want, what in (([pa, p56], "r56.h5: model 'resnet56', expected 'resnet20'", "another model"),
                                 ([pno, pa], "noimg.h5: format 'dsgq-synth/1' with datasets []", "no images"),
                                 ([os.path.join(tmp, "missing.h5"), pa], "missing.h5: cannot open", "a missing file")):
            check_input_error(run(*args), want, what)
    finish("feature_energy")


if __name__ == "__main__":
    main()
