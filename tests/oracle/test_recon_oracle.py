#!/usr/bin/python3
"""Oracle test (CTest label `oracle`): one block-reconstruction step of dsgq (C++) against recon_ref.py, an independent
float64 Python reference (BRECQ block reconstruction, QDrop drop, AdaRound soft weights, LSQ activation step sizes) on
one CIFAR ResNet-20 basic block ("layer2.0").

The C++ helper writes ONE file holding both the case (inputs) and its own results (outputs):
  oracle_tool recon-case DATA_DIR OUT.pt
  inputs (float32): "x_q", "x_fp", "u_in" [B,16,32,32]; "y_fp", "u_site0", "u_site1" [B,32,16,16];
    "conv{1,2}.weight", "conv{1,2}.v" [32,Cin,3,3]; "conv{1,2}.bias", ".scale", ".zero_point" [32];
    "conv{1,2}.bits" [1];
    "site{0,1}.step", ".zero_point", ".bits" [1]; "drop", "lambda", "beta", "reg_on" [1]
  outputs: "out.loss", "out.rec" [1]; "grad.conv1.v", "grad.conv2.v" (shapes of the V's); "grad.site0.step",
    "grad.site1.step" [1]
The Python side recomputes loss and gradients from the INPUT tensors only (converted to float64) and compares:
  scalars |a - b| / |b|, gradient tensors ||a - b||_2 / ||b||_2, a = C++, b = Python; each must be <= 1e-5.
Info lines report the case (batch, drop, reg_on, fractions dropped/clamped) and how many quantized elements sit within
1e-4 step of a rounding boundary: a float32 C++ can legitimately round those the other way than the float64
reference, which moves the loss by ~1e-4 relative per flipped element, so a failure with a nonzero count there
points at the case rather than at the maths.
usage: test_recon_oracle.py --tool build/tests/oracle_tool [--data DIR]  (default $DSGQ_DATA, else ../shared/data)
"""
import argparse
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_util import check, default_data_dir, failures, finish, run_tool  # noqa: E402
import recon_ref  # noqa: E402

TOL = 1e-5
SCALARS = ["out.loss", "out.rec", "grad.site0.step", "grad.site1.step"]
TENSORS = ["grad.conv1.v", "grad.conv2.v"]
NEAR_TIE = 1e-4   # in units of the step (activations) or of the weight scale (weights)


def scalar_rel(a, b):
    a, b = float(a.reshape(-1)[0]), float(b.reshape(-1)[0])
    if b == 0.0:
        return 0.0 if a == 0.0 else float("inf")
    return abs(a - b) / abs(b)


def tensor_rel(a, b):
    nb = float(torch.linalg.vector_norm(b))
    nd = float(torch.linalg.vector_norm(a - b))
    if nb == 0.0:
        return 0.0 if nd == 0.0 else float("inf")
    return nd / nb


def expected_shapes(d):
    b = d["x_q"].shape[0]
    return {"x_q": (b, 16, 32, 32), "x_fp": (b, 16, 32, 32), "u_in": (b, 16, 32, 32), "y_fp": (b, 32, 16, 16),
            "u_site0": (b, 32, 16, 16), "u_site1": (b, 32, 16, 16), "conv1.weight": (32, 16, 3, 3),
            "conv1.v": (32, 16, 3, 3), "conv2.weight": (32, 32, 3, 3), "conv2.v": (32, 32, 3, 3),
            "conv1.bias": (32,), "conv1.scale": (32,), "conv1.zero_point": (32,), "conv2.bias": (32,),
            "conv2.scale": (32,), "conv2.zero_point": (32,), "grad.conv1.v": (32, 16, 3, 3),
            "grad.conv2.v": (32, 32, 3, 3)}


def describe_case(d, ref):
    c = recon_ref.to_case64(d)
    b = d["x_q"].shape[0]
    p = float(c["drop"][0])
    print(f"info case: batch {b}, drop {p:g}, reg_on {float(c['reg_on'][0]):g}, lambda {float(c['lambda'][0]):g}, "
          f"beta {float(c['beta'][0]):g}, weight bits {int(c['conv1.bits'][0])}/{int(c['conv2.bits'][0])}, "
          f"activation bits {int(c['site0.bits'][0])}/{int(c['site1.bits'][0])}, steps {float(c['site0.step'][0]):.6g}/"
          f"{float(c['site1.step'][0]):.6g}, zero points {float(c['site0.zero_point'][0]):g}/"
          f"{float(c['site1.zero_point'][0]):g}", flush=True)
    frac = {k: float((c[k] < c["drop"]).double().mean()) for k in ("u_in", "u_site0", "u_site1")}
    print(f"info fraction on the float path: input {frac['u_in']:.3f}, site0 {frac['u_site0']:.3f}, "
          f"site1 {frac['u_site1']:.3f}", flush=True)
    with torch.no_grad():
        f = recon_ref.block_forward(c, *recon_ref.leaves(c))
        for k, x in (("site0", f["a1"]), ("site1", f["pre1"])):
            code = torch.round(x / c[f"{k}.step"][0]) + c[f"{k}.zero_point"][0]
            keep = ~(c[f"u_{k}"] < c["drop"])
            qmax = 2 ** int(round(float(c[f"{k}.bits"][0]))) - 1
            above = float(((code > qmax) & keep).double().sum() / max(1, int(keep.sum())))
            below = float(((code < 0) & keep).double().sum() / max(1, int(keep.sum())))
            print(f"info {k}: of the quantized elements {above:.4f} clamp above, {below:.4f} clamp below", flush=True)
        for k in ("conv1", "conv2"):
            h = recon_ref.rectified_sigmoid(c[f"{k}.v"])
            print(f"info {k}: h(V) clamped at 0 {float((h == 0).double().mean()):.3f}, at 1 "
                  f"{float((h == 1).double().mean()):.3f}", flush=True)
    print(f"info reference: loss {float(ref['out.loss'][0]):.10g} = rec {float(ref['out.rec'][0]):.10g} + reg "
          f"{float(ref['out.reg'][0]):.10g}", flush=True)
    nb = recon_ref.near_boundary_counts(d, NEAR_TIE)
    for k in ("site0", "site1"):
        cnt, tot, dmin = nb[k]
        print(f"info {k}: {cnt} of {tot} quantized elements within {NEAR_TIE:g} step of a rounding boundary "
              f"(closest {dmin:.2e})", flush=True)
    for k in ("conv1", "conv2"):
        cnt, tot, dmin = nb[k]
        print(f"info {k}: {cnt} of {tot} weights with W/S within {NEAR_TIE:g} of an integer (closest {dmin:.2e})",
              flush=True)
    return sum(nb[k][0] for k in nb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--data", default=default_data_dir())
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "recon_case.pt")
        try:
            run_tool(a.tool, "recon-case", a.data, path)
            d = torch.load(path)
        except Exception as e:  # noqa: BLE001 - any failure of the helper is a test failure with its message
            check(False, f"oracle_tool recon-case returned an error (is the `recon-case` subcommand implemented?): {e}")
            finish("reconstruction oracle")
            return
    d = dict(d)
    missing = [k for k in recon_ref.INPUT_KEYS + recon_ref.OUTPUT_KEYS if k not in d]
    check(not missing, f"case file holds all {len(recon_ref.INPUT_KEYS)} input and {len(recon_ref.OUTPUT_KEYS)} "
                       f"output keys" + (f" (missing {missing})" if missing else ""))
    if missing:
        finish("reconstruction oracle")
        return
    bad = [f"{k} {tuple(d[k].shape)} != {s}" for k, s in expected_shapes(d).items() if tuple(d[k].shape) != s]
    bad += [f"{k} has {d[k].numel()} elements" for k in recon_ref.SCALAR_KEYS | set(SCALARS) if d[k].numel() != 1]
    check(not bad, "case file shapes as documented" + (f" ({'; '.join(bad)})" if bad else ""))
    if bad:
        finish("reconstruction oracle")
        return
    inputs = {k: d[k] for k in recon_ref.INPUT_KEYS}   # the reference sees the inputs only
    ref = recon_ref.reference(inputs)
    near = describe_case(inputs, ref)
    for k in SCALARS:
        r = scalar_rel(d[k].double(), ref[k])
        check(r <= TOL, f"{k}: C++ {float(d[k].reshape(-1)[0]):.10g} vs reference {float(ref[k][0]):.10g}, "
                        f"relative error {r:.3e} (tol {TOL:g})")
    for k in TENSORS:
        r = tensor_rel(d[k].double(), ref[k])
        check(r <= TOL, f"{k}: ||C++ - ref|| / ||ref|| = {r:.3e} (tol {TOL:g}, ||ref|| "
                        f"{float(torch.linalg.vector_norm(ref[k])):.6g})")
    if failures and near:
        print(f"note: {near} element(s) lie within {NEAR_TIE:g} of a rounding or floor boundary (see the info lines); "
              "a float32 C++ may round them differently from the float64 reference", flush=True)
    finish("reconstruction oracle")


if __name__ == "__main__":
    main()
