#!/usr/bin/python3
"""Oracle test (CTest label `oracle`): dsgq's synthesis losses (C++) against synth_ref.py, an independent Python
reference written from docs/method.md (sections 0-6), on CIFAR-10 ResNet-20 with its real weights.

1. SDA margins: per-layer 0.9-quantile of |m - mu| and |s - sigma| over 64 Gaussian images (relative 1e-4 per layer).
2. Loss value and d loss / d x, batch of 13 (odd on purpose): zeroq/paper, dsg/paper with and without LSE, dsg/paper with
   first_index 7 (LSE layer assignment shifted), dsg/paper with the margins scaled by 0.3 (hinge active on many entries),
   dsg/official with LSE on U[0,1) images (roll 5, random labels). Tolerances: relative 1e-4 on the loss;
   max|g_cpp - g_py| <= 1e-4 * max|g_py| on the gradient. The Python side runs in float64.
3. The reference itself tells the cases apart (so a C++ that ignored LSE or first_index would fail).
4. DeepInversion (docs/method.md section 7.1), loss and d loss / d x on N(0,1) images, batch 13, same tolerances:
   (a) the CIFAR-10 script's defaults, weights (1, 100, 1, 2.5e-5, 0, 0), jitter (1, -2), no flip, targets t_i = i mod 10;
   (b) every term on, weights (0.5, 0.05, 10, 5e-3, 300, 0.07) chosen so that each weighted term is >= 7 % of the loss,
       jitter (-2, 2), flip, targets from two seeded permutations of 0..9;
   (c) the reference separates (b) from (b) with each weight switched off (first_bn_weight 1 instead of 10), with no flip,
       with jitter (2, -2) (dx/dy swapped or roll direction reversed), with jitter (-2, -2) (= flip before roll), with the
       labels of (a); and (a) from (a) with jitter (0, 0) and with flip; by > 10x the tolerances on loss and gradient.
5. SCI, the option sci_weight w of method dsg (docs/method.md section 4.1: the dsg loss + w * SCI / L, L = 19 BN layers here),
   loss and d loss / d x, batch 13, dsg/paper with LSE and the margins of 1., same tolerances; the Gaussian tensor of SCI
   (sci_gauss) is N(0,1) from its own seed and sent to the helper:
   (a) the N(0,1) images of 2., w = 1 (the journal's weight; SCI changes the gradient by ~10 %);
   (b) the same images, w = 500 (SCI >= 10 % of the loss, and most of the gradient);
   (b2) w = 500 on 13 correlated images (mixtures x = (I + 0.5 R / sqrt(13)) Z of 13 N(0,1) images, rows rescaled to unit
       RMS), whose cosine matrix has a well-separated spectrum. The eigenvector gradient scales with 1 / (eigenvalue gap):
       13 N(0,1) images of 3072 values have all eigenvalues in ~[0.9, 1.1] (smallest gap 0.0027 here), where float32
       arithmetic alone can move SCI's gradient by ~1e-4 relative: synth_ref run in float32 misses its own float64
       gradient of (b) by 1.1e-4 (printed as the "float32 floor" of each SCI case; 1.8e-5 for (b2)). A float32 helper
       therefore has little margin on (b) (the helper measured 2.9e-5 when this was written); (b2) is the
       well-conditioned comparison;
   (c) the reference separates (a), (b) and (b2) from the same cases with w = 0, and (b) from (b) with another sci_gauss
       draw and from (b) without the division by L.
   SCI's eigenvalue part (1e-4 * mean_k (lam_s - lam_g)^2) is ~1e-7 of the loss in these cases, below what a loss-level
   comparison can see; it is covered by synth_ref.py --selfcheck only.
Interface of the C++ helper:
  oracle_tool synth-margins ARCH WEIGHTS IN.pt OUT.pt   IN {"x" f32 [N,C,H,W], "q" f64 scalar}; OUT {"delta","gamma" f32 [L]}
  oracle_tool synth-loss ARCH WEIGHTS IN.pt OUT.pt      IN {"x" f32 [B,C,H,W], "delta","gamma" f32 [L], "labels" i64 [B],
      "roll" i64, "method","preset" u8 ASCII, "lse" i64 0/1, "first_index" i64}; OUT {"loss" f64 scalar, "grad" f32 [B,C,H,W]}
      method "deepinversion" (section 7.1) adds to IN: "jitter" i64 [2] = (dx, dy) (torch.roll shifts along H, W),
      "flip" i64 scalar 0/1 (flip of the width axis after the roll), "weights" f64 [6] = (ce_weight, bn_weight,
      first_bn_weight, tv_l2, tv_l1, l2); "labels" are the targets t; "preset" is "paper"; "delta","gamma" (any f32 [L]),
      "roll" 0, "lse" 0, "first_index" 0 are sent and unused. Same OUT; the gradient is w.r.t. x before roll and flip.
      SCI cases (method "dsg", section 4.1) add to IN: "sci_weight" f64 scalar (w; the loss gains w * SCI / L) and
      "sci_gauss" f32 [B,C,H,W] (the N(0,1) tensor that SCI compares x against, in place of the stream `sci` draw); the
      other cases send neither key (w = 0). Same OUT; SCI is computed on x itself (not the rolled copy).
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
DI_SEED = 20240612
DI_WEIGHTS_A = (1.0, 100.0, 1.0, 2.5e-5, 0.0, 0.0)     # docs/method.md section 7.1: the CIFAR-10 script's defaults
DI_JITTER_A = (1, -2)
DI_WEIGHTS_B = (0.5, 0.05, 10.0, 5e-3, 300.0, 0.07)   # every weighted term >= 7 % of the loss on N(0,1) images
DI_JITTER_B = (-2, 2)
SCI_GAUSS_SEED = 20240613                              # sci_gauss ~ N(0,1), its own generator
SCI_CORR_SEED = 20240709                               # the correlated batch of case (b2)
SCI_W_A, SCI_W_B = 1.0, 500.0                          # docs/method.md section 4.1: w = 1 is the journal's weight
MIN_SCI_SHARE = 0.10                                   # (b), (b2): w * SCI / L is >= 10 % of the loss
MIN_SCI_GAP = 0.02                                     # (b2): smallest eigenvalue gap of its cosine matrix




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


def compare_with_tool(tool, weights, tmp, name, payload, x, val_py, g_py, info):
    """Run `oracle_tool synth-loss` on payload and check its loss and gradient against (val_py, g_py); info is appended
    to the check's line."""
    got = call_tool(tool, "synth-loss", weights, payload, tmp, "loss_" + re.sub(r"[^A-Za-z0-9.-]+", "_", name))
    if got is None:
        return
    if tuple(got["grad"].shape) != tuple(x.shape):
        check(False, f"synth-loss {name}: grad shape {tuple(got['grad'].shape)}, expected {tuple(x.shape)}")
        return
    val_cpp = float(got["loss"].double().item())
    g_cpp = got["grad"].double()
    el = rel(val_cpp, val_py)
    gmax = g_py.abs().max().item()
    eg = (g_cpp - g_py).abs().max().item()
    check(el <= TOL_LOSS and eg <= TOL_GRAD * gmax,
          f"synth-loss {name}: loss cpp {val_cpp:.9g} py {val_py:.9g} rel {el:.3g} (<= {TOL_LOSS}); grad max err {eg:.3g}"
          f" vs max|g| {gmax:.3g} (rel {eg / max(gmax, 1e-30):.3g} <= {TOL_GRAD}){info}")


def test_loss(tool, weights, tmp, model64, name, x, spec, require_active=None, note=""):
    """Compare loss and gradient for one case; returns (py loss, py grad). A spec with "sci_weight" (and "sci_gauss") sends
    both to the helper (docs/method.md section 4.1); note is appended to the check's line."""
    d32, g32 = spec["delta"].float(), spec["gamma"].float()
    ref_spec = dict(spec, delta=d32.double(), gamma=g32.double(), global_batch=x.shape[0])
    if "sci_weight" in spec:
        ref_spec["sci_gauss"] = spec["sci_gauss"].float().double()  # the float32 values the helper gets
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
    if "sci_weight" in spec:
        payload["sci_weight"] = torch.tensor(float(spec["sci_weight"]), dtype=torch.float64)
        payload["sci_gauss"] = spec["sci_gauss"].float().contiguous()
    compare_with_tool(tool, weights, tmp, name, payload, x, val_py, g_py, info + note)
    return val_py, g_py


def sci_min_gap(t):
    """Smallest gap between consecutive eigenvalues of the cosine matrix of t's rows (docs/method.md section 4.1)."""
    lam = torch.linalg.eigvalsh(synth_ref.row_gram(t.double()))
    return (lam[1:] - lam[:-1]).min().item()


def test_sci(tool, weights, tmp, model, model64, x, base):
    """docs/method.md section 4.1: cases (a), (b), (b2) against the C++ helper and (c) the reference's separations."""
    gen = torch.Generator().manual_seed(SCI_GAUSS_SEED)
    gauss = torch.randn(x.shape, generator=gen)
    gauss_other = torch.randn(x.shape, generator=gen)
    gen = torch.Generator().manual_seed(SCI_CORR_SEED)
    z = torch.randn(B, x[0].numel(), generator=gen)
    mix = torch.eye(B) + 0.5 * torch.randn(B, B, generator=gen) / B ** 0.5
    xc = mix @ z
    xc = (xc / xc.pow(2).mean(dim=1, keepdim=True).sqrt()).reshape(x.shape)
    dsg = dict(base, method="dsg", preset="paper")
    L = base["delta"].numel()

    def ref(xx, spec):  # the float64 reference exactly as test_loss computes it (float32 margins and sci_gauss values)
        s = dict(spec, delta=spec["delta"].float().double(), gamma=spec["gamma"].float().double(), global_batch=B)
        if "sci_weight" in s:
            s["sci_gauss"] = s["sci_gauss"].float().double()
        return synth_ref.loss_and_grad(model64, xx.double(), s)

    def note(xx, spec, val64, g64):
        """SCI's weighted share of the loss, the eigenvalue gaps, and the float32 floor: synth_ref run in float32 against
        its own float64 result (what float32 arithmetic alone costs for this spectrum)."""
        s64 = dict(spec, delta=spec["delta"].float().double(), gamma=spec["gamma"].float().double(), global_batch=B,
                   sci_gauss=spec["sci_gauss"].float().double())
        _, terms = synth_ref.loss(model64, xx.double(), s64)
        share = spec["sci_weight"] * terms["sci"].item() / L / val64
        s32 = dict(spec, delta=spec["delta"].float(), gamma=spec["gamma"].float(), sci_gauss=spec["sci_gauss"].float(),
                   global_batch=B)
        v32, g32 = synth_ref.loss_and_grad(model, xx.float(), s32)
        e32 = (g32.double() - g64).abs().max().item() / g64.abs().max().item()
        return share, (f"; SCI {terms['sci'].item():.6g}, weighted share {100 * share:.1f}% of the loss; smallest eigenvalue "
                       f"gap of S_s {sci_min_gap(xx):.2g}, of S_g {sci_min_gap(spec['sci_gauss']):.2g}; float32 floor "
                       f"(synth_ref in float32 vs float64): loss rel {rel(v32, val64):.2g}, grad rel {e32:.2g}")

    cases = {
        "a": (f"dsg/paper lse + sci_weight {SCI_W_A:g} (a), N(0,1)", x, dict(dsg, sci_weight=SCI_W_A, sci_gauss=gauss)),
        "b": (f"dsg/paper lse + sci_weight {SCI_W_B:g} (b), N(0,1)", x, dict(dsg, sci_weight=SCI_W_B, sci_gauss=gauss)),
        "b2": (f"dsg/paper lse + sci_weight {SCI_W_B:g} (b2), correlated images", xc,
               dict(dsg, sci_weight=SCI_W_B, sci_gauss=gauss)),
    }
    r = {}
    for k, (name, xx, spec) in cases.items():
        val64, g64 = ref(xx, spec)
        share, info = note(xx, spec, val64, g64)
        if k in ("b", "b2"):
            check(share >= MIN_SCI_SHARE, f"{name}: SCI's weighted share of the loss {100 * share:.1f}% "
                                          f"(>= {100 * MIN_SCI_SHARE:.0f}%, the case is not vacuous)")
        if k == "b2":
            gap = sci_min_gap(xx)
            check(gap >= MIN_SCI_GAP, f"{name}: smallest eigenvalue gap of the cosine matrix {gap:.3g} (>= {MIN_SCI_GAP}, "
                                      f"a well-conditioned eigenvector gradient)")
        r[k] = test_loss(tool, weights, tmp, model64, name, xx, spec, note=info)

    # (c) a C++ that ignored sci_weight, drew its own Gaussian tensor instead of reading sci_gauss, or left out the / L
    for k, (name, xx, spec) in cases.items():
        distinct(name, r[k], "the same with sci_weight 0", ref(xx, dict(spec, sci_weight=0.0)))
    name_b, _, spec_b = cases["b"]
    distinct(name_b, r["b"], "(b) with another sci_gauss draw", ref(x, dict(spec_b, sci_gauss=gauss_other)))
    distinct(name_b, r["b"], "(b) without the division by L", ref(x, dict(spec_b, sci_weight=SCI_W_B * L)))


def distinct(name_a, a, name_b, b):
    """The reference must tell two cases apart by far more than the tolerances (else the comparison is vacuous)."""
    dl = rel(a[0], b[0])
    dg = (a[1] - b[1]).abs().max().item() / b[1].abs().max().item()
    check(dl > 10 * TOL_LOSS and dg > 10 * TOL_GRAD,
          f"reference separates {name_a} from {name_b}: loss rel diff {dl:.3g}, grad rel diff {dg:.3g} (> {10 * TOL_LOSS})")


def di_ref(model64, x, spec):
    """synth_ref's DeepInversion loss and gradient (float64) for x [B,C,H,W] (float32 values)."""
    return synth_ref.loss_and_grad(model64, x.double(), dict(spec, method="deepinversion"))


def test_di_loss(tool, weights, tmp, model64, name, x, spec, delta, gamma):
    """docs/method.md section 7.1: compare C++ and reference loss and gradient for one DeepInversion case; returns (py loss,
    py grad). spec: labels, jitter (dx, dy), flip (0/1), weights (6, synth_ref.DI_WEIGHT_NAMES order)."""
    val_py, g_py = di_ref(model64, x, spec)
    _, terms = synth_ref.loss(model64, x.double(), dict(spec, method="deepinversion"))
    w = dict(zip(synth_ref.DI_WEIGHT_NAMES, spec["weights"]))
    info = (f"; CE {terms['ce'].item():.4g}, R {terms['bn'].item():.4g} (R_0 {terms['bn0'].item():.4g}), "
            f"TV_L2 {terms['tv_l2'].item():.4g}, TV_L1 {terms['tv_l1'].item():.4g}, L2 {terms['l2'].item():.4g}; weighted shares "
            + ", ".join(f"{k} {100 * w[wk] * terms[k].item() / val_py:.1f}%" for k, wk in
                        (("ce", "ce_weight"), ("bn", "bn_weight"), ("tv_l2", "tv_l2"), ("tv_l1", "tv_l1"), ("l2", "l2"))))
    payload = {
        "x": x.float().contiguous(),
        "method": ascii_u8("deepinversion"), "preset": ascii_u8("paper"),
        "labels": spec["labels"].to(torch.int64),
        "jitter": torch.tensor(spec["jitter"], dtype=torch.int64),
        "flip": torch.tensor(int(spec["flip"]), dtype=torch.int64),
        "weights": torch.tensor(spec["weights"], dtype=torch.float64),
        "delta": delta.float(), "gamma": gamma.float(),
        "roll": torch.tensor(0, dtype=torch.int64),
        "lse": torch.tensor(0, dtype=torch.int64),
        "first_index": torch.tensor(0, dtype=torch.int64),
    }
    compare_with_tool(tool, weights, tmp, name, payload, x, val_py, g_py, info)
    return val_py, g_py


def test_deepinversion(tool, weights, tmp, model64, delta, gamma):
    """docs/method.md section 7.1: cases (a) and (b) against the C++ helper, and (c) the reference's separations."""
    gen = torch.Generator().manual_seed(DI_SEED)
    x = torch.randn(B, 3, 32, 32, generator=gen)
    labels_b = torch.cat([torch.randperm(10, generator=gen), torch.randperm(10, generator=gen)])[:B]
    spec_a = {"labels": torch.arange(B) % 10, "jitter": DI_JITTER_A, "flip": 0, "weights": DI_WEIGHTS_A}
    spec_b = {"labels": labels_b, "jitter": DI_JITTER_B, "flip": 1, "weights": DI_WEIGHTS_B}
    name_a = f"deepinversion (a) defaults {DI_WEIGHTS_A} jitter {DI_JITTER_A} no flip"
    name_b = f"deepinversion (b) {DI_WEIGHTS_B} jitter {DI_JITTER_B} flip"
    ra = test_di_loss(tool, weights, tmp, model64, name_a, x, spec_a, delta, gamma)
    rb = test_di_loss(tool, weights, tmp, model64, name_b, x, spec_b, delta, gamma)

    # (c) a C++ that dropped a term, ignored first_bn_weight, the flip, the jitter's axes or direction, the roll/flip order
    # or the labels would compute one of these variants, which the reference puts far outside the tolerances
    for i, wname in enumerate(synth_ref.DI_WEIGHT_NAMES):
        w = list(DI_WEIGHTS_B)
        w[i] = 1.0 if wname == "first_bn_weight" else 0.0
        distinct("deepinversion (b)", rb, f"(b) with {wname} = {w[i]:g}", di_ref(model64, x, dict(spec_b, weights=w)))
    distinct("deepinversion (b)", rb, "(b) without flip", di_ref(model64, x, dict(spec_b, flip=0)))
    distinct("deepinversion (b)", rb, "(b) with jitter (2, -2) (dx/dy swapped or reversed)",
             di_ref(model64, x, dict(spec_b, jitter=(2, -2))))
    distinct("deepinversion (b)", rb, "(b) with jitter (-2, -2) (flip before roll)",
             di_ref(model64, x, dict(spec_b, jitter=(-2, -2))))
    distinct("deepinversion (b)", rb, "(b) with the labels i mod 10", di_ref(model64, x, dict(spec_b, labels=spec_a["labels"])))
    distinct("deepinversion (a)", ra, "(a) with jitter (0, 0)", di_ref(model64, x, dict(spec_a, jitter=(0, 0))))
    distinct("deepinversion (a)", ra, "(a) with flip", di_ref(model64, x, dict(spec_a, flip=1)))


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
        test_sci(a.tool, weights, tmp, model, model64, x, base)
        test_deepinversion(a.tool, weights, tmp, model64, delta, gamma)
    if failures:
        print(f"{len(failures)} synthesis oracle check(s) failed", flush=True)
        sys.exit(1)
    print("all synthesis oracle checks passed")


if __name__ == "__main__":
    main()
