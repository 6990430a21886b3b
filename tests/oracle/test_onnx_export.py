#!/usr/bin/python3
"""Oracle test (CTest label `oracle`): the ONNX QDQ export (<key>.onnx, docs/formats.md section 7) as real tools read
it: Debian's python3-onnx checker (full check, strict shape inference) and ONNX Runtime from npm's onnxruntime-node
(CPU), run through tests/oracle/ort_run.js.
1. Every zoo architecture (random seeded weights, zeroq, oracle_tool onnx-zoo): the checker passes; with activations
   in floating point (W4A32) ONNX Runtime's logits equal dsgq's quantized forward to 1e-4 of their largest value
   (the graph is the network); at W4A4 the arg-max agrees on every image and the logits stay within 0.25 (dsgq and
   ONNX Runtime round an activation that sits within float error of a half step differently now and then).
2. The real resnet20, 64 real calibration images: zeroq and adaround at W8A8 and W4A4, qdrop at W4A4: ONNX Runtime's
   top-1 on the 10,000 CIFAR-10 test images (graph optimisations off: the graph's own arithmetic) equals dsgq's to
   0.05; with every optimisation on (ONNX Runtime fuses QDQ pairs into integer kernels) it runs and stays within 0.5.
3. The real resnet56 (zeroq W4A4) on the 10,000 test images and the real mobilenet_v1_0.25 (zeroq and adaround at
   W8A8; zeroq's first layer has channels whose range excludes zero: int32 codes) on the 50 packed ImageNet samples, input normalised with the mean and std the model's metadata gives: the
   top-1 counts agree within 5 (resnet56) and exactly (mobilenet).
usage: test_onnx_export.py --dsgq build/bin/dsgq --tool build/tests/oracle_tool [--data DIR]"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import onnx
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_util import check, cifar10_test, default_data_dir, finish, run_tool  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ZOO = ("resnet20", "resnet8", "mobilenet_v1_0.25", "resnet18", "resnet50", "mobilenet_v2", "inception_v3",
       "shufflenet_v2_x0_5", "shufflenet_v2_x1_0")


def ort_logits(model, x, tmp, level="disabled", batch=500):
    """ONNX Runtime's logits for x [N,C,H,W] float32 (numpy)."""
    inp, out = os.path.join(tmp, "ort_in.f32"), os.path.join(tmp, "ort_out.f32")
    np.ascontiguousarray(x, dtype=np.float32).tofile(inp)
    n, c, h, w = x.shape
    r = subprocess.run(["node", os.path.join(HERE, "ort_run.js"), model, inp, str(n), str(c), str(h), str(w),
                        str(batch), out, level], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ort_run.js {os.path.basename(model)} ({level}) failed: {r.stderr.strip()[-600:]}")
    return np.fromfile(out, dtype=np.float32).reshape(n, -1)


def checker(path):
    try:
        onnx.checker.check_model(onnx.load(path), full_check=True)
        return "ok"
    except Exception as e:  # noqa: BLE001 (report whatever the checker raises)
        return f"{type(e).__name__}: {str(e)[:300]}"


def metadata(path):
    return {p.key: p.value for p in onnx.load(path).metadata_props}


def channel_triple(meta, key):
    """A metadata value "a,b,c" (input_mean, input_std) as a [1,3,1,1] float32 array."""
    return np.array([float(v) for v in meta[key].split(",")], dtype=np.float32).reshape(1, 3, 1, 1)


def test_zoo(tool, tmp):
    for arch in ZOO:
        for a_bits, tol in ((32, 1e-4), (4, 0.25)):
            prefix = os.path.join(tmp, f"zoo-{arch}-a{a_bits}")
            try:
                run_tool(tool, "onnx-zoo", arch, "4", str(a_bits), prefix)
            except RuntimeError as e:
                check(False, f"{arch} W4A{a_bits}: export failed: {e}")
                continue
            verdict = checker(prefix + ".onnx")
            ref = torch.load(prefix + ".pt")
            x, want = ref["x"].numpy(), ref["logits"].numpy()
            got = ort_logits(prefix + ".onnx", x, tmp, batch=4)
            err = float(np.abs(got - want).max() / np.abs(want).max())
            agree = int((got.argmax(1) == want.argmax(1)).sum())
            check(verdict == "ok" and err <= tol and agree == len(x),
                  f"{arch} W4A{a_bits}: onnx.checker {verdict}; ONNX Runtime vs dsgq logits: largest difference "
                  f"{err:.1e} of the largest logit (<= {tol:g}), arg-max {agree}/{len(x)}")


def dsgq_run(dsgq, out_dir, extra):
    cmd = [dsgq, "run", "--threads", "2", "--set", f"output.dir={out_dir}", "--set", "synth.method=real",
           "--set", "synth.n_images=64", "--set", "synth.batch=64", "--set", "quant.adaround.iters=100"] + extra
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"dsgq run {' '.join(extra)} exited {r.returncode}: {r.stderr.strip()[-500:]}")
    newest = max((os.path.join(out_dir, "results", f) for f in os.listdir(os.path.join(out_dir, "results"))),
                 key=os.path.getmtime)
    return json.load(open(newest))


def test_resnet(dsgq, data, tmp):
    x, labels = cifar10_test(data)
    x, labels = x.numpy(), labels.numpy()
    points = [("resnet20", "zeroq", 8), ("resnet20", "zeroq", 4), ("resnet20", "adaround", 8),
              ("resnet20", "adaround", 4), ("resnet20", "qdrop", 4), ("resnet56", "zeroq", 4)]
    for arch, protocol, bits in points:
        label = f"{arch} {protocol} W{bits}A{bits}"
        try:
            rec = dsgq_run(dsgq, os.path.join(tmp, "cifar"),
                           ["--set", f"model.arch={arch}", "--set", f"quant.protocol={protocol}",
                            "--set", f"quant.w_bits={bits}", "--set", f"quant.a_bits={bits}"])
        except RuntimeError as e:
            check(False, f"{label}: {e}")
            continue
        model = rec["outputs"].get("onnx")
        if not model or not os.path.exists(model):
            check(False, f"{label}: the record names no .onnx output ({rec['outputs']})")
            continue
        meta = metadata(model)
        mean = channel_triple(meta, "input_mean")
        check(np.allclose(mean.ravel(), [0.485, 0.456, 0.406]) and meta["arch"] == arch
              and meta["protocol"] == protocol, f"{label}: metadata {meta}")
        verdict = checker(model)
        correct = int((ort_logits(model, x, tmp).argmax(1) == labels).sum())
        want = rec["metrics"]["top1_correct"]
        if arch == "resnet56":
            check(verdict == "ok" and abs(correct - want) <= 5,
                  f"{label}: onnx.checker {verdict}; ONNX Runtime {correct}/10000 top-1, dsgq {want}/10000")
            continue
        fused = int((ort_logits(model, x, tmp, level="all").argmax(1) == labels).sum())
        check(verdict == "ok" and abs(correct - want) <= 5 and abs(fused - want) <= 50,
              f"{label}: onnx.checker {verdict}; top-1 on 10,000: ONNX Runtime {correct / 100:.2f} "
              f"(optimisations off), {fused / 100:.2f} (all on, QDQ fused), dsgq {want / 100:.2f}")


def test_mobilenet(dsgq, data, tmp):
    src = os.path.join(data, "imagenet_samples")
    packed = os.path.join(tmp, "samples.h5")
    r = subprocess.run([dsgq, "pack", "--images", os.path.join(src, "images"), "--labels",
                        os.path.join(src, "labels.txt"), "--out", packed], capture_output=True, text=True)
    if r.returncode != 0:
        check(False, f"dsgq pack of imagenet_samples: {r.stderr.strip()[-300:]}")
        return
    with h5py.File(packed, "r") as f:
        pixels, labels = f["images"][...], f["labels"][...]
    for protocol, bits in (("zeroq", 8), ("adaround", 8)):
        label = f"mobilenet_v1_0.25 {protocol} W{bits}A{bits}"
        try:
            rec = dsgq_run(dsgq, os.path.join(tmp, "imagenet"),
                           ["--set", "model.arch=mobilenet_v1_0.25", "--set", f"eval.data={packed}",
                            "--set", f"synth.real_data={packed}", "--set", "synth.n_images=16",
                            "--set", "synth.batch=16", "--set", "quant.adaround.iters=20",
                            "--set", f"quant.protocol={protocol}", "--set", f"quant.w_bits={bits}",
                            "--set", f"quant.a_bits={bits}"])
        except RuntimeError as e:
            check(False, f"{label}: {e}")
            continue
        model = rec["outputs"]["onnx"]
        meta = metadata(model)
        mean, std = channel_triple(meta, "input_mean"), channel_triple(meta, "input_std")
        x = (pixels.astype(np.float32) / 255 - mean) / std
        correct = int((ort_logits(model, x, tmp, batch=10).argmax(1) == labels).sum())
        verdict = checker(model)
        want = rec["metrics"]["top1_correct"]
        check(verdict == "ok" and correct == want,
              f"{label}: onnx.checker {verdict}; ONNX Runtime {correct}/50 top-1 on the packed samples, dsgq {want}/50")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsgq", required=True)
    ap.add_argument("--tool", required=True)
    ap.add_argument("--data", default=default_data_dir())
    a = ap.parse_args()
    if not os.environ.get("DSGQ_ORT_DIR"):
        sys.exit("DSGQ_ORT_DIR is not set: run jobs/setup --tests (it installs onnxruntime-node into <build>/ort)")
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        test_zoo(a.tool, tmp)
        test_resnet(a.dsgq, a.data, tmp)
        test_mobilenet(a.dsgq, a.data, tmp)
    finish("ONNX export")


if __name__ == "__main__":
    main()
