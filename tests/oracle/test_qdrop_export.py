#!/usr/bin/python3
"""Oracle test (CTest label `oracle`): what `dsgq run` exports for the `qdrop` and `adaround` protocols (the two
that fold BN; `--protocol`, one CTest entry each) is enough to rebuild the quantized network, activations included,
from Python.
1. resnet20 W4A4 (real calibration images, 40 reconstruction / rounding steps): the BN-folded state_dict (<key>.pt) holds
   the rounded weights (every conv has .weight and .bias, no BN entries) and the AIMET-layout encodings hold the
   learned activation quantizers. A functional python3-torch forward pass written here from those two files alone
   (each activation site fake-quantized as (clamp(round(x/scale) - offset, 0, 2^k - 1) + offset) * scale) gives
   dsgq's own top-1 on the 10,000 CIFAR-10 test images to within 0.05 percentage points.
2. Every exported weight lies on its output channel's grid from param_encodings: w/scale - offset is within 1e-3 of
   an integer in [0, 2^k - 1] (AdaRound may round either way, so the FP32 weights are not needed).
3. (qdrop) analysis/swap_steps.py, given the point as A and the same point with its stem's step halved as B, prints
   the top-1 computed here with the halved step for the swaps that take the stem from B and dsgq's own top-1 for the
   others (each within 0.05); an encodings file given as a record: exit 2 with one line.
usage: test_qdrop_export.py --dsgq build/bin/dsgq [--protocol qdrop|adaround] [--data DIR]"""
import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aimet_layout  # noqa: E402
import models_ref  # noqa: E402
from oracle_util import check, check_input_error, cifar10_test, default_data_dir, finish  # noqa: E402

STAGES = [(1, 16, 1), (2, 32, 2), (3, 64, 2)]  # (stage, planes, stride of the first block)


def expected_keys():
    keys = ["conv1.weight", "conv1.bias"]
    for s, _, _ in STAGES:
        for i in range(3):
            for c in (1, 2):
                keys += [f"layer{s}.{i}.conv{c}.weight", f"layer{s}.{i}.conv{c}.bias"]
    return keys + ["linear.weight", "linear.bias"]


def expected_shapes():
    shapes = {"conv1.weight": (16, 3, 3, 3), "conv1.bias": (16,), "linear.weight": (10, 64), "linear.bias": (10,)}
    cin = 16
    for s, planes, _ in STAGES:
        for i in range(3):
            shapes[f"layer{s}.{i}.conv1.weight"] = (planes, cin, 3, 3)
            shapes[f"layer{s}.{i}.conv2.weight"] = (planes, planes, 3, 3)
            shapes[f"layer{s}.{i}.conv1.bias"] = (planes,)
            shapes[f"layer{s}.{i}.conv2.bias"] = (planes,)
            cin = planes
    return shapes


def site_names():
    names = ["relu"]
    for s, _, _ in STAGES:
        for i in range(3):
            names += [f"layer{s}.{i}.relu1", f"layer{s}.{i}.relu2"]
    return names


class ActQuant:
    """One activation site: fake quantization on the grid of an AIMET entry, or the identity if absent."""

    def __init__(self, entry):
        self.entry = entry
        if entry is not None:
            self.scale = float(entry["scale"])
            self.offset = float(entry["offset"])
            self.qmax = float(2 ** int(entry["bitwidth"]) - 1)

    def __call__(self, x):
        if self.entry is None:
            return x
        q = torch.clamp(torch.round(x / self.scale) - self.offset, 0.0, self.qmax)
        return (q + self.offset) * self.scale


def forward(sd, Q, x):
    """The folded resnet20, functional, with the activation quantizers Q[site]."""
    x = Q["relu"](F.relu(F.conv2d(x, sd["conv1.weight"], sd["conv1.bias"], 1, 1)))
    for s, planes, first_stride in STAGES:
        for i in range(3):
            p = f"layer{s}.{i}"
            stride = first_stride if i == 0 else 1
            out = F.relu(F.conv2d(x, sd[p + ".conv1.weight"], sd[p + ".conv1.bias"], stride, 1))
            out = Q[p + ".relu1"](out)
            out = F.conv2d(out, sd[p + ".conv2.weight"], sd[p + ".conv2.bias"], 1, 1)
            if stride != 1 or x.shape[1] != planes:  # option A: subsample, zero-pad planes/4 channels each side
                sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            else:
                sc = x
            x = Q[p + ".relu2"](F.relu(out + sc))
    return F.linear(x.mean((2, 3)), sd["linear.weight"], sd["linear.bias"])


def top1(sd, Q, x, labels):
    """Top-1 (%) of the rebuilt network on x, in batches of 500."""
    with torch.no_grad():
        correct = sum((forward(sd, Q, x[b:b + 500]).argmax(1) == labels[b:b + 500]).sum().item()
                      for b in range(0, x.shape[0], 500))
    return 100.0 * correct / x.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsgq", required=True)
    ap.add_argument("--data", default=default_data_dir())
    ap.add_argument("--protocol", default="qdrop", choices=("qdrop", "adaround"))
    a = ap.parse_args()
    proto = a.protocol
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [a.dsgq, "run", "--threads", "1", "--set", f"output.dir={tmp}", "--set", "synth.method=real",
               "--set", "synth.n_images=64", "--set", "synth.batch=64", "--set", f"quant.protocol={proto}",
               "--set", "quant.w_bits=4", "--set", "quant.a_bits=4", "--set", "quant.adaround.iters=40"]
        print("running: " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            check(False, f"dsgq run exited with {r.returncode}")
            sys.exit(1)
        recs = sorted(os.listdir(os.path.join(tmp, "results")))
        check(len(recs) == 1, f"exactly one result record ({recs})")
        if len(recs) != 1:
            sys.exit(1)
        rec = json.load(open(os.path.join(tmp, "results", recs[0])))
        print(f"record {recs[0]}: protocol {rec['point'].get('protocol')}, precision {rec['point'].get('precision')}, "
              f"top1 {rec['metrics']['top1']:.2f}, fp32_top1 {rec['metrics']['fp32_top1']:.2f}, "
              f"n_images {rec['metrics']['n_images']}", flush=True)
        check(rec["point"].get("protocol") == proto and rec["metrics"]["n_images"] == 10000,
              f"record is a {proto} point evaluated on the 10,000 test images")

        # The folded state_dict.
        sd = torch.load(rec["outputs"]["state_dict"])
        print("state_dict keys: " + " ".join(f"{k}{tuple(v.shape)}" for k, v in sd.items()), flush=True)
        want = expected_keys()
        missing = [k for k in want if k not in sd]
        extra = [k for k in sd if k not in want]
        check(not missing and not extra,
              f"state_dict is the BN-folded resnet20 ({len(sd)} keys; missing {missing}, unexpected {extra})")
        shapes = expected_shapes()
        bad_shapes = [f"{k}{tuple(sd[k].shape)}" for k in want if k in sd and tuple(sd[k].shape) != shapes[k]]
        check(not bad_shapes, f"state_dict shapes are resnet20's (wrong: {bad_shapes})")
        if missing or bad_shapes:
            sys.exit(1)
        sd = {k: v.float().contiguous() for k, v in sd.items()}

        # The activation quantizers.
        enc = json.load(open(rec["outputs"]["encodings"]))
        aimet_layout.check_file(check, f"{proto} W4A4", enc, models_ref.build("resnet20"),
                                aimet_layout.resnet_cifar_sites(20))
        acts = enc["activation_encodings"]
        print(f"activation_encodings sites: {sorted(acts)}", flush=True)
        Q = {}
        def output_entry(name):  # AIMET's torch layout: {"<module>": {"output": {"0": entry}}}
            node = acts.get(name)
            return node["output"]["0"] if node else None
        for name in site_names():
            e = output_entry(name)
            Q[name] = ActQuant(e)
            if e:
                print(f"  site {name}: {e['bitwidth']} bits, scale {e['scale']:.6g}, offset {e['offset']}, "
                      f"[{e['min']:.6g}, {e['max']:.6g}]")
            else:
                print(f"  site {name}: not quantized")
        unused = sorted(set(acts) - set(site_names()))
        check(not unused, f"every activation encoding names a site of the rebuilt forward pass (unused: {unused})")
        bits = {n: (int(output_entry(n)["bitwidth"]) if acts.get(n) else None) for n in site_names()}
        wrong_bits = {n: b for n, b in bits.items() if b != (8 if n == "layer3.2.relu2" else 4)}
        check(not wrong_bits, f"all {len(bits)} sites quantized, layer3.2.relu2 at 8 bits and the others at 4 "
              f"(different: {wrong_bits})")

        # Top-1 of the network rebuilt from the two files.
        x, labels = cifar10_test(a.data)
        py_top1 = top1(sd, Q, x, labels)
        dsgq_top1 = rec["metrics"]["top1"]
        check(abs(py_top1 - dsgq_top1) <= 0.05,
              f"{proto} W4A4 rebuilt from state_dict + encodings: python3-torch top-1 {py_top1:.2f} vs dsgq "
              f"{dsgq_top1:.2f} (|diff| {abs(py_top1 - dsgq_top1):.2f} <= 0.05; fp32_top1 "
              f"{rec['metrics']['fp32_top1']:.2f})")

        # Every exported weight on its channel's grid.
        params = enc["param_encodings"]
        weights = [k for k in want if k.endswith(".weight")]
        no_enc = [k for k in weights if k not in params]
        check(not no_enc, f"param_encodings cover every conv/linear weight ({len(params)} tensors; missing {no_enc})")
        worst_dev, worst_name, worst_range, bad_count = 0.0, None, 0.0, 0
        pbits = {}
        for name, entries in params.items():
            if name not in sd:
                check(False, f"param_encodings name {name} is not in the state_dict")
                continue
            w = sd[name].double()
            if len(entries) != w.shape[0]:
                check(False, f"{name}: {len(entries)} encodings for {w.shape[0]} output channels")
                continue
            view = (-1,) + (1,) * (w.dim() - 1)
            scale = torch.tensor([e["scale"] for e in entries], dtype=torch.float64).view(view)
            offset = torch.tensor([e["offset"] for e in entries], dtype=torch.float64).view(view)
            qmax = torch.tensor([2 ** int(e["bitwidth"]) - 1 for e in entries], dtype=torch.float64).view(view)
            pbits[name] = sorted({int(e["bitwidth"]) for e in entries})
            v = w / scale - offset
            dev = (v - torch.round(v)).abs()
            out = torch.clamp(-torch.round(v), min=0) + torch.clamp(torch.round(v) - qmax, min=0)
            bad_count += int(((dev > 1e-3) | (out > 0)).sum().item())
            if dev.max().item() > worst_dev:
                worst_dev, worst_name = dev.max().item(), name
            worst_range = max(worst_range, out.max().item())
        print("param bitwidths: " + ", ".join(f"{k}:{'/'.join(map(str, b))}" for k, b in pbits.items()))
        check(bad_count == 0 and worst_dev <= 1e-3,
              f"every exported weight is on its channel's grid ({sum(sd[k].numel() for k in params if k in sd)} "
              f"weights; worst |w/scale - offset - integer| {worst_dev:.2e} in {worst_name}; worst step outside "
              f"[0, 2^k - 1] {worst_range:.0f}; {bad_count} off-grid)")

        # analysis/swap_steps.py reads the same two files. B = this point with the stem's step halved (a second
        # record and encodings file): swaps that take the stem's step from B give the top-1 computed here with that
        # step, every other figure is the point's own.
        if proto == "qdrop":
            swap = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "analysis", "swap_steps.py")
            rec_path = os.path.join(tmp, "results", recs[0])
            enc_b = copy.deepcopy(enc)
            stem = enc_b["activation_encodings"]["relu"]["output"]["0"]
            stem["scale"] = stem["scale"] / 2
            stem["max"] = stem["max"] / 2
            rec_b = copy.deepcopy(rec)
            rec_b["outputs"]["encodings"] = os.path.join(tmp, "b.encodings.json")
            rec_b_path = os.path.join(tmp, "b.json")
            for obj, path in ((enc_b, rec_b["outputs"]["encodings"]), (rec_b, rec_b_path)):
                with open(path, "w") as f:
                    json.dump(obj, f)
            Q_b = dict(Q)
            Q_b["relu"] = ActQuant(stem)
            halved = top1(sd, Q_b, x, labels)
            r = subprocess.run([sys.executable, swap, rec_path, rec_b_path, "--data", a.data, "--threads", "1"],
                               capture_output=True, text=True)
            got = {ln.split(":")[0]: float(ln.split(":")[1].split()[0]) for ln in r.stdout.splitlines()
                   if ln.startswith(("A's weights", "B's weights"))}
            want = {k: (halved if k.startswith("A's") and k.endswith(("every site", "stem (relu)")) else dsgq_top1)
                    for k in got}
            bad = {k: (v, round(want[k], 2)) for k, v in got.items() if abs(v - want[k]) > 0.05}
            check(r.returncode == 0 and len(got) == 9 and not bad and abs(halved - dsgq_top1) > 0.05,
                  f"analysis/swap_steps.py against the point with its stem step halved: 9 figures, those with B's "
                  f"stem step {halved:.2f} (computed here), the others dsgq's {dsgq_top1:.2f} (got {len(got)}; wrong "
                  f"{bad}; exit {r.returncode}{'; ' + r.stderr.strip() if r.returncode else ''})")
            enc_path = rec["outputs"]["encodings"]
            r = subprocess.run([sys.executable, swap, rec_path, enc_path], capture_output=True, text=True)
            check_input_error(r, enc_path, "analysis/swap_steps.py on an encodings file instead of a record")
    finish(f"{proto} export")


if __name__ == "__main__":
    main()
