#!/usr/bin/python3
"""PNG figures of a dsgq runs folder (the output.dir of dsgq run/sweep), from its records and synthetic sets only:
  report/accuracy_vs_bits_<arch>.png  top-1 against bit-width, one line per calibration data source, one panel
                                      per quantization method (mean +/- std over seeds)
  report/loss_curves.png              synthesis loss per iteration (mean over batches) of every dsg/zeroq set
  report/samples.png                  the first 8 images of one set per data source (seed 0)
  report/bn_spread.png                per BN layer, spread (std over samples of each channel's spatial mean of the
                                      BN input / sqrt(running_var)) and dev (|their mean - running_mean| /
                                      sqrt(running_var)), averaged over channels, of every seed-0 set, beside real
                                      CIFAR-10 data (a real set of the folder, else the first images of
                                      $DSGQ_DATA/cifar10/data_batch_1.bin): the homogenization picture of the DSG
                                      paper (docs/method.md section 14)
Needs Debian's python3-matplotlib and python3-h5py; bn_spread also python3-torch (it uses the independent model
definitions of tests/oracle/models_ref.py).
usage: analysis/figures.py RUNS_DIR"""
import glob
import json
import math
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
MEAN = {"cifar10": (0.485, 0.456, 0.406)}
STD = {"cifar10": (0.229, 0.224, 0.225)}


def records(runs):
    out = []
    for path in sorted(glob.glob(os.path.join(runs, "results", "*.json"))):
        with open(path) as f:
            r = json.load(f)
        if r.get("format") != "dsgq-result/1":
            sys.exit(f"{path}: format {r.get('format')!r} is not dsgq-result/1; expected records of this dsgq version")
        out.append(r)
    return out


def bits_key(p):
    w, a = p[1:].split("a")
    return (-int(w), -int(a))


def accuracy_figures(runs, recs, outdir):
    by_arch = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))  # arch -> method -> data -> prec -> [top1]
    fp32 = {}
    for r in recs:
        p = r["point"]
        if "precision" not in p:
            continue
        lab = r.get("labels", {"data": p.get("method", "file"), "method": p["protocol"] + "/" + p["act_observer"]})
        by_arch[p["arch"]][lab["method"]][lab["data"]].append((p["precision"], r["metrics"]["top1"]))
        fp32[p["arch"]] = r["metrics"]["fp32_top1"]
    made = []
    for arch, methods in by_arch.items():
        fig, axes = plt.subplots(1, len(methods), figsize=(5 * len(methods), 4), squeeze=False)
        for ax, (method, datas) in zip(axes[0], sorted(methods.items())):
            precs = sorted({pr for d in datas.values() for pr, _ in d}, key=bits_key)
            x = np.arange(len(precs))
            for data, pts in sorted(datas.items()):
                vals = defaultdict(list)
                for pr, t in pts:
                    vals[pr].append(t)
                mean = [np.mean(vals[pr]) if vals[pr] else np.nan for pr in precs]
                std = [np.std(vals[pr], ddof=1) if len(vals[pr]) > 1 else 0.0 for pr in precs]
                ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=data)
            ax.axhline(fp32[arch], color="k", ls="--", lw=1, label=f"FP32 {fp32[arch]:.2f}")
            ax.set_xticks(x, [pr.upper() for pr in precs])
            ax.set_title(f"{arch}, {method}")
            ax.set_xlabel("bit-width")
            ax.set_ylabel("top-1 (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(outdir, f"accuracy_vs_bits_{arch}.png")
        fig.savefig(path, dpi=120)
        plt.close(fig)
        made.append(path)
    return made


def synth_sets(runs):
    import h5py
    sets = []
    for path in sorted(glob.glob(os.path.join(runs, "synth", "*.h5"))):
        f = h5py.File(path, "r")
        a = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        if a.get("format") != "dsgq-synth/1":
            continue
        cfg = a.get("config_toml", "")
        extra = []
        if a["method"] == "dsg":
            if "lse = false" in cfg:
                extra.append("no LSE")
            if "margin_scale = 0\n" in cfg or "margin_scale = 0.0" in cfg:
                extra.append("no SDA")
            q = [float(ln.split("=")[1]) for ln in cfg.splitlines() if ln.startswith("slack_quantile")]
            if q and abs(q[0] - 0.9) > 1e-9 and "no SDA" not in extra:
                extra.append(f"q={q[0]:g}")
        label = a["method"] + (f" ({', '.join(extra)})" if extra else "") + f" s{a['seed']}"
        sets.append((label, a, f))
    return sets


def loss_curves(sets, outdir):
    fig, ax = plt.subplots(figsize=(9, 4.5))
    n = 0
    for label, a, f in sets:
        if "loss_curve" not in f or not label.endswith(" s0"):  # one seed per data source keeps it readable
            continue
        c = f["loss_curve"][:]
        # nanmean: a batch that stopped early (stop_rtol) has NaN after its last iteration
        ax.plot(np.arange(1, c.shape[1] + 1), np.nanmean(c, 0), label=f"{a['model']} {label[:-3]}")
        n += 1
    if n == 0:
        plt.close(fig)
        return []
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss (mean over batches), seed 0")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = os.path.join(outdir, "loss_curves.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def samples(sets, outdir):
    rows = [(label, a, f) for label, a, f in sets if label.endswith(" s0")]
    if not rows:
        return []
    fig, axes = plt.subplots(len(rows), 8, figsize=(8 * 1.2, len(rows) * 1.35), squeeze=False)
    for i, (label, a, f) in enumerate(rows):
        ds = "cifar10"
        imgs = f["images"][:8]
        m = np.array(MEAN[ds]).reshape(1, 3, 1, 1)
        s = np.array(STD[ds]).reshape(1, 3, 1, 1)
        imgs = np.clip(imgs * s + m, 0, 1).transpose(0, 2, 3, 1)
        for j in range(8):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(imgs):
                ax.imshow(imgs[j])
        axes[i][0].set_title(f"{a['model']} {label[:-3]}", fontsize=7, loc="left")
    fig.tight_layout()
    path = os.path.join(outdir, "samples.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def _layer_homogeneity(model, images):
    """Per BN layer: spread (std over samples of each channel's spatial mean of the BN input / sqrt(running_var),
    averaged over channels) and dev (|mean over samples - running_mean| / sqrt(running_var), averaged), as dsgq
    inspect computes them (docs/method.md section 14)."""
    import torch
    spreads, devs, hooks = [], [], []
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            def pre(m, inp):
                mu = inp[0].double().mean((2, 3))  # [n, C]
                sd = m.running_var.double().sqrt()
                spreads.append((mu.std(0) / sd).mean().item())
                devs.append(((mu.mean(0) - m.running_mean.double()).abs() / sd).mean().item())
            hooks.append(mod.register_forward_pre_hook(pre))
    with torch.no_grad():
        model(images)
    for h in hooks:
        h.remove()
    return spreads, devs


def _real_cifar10(n, data_dir):
    """The first n images of data_batch_1, normalized as the CIFAR-10 networks expect, or None."""
    import torch
    path = os.path.join(data_dir, "cifar10", "data_batch_1.bin")
    if not data_dir or not os.path.exists(path):
        return None
    raw = np.fromfile(path, dtype=np.uint8, count=n * 3073).reshape(-1, 3073)[:, 1:].reshape(-1, 3, 32, 32)
    x = torch.from_numpy(raw.astype(np.float32) / 255.0)
    mean = torch.tensor(MEAN["cifar10"]).view(1, 3, 1, 1)
    std = torch.tensor(STD["cifar10"]).view(1, 3, 1, 1)
    return (x - mean) / std


def bn_spread(sets, outdir):
    try:
        import torch
    except ImportError:
        return []
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "oracle"))
    import models_ref
    fig, (ax_s, ax_d) = plt.subplots(1, 2, figsize=(13, 4.5))
    n = 0
    real_drawn = set()
    data_dir = os.environ.get("DSGQ_DATA") or os.path.join(HERE, "..", "..", "shared", "data")
    for label, a, f in sets:
        if not label.endswith(" s0") or not os.path.exists(a["weights"]):
            continue
        model = models_ref.build(a["model"]).eval()
        sd = torch.load(a["weights"], map_location="cpu")
        sd = sd.get("state_dict", sd)
        model.load_state_dict({k[7:] if k.startswith("module.") else k: v for k, v in sd.items()})
        images = torch.from_numpy(f["images"][:256])
        spreads, devs = _layer_homogeneity(model, images)
        x = np.arange(1, len(spreads) + 1)
        ax_s.plot(x, spreads, marker=".", label=f"{a['model']} {label[:-3]}")
        ax_d.plot(x, devs, marker=".", label=f"{a['model']} {label[:-3]}")
        n += 1
        # Real data's signature on the same network, when the runs folder has no real set of it.
        has_real = any(l.startswith("real") and b["model"] == a["model"] for l, b, _ in sets)
        if not has_real and a["model"] not in real_drawn and images.shape[1:] == (3, 32, 32):
            real = _real_cifar10(images.shape[0], data_dir)
            if real is not None:
                rs, rd = _layer_homogeneity(model, real)
                ax_s.plot(x, rs, "k--", label=f"{a['model']} real (data_batch_1)")
                ax_d.plot(x, rd, "k--", label=f"{a['model']} real (data_batch_1)")
                real_drawn.add(a["model"])
    if n == 0:
        plt.close(fig)
        return []
    for ax, what in ((ax_s, "spread: std over samples of the per-sample means / sqrt(running var)"),
                     (ax_d, "dev: |mean of the per-sample means - running mean| / sqrt(running var)")):
        ax.set_xlabel("BN layer")
        ax.set_ylabel(what, fontsize=8)
        ax.grid(alpha=0.3)
    ax_d.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    path = os.path.join(outdir, "bn_spread.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def main():
    if len(sys.argv) != 2 or not os.path.isdir(os.path.join(sys.argv[1], "results")):
        sys.exit("usage: analysis/figures.py RUNS_DIR  (a folder with results/ from dsgq run or sweep)")
    runs = sys.argv[1]
    outdir = os.path.join(runs, "report")
    os.makedirs(outdir, exist_ok=True)
    made = accuracy_figures(runs, records(runs), outdir)
    sets = synth_sets(runs)
    made += loss_curves(sets, outdir) + samples(sets, outdir) + bn_spread(sets, outdir)
    for m in made:
        print(m)


if __name__ == "__main__":
    main()
