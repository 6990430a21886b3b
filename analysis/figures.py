#!/usr/bin/python3
"""PNG figures of a dsgq runs folder (the output.dir of dsgq run/sweep), from its records and synthetic sets only:
  report/accuracy_vs_bits_<arch>.png  top-1 against bit-width, one line per calibration data source, one panel
                                      per quantization method (mean +/- std over seeds)
  report/loss_curves.png              synthesis loss per iteration (mean over batches) of every dsg/zeroq set
  report/samples.png                  the first 8 images of one set per data source (seed 0)
  report/bn_spread.png                per-layer spread of the per-sample BN-input means (std over samples of each
                                      channel's spatial mean / sqrt(running_var), averaged over channels): the
                                      homogenization picture of the DSG paper (docs/method.md section 14)
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
        ax.plot(np.arange(1, c.shape[1] + 1), c.mean(0), label=f"{a['model']} {label[:-3]}")
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


def bn_spread(sets, outdir):
    try:
        import torch
    except ImportError:
        return []
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "oracle"))
    import models_ref
    fig, ax = plt.subplots(figsize=(9, 4.5))
    n = 0
    for label, a, f in sets:
        if not label.endswith(" s0") or not os.path.exists(a["weights"]):
            continue
        model = models_ref.build(a["model"]).eval()
        sd = torch.load(a["weights"], map_location="cpu")
        sd = sd.get("state_dict", sd)
        model.load_state_dict({k[7:] if k.startswith("module.") else k: v for k, v in sd.items()})
        spreads = []
        hooks = []
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                def pre(m, inp):
                    mu = inp[0].mean((2, 3))  # [n, C]
                    spreads.append((mu.std(0) / m.running_var.sqrt()).mean().item())
                hooks.append(mod.register_forward_pre_hook(pre))
        with torch.no_grad():
            model(torch.from_numpy(f["images"][:256]))
        for h in hooks:
            h.remove()
        ax.plot(np.arange(1, len(spreads) + 1), spreads, marker=".", label=f"{a['model']} {label[:-3]}")
        n += 1
    if n == 0:
        plt.close(fig)
        return []
    ax.set_xlabel("BN layer")
    ax.set_ylabel("spread of per-sample means / sqrt(running var)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
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
