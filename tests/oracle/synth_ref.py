#!/usr/bin/python3
"""Independent Python reference for dsgq's synthesis losses (ZeroQ, DSG), written from
the papers' and the released code's description in docs/method.md sections 0-6 and 14 only (not from dsgq's C++).

Terms and where they are specified:
- per-sample statistics of a BN input (docs/method.md section 0): m[n,c] = mean over HxW, s[n,c] = sqrt(unbiased var over HxW + 1e-6);
  BN targets mu = running_mean, sigma = sqrt(running_var + 1e-6) (section 0, eps 1e-6 not BN's 1e-5).
- input term, "layer 0" (section 0, section 1, section 2 last bullet, section 5): per-sample stats of the image itself against mu0 = 0, sigma0 = 1,
  (1/B)[sum (m-0)^2 + sum (s-1)^2], no margin, no LSE, in every method and preset.
- ZeroQ (section 1 code form): sum over BN layers of (1/B)[sum_{n,c} (m-mu)^2 + sum_{n,c} (s-sigma)^2], plus the input term.
- SDA margins (section 2 "recommended reconstruction", section 5): per BN layer, delta_l = q-quantile over all (n,c) of |m - mu| and
  gamma_l = q-quantile of |s - sigma| on a Gaussian batch (torch.quantile, linear interpolation).
- DSG paper preset (section 2 hinge, section 3 paper form, section 5 "n mod L"): D_m = relu(|m-mu| - delta_l), D_s = relu(|s-sigma| - gamma_l);
  term_l = (1/B) sum_n w[n,l] sum_c (D_m^2 + D_s^2), w = 2 on the sample's own layer (first_index + n) mod L
  (X_LSE = I + 11^T), 1 elsewhere; w = 1 everywhere without LSE.
- DSG official preset (section 3 code form, section 4, section 5): same hinge, row n == l of D_m and D_s multiplied by 2 BEFORE squaring
  (effective 4) for l < 20 and l < B only; term_l = ||D_m||_F^2/B + ||D_s||_F^2/B; plus 2 x CE(model(x), labels) (section 4, the
  duplicated line, un-jittered x); plus 0.01 TV_l2 + 0.01 L2 on x_jit = roll(x, (o, o), dims (2, 3)) (section 4 image priors).
  SCI (section 4) is not included: in the released code it carries no gradient.
- ZeroQ official preset: the same loss as ZeroQ paper (section 5: only the initialization and the optimizer settings differ).

Normalization: every "/B" uses spec["global_batch"] (the whole synthetic batch), and so do the batch means of CE and L2
(sum over the local rows / B), so that per-rank pieces add up to the global loss. The test uses one rank (B = x.shape[0]).

Run `/usr/bin/python3 synth_ref.py --selfcheck` for hand-computed cases and float64 gradchecks.
"""
import math
import sys

import torch
import torch.nn.functional as F

EPS = 1e-6                 # docs/method.md section 0: eps inside the std, for BN targets and per-sample stats alike
OFFICIAL_LSE_LAYERS = 20   # docs/method.md section 3: layer_num = 20 hard-coded in the released code
OFFICIAL_CE_WEIGHT = 2.0   # docs/method.md section 4: CE added twice
OFFICIAL_TV_WEIGHT = 0.01  # docs/method.md section 4
OFFICIAL_L2_WEIGHT = 0.01  # docs/method.md section 4


# ----------------------------------------------------------------------------------------------------------- statistics
def _bn_modules(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def forward_with_bn_inputs(model, x):
    """(model(x), [(bn_module, input of that BN)] in forward-call order), captured with forward pre-hooks."""
    taps = []
    hooks = [bn.register_forward_pre_hook(lambda mod, inp: taps.append((mod, inp[0]))) for bn in _bn_modules(model)]
    try:
        out = model(x)
    finally:
        for h in hooks:
            h.remove()
    return out, taps


def bn_inputs(model, x):
    """Inputs of every BatchNorm2d, in forward-call order (docs/method.md section 0: F_l(x), the input of BN layer l)."""
    return [f for _, f in forward_with_bn_inputs(model, x)[1]]


def per_sample_stats(f):
    """docs/method.md section 0: m[n,c] = mean over H*W; s[n,c] = sqrt(unbiased variance over H*W + 1e-6). f: [N,C,H,W]."""
    n, c = f.shape[0], f.shape[1]
    flat = f.reshape(n, c, -1)
    hw = flat.shape[2]
    m = flat.sum(dim=2) / hw
    centered = flat - m.unsqueeze(2)
    var = (centered * centered).sum(dim=2) / (hw - 1)
    s = torch.sqrt(var + EPS)
    return m, s


def bn_target(bn):
    """docs/method.md section 0: mu = running_mean, sigma = sqrt(running_var + 1e-6)."""
    return bn.running_mean, torch.sqrt(bn.running_var + EPS)


def targets(model):
    """[(mu_l, sigma_l)] per BN layer, in module-registration order (for the models here equal to forward order)."""
    return [bn_target(bn) for bn in _bn_modules(model)]


# -------------------------------------------------------------------------------------------------------------- margins
def margins(model, xg, q):
    """docs/method.md section 2 recommended reconstruction: per BN layer, delta_l = q-quantile over all (n,c) of |m - mu|,
    gamma_l = q-quantile over all (n,c) of |s - sigma|, on the Gaussian batch xg (one forward, eval mode).
    Returns (delta [L], gamma [L]) in the dtype of the model."""
    with torch.no_grad():
        _, taps = forward_with_bn_inputs(model, xg)
        delta, gamma = [], []
        for bn, f in taps:
            m, s = per_sample_stats(f)
            mu, sigma = bn_target(bn)
            delta.append(torch.quantile((m - mu.unsqueeze(0)).abs().flatten(), q))
            gamma.append(torch.quantile((s - sigma.unsqueeze(0)).abs().flatten(), q))
    return torch.stack(delta), torch.stack(gamma)


# -------------------------------------------------------------------------------------------------------- layer terms
def plain_term(m, s, mu, sigma, B):
    """docs/method.md section 1: (1/B)[sum_{n,c} (m-mu)^2 + sum_{n,c} (s-sigma)^2]."""
    dm = m - mu.unsqueeze(0)
    ds = s - sigma.unsqueeze(0)
    return (dm * dm).sum() / B + (ds * ds).sum() / B


def hinge(m, s, mu, sigma, delta_l, gamma_l):
    """docs/method.md section 2: D_m = max(|m - mu| - |delta_l|, 0), D_s = max(|s - sigma| - |gamma_l|, 0) (the code uses |margin|)."""
    d_m = torch.clamp((m - mu.unsqueeze(0)).abs() - abs(delta_l), min=0.0)
    d_s = torch.clamp((s - sigma.unsqueeze(0)).abs() - abs(gamma_l), min=0.0)
    return d_m, d_s


def paper_lse_weights(n_local, L, l, first_index, lse):
    """docs/method.md section 3 paper form with the cyclic assignment: w[n] = 2 if l == (first_index + n) mod L else 1."""
    w = [1.0] * n_local
    if lse:
        for n in range(n_local):
            if (first_index + n) % L == l:
                w[n] = 2.0
    return w


def paper_sda_term(d_m, d_s, w, B):
    """docs/method.md sections 2-3 paper: (1/B) sum_n w[n] sum_c (D_m[n,c]^2 + D_s[n,c]^2)."""
    wt = torch.tensor(w, dtype=d_m.dtype).unsqueeze(1)
    return (wt * (d_m * d_m + d_s * d_s)).sum() / B


def official_lse_factors(n_local, l, first_index, B, lse):
    """docs/method.md section 3 code form: row n with global index first_index + n == l gets factor 2 (before squaring),
    only for l < 20 and l < B."""
    f = [1.0] * n_local
    if lse and l < OFFICIAL_LSE_LAYERS and l < B:
        n = l - first_index
        if 0 <= n < n_local:
            f[n] = 2.0
    return f


def official_sda_term(d_m, d_s, factors, B):
    """docs/method.md section 3 code form: D rows scaled by the factor, then ||D_m||_F^2 / B + ||D_s||_F^2 / B."""
    ft = torch.tensor(factors, dtype=d_m.dtype).unsqueeze(1)
    a = d_m * ft
    b = d_s * ft
    return (a * a).sum() / B + (b * b).sum() / B


def image_priors(x, roll, B):
    """docs/method.md section 4: on x_jit = roll(x, (roll, roll), dims (2, 3)):
    TV_l2 = sum of torch.norm (Frobenius, not squared) of the 4 difference tensors (right, down, two diagonals);
    L2 = mean over n of ||x_jit[n]||_2 (written as sum over local rows / B)."""
    xj = torch.roll(x, shifts=(roll, roll), dims=(2, 3))
    d_right = xj[:, :, :, :-1] - xj[:, :, :, 1:]
    d_down = xj[:, :, :-1, :] - xj[:, :, 1:, :]
    d_diag1 = xj[:, :, 1:, :-1] - xj[:, :, :-1, 1:]
    d_diag2 = xj[:, :, :-1, :-1] - xj[:, :, 1:, 1:]
    tv = torch.norm(d_right) + torch.norm(d_down) + torch.norm(d_diag1) + torch.norm(d_diag2)
    flat = xj.reshape(xj.shape[0], -1)
    l2 = torch.sqrt((flat * flat).sum(dim=1)).sum() / B
    return tv, l2


# ----------------------------------------------------------------------------------------------------------------- loss
def loss(model, x, spec):
    """Total synthesis loss and a dict of its named terms ("input", "bn0".."bn{L-1}", and for DSG official "ce", "tv",
    "l2"). spec keys: method ("zeroq"|"dsg"), preset ("paper"|"official"), lse (bool), delta, gamma ([L]; DSG only),
    labels (int64 [B]; DSG official), roll (int; DSG official), global_batch (B), first_index (global index of x[0])."""
    method = spec["method"]
    preset = spec.get("preset", "paper")
    if method not in ("zeroq", "dsg") or preset not in ("paper", "official"):
        raise ValueError(f"unknown method/preset {method}/{preset}")
    n_local = x.shape[0]
    B = int(spec.get("global_batch", n_local))
    first_index = int(spec.get("first_index", 0))
    lse = bool(spec.get("lse", True))

    logits, taps = forward_with_bn_inputs(model, x)
    L = len(taps)
    terms = {}

    # layer 0: the input image against mu0 = 0, sigma0 = 1; plain form, no margin, no LSE (section 0, section 1, section 2, section 5)
    m0, s0 = per_sample_stats(x)
    c0 = x.shape[1]
    terms["input"] = plain_term(m0, s0, torch.zeros(c0, dtype=x.dtype), torch.ones(c0, dtype=x.dtype), B)

    for l, (bn, f) in enumerate(taps):
        m, s = per_sample_stats(f)
        mu, sigma = bn_target(bn)
        if method == "zeroq":
            terms[f"bn{l}"] = plain_term(m, s, mu, sigma, B)
            continue
        d_m, d_s = hinge(m, s, mu, sigma, spec["delta"][l], spec["gamma"][l])
        if preset == "paper":
            terms[f"bn{l}"] = paper_sda_term(d_m, d_s, paper_lse_weights(n_local, L, l, first_index, lse), B)
        else:
            terms[f"bn{l}"] = official_sda_term(d_m, d_s, official_lse_factors(n_local, l, first_index, B, lse), B)

    if method == "dsg" and preset == "official":
        terms["ce"] = F.cross_entropy(logits, spec["labels"], reduction="sum") / B
        terms["tv"], terms["l2"] = image_priors(x, int(spec.get("roll", 0)), B)

    total = sum(v for k, v in terms.items() if k not in ("ce", "tv", "l2"))
    if "ce" in terms:
        total = total + OFFICIAL_CE_WEIGHT * terms["ce"] + OFFICIAL_TV_WEIGHT * terms["tv"] \
            + OFFICIAL_L2_WEIGHT * terms["l2"]
    return total, terms


def loss_and_grad(model, x, spec):
    """(loss value as a Python float, d loss / d x with x's shape and dtype)."""
    xv = x.detach().clone().requires_grad_(True)
    total, _ = loss(model, xv, spec)
    (g,) = torch.autograd.grad(total, xv)
    return total.item(), g


def active_fraction(model, x, delta, gamma):
    """Fraction of hinge entries (mean and std, all BN layers, all (n,c)) whose excess over the margin is > 0."""
    with torch.no_grad():
        _, taps = forward_with_bn_inputs(model, x)
        active = total = 0
        for l, (bn, f) in enumerate(taps):
            m, s = per_sample_stats(f)
            mu, sigma = bn_target(bn)
            d_m, d_s = hinge(m, s, mu, sigma, delta[l], gamma[l])
            active += int((d_m > 0).sum()) + int((d_s > 0).sum())
            total += d_m.numel() + d_s.numel()
    return active / total


# ------------------------------------------------------------------------------------------------------------ selfcheck
class _TwoBN(torch.nn.Module):
    """Both BNs see the raw input, so their per-sample statistics are those of x itself; logits = spatial mean."""

    def __init__(self):
        super().__init__()
        self.bn_a = torch.nn.BatchNorm2d(2)
        self.bn_b = torch.nn.BatchNorm2d(2)

    def forward(self, x):
        return (self.bn_a(x) + self.bn_b(x)).mean(dim=(2, 3))


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.b1 = torch.nn.BatchNorm2d(3)
        self.c2 = torch.nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.b2 = torch.nn.BatchNorm2d(4)
        self.c3 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.b3 = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4, 5)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu(self.b2(self.c2(x)))
        x = F.relu(self.b3(self.c3(x)))
        return self.fc(x.mean(dim=(2, 3)))


def selfcheck():
    torch.set_default_dtype(torch.float64)
    fails = []

    def chk(cond, msg):
        print(("ok   " if cond else "FAIL ") + msg, flush=True)
        if not cond:
            fails.append(msg)

    def close(a, b, tol=1e-12):
        return abs(float(a) - float(b)) <= tol * max(1.0, abs(float(b)))

    # x[n, c] as 2x2 images; stats by hand (unbiased variance divides by 3):
    #   n0c0 [[1,2],[3,4]] m 2.5, var (2.25+.25+.25+2.25)/3 = 5/3     n0c1 [[5,5],[5,5]]   m 5, var 0
    #   n1c0 [[0,0],[0,4]] m 1,   var (1+1+1+9)/3 = 4                n1c1 [[-1,1],[-1,1]] m 0, var 4/3
    x = torch.tensor([[[[1., 2.], [3., 4.]], [[5., 5.], [5., 5.]]],
                      [[[0., 0.], [0., 4.]], [[-1., 1.], [-1., 1.]]]])
    m_hand = [[2.5, 5.0], [1.0, 0.0]]
    s_hand = [[math.sqrt(5 / 3 + 1e-6), math.sqrt(1e-6)], [math.sqrt(4 + 1e-6), math.sqrt(4 / 3 + 1e-6)]]
    m, s = per_sample_stats(x)
    ok = all(close(m[n, c], m_hand[n][c]) and close(s[n, c], s_hand[n][c]) for n in range(2) for c in range(2))
    chk(ok, f"per_sample_stats 2x2x2x2 by hand: m={m.flatten().tolist()} s={[round(v, 9) for v in s.flatten().tolist()]}"
            " (unbiased var, eps 1e-6 inside sqrt; a constant channel gives s = 1e-3)")

    # Model with two BN layers both fed by x. Layer A: mu (2, 5), sigma (1, 2); layer B: mu (0, 1), sigma (2, 1).
    model = _TwoBN().eval()
    with torch.no_grad():
        model.bn_a.running_mean.copy_(torch.tensor([2., 5.]))
        model.bn_a.running_var.copy_(torch.tensor([1., 4.]) - 1e-6)
        model.bn_b.running_mean.copy_(torch.tensor([0., 1.]))
        model.bn_b.running_var.copy_(torch.tensor([4., 1.]) - 1e-6)
    mus = [[2., 5.], [0., 1.]]
    sigmas = [[1., 2.], [2., 1.]]
    taps = bn_inputs(model, x)
    chk(len(taps) == 2 and all(torch.equal(t, x) for t in taps), "bn_inputs: 2 BN inputs in call order, equal to x")

    # hand numbers, elementwise: dm = m - mu, ds = s - sigma
    def row_sq(layer, n, delta, gamma):  # sum_c (relu(|dm|-delta)^2 + relu(|ds|-gamma)^2) for sample n
        t = 0.0
        for c in range(2):
            em = max(abs(m_hand[n][c] - mus[layer][c]) - delta, 0.0)
            es = max(abs(s_hand[n][c] - sigmas[layer][c]) - gamma, 0.0)
            t += em * em + es * es
        return t

    # input term: targets 0 and 1
    inp = sum(m_hand[n][c] ** 2 + (s_hand[n][c] - 1) ** 2 for n in range(2) for c in range(2)) / 2
    B = 2
    zq = inp + sum(row_sq(l, n, 0.0, 0.0) for l in range(2) for n in range(2)) / B
    total, terms = loss(model, x, {"method": "zeroq", "preset": "paper"})
    chk(close(total, zq) and close(terms["input"], inp),
        f"zeroq by hand: total {total.item():.12g} == {zq:.12g}, input term {terms['input'].item():.12g} == {inp:.12g}")
    total_o, _ = loss(model, x, {"method": "zeroq", "preset": "official", "labels": torch.tensor([0, 1]), "roll": 3})
    chk(close(total_o, zq), "zeroq official == zeroq paper (no CE/priors)")

    # hinge by hand. Layer A, delta .75 gamma .5: |dm| = n0 (.5, 0), n1 (1, 5) -> D_m = n0 (0, 0), n1 (.25, 4.25);
    # |ds| = n0 (.290994, 1.999), n1 (1.0000002, .845299) -> D_s = n0 (0, 1.499), n1 (.5000002, .345299)
    dA, gA, dB, gB = 0.75, 0.5, 0.5, 0.1
    delta = torch.tensor([dA, dB])
    gamma = torch.tensor([gA, gB])
    mA, sA = per_sample_stats(taps[0])
    d_m, d_s = hinge(mA, sA, *bn_target(model.bn_a), dA, gA)
    exp_dm = [[0.0, 0.0], [0.25, 4.25]]
    exp_ds = [[0.0, 2 - math.sqrt(1e-6) - 0.5], [math.sqrt(4 + 1e-6) - 1 - 0.5, 2 - math.sqrt(4 / 3 + 1e-6) - 0.5]]
    ok = all(close(d_m[n, c], exp_dm[n][c]) and close(d_s[n, c], exp_ds[n][c]) for n in range(2) for c in range(2))
    chk(ok, f"hinge layer A by hand: D_m={d_m.flatten().tolist()} D_s={[round(v, 7) for v in d_s.flatten().tolist()]}")
    d_m2, _ = hinge(mA, sA, *bn_target(model.bn_a), -dA, -gA)
    chk(torch.equal(d_m2, d_m), "hinge uses |margin| (negative margins act like positive ones)")
    d0, s0 = hinge(mA, sA, *bn_target(model.bn_a), 0.0, 0.0)
    chk(close((d0 ** 2).sum() + (s0 ** 2).sum(), row_sq(0, 0, 0, 0) + row_sq(0, 1, 0, 0)),
        "hinge with zero margins == ZeroQ squared deviations")

    rA = [row_sq(0, n, dA, gA) for n in range(2)]
    rB = [row_sq(1, n, dB, gB) for n in range(2)]
    chk(all(r > 0 for r in rA + rB), f"hand case has active rows in every (layer, sample): A {rA} B {rB}")
    base = {"method": "dsg", "preset": "paper", "delta": delta, "gamma": gamma}

    # paper LSE, L = 2, B = 2. first_index 0: sample 0 -> layer A, sample 1 -> layer B.
    exp = inp + (2 * rA[0] + rA[1]) / B + (rB[0] + 2 * rB[1]) / B
    total, terms = loss(model, x, dict(base, lse=True, first_index=0))
    chk(close(total, exp), f"dsg paper lse first_index 0 by hand (w: A=(2,1), B=(1,2)): {total.item():.12g} == {exp:.12g}")
    exp = inp + (rA[0] + 2 * rA[1]) / B + (2 * rB[0] + rB[1]) / B
    total, _ = loss(model, x, dict(base, lse=True, first_index=1))
    chk(close(total, exp), f"dsg paper lse first_index 1 by hand (w: A=(1,2), B=(2,1)): {total.item():.12g} == {exp:.12g}")
    exp = inp + (rA[0] + rA[1]) / B + (rB[0] + rB[1]) / B
    total, _ = loss(model, x, dict(base, lse=False))
    chk(close(total, exp), f"dsg paper no lse by hand (w = 1): {total.item():.12g} == {exp:.12g}")
    # first_index 5 with L = 2: sample 0 -> layer 1, sample 1 -> layer 0 (cyclic)
    chk(paper_lse_weights(3, 2, 0, 5, True) == [1.0, 2.0, 1.0] and paper_lse_weights(3, 2, 1, 5, True) == [2.0, 1.0, 2.0]
        and paper_lse_weights(4, 19, 0, 7, True) == [1.0] * 4 and paper_lse_weights(13, 19, 0, 7, True)[12] == 2.0,
        "paper LSE weights cyclic: layer (first_index + n) mod L gets 2")
    # global batch normalization: 2 local samples of a batch of 6
    total, terms = loss(model, x, dict(base, lse=False, global_batch=6))
    chk(close(total, (inp * 2 + rA[0] + rA[1] + rB[0] + rB[1]) / 6), "every term divided by global_batch (6)")

    # official: factor 2 before squaring on row n == l -> 4x; priors and CE
    labels = torch.tensor([1, 0])
    tv, l2 = image_priors(x, 0, B)
    logits = model(x)
    ce = 0.0
    for n in range(2):
        z = logits[n].tolist()
        ce += math.log(sum(math.exp(v) for v in z)) - z[labels[n]]
    ce /= 2
    extra = 2 * ce + 0.01 * tv.item() + 0.01 * l2.item()
    exp = inp + (4 * rA[0] + rA[1]) / B + (rB[0] + 4 * rB[1]) / B + extra
    total, terms = loss(model, x, dict(base, preset="official", lse=True, labels=labels, roll=0))
    chk(close(total, exp), f"dsg official lse by hand (rows A0, B1 x4 after squaring): {total.item():.12g} == {exp:.12g}")
    chk(close(terms["ce"], ce), f"official CE by hand (log-sum-exp - z_y, mean): {terms['ce'].item():.12g} == {ce:.12g}")
    exp = inp + (rA[0] + rA[1]) / B + (rB[0] + rB[1]) / B + extra
    total, _ = loss(model, x, dict(base, preset="official", lse=False, labels=labels, roll=0))
    chk(close(total, exp), "dsg official without lse by hand")
    chk(official_lse_factors(25, 19, 0, 25, True)[19] == 2.0 and official_lse_factors(25, 20, 0, 25, True) == [1.0] * 25
        and official_lse_factors(13, 13, 0, 13, True) == [1.0] * 13 and official_lse_factors(13, 12, 0, 13, True)[12] == 2.0,
        "official LSE only for l < 20 and l < B (row n == l)")

    # TV / L2 by hand on [[1,2],[3,5]]: right (-1,-2) -> sqrt5; down (-2,-3) -> sqrt13; diag x[1:,:-1]-x[:-1,1:] = 1;
    # diag x[:-1,:-1]-x[1:,1:] = -4; L2 = sqrt(1+4+9+25)
    img = torch.tensor([[[[1., 2.], [3., 5.]]]])
    tv, l2 = image_priors(img, 0, 1)
    chk(close(tv, math.sqrt(5) + math.sqrt(13) + 1 + 4) and close(l2, math.sqrt(39)),
        f"TV_l2 by hand {tv.item():.12g} == sqrt5+sqrt13+1+4, L2 {l2.item():.12g} == sqrt39")
    img3 = torch.tensor([[[[1., 2., 4.], [0., 3., 3.], [7., 1., 2.]]]])
    tv_r, l2_r = image_priors(img3, 1, 1)
    xr = [[2., 7., 1.], [4., 1., 2.], [3., 0., 3.]]  # img3 rolled by 1 down and 1 right, by hand
    right = math.sqrt(sum((xr[i][j] - xr[i][j + 1]) ** 2 for i in range(3) for j in range(2)))
    down = math.sqrt(sum((xr[i][j] - xr[i + 1][j]) ** 2 for i in range(2) for j in range(3)))
    dg1 = math.sqrt(sum((xr[i + 1][j] - xr[i][j + 1]) ** 2 for i in range(2) for j in range(2)))
    dg2 = math.sqrt(sum((xr[i][j] - xr[i + 1][j + 1]) ** 2 for i in range(2) for j in range(2)))
    chk(close(tv_r, right + down + dg1 + dg2) and close(l2_r, math.sqrt(sum(v * v for r in xr for v in r))),
        f"TV_l2 on a 3x3 image rolled by (1,1) by hand: {tv_r.item():.12g} == {right + down + dg1 + dg2:.12g}")

    # margins by hand: layer A |dm| = {.5, 0, 1, 5} -> sorted (0, .5, 1, 5), q .9 at position 2.7 -> 1 + .7*4 = 3.8
    # |ds| = {.290994, 1.999, 1.0000002, .845299} -> sorted, position 2.7 between 1.0000002 and 1.999
    dl, gl = margins(model, x, 0.9)
    sds = sorted([abs(s_hand[n][c] - sigmas[0][c]) for n in range(2) for c in range(2)])
    g_exp = sds[2] + 0.7 * (sds[3] - sds[2])
    # layer B |dm| = {2.5, 4, 1, 1} -> (1, 1, 2.5, 4) -> 2.5 + .7*1.5 = 3.55
    chk(close(dl[0], 3.8) and close(gl[0], g_exp) and close(dl[1], 3.55),
        f"margins q=0.9 by hand (linear interpolation): delta {dl.tolist()} == [3.8, 3.55], gamma_A {gl[0].item():.9g}")

    # gradchecks in float64 on a tiny conv+BN model
    torch.manual_seed(0)
    tiny = _Tiny().eval()
    with torch.no_grad():
        for bn in (tiny.b1, tiny.b2, tiny.b3):
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.2)
    xg = torch.randn(16, 2, 6, 6)
    dl, gl = margins(tiny, xg, 0.5)
    xt = torch.randn(5, 2, 6, 6)
    act = active_fraction(tiny, xt, dl, gl)
    chk(0.2 < act < 0.9, f"tiny model: hinge active on {100 * act:.0f}% of entries with q=0.5 margins (both regimes)")
    for name, spec in [
        ("dsg paper lse first_index 1", dict(method="dsg", preset="paper", lse=True, first_index=1, delta=dl, gamma=gl)),
        ("zeroq", dict(method="zeroq", preset="paper")),
        ("dsg official lse roll 2", dict(method="dsg", preset="official", lse=True, delta=dl, gamma=gl,
                                         labels=torch.tensor([0, 3, 4, 1, 2]), roll=2)),
    ]:
        xv = xt.clone().requires_grad_(True)
        ok = torch.autograd.gradcheck(lambda inp: loss(tiny, inp, spec)[0], (xv,), eps=1e-6, atol=1e-7, rtol=1e-5,
                                      raise_exception=False)
        chk(ok, f"gradcheck float64 of {name} on conv+BN model (3 BN layers, x [5,2,6,6])")
    base_spec = dict(method="dsg", preset="paper", lse=True, delta=dl, gamma=gl)
    val, g = loss_and_grad(tiny, xt, base_spec)
    h = 1e-6
    e = torch.zeros_like(xt)
    e[2, 1, 3, 4] = h
    fd = (loss(tiny, xt + e, base_spec)[0].item() - loss(tiny, xt - e, base_spec)[0].item()) / (2 * h)
    chk(abs(fd - g[2, 1, 3, 4].item()) < 1e-6 * max(1, abs(fd)),
        f"loss_and_grad: loss {val:.9g}, dL/dx[2,1,3,4] {g[2, 1, 3, 4].item():.9g} == central difference {fd:.9g}")

    if fails:
        print(f"{len(fails)} self-check(s) failed")
        return 1
    print("all synth_ref self-checks passed")
    return 0


if __name__ == "__main__":
    if "--selfcheck" in sys.argv[1:]:
        sys.exit(selfcheck())
    print(__doc__)
    print("usage: synth_ref.py --selfcheck")
    sys.exit(2)
