#!/usr/bin/python3
"""Oracle test (CTest label `oracle`): what `dsgq run` exports is usable from Python.
1. The quantized state_dict (<key>.pt) of resnet20 W4 with activations in floating point, loaded by python3-torch
   into the independent definition of tests/oracle/models_ref.py, gives the same top-1 on the 10,000 CIFAR-10 test
   images as dsgq's own evaluation of that point, to 0.01.
2. The AIMET-layout encodings reproduce those weights: per channel, (clamp(round(w/scale) - offset, 0, 2^k - 1) +
   offset) * scale of the FP32 weight equals the exported weight (up to rounding ties).
3. The encodings of every protocol (this W4 point, zeroq and adaround at W4A4, adaround at W3A3; qdrop in
   test_qdrop_export.py) follow AIMET's torch layout as its loader reads it (aimet_layout.py).
usage: test_quant_export.py --dsgq build/bin/dsgq [--data DIR]"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import aimet_layout  # noqa: E402
import models_ref  # noqa: E402
from oracle_util import check, cifar10_test, default_data_dir, finish  # noqa: E402




def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsgq", required=True)
    ap.add_argument("--data", default=default_data_dir())
    a = ap.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [a.dsgq, "run", "--threads", "2", "--set", f"output.dir={tmp}", "--set", "synth.method=real",
               "--set", "synth.n_images=40", "--set", "synth.batch=40", "--set", "quant.w_bits=4",
               "--set", "quant.a_bits=32"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            sys.exit(1)
        (rec_name,) = os.listdir(os.path.join(tmp, "results"))
        rec = json.load(open(os.path.join(tmp, "results", rec_name)))
        sd = torch.load(rec["outputs"]["state_dict"])
        enc = json.load(open(rec["outputs"]["encodings"]))

        model = models_ref.build("resnet20").eval()
        model.load_state_dict(sd)
        x, labels = cifar10_test(a.data)
        with torch.no_grad():
            correct = sum((model(x[b:b + 500]).argmax(1) == labels[b:b + 500]).sum().item() for b in range(0, 10000, 500))
        py_top1 = correct / 100.0
        check(abs(py_top1 - rec["metrics"]["top1"]) <= 0.01,
              f"W4 weights-only: python3-torch top-1 {py_top1:.2f} vs dsgq {rec['metrics']['top1']:.2f} (FP32 {rec['metrics']['fp32_top1']:.2f})")

        fp = torch.load(os.path.join(a.data, "models", "cifar10_resnet20.pt"))
        worst = 0.0
        for name, entries in enc["param_encodings"].items():
            w = fp[name].double()
            scale = torch.tensor([e["scale"] for e in entries], dtype=torch.float64).view(-1, *[1] * (w.dim() - 1))
            offset = torch.tensor([e["offset"] for e in entries], dtype=torch.float64).view(-1, *[1] * (w.dim() - 1))
            bits = entries[0]["bitwidth"]
            q = (torch.clamp(torch.round(w / scale) - offset, 0, 2 ** bits - 1) + offset) * scale
            mism = ((q - sd[name].double()).abs() > 1e-5).double().mean().item()
            worst = max(worst, mism)
        check(worst < 1e-3, f"encodings reproduce the exported weights ({len(enc['param_encodings'])} tensors; "
              f"worst fraction of mismatching elements {worst:.2e}, ties only)")
        check(len(enc["activation_encodings"]) == 0, "weights-only point: no activation encodings")
        aimet_layout.check_file(check, "zeroq W4 (activations in floating point)", enc, model,
                                aimet_layout.resnet_cifar_sites(20))

        # 3. Every protocol's encodings follow AIMET's torch layout (tests/oracle/aimet_layout.py, written from AIMET's
        # loader): zeroq and adaround at W4A4, adaround at W3A3 (below AIMET's 4-bit minimum: reported).
        for label, extra in (("zeroq W4A4", ["--set", "quant.w_bits=4", "--set", "quant.a_bits=4"]),
                             ("adaround W4A4", ["--set", "quant.w_bits=4", "--set", "quant.a_bits=4",
                                                "--set", "quant.protocol=adaround",
                                                "--set", "quant.adaround.iters=20"]),
                             ("adaround W3A3", ["--set", "quant.w_bits=3", "--set", "quant.a_bits=3",
                                                "--set", "quant.protocol=adaround", "--set", "quant.adaround.iters=20"])):
            r = subprocess.run(cmd[:-4] + extra + ["--set", "eval.n_images=500"], capture_output=True, text=True)
            if r.returncode != 0:
                check(False, f"{label}: dsgq run exited with {r.returncode}: {r.stderr.strip()[-400:]}")
                continue
            newest = max((os.path.join(tmp, "results", f) for f in os.listdir(os.path.join(tmp, "results"))),
                         key=os.path.getmtime)
            enc_p = json.load(open(json.load(open(newest))["outputs"]["encodings"]))
            aimet_layout.check_file(check, label, enc_p, model, aimet_layout.resnet_cifar_sites(20))
    finish("export")


if __name__ == "__main__":
    main()
