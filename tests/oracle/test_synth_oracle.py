#!/usr/bin/python3
"""Oracle test (CTest label `oracle`): dsgq's synthesis losses (C++) against synth_ref.py, an independent Python
reference written from docs/method.md (sections 0-6), on CIFAR-10 ResNet-20 with its real weights.

1. SDA margins: per-layer 0.9-quantile of |m - mu| and |s - sigma| over 64 Gaussian images (relative 1e-4 per layer).
2. Loss value and d loss / d x, batch of 13 (odd on purpose): zeroq/paper, dsg/paper with and without LSE, dsg/paper with
   first_index 7 (LSE layer assignment shifted), dsg/paper with the margins scaled by 0.3 (hinge active on many entries),
   dsg/official with LSE on U[0,1) images (roll 5, random labels). Tolerances: relative 1e-4 on the loss;
   max|g_cpp - g_py| <= 1e-4 * max|g_py| on the gradient. The Python side runs in float64.
3. The reference itself tells the cases apart (so a C++ that ignored LSE or first_index would fail).
Interface of the C++ helper:
  oracle_tool synth-margins ARCH WEIGHTS IN.pt OUT.pt   IN {"x" f32 [N,C,H,W], "q" f64 scalar}; OUT {"delta","gamma" f32 [L]}
  oracle_tool synth-loss ARCH WEIGHTS IN.pt OUT.pt      IN {"x" f32 [B,C,H,W], "delta","gamma" f32 [L], "labels" i64 [B],
      "roll" i64, "method","preset" u8 ASCII, "lse" i64 0/1, "first_index" i64}; OUT {"loss" f64 scalar, "grad" f32 [B,C,H,W]}
usage: test_synth_oracle.py --tool build/tests/oracle_tool [--data DIR]  (default $DSGQ_DATA, else ../shared/data)
"""
import argparse
import copy
import os
import re
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_ref  # noqa: E402
from oracle_util import check, default_data_dir, failures, run_tool  # noqa: E402
import synth_ref  # noqa: E402

TOL_MARGIN = 1e-4   # relative, per layer
TOL_LOSS = 1e-4     # relative
TOL_GRAD = 1e-4     # max abs error relative to max |g_py|
MIN_ACTIVE = 0.10   # the scaled-margin case must have > 10 % of its hinge entries active
ARCH, WEIGHTS = "resnet20", "cifar10_resnet20.pt"
B, Q, N_GAUSS, ROLL = 13, 0.9, 64, 5




def call_tool(tool, sub, weights, payload, tmp, tag):
    """Run `oracle_tool SUB ARCH WEIGHTS IN.pt OUT.pt`; returns the loaded OUT dict, or None after a FAIL line."""
    src = os.path.join(tmp, f"{tag}.in.pt")
    out = os.path.join(tmp, f"{tag}.out.pt")
    torch.save(payload, src)
    try:
        run_tool(tool, sub, ARCH, weights, src, out)
        return torch.load(out)
    except Exception as e:  # noqa: BLE001 - any failure of the helper is a test failure with its message
        check(False, f"{tag}: oracle_tool {sub} returned an error (is the `{sub}` subcommand implemented?): {e}")
        return None


def ascii_u8(s):
    return torch.tensor(list(s.encode("ascii")), dtype=torch.uint8)


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-30)


def test_margins(tool, weights, tmp, model64, xg):
    delta, gamma = synth_ref.margins(model64, xg.double(), Q)
    got = call_tool(tool, "synth-margins", weights, {"x": xg, "q": torch.tensor(Q, dtype=torch.float64)}, tmp, "margins")
    if got is None:
        return delta, gamma
    L = delta.numel()
    shapes = tuple(got["delta"].shape) == (L,) and tuple(got["gamma"].shape) == (L,)
    if not shapes:
        check(False, f"synth-margins: delta/gamma shapes {tuple(got['delta'].shape)}/{tuple(got['gamma'].shape)}, "
                     f"expected ({L},) (one per BN layer)")
        return delta, gamma
    ed = ((got["delta"].double() - delta).abs() / delta.abs()).max().item()
    eg = ((got["gamma"].double() - gamma).abs() / gamma.abs()).max().item()
    check(ed <= TOL_MARGIN and eg <= TOL_MARGIN,
          f"synth-margins {ARCH} q={Q} on {N_GAUSS} N(0,1) images: {L} layers, max rel err delta {ed:.3g} gamma {eg:.3g} "
          f"(<= {TOL_MARGIN}); delta in [{delta.min().item():.4g}, {delta.max().item():.4g}], "
          f"gamma in [{gamma.min().item():.4g}, {gamma.max().item():.4g}]")
    return delta, gamma


def test_loss(tool, weights, tmp, model64, name, x, spec, require_active=None):
    """Compare loss and gradient for one case; returns (py loss, py grad)."""
    d32, g32 = spec["delta"].float(), spec["gamma"].float()
    ref_spec = dict(spec, delta=d32.double(), gamma=g32.double(), global_batch=x.shape[0])
    val_py, g_py = synth_ref.loss_and_grad(model64, x.double(), ref_spec)
    info = ""
    if spec["method"] == "dsg":
        act = synth_ref.active_fraction(model64, x.double(), ref_spec["delta"], ref_spec["gamma"])
        info = f"; hinge active {100 * act:.1f}% of entries"
        if require_active is not None:
            check(act > require_active, f"synth-loss {name}: hinge active on {100 * act:.1f}% of (layer,n,c) entries "
                                        f"(> {100 * require_active:.0f}%, the case is not vacuous)")
    payload = {
        "x": x.float().contiguous(),
        "delta": d32, "gamma": g32,
        "labels": spec["labels"].to(torch.int64),
        "roll": torch.tensor(spec["roll"], dtype=torch.int64),
        "method": ascii_u8(spec["method"]), "preset": ascii_u8(spec["preset"]),
        "lse": torch.tensor(1 if spec["lse"] else 0, dtype=torch.int64),
        "first_index": torch.tensor(spec["first_index"], dtype=torch.int64),
    }
    got = call_tool(tool, "synth-loss", weights, payload, tmp, "loss_" + re.sub(r"[^A-Za-z0-9.-]+", "_", name))
    if got is None:
        return val_py, g_py
    if tuple(got["grad"].shape) != tuple(x.shape):
        check(False, f"synth-loss {name}: grad shape {tuple(got['grad'].shape)}, expected {tuple(x.shape)}")
        return val_py, g_py
    val_cpp = float(got["loss"].double().item())
    g_cpp = got["grad"].double()
    el = rel(val_cpp, val_py)
    gmax = g_py.abs().max().item()
    eg = (g_cpp - g_py).abs().max().item()
    check(el <= TOL_LOSS and eg <= TOL_GRAD * gmax,
          f"synth-loss {name}: loss cpp {val_cpp:.9g} py {val_py:.9g} rel {el:.3g} (<= {TOL_LOSS}); grad max err {eg:.3g}"
          f" vs max|g| {gmax:.3g} (rel {eg / max(gmax, 1e-30):.3g} <= {TOL_GRAD}){info}")
    return val_py, g_py


def distinct(name_a, a, name_b, b):
    """The reference must tell two cases apart by far more than the tolerances (else the comparison is vacuous)."""
    dl = rel(a[0], b[0])
    dg = (a[1] - b[1]).abs().max().item() / b[1].abs().max().item()
    check(dl > 10 * TOL_LOSS and dg > 10 * TOL_GRAD,
          f"reference separates {name_a} from {name_b}: loss rel diff {dl:.3g}, grad rel diff {dg:.3g} (> {10 * TOL_LOSS})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--data", default=default_data_dir())
    a = ap.parse_args()
    torch.set_num_threads(1)
    weights = os.path.join(a.data, "models", WEIGHTS)
    model = models_ref.build(ARCH).eval()
    model.load_state_dict(torch.load(weights), strict=True)
    model64 = copy.deepcopy(model).double().eval()
    for p in model64.parameters():
        p.requires_grad_(False)

    gen = torch.Generator().manual_seed(20240611)
    xg = torch.randn(N_GAUSS, 3, 32, 32, generator=gen)
    x = torch.randn(B, 3, 32, 32, generator=gen)
    xu = torch.rand(B, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (B,), generator=gen)

    with tempfile.TemporaryDirectory() as tmp:
        delta, gamma = test_margins(a.tool, weights, tmp, model64, xg)
        L = delta.numel()
        print(f"info {ARCH}: {L} BN layers, batch {B}", flush=True)
        base = {"delta": delta, "gamma": gamma, "labels": labels, "roll": 0, "lse": True, "first_index": 0}
        r = {}
        r["zeroq"] = test_loss(a.tool, weights, tmp, model64, "zeroq/paper", x,
                               dict(base, method="zeroq", preset="paper"))
        r["lse"] = test_loss(a.tool, weights, tmp, model64, "dsg/paper lse", x,
                             dict(base, method="dsg", preset="paper"))
        r["nolse"] = test_loss(a.tool, weights, tmp, model64, "dsg/paper no-lse", x,
                               dict(base, method="dsg", preset="paper", lse=False))
        r["fi7"] = test_loss(a.tool, weights, tmp, model64, "dsg/paper lse first_index=7", x,
                             dict(base, method="dsg", preset="paper", first_index=7))
        r["scaled"] = test_loss(a.tool, weights, tmp, model64, "dsg/paper lse margins x0.3", x,
                                dict(base, method="dsg", preset="paper", delta=0.3 * delta, gamma=0.3 * gamma),
                                require_active=MIN_ACTIVE)
        r["official"] = test_loss(a.tool, weights, tmp, model64, f"dsg/official lse roll={ROLL} U[0,1)", xu,
                                  dict(base, method="dsg", preset="official", roll=ROLL))
        distinct("dsg/paper lse", r["lse"], "dsg/paper no-lse", r["nolse"])
        distinct("dsg/paper lse first_index=7", r["fi7"], "first_index=0", r["lse"])
        distinct("dsg/paper lse", r["lse"], "zeroq/paper", r["zeroq"])
    if failures:
        print(f"{len(failures)} synthesis oracle check(s) failed", flush=True)
        sys.exit(1)
    print("all synthesis oracle checks passed")


if __name__ == "__main__":
    main()
