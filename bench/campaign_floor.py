#!/usr/bin/python3
"""A lower bound on a sweep's wall time on this machine: the multiply-adds its points cannot avoid, divided by the
machine's matrix-multiply peak measured in the same run (float32, and bfloat16 as the most any lower precision gives).

    bench/campaign_floor.py [--sweep FILE] [--set SECTION.KEY=VAL ...] [--target-min M] [--peak-gflops F32 BF16]

Defaults: configs/sweeps/cifar10-paper.toml, the target 150 minutes (issue 15), peaks measured here (bench/synth_ref.py
--peak: the best of torch.mm and oneDNN's GEMM in float32, oneDNN's GEMM in bfloat16, both threads). The points come
from `dsgq sweep --list` (the sweep's own expansion), each point's settings from `dsgq run --dry-run` with the sweep
file's values and the point's, so every default is dsgq's. One JSON object per phase and network, then a summary.

What is counted (2 FLOP per multiply-add, convolutions and linear layers only: element-wise work, reorders, caches of
intermediate tensors, Adam and everything else are left out, so the real work is larger):
  a synthetic set    iters x n_images x 2 F (forward, and the input gradient: the network's weights are frozen);
                     deepinversion/genie's half-size steps at a quarter of F (F at 16x16); DSG's margins one forward
                     of margin_samples images; real and gaussian sets nothing
  a `zeroq` point    one forward of the calibration set (the activation ranges)
  an `adaround` point per weighted layer iters x batch x 2 F_layer (forward and weight gradient; the layer's input
                     gradient is not needed); with gram = true instead the inputs' second moments once (n_images x
                     positions x K^2, K = Cin/groups x kh x kw, half of the symmetric product) and per step the quadratic
                     form's product 2 x Cout x K^2; plus one forward of the set (the layers' inputs)
  a `qdrop` point    per unit (the stem, each block, the classifier; docs/method.md section 14) iters x batch x
                     (3 F_unit - F_first): the forward, every layer's weight gradient and every layer's input gradient
                     except the unit's first layer's; plus one forward of the set
  every point        one forward of the evaluation images (eval.n_images, 0 = all 10,000); FP32's once per network
F is counted with forward hooks on the independent definitions of tests/oracle/models_ref.py. Exit 2 on bad input.
"""
import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tomllib

here = os.path.dirname(os.path.abspath(__file__))
repo = os.path.dirname(here)
sys.path.insert(0, os.path.join(repo, "tests", "oracle"))
sys.path.insert(0, here)

HALF_DEFAULT = (400, 100)  # deepinversion/genie's schedule with neither iters nor lowres_iters given (docs/config.md)
CIFAR_TEST_IMAGES = 10000


def fail(msg):
    print(f"bench/campaign_floor.py: {msg}", file=sys.stderr)
    sys.exit(2)


def flat_sets(doc):
    """The sweep file's scalar values as SECTION.KEY=VAL (lists are the grid: the point supplies them)."""
    out = {}

    def walk(prefix, table):
        for k, v in table.items():
            if prefix == "" and k == "sweep":
                continue
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(name, v)
            elif not isinstance(v, list):
                out[name] = v
    walk("", doc)
    return out


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def points(dsgq, sweep, extra):
    cmd = [dsgq, "sweep", "--config", sweep, "--list"] + sum((["--set", s] for s in extra), [])
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} failed (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
    out = []
    for line in r.stdout.splitlines():
        m = re.match(r"^(\S+)\s+(\S+)\s+\((.*)\)$", line)
        if m:
            out.append((m.group(2), dict(kv.split("=", 1) for kv in m.group(3).split())))
    if not out:
        fail(f"{sweep}: `dsgq sweep --list` printed no points")
    return out


_RESOLVED = {}  # one dry run per distinct setting


def resolved(dsgq, sets):
    key = tuple(sorted(sets.items()))
    if key not in _RESOLVED:
        cmd = [dsgq, "run", "--dry-run"] + sum((["--set", f"{k}={toml_value(v)}"] for k, v in sorted(sets.items())), [])
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"{' '.join(cmd)} failed (exit {r.returncode}): {r.stderr.strip()}")
        body = "\n".join(line for line in r.stdout.splitlines() if not line.startswith("#"))
        _RESOLVED[key] = tomllib.loads(body)
    return _RESOLVED[key]


def layer_flops(arch, size):
    """Per weighted layer (module name -> dict): forward FLOPs per image at size x size, and what gram needs."""
    import torch
    import models_ref
    try:
        model = models_ref.build(arch).eval()
    except ValueError:
        fail(f"model.arch '{arch}': no independent definition in tests/oracle/models_ref.py (expected a CIFAR ResNet)")
    layers = {}

    def hook(name):
        def f(mod, inp, out):
            if isinstance(mod, torch.nn.Conv2d):
                k = (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
                pos = out.shape[2] * out.shape[3]
                layers[name] = {"flop": 2 * mod.out_channels * k * pos, "cout": mod.out_channels, "k": k, "pos": pos}
            else:
                layers[name] = {"flop": 2 * mod.in_features * mod.out_features, "cout": mod.out_features,
                                "k": mod.in_features, "pos": 1}
        return f
    hooks = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    if len(layers) != len(hooks):
        fail(f"model.arch '{arch}': {len(layers)} of {len(hooks)} weighted layers ran as modules")
    return layers


def units(layers):
    """Reconstruction units: a block's layers share the name up to their last component (layer1.0.conv1, layer1.0.conv2);
    the stem and the classifier are units alone."""
    out = {}
    for name, v in layers.items():
        unit = name.rsplit(".", 1)[0] if "." in name else name
        out.setdefault(unit, []).append(v)
    return out


def set_flop(cfg, f_full, f_half, iters_default):
    s = cfg["synth"]
    method, n = s["method"], s["n_images"]
    if method in ("real", "gaussian"):
        return 0.0, "no optimisation"
    full, half = s["iters"], s["lowres_iters"]
    if method in ("deepinversion", "genie") and iters_default and half == 0:
        half, full = HALF_DEFAULT
    flop = n * 2.0 * (full * f_full + half * f_half)
    note = f"{half} half-size + {full} full-size steps" if half else f"{full} steps"
    if method == "dsg":
        flop += s["margin_samples"] * f_full
        note += f", margins from {s['margin_samples']} images"
    if method == "genie":
        note += " (the generator's own work not counted)"
    return flop, note


def point_flop(cfg, layers, f_full):
    q, a = cfg["quant"], cfg["quant"]["adaround"]
    n = cfg["synth"]["n_images"] if q["n_calib"] == 0 else min(q["n_calib"], cfg["synth"]["n_images"])
    n_eval = cfg["eval"]["n_images"] or CIFAR_TEST_IMAGES
    flop = n_eval * f_full + n * f_full  # the evaluation; one forward of the calibration set
    if q["protocol"] == "adaround" and a["enabled"]:
        for v in layers.values():
            if a["gram"]:
                flop += n * v["pos"] * v["k"] ** 2 + a["iters"] * 2.0 * v["cout"] * v["k"] ** 2
            else:
                flop += a["iters"] * a["batch"] * 2.0 * v["flop"]
    elif q["protocol"] == "qdrop":
        for members in units(layers).values():
            f_unit = sum(v["flop"] for v in members)
            flop += a["iters"] * a["batch"] * (3.0 * f_unit - members[0]["flop"])
    return flop


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sweep", default=os.path.join(repo, "configs", "sweeps", "cifar10-paper.toml"))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VAL")
    ap.add_argument("--target-min", type=float, default=150.0)
    ap.add_argument("--peak-gflops", type=float, nargs=2, metavar=("F32", "BF16"),
                    help="use these peaks (GFLOP/s, all threads) instead of measuring them")
    ap.add_argument("--dsgq", default=os.environ.get("DSGQ_BIN", os.path.join(repo, "build", "bin", "dsgq")))
    a = ap.parse_args()
    if not os.access(a.dsgq, os.X_OK):
        fail(f"{a.dsgq} is missing; build it first (jobs/setup)")
    try:
        with open(a.sweep, "rb") as f:
            doc = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        fail(f"{a.sweep}: {e}")
    for s in a.set:
        if "=" not in s:
            fail(f"--set '{s}': expected SECTION.KEY=VAL")
    base = flat_sets(doc)
    base.update(dict(s.split("=", 1) for s in a.set))
    iters_given = "synth.iters" in base or "synth.lowres_iters" in base

    if a.peak_gflops:
        f32, bf16, peak_fig = a.peak_gflops[0], a.peak_gflops[1], {"given": a.peak_gflops}
    else:
        import synth_ref
        peak_fig = synth_ref.peak(5)
        f32 = peak_fig["peak_gflop_per_s"]["2"]
        bf16 = peak_fig["bf16_onednn_gemm_gflop_per_s"]["2"]
        print(json.dumps(peak_fig), flush=True)
    if f32 <= 0 or bf16 <= 0:
        fail(f"--peak-gflops {f32} {bf16}: expected two positive GFLOP/s figures")

    pts = points(a.dsgq, a.sweep, a.set)
    phases = {}  # (phase, arch) -> [count, flop, notes]
    seen_sets, seen_fp32, models = set(), set(), {}
    for key, varied in pts:
        sets = dict(base)
        sets.update(varied)
        # neither the bits nor the seed change the work counted here ("quant.bits" is the sweep's shorthand for
        # w_bits/a_bits): one dry run per network, data and protocol
        sets.pop("quant.bits", None)
        sets.update({"quant.w_bits": "4", "quant.a_bits": "4", "synth.seed": "0"})
        cfg = resolved(a.dsgq, sets)
        iters_default = not (iters_given or "synth.iters" in varied or "synth.lowres_iters" in varied)
        arch = cfg["model"]["arch"]
        if arch not in models:
            full = layer_flops(arch, 32)
            half = layer_flops(arch, 16)
            models[arch] = (full, sum(v["flop"] for v in full.values()), sum(v["flop"] for v in half.values()))
        layers, f_full, f_half = models[arch]
        set_key = key.rsplit("-" + cfg["quant"]["protocol"] + "-", 1)[0]
        if set_key not in seen_sets:
            seen_sets.add(set_key)
            flop, note = set_flop(cfg, f_full, f_half, iters_default)
            p = phases.setdefault(("set " + cfg["synth"]["method"], arch), [0, 0.0, set()])
            p[0] += 1
            p[1] += flop
            p[2].add(note)
        if arch not in seen_fp32:
            seen_fp32.add(arch)
            p = phases.setdefault(("fp32 evaluation", arch), [0, 0.0, set()])
            p[0] += 1
            p[1] += (cfg["eval"]["n_images"] or CIFAR_TEST_IMAGES) * f_full
        proto = cfg["quant"]["protocol"]
        label = proto + (" (gram)" if proto == "adaround" and cfg["quant"]["adaround"]["gram"] else "")
        p = phases.setdefault(("points " + label, arch), [0, 0.0, set()])
        p[0] += 1
        p[1] += point_flop(cfg, layers, f_full)
        p[2].add(f"{cfg['quant']['adaround']['iters']} steps x batch {cfg['quant']['adaround']['batch']}"
                 if proto in ("adaround", "qdrop") else "calibration forward")
        # AdaRound's closed form is an option with the same steps: its floor is given beside, the total takes the lower
        if proto == "adaround" and not cfg["quant"]["adaround"]["gram"]:
            gcfg = copy.deepcopy(cfg)
            gcfg["quant"]["adaround"]["gram"] = True
            p = phases.setdefault(("points adaround (gram), instead", arch), [0, 0.0, set()])
            p[0] += 1
            p[1] += point_flop(gcfg, layers, f_full)

    total = total_alt = 0.0
    for (phase, arch), (count, flop, notes) in sorted(phases.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        if phase.endswith("instead"):
            total_alt += flop - phases[("points adaround", arch)][1]
        else:
            total += flop
        print(json.dumps({"bench": "campaign_floor", "phase": phase, "arch": arch, "count": count,
                          "flop": int(flop), "tflop": round(flop / 1e12, 2), "floor_s_f32": round(flop / (f32 * 1e9), 1),
                          "floor_s_bf16": round(flop / (bf16 * 1e9), 1), "counted": sorted(notes)}), flush=True)
    best = total + min(0.0, total_alt)
    summary = {
        "bench": "campaign_floor", "figure": "summary", "sweep": os.path.relpath(a.sweep, repo), "points": len(pts),
        "sets": len(seen_sets), "peak_gflop_per_s_f32": f32, "peak_gflop_per_s_bf16": bf16,
        "tflop": round(total / 1e12, 1), "floor_min_f32": round(total / (f32 * 1e9) / 60, 1),
        "floor_min_bf16": round(total / (bf16 * 1e9) / 60, 1),
        "tflop_adaround_gram": round(best / 1e12, 1), "floor_min_f32_adaround_gram": round(best / (f32 * 1e9) / 60, 1),
        "floor_min_bf16_adaround_gram": round(best / (bf16 * 1e9) / 60, 1), "target_min": a.target_min,
        "target_reachable_at_f32_peak": best / (f32 * 1e9) / 60 <= a.target_min,
        "target_reachable_at_bf16_peak": best / (bf16 * 1e9) / 60 <= a.target_min,
        "note": "a lower bound: only convolutions and linear layers, every one at the GEMM peak of all threads",
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
