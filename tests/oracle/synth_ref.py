#!/usr/bin/python3
"""Independent Python reference for dsgq's synthesis losses (ZeroQ, DSG, DeepInversion), written from
the papers' and the released code's description in docs/method.md sections 0-6 (4.1 included), 7.1, 7.3 and 14 only (not from dsgq's C++).

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
  (The released code's detached SCI is not part of the official preset; dsgq's differentiable SCI is the option below.)
- SCI, option sci_weight w of method "dsg" in either preset (section 4.1, section 15 item 8): the dsg loss above plus w * SCI / L,
  L = the number of BN layers. On the images x themselves (for the official preset not the rolled copy; a common cyclic roll
  permutes the coordinates of every row alike, so it would not change the Gram matrix anyway) and a Gaussian tensor g of x's shape
  (spec["sci_gauss"], a constant): Phi = rows of x.reshape(B, -1) divided by their Euclidean norms, S = Phi Phi^T (B x B);
  S_s = V_s diag(lam_s) V_s^T, S_g = V_g diag(lam_g) V_g^T with eigenvalues ascending (torch.linalg.eigh), v_k the k-th
  column; lam_hat_g = (lam_g - min lam_g) / (max lam_g - min lam_g);
  SCI = 1e-4 * mean_k (lam_s[k] - lam_g[k])^2 + sum_k lam_hat_g[k] * |<v_s_k, v_g_k>|,
  differentiated through the normalisation and both outputs of eigh (eigenvalues and eigenvectors) into x. It needs the whole
  batch in x (global_batch == x.shape[0]) and a spectrum of S_s without repeated eigenvalues (else the eigenvectors, and the
  second part, are not defined).
- ZeroQ official preset: the same loss as ZeroQ paper (section 5: only the initialization and the optimizer settings differ).
- DeepInversion (section 7.1; Yin et al. CVPR 2020, NVlabs/DeepInversion cifar10/deepinversion_cifar10.py and deepinversion.py),
  method "deepinversion" (the preset does not apply), all on x_j = flip_W(roll(x, (dx, dy), dims (2, 3))) (flip only when asked):
  R_l = ||var_l - running_var_l||_2 + ||mean_l - running_mean_l||_2 per BN layer l in forward order, with the BATCH statistics
  of its input over (N, H, W) and the BIASED variance (mean of squares minus square of mean), plain (not squared) norms, no eps;
  R = first_bn_weight * R_0 + sum_{l>=1} R_l (R_0: the first BN layer called, NOT the input image; there is no input term);
  CE = mean_i -log softmax(z_i)[t_i]; TV_L2 = sum_k ||D_k||_F and TV_L1 = sum_k mean|D_k| / 255 over the 4 difference images
  of the whole batch; L2 = mean_i ||x_j,i||_2;
  loss = ce_weight CE + bn_weight R + tv_l2 TV_L2 + tv_l1 TV_L1 + l2 L2, the weights given in DI_WEIGHT_NAMES order.
  Options (dsgq additions, section 7.1): mixed targets (spec "mix" = (u, lam)): CE = mean_i -(lam_i log softmax(z_i)[t_i]
  + (1 - lam_i) log softmax(z_i)[u_i]); the stem prior (spec "stem_l1" = w): loss += w mean |(f_0 - running_mean_0) /
  sqrt(running_var_0 + 1e-6)| over every element of the first BN layer's input f_0 (of x_j); IntraQ's soft targets (spec
  "soft" = s, f64 [B]): the class term "ce" becomes mean_i (softmax(z_i)[t_i] - s_i)^2 (IntraQ's data_generate/distill_data.py).
- Genie (section 7.3; Jeon, Lee, Kim, CVPR 2023, SamsungLabs/Genie distill.py), method "genie": images x = G(z) from a
  generator with 10 parameter tensors p0..p9 = (linear weight [128 h w, 256], linear bias, bn1 weight, bn1 bias [128],
  conv1 weight [64,128,3,3], conv1 bias, bn2 weight, bn2 bias [64], conv2 weight [C,64,3,3], conv2 bias [C]), h = H/4, w = W/4:
  linear -> view [B,128,h,w] -> BN(128) -> nearest x2 -> conv1 (pad 1) -> BN(64) -> LeakyReLU(0.2) -> nearest x2 -> conv2
  (pad 1) -> tanh -> BN(C) without affine; every BN normalises with the batch mean and BIASED variance over (N,H,W), eps 1e-5
  (genie_generator; the widths 256/128/64 are read off the parameter shapes, so the self-check can use a small G).
  Swing convolution: the network's conv and linear layers are numbered 0.. in FORWARD CALL order; layer k with swing[k] =
  (dy, dx) != (-1, -1) (allowed only on a Conv2d with stride > 1, 0 <= dy, dx <= 2 jitter) gets the input
  F.pad(in, (j, j, j, j), mode="reflect")[:, :, dy:dy+H_in, dx:dx+W_in], j = jitter; the other layers are unchanged.
  Loss (genie_loss): per image and channel m, s = mean and UNBIASED std over (H, W) of x (no eps); per BN layer l the batch
  mean_l and UNBIASED std_l of its input over (N, H, W) (no eps) against mu_l = running_mean, sigma_l = sqrt(running_var +
  1e-6); L_mean = sum_{i,c} m^2 / B + sum_l ||mean_l - mu_l||^2 / C_l, L_std = sum_{i,c} (s - 1)^2 / B
  + sum_l ||std_l - sigma_l||^2 / C_l (Genie's l2_loss(A, B) = ||A - B||^2 / B.size(0)); L = L_mean + L_std. x is the whole
  batch (batch statistics).

Normalization: every "/B" (except in deepinversion, whose batch statistics and TV norms need the whole batch in x, so its
global_batch must equal x.shape[0]) uses spec["global_batch"] (the whole synthetic batch), and so do the batch means of CE and L2
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
SCI_EIG_WEIGHT = 1e-4    # docs/method.md section 4.1: weight of the eigenvalue part of SCI
DI_WEIGHT_NAMES = ("ce_weight", "bn_weight", "first_bn_weight", "tv_l2", "tv_l1", "l2")  # docs/method.md section 7.1
DI_DEFAULT_WEIGHTS = (1.0, 100.0, 1.0, 2.5e-5, 0.0, 0.0)  # section 7.1: the CIFAR-10 script's defaults, first_bn_weight 1


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


# ------------------------------------------------------------------------------------------------------- deepinversion
def di_jitter(x, jitter, flip):
    """docs/method.md section 7.1: x_j = roll(x, shifts=(dx, dy), dims=(2, 3)) (dx along H, dy along W, torch.roll's
    direction: out[h] = in[h - dx]), then, if flip, torch.flip(x_j, dims=(3,)) (the width axis). Roll first, flip second."""
    dx, dy = (int(v) for v in jitter)
    xj = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
    if flip:
        xj = torch.flip(xj, dims=(3,))
    return xj


def di_crop(x, pad, offsets, black):
    """The classifier's training augmentation (crop > 0): each image padded by `pad` pixels of the per-channel value
    `black` (pixel 0 in the network's units, -mean/std), then image i cut at rows dy..dy+H-1, columns dx..dx+W-1 of the
    padded plane and, when its flip is 1, mirrored along the width: offsets = [(dy, dx, flip), ...], one per image."""
    H, W = x.shape[2], x.shape[3]
    b = torch.as_tensor(black, dtype=x.dtype).view(1, -1, 1, 1)
    padded = F.pad(x - b, (pad, pad, pad, pad)) + b
    out = []
    for i, (dy, dx, fl) in enumerate(offsets):
        c = padded[i, :, dy:dy + H, dx:dx + W]
        out.append(torch.flip(c, dims=(2,)) if fl else c)
    return torch.stack(out)


def batch_stats_biased(f):
    """docs/method.md section 7.1: per channel over (N, H, W): mean = S1/N, var = S2/N - mean^2 (BIASED, no eps). f: [N,C,H,W]."""
    c = f.shape[1]
    flat = f.transpose(0, 1).reshape(c, -1)
    n = flat.shape[1]
    mean = flat.sum(dim=1) / n
    var = (flat * flat).sum(dim=1) / n - mean * mean
    return mean, var


def di_bn_term(f, bn):
    """docs/method.md section 7.1: R_l = ||var_l - running_var||_2 + ||mean_l - running_mean||_2 (plain Euclidean norms over
    the channels, not squared; the running statistics as they are, no eps)."""
    mean, var = batch_stats_biased(f)
    dv = var - bn.running_var
    dm = mean - bn.running_mean
    return torch.sqrt((dv * dv).sum()) + torch.sqrt((dm * dm).sum())


def _tv_diffs(xj):
    """The four difference images of docs/method.md sections 4 and 7.1: right, down and the two diagonals."""
    return (xj[:, :, :, :-1] - xj[:, :, :, 1:],
            xj[:, :, :-1, :] - xj[:, :, 1:, :],
            xj[:, :, 1:, :-1] - xj[:, :, :-1, 1:],
            xj[:, :, :-1, :-1] - xj[:, :, 1:, 1:])


def di_priors(xj):
    """docs/method.md section 7.1 on the jittered batch: TV_L2 = sum_k ||D_k||_F (whole batch, not squared),
    TV_L1 = sum_k mean(|D_k|) / 255 (mean over every element of the batch), L2 = mean_i ||x_j,i||_2 (per image over C,H,W)."""
    diffs = _tv_diffs(xj)
    tv_l2 = sum(torch.sqrt((d * d).sum()) for d in diffs)
    tv_l1 = sum(d.abs().sum() / d.numel() / 255.0 for d in diffs)
    flat = xj.reshape(xj.shape[0], -1)
    l2 = torch.sqrt((flat * flat).sum(dim=1)).sum() / xj.shape[0]
    return tv_l2, tv_l1, l2


def di_weights(spec):
    """spec["weights"]: 6 numbers in DI_WEIGHT_NAMES order (a tensor, list or tuple), DI_DEFAULT_WEIGHTS when absent."""
    w = spec.get("weights", DI_DEFAULT_WEIGHTS)
    w = [float(v) for v in (w.tolist() if torch.is_tensor(w) else w)]
    if len(w) != len(DI_WEIGHT_NAMES):
        raise ValueError(f"deepinversion needs {len(DI_WEIGHT_NAMES)} weights {DI_WEIGHT_NAMES}, got {len(w)}")
    return dict(zip(DI_WEIGHT_NAMES, w))


def deepinversion_loss(model, x, spec):
    """docs/method.md section 7.1. spec keys: labels (int64 [B], the targets t), jitter ((dx, dy)), flip (bool or 0/1),
    weights (6 numbers, DI_WEIGHT_NAMES order); or, instead of jitter and flip, crop = (pad, [(dy, dx, flip)] per image,
    black per channel) (di_crop; the priors then on x, not on the crops). x must be the whole batch (batch statistics, TV norms over the batch).
    Returns (total, terms): "bn0".."bn{L-1}" (R_l, unweighted), "bn" (R, first_bn_weight applied), "ce", "tv_l2", "tv_l1",
    "l2" (unweighted)."""
    B = x.shape[0]
    if int(spec.get("global_batch", B)) != B:
        raise ValueError("deepinversion: the reference needs the whole batch in x (global_batch == x.shape[0])")
    w = di_weights(spec)
    flip = spec.get("flip", 0)
    if "crop" in spec:  # the training augmentation replaces the roll and the batch flip; the priors see x itself
        pad, offsets, black = spec["crop"]
        xj = di_crop(x, pad, offsets, black)
        xp = x
    else:
        xj = di_jitter(x, spec.get("jitter", (0, 0)), bool(int(flip.item() if torch.is_tensor(flip) else flip)))
        xp = xj
    logits, taps = forward_with_bn_inputs(model, xj)
    terms = {}
    for l, (bn, f) in enumerate(taps):
        terms[f"bn{l}"] = di_bn_term(f, bn)
    terms["bn"] = sum((w["first_bn_weight"] if l == 0 else 1.0) * terms[f"bn{l}"] for l in range(len(taps)))
    if "soft" in spec:  # IntraQ's soft inception loss: the squared miss of the target class's probability
        p = F.softmax(logits, dim=1).gather(1, spec["labels"].view(-1, 1)).view(-1)
        terms["ce"] = ((p - spec["soft"].to(p.dtype)) ** 2).sum() / B
    elif "mix" in spec:  # a target lam t + (1 - lam) u per image
        other, lam = spec["mix"]
        logp = F.log_softmax(logits, dim=1)
        lam = lam.to(logp.dtype)
        picked = lam * logp.gather(1, spec["labels"].view(-1, 1)).view(-1) \
            + (1 - lam) * logp.gather(1, other.view(-1, 1)).view(-1)
        terms["ce"] = -picked.sum() / B
    else:
        terms["ce"] = F.cross_entropy(logits, spec["labels"], reduction="sum") / B
    terms["tv_l2"], terms["tv_l1"], terms["l2"] = di_priors(xp)
    total = w["ce_weight"] * terms["ce"] + w["bn_weight"] * terms["bn"] + w["tv_l2"] * terms["tv_l2"] \
        + w["tv_l1"] * terms["tv_l1"] + w["l2"] * terms["l2"]
    if float(spec.get("stem_l1", 0.0)) != 0.0:
        bn0, f0 = taps[0]
        z = (f0 - bn0.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn0.running_var.view(1, -1, 1, 1) + 1e-6)
        terms["stem_l1"] = z.abs().mean()
        total = total + float(spec["stem_l1"]) * terms["stem_l1"]
    return total, terms


# ------------------------------------------------------------------------------------------------------------------ SCI
def row_gram(t):
    """docs/method.md section 4.1: Phi = t.reshape(B, -1) with every row divided by its Euclidean norm; returns S = Phi Phi^T
    (B x B, the cosine similarities of the rows)."""
    phi = t.reshape(t.shape[0], -1)
    phi = phi / torch.sqrt((phi * phi).sum(dim=1, keepdim=True))
    return phi @ phi.transpose(0, 1)


def sci_from_eig(lam_s, v_s, lam_g, v_g):
    """docs/method.md section 4.1 from the two eigendecompositions (eigenvalues ascending, eigenvectors as columns):
    1e-4 * mean_k (lam_s[k] - lam_g[k])^2 + sum_k lam_hat_g[k] * |<v_s[:, k], v_g[:, k]>|,
    lam_hat_g = (lam_g - min lam_g) / (max lam_g - min lam_g). The |.| makes it independent of each eigenvector's sign."""
    d = lam_s - lam_g
    eig_part = SCI_EIG_WEIGHT * (d * d).sum() / lam_s.shape[0]
    lam_hat = (lam_g - lam_g.min()) / (lam_g.max() - lam_g.min())
    vec_part = (lam_hat * (v_s * v_g).sum(dim=0).abs()).sum()
    return eig_part + vec_part


def sci_term(x, g):
    """docs/method.md section 4.1: SCI of the batch x [B,C,H,W] against the Gaussian tensor g (same shape, a constant).
    The gradient flows through the row normalisation and torch.linalg.eigh (eigenvalues and eigenvectors) of S_s into x."""
    if tuple(g.shape) != tuple(x.shape):
        raise ValueError(f"sci: the Gaussian tensor has shape {tuple(g.shape)}, expected x's {tuple(x.shape)}")
    lam_s, v_s = torch.linalg.eigh(row_gram(x))
    with torch.no_grad():
        lam_g, v_g = torch.linalg.eigh(row_gram(g.to(x.dtype)))
    return sci_from_eig(lam_s, v_s, lam_g, v_g)


# ---------------------------------------------------------------------------------------------------------------- genie
GENIE_LATENT = 256     # docs/method.md section 7.3: z_i in R^256
GENIE_C1, GENIE_C2 = 128, 64   # section 7.3: the generator's widths after the linear layer and after the first conv
GENIE_BN_EPS = 1e-5    # section 7.3: the generator's BatchNorms (training mode), BN's own eps
GENIE_SLOPE = 0.2      # section 7.3: LeakyReLU slope
GENIE_PARAM_NAMES = ("linear.weight", "linear.bias", "bn1.weight", "bn1.bias", "conv1.weight", "conv1.bias",
                     "bn2.weight", "bn2.bias", "conv2.weight", "conv2.bias")  # p0..p9, section 7.3's order


def genie_param_shapes(C, H, W, latent=GENIE_LATENT, c1=GENIE_C1, c2=GENIE_C2):
    """docs/method.md section 7.3: the shapes of p0..p9 for C channels and an HxW image (H, W divisible by 4)."""
    if H % 4 or W % 4:
        raise ValueError(f"genie: H and W must be divisible by 4, got {H}x{W}")
    hw = (H // 4) * (W // 4)
    return [(c1 * hw, latent), (c1 * hw,), (c1,), (c1,), (c2, c1, 3, 3), (c2,), (c2,), (c2,), (C, c2, 3, 3), (C,)]


def genie_fan_in(k, params_or_shapes):
    """fan_in of p_k for PyTorch's default init (section 7.3): the linear layer's input width for p0, p1; in_channels * 9
    for the convs' weights and biases; None for the BatchNorm tensors."""
    shp = [tuple(p.shape) if torch.is_tensor(p) else tuple(p) for p in params_or_shapes]
    if k in (0, 1):
        return shp[0][1]
    if k in (4, 5):
        return shp[4][1] * shp[4][2] * shp[4][3]
    if k in (8, 9):
        return shp[8][1] * shp[8][2] * shp[8][3]
    return None


def train_bn(h, weight=None, bias=None, eps=GENIE_BN_EPS):
    """docs/method.md section 7.3: BatchNorm in training mode, written out: per channel over (N, H, W) the batch mean and the
    BIASED variance, y = (h - mean) / sqrt(var + eps) * weight + bias (no affine when weight and bias are None)."""
    dims = (0, 2, 3) if h.dim() == 4 else (0,)
    n = 1
    for d in dims:
        n *= h.shape[d]
    shape = [1, h.shape[1]] + [1] * (h.dim() - 2)
    mean = h.sum(dim=dims, keepdim=True) / n
    cen = h - mean
    var = (cen * cen).sum(dim=dims, keepdim=True) / n
    y = cen / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight.view(shape) + bias.view(shape)
    return y


def genie_generator(params, z, H, W, taps=None):
    """docs/method.md section 7.3: G(z) for z [B, latent], params p0..p9 (GENIE_PARAM_NAMES order), output [B, C, H, W].
    The BatchNorms use the whole batch (training mode, biased variance, eps 1e-5; the last one without affine parameters).
    taps, if a dict, receives the intermediate tensors "linear", "conv1", "conv2" (the outputs of those layers, before
    their BatchNorm / tanh) for gradient diagnostics."""
    if len(params) != 10:
        raise ValueError(f"genie: 10 generator parameter tensors expected, got {len(params)}")
    p = list(params)
    c1 = p[2].numel()
    h, w = H // 4, W // 4
    if H % 4 or W % 4 or p[0].shape[0] != c1 * h * w:
        raise ValueError(f"genie: linear output {p[0].shape[0]} != {c1} * ({H}/4) * ({W}/4)")
    t = F.linear(z, p[0], p[1])
    if taps is not None:
        taps["linear"] = t
    t = t.view(z.shape[0], c1, h, w)
    t = F.batch_norm(t, None, None, p[2], p[3], training=True, momentum=0.0, eps=GENIE_BN_EPS)
    t = F.interpolate(t, scale_factor=2, mode="nearest")
    t = F.conv2d(t, p[4], p[5], stride=1, padding=1)
    if taps is not None:
        taps["conv1"] = t
    t = F.batch_norm(t, None, None, p[6], p[7], training=True, momentum=0.0, eps=GENIE_BN_EPS)
    t = F.leaky_relu(t, GENIE_SLOPE)
    t = F.interpolate(t, scale_factor=2, mode="nearest")
    t = F.conv2d(t, p[8], p[9], stride=1, padding=1)
    if taps is not None:
        taps["conv2"] = t
    t = torch.tanh(t)
    return F.batch_norm(t, None, None, None, None, training=True, momentum=0.0, eps=GENIE_BN_EPS)


def swing_window(inp, dy, dx, jitter, pad_mode="reflect"):
    """docs/method.md section 7.3: F.pad(inp, (j, j, j, j), mode="reflect") (index -1 reads index 1), then the
    H_in x W_in window at rows dy.., columns dx.., 0 <= dy, dx <= 2 j. pad_mode "constant" (zeros) or "replicate" (index -1
    reads index 0) are deliberately wrong variants for the oracle's separation checks."""
    j = int(jitter)
    dy, dx = int(dy), int(dx)
    if not (0 <= dy <= 2 * j and 0 <= dx <= 2 * j):
        raise ValueError(f"swing offsets ({dy}, {dx}) outside 0..{2 * j}")
    if j == 0:
        return inp
    hh, ww = inp.shape[2], inp.shape[3]
    return F.pad(inp, (j, j, j, j), mode=pad_mode)[:, :, dy:dy + hh, dx:dx + ww]


def _is_layer(m):
    return isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))


def genie_layers(model, x):
    """[(name, module)] of the network's conv and linear layers in FORWARD CALL order (the layer index of the swing list),
    found with forward pre-hooks on one forward pass of x (no gradient). A layer called twice is refused."""
    names = {m: n for n, m in model.named_modules()}
    order = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: order.append(mod)) for m in model.modules() if _is_layer(m)]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hk in hooks:
            hk.remove()
    if len(set(order)) != len(order):
        raise ValueError("genie: a conv/linear layer is called more than once; the layer index is ambiguous")
    return [(names[m], m) for m in order]


def _swing_list(swing):
    s = swing.tolist() if torch.is_tensor(swing) else swing
    return [(int(a), int(b)) for a, b in s]


def genie_forward(model, x, swing, jitter, pad_mode="reflect"):
    """The network's forward pass on x with the swing convolution (docs/method.md section 7.3): swing has one (dy, dx) per
    conv/linear layer in forward call order, (-1, -1) for unchanged; entries other than (-1, -1) only on Conv2d with
    stride > 1. Returns (logits, [(bn_module, input of that BN)] in forward call order)."""
    sw = _swing_list(swing)
    count = [0]
    taps = []

    def layer_hook(mod, inp):
        k = count[0]
        count[0] += 1
        if k >= len(sw):
            raise ValueError(f"genie: swing has {len(sw)} entries, the network has more conv/linear layers")
        dy, dx = sw[k]
        if (dy, dx) == (-1, -1):
            return None
        if not (isinstance(mod, torch.nn.Conv2d) and max(mod.stride) > 1):
            raise ValueError(f"genie: swing ({dy}, {dx}) at layer {k}, which is not a convolution with stride > 1")
        return (swing_window(inp[0], dy, dx, jitter, pad_mode),)

    hooks = [m.register_forward_pre_hook(layer_hook) for m in model.modules() if _is_layer(m)]
    hooks += [bn.register_forward_pre_hook(lambda mod, inp: taps.append((mod, inp[0]))) for bn in _bn_modules(model)]
    try:
        out = model(x)
    finally:
        for hk in hooks:
            hk.remove()
    if count[0] != len(sw):
        raise ValueError(f"genie: swing has {len(sw)} entries, the network has {count[0]} conv/linear layers")
    return out, taps


def genie_l2(a, b):
    """Genie's l2_loss(A, B) = ||A - B||^2 / B.size(0) (docs/method.md section 7.3); b's first dimension normalises."""
    d = a - b
    return (d * d).sum() / b.shape[0]


def genie_loss(model, x, swing, jitter, input_std_unbiased=True, pad_mode="reflect", std_eps=0.0, bn_divisor=None):
    """docs/method.md section 7.3: (L, L_mean, L_std) of the whole batch x [B,C,H,W] (x = G(z)) on the network with the
    swing convolution (genie_forward). Image term per image and channel over (H, W): mean m and unbiased std s (no eps),
    sum m^2 / B and sum (s - 1)^2 / B; BN term per BN layer l: batch mean and unbiased std (no eps) of its input over
    (N, H, W) against running_mean and sqrt(running_var + 1e-6), squared Euclidean norms divided by C_l.
    input_std_unbiased=False (a deliberately wrong variant for the oracle's separation check) takes the biased std of the
    image term; pad_mode (see swing_window), std_eps > 0 (added to every variance of the loss, image and BN inputs, as the
    other methods' 1e-6 is) and bn_divisor (divides the BN terms instead of C_l, e.g. B) are other wrong variants."""
    B, C = x.shape[0], x.shape[1]
    flat = x.reshape(B, C, -1)
    hw = flat.shape[2]
    m = flat.sum(dim=2) / hw
    cen = flat - m.unsqueeze(2)
    s = torch.sqrt((cen * cen).sum(dim=2) / (hw - 1 if input_std_unbiased else hw) + std_eps)
    l_mean = genie_l2(torch.zeros(1, C, dtype=x.dtype), m)
    l_std = genie_l2(torch.ones(1, C, dtype=x.dtype), s)
    _, taps = genie_forward(model, x, swing, jitter, pad_mode)
    for bn, f in taps:
        c = f.shape[1]
        ff = f.transpose(0, 1).reshape(c, -1)
        n = ff.shape[1]
        mean = ff.sum(dim=1) / n
        fc = ff - mean.unsqueeze(1)
        std = torch.sqrt((fc * fc).sum(dim=1) / (n - 1) + std_eps)
        mu, sigma = bn_target(bn)
        if bn_divisor is None:
            l_mean = l_mean + genie_l2(mu, mean)
            l_std = l_std + genie_l2(sigma, std)
        else:
            l_mean = l_mean + ((mean - mu) ** 2).sum() / bn_divisor
            l_std = l_std + ((std - sigma) ** 2).sum() / bn_divisor
    return l_mean + l_std, l_mean, l_std


def genie_step(model, params, z, swing, jitter, H, W, **kw):
    """x = G(z), (L, L_mean, L_std) of genie_loss, and the gradients of L w.r.t. z and p0..p9 (docs/method.md section 7.3),
    all in the dtype of the inputs: returns (x, L, L_mean, L_std, grad_z, [grad_p0..grad_p9]) with x and the gradients
    detached; L, L_mean, L_std as Python floats."""
    zv = z.detach().clone().requires_grad_(True)
    pv = [p.detach().clone().requires_grad_(True) for p in params]
    x = genie_generator(pv, zv, H, W)
    total, lm, ls = genie_loss(model, x, swing, jitter, **kw)
    grads = torch.autograd.grad(total, [zv] + pv)
    return x.detach(), total.item(), lm.item(), ls.item(), grads[0], list(grads[1:])


# ----------------------------------------------------------------------------------------------------------------- loss
def loss(model, x, spec):
    """Total synthesis loss and a dict of its named terms ("input", "bn0".."bn{L-1}", for DSG official "ce", "tv", "l2", and
    with a nonzero sci_weight "sci", unweighted). spec keys: method ("zeroq"|"dsg"), preset ("paper"|"official"), lse (bool),
    delta, gamma ([L]; DSG only), labels (int64 [B]; DSG official), roll (int; DSG official), global_batch (B), first_index
    (global index of x[0]), sci_weight (float, default 0; DSG only: adds sci_weight * SCI / L, section 4.1) and sci_gauss
    (the Gaussian tensor of x's shape that SCI compares against; needed when sci_weight != 0).
    method "deepinversion" goes to deepinversion_loss (its own spec keys and terms; the preset is ignored)."""
    method = spec["method"]
    if method == "deepinversion":
        return deepinversion_loss(model, x, spec)
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

    sci_weight = float(spec.get("sci_weight", 0.0))
    if sci_weight != 0.0:
        if method != "dsg":
            raise ValueError(f"sci_weight is an option of method dsg (docs/method.md section 4.1), not of {method}")
        if n_local != B:
            raise ValueError("sci: the reference needs the whole batch in x (global_batch == x.shape[0])")
        terms["sci"] = sci_term(x, spec["sci_gauss"])

    total = sum(v for k, v in terms.items() if k not in ("ce", "tv", "l2", "sci"))
    if "ce" in terms:
        total = total + OFFICIAL_CE_WEIGHT * terms["ce"] + OFFICIAL_TV_WEIGHT * terms["tv"] \
            + OFFICIAL_L2_WEIGHT * terms["l2"]
    if "sci" in terms:
        total = total + sci_weight * terms["sci"] / L
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


class _TwoBNRev(_TwoBN):
    """_TwoBN with the forward calling bn_b first: forward order differs from registration order."""

    def forward(self, x):
        b = self.bn_b(x)
        return (self.bn_a(x) + b).mean(dim=(2, 3))


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

    # ---------------------------------------------------------------------------------- deepinversion (section 7.1)
    # roll then flip, by hand on a 3x3 image: roll (dx=1 along H): rows [7,1,2],[1,2,4],[0,3,3]; roll (dy=-1 along W):
    # [1,2,7],[2,4,1],[3,3,0]; flip W: [7,2,1],[1,4,2],[0,3,3]. (Flip first then roll would give [1,7,2],[2,1,4],[3,0,3];
    # dx/dy swapped [3,0,3],[1,7,2],[2,1,4].)
    img3t = torch.tensor([[[[1., 2., 4.], [0., 3., 3.], [7., 1., 2.]]]])
    chk(torch.equal(di_jitter(img3t, (1, -1), True)[0, 0], torch.tensor([[7., 2., 1.], [1., 4., 2.], [0., 3., 3.]]))
        and torch.equal(di_jitter(img3t, (1, -1), False)[0, 0], torch.tensor([[1., 2., 7.], [2., 4., 1.], [3., 3., 0.]])),
        "di_jitter by hand on a 3x3 image: roll (dx along H, dy along W, torch.roll direction) THEN flip of the width axis")

    def jit_py(img, dx, dy, flip):
        """Nested lists [C][H][W], index by index: flip is applied last, so it picks column W-1-w of the rolled image;
        the rolled image at (h, w) is x[(h - dx) mod H][(w - dy) mod W]."""
        hh, ww = len(img[0]), len(img[0][0])
        return [[[ch[(h - dx) % hh][(((ww - 1 - w) if flip else w) - dy) % ww] for w in range(ww)] for h in range(hh)]
                for ch in img]

    chk(jit_py([[[1., 2., 4.], [0., 3., 3.], [7., 1., 2.]]], 1, -1, True)[0] == [[7., 2., 1.], [1., 4., 2.], [0., 3., 3.]],
        "index formula of the hand computations below agrees with the hand-rolled 3x3 image")

    # biased batch statistics by hand on the 2x2x2x2 x above: channel 0 {1,2,3,4,0,0,0,4}: mean 1.75, E[x^2] 46/8 = 5.75,
    # var 5.75 - 1.75^2 = 2.6875; channel 1 {5,5,5,5,-1,1,-1,1}: mean 2.5, E[x^2] 104/8 = 13, var 6.75
    bm, bv = batch_stats_biased(x)
    chk(close(bm[0], 1.75) and close(bm[1], 2.5) and close(bv[0], 2.6875) and close(bv[1], 6.75),
        f"batch_stats_biased by hand (over N,H,W; biased): mean {bm.tolist()} == [1.75, 2.5], var {bv.tolist()} == [2.6875, 6.75]")
    torch.manual_seed(3)
    fr = torch.randn(4, 3, 5, 7) * 2 + 1
    vv, mm = torch.var_mean(fr, dim=(0, 2, 3), unbiased=False)
    bm, bv = batch_stats_biased(fr)
    chk(torch.allclose(bm, mm, rtol=1e-12, atol=1e-12) and torch.allclose(bv, vv, rtol=1e-12, atol=1e-12),
        "batch_stats_biased == torch.var_mean(dims (0,2,3), unbiased=False) on a random [4,3,5,7]")

    # BN term by hand on _TwoBN (both BNs see x_j; batch statistics are those of x for any roll/flip, a permutation of pixels)
    # A: running mean (2, 5), var (1, 4) - 1e-6; B: running mean (0, 1), var (4, 1) - 1e-6. Plain norms, no eps added.
    R_A = math.hypot(2.6875 - (1 - 1e-6), 6.75 - (4 - 1e-6)) + math.hypot(1.75 - 2, 2.5 - 5)
    R_B = math.hypot(2.6875 - (4 - 1e-6), 6.75 - (1 - 1e-6)) + math.hypot(1.75 - 0, 2.5 - 1)
    lab2 = torch.tensor([1, 0])
    di = dict(method="deepinversion", labels=lab2, jitter=(1, 0), flip=1)
    total, terms = loss(model, x, dict(di, weights=(0, 1, 1, 0, 0, 0)))
    chk(close(terms["bn0"], R_A) and close(terms["bn1"], R_B) and close(total, R_A + R_B),
        f"deepinversion BN term by hand: R_A {terms['bn0'].item():.12g} == {R_A:.12g}, R_B {terms['bn1'].item():.12g} == "
        f"{R_B:.12g} (biased var, ||.||_2 not squared, no input term)")
    total, _ = loss(model, x, dict(di, weights=(0, 3, 10, 0, 0, 0)))
    chk(close(total, 3 * (10 * R_A + R_B)), f"bn_weight 3, first_bn_weight 10 on the first BN only: {total.item():.12g} == "
                                             f"3 (10 R_A + R_B) = {3 * (10 * R_A + R_B):.12g}")
    rev = _TwoBNRev().eval()
    rev.load_state_dict(model.state_dict())
    total, terms = loss(rev, x, dict(di, weights=(0, 1, 10, 0, 0, 0)))
    chk(close(terms["bn0"], R_B) and close(total, 10 * R_B + R_A),
        f"first_bn_weight goes to the first BN CALLED (forward order), not the first registered: {total.item():.12g} == "
        f"10 R_B + R_A = {10 * R_B + R_A:.12g}")
    total, terms = loss(model, x, dict(di, weights=(0, 0, 0, 0, 0, 0)))
    chk(float(total) == 0.0, "deepinversion with every weight 0 is exactly 0 (no input-statistics or other hidden term)")

    # TV_L1 / TV_L2 / L2 by hand on [[1,2],[3,5]]: |D| right (1,2) mean 1.5, down (2,3) mean 2.5, diag 1, diag 4:
    # TV_L1 = (1.5 + 2.5 + 1 + 4) / 255; TV_L2 = sqrt5 + sqrt13 + 1 + 4; L2 = sqrt39
    tv2, tv1, l2v = di_priors(img)
    chk(close(tv1, 9 / 255) and close(tv2, math.sqrt(5) + math.sqrt(13) + 5) and close(l2v, math.sqrt(39)),
        f"di_priors by hand on [[1,2],[3,5]]: TV_L1 {tv1.item():.12g} == 9/255, TV_L2 == sqrt5+sqrt13+5, L2 == sqrt39")

    # full loss by hand on a [2,2,3,3] batch through _TwoBN, jitter (1,-1) + flip, every weight on and distinct
    xs = [[[[1., 2., 4.], [0., 3., 3.], [7., 1., 2.]], [[0., -1., 2.], [1., 1., 0.], [3., -2., 5.]]],
          [[[2., 0., 1.], [4., -3., 1.], [0., 2., 6.]], [[1., 1., 1.], [2., 0., -1.], [5., 4., 3.]]]]
    wts = (0.5, 3.0, 10.0, 1e-3, 0.2, 0.05)
    lab = [1, 0]
    xjs = [jit_py(im, 1, -1, True) for im in xs]
    vals = [[v for im in xs for v in sum(im[c], [])] for c in range(2)]  # per channel, all (n, h, w)
    mean_h = [sum(v) / len(v) for v in vals]
    var_h = [sum(u * u for u in v) / len(v) - (sum(v) / len(v)) ** 2 for v in vals]
    rm = {"A": ([2., 5.], [1 - 1e-6, 4 - 1e-6]), "B": ([0., 1.], [4 - 1e-6, 1 - 1e-6])}
    r_h = {k: math.hypot(var_h[0] - rv[0], var_h[1] - rv[1]) + math.hypot(mean_h[0] - mu[0], mean_h[1] - mu[1])
           for k, (mu, rv) in rm.items()}
    ce_h = 0.0
    for n in range(2):
        z = [sum((sum(sum(r) for r in xjs[n][c]) / 9 - rm[k][0][c]) / math.sqrt(rm[k][1][c] + 1e-5) for k in "AB")
             for c in range(2)]  # eval BN (weight 1, bias 0, eps 1e-5), spatial mean, summed over the two BNs
        ce_h += math.log(sum(math.exp(v) for v in z)) - z[lab[n]]
    ce_h /= 2

    def tv_py(batch):  # (TV_L2, TV_L1) of nested lists [N][C][H][W], index by index
        diffs = [[], [], [], []]
        for im in batch:
            for ch in im:
                hh, ww = len(ch), len(ch[0])
                for i in range(hh):
                    for j in range(ww):
                        if j < ww - 1:
                            diffs[0].append(ch[i][j] - ch[i][j + 1])
                        if i < hh - 1:
                            diffs[1].append(ch[i][j] - ch[i + 1][j])
                        if i < hh - 1 and j < ww - 1:
                            diffs[2].append(ch[i + 1][j] - ch[i][j + 1])
                            diffs[3].append(ch[i][j] - ch[i + 1][j + 1])
        return (sum(math.sqrt(sum(d * d for d in ds)) for ds in diffs),
                sum(sum(abs(d) for d in ds) / len(ds) / 255 for ds in diffs))

    tvl2_h, tvl1_h = tv_py(xjs)
    l2_h = sum(math.sqrt(sum(v * v for ch in im for r in ch for v in r)) for im in xjs) / 2
    exp = (wts[0] * ce_h + wts[1] * (wts[2] * r_h["A"] + r_h["B"]) + wts[3] * tvl2_h + wts[4] * tvl1_h + wts[5] * l2_h)
    xt3 = torch.tensor(xs)
    total, terms = loss(model, xt3, dict(method="deepinversion", labels=torch.tensor(lab), jitter=(1, -1), flip=1,
                                         weights=torch.tensor(wts)))
    chk(all(close(terms[k], v) for k, v in (("ce", ce_h), ("tv_l2", tvl2_h), ("tv_l1", tvl1_h), ("l2", l2_h),
                                            ("bn0", r_h["A"]), ("bn1", r_h["B"]))),
        f"deepinversion terms by hand on [2,2,3,3], jitter (1,-1) + flip: CE {ce_h:.10g} TV_L2 {tvl2_h:.10g} "
        f"TV_L1 {tvl1_h:.10g} L2 {l2_h:.10g} R_A {r_h['A']:.10g} R_B {r_h['B']:.10g}")
    chk(close(total, exp), f"deepinversion total by hand, weights {wts}: {total.item():.12g} == {exp:.12g}")
    total_nf, terms_nf = loss(model, xt3, dict(method="deepinversion", labels=torch.tensor(lab), jitter=(1, -1), flip=0,
                                               weights=wts))
    chk(close(terms_nf["tv_l2"], tvl2_h) and close(terms_nf["tv_l1"], tvl1_h) and close(terms_nf["l2"], l2_h)
        and close(terms_nf["bn0"], r_h["A"]),
        "priors and batch BN statistics are flip-invariant (the two diagonals swap under a width flip)")
    _, terms_sw = loss(model, xt3, dict(method="deepinversion", labels=torch.tensor(lab), jitter=(-1, 1), flip=1,
                                        weights=wts))
    tv_sw = tv_py([jit_py(im, -1, 1, True) for im in xs])[0]
    chk(close(terms_sw["tv_l2"], tv_sw) and abs(tv_sw - tvl2_h) > 1e-3,
        f"TV_L2 depends on the roll direction (the wrap seam moves): jitter (-1,1) {terms_sw['tv_l2'].item():.10g} == hand "
        f"{tv_sw:.10g}, vs (1,-1) {tvl2_h:.10g}")

    # gradchecks of deepinversion (w.r.t. the ORIGINAL x, before roll and flip) on the conv+BN model
    for name, spec in [
        ("deepinversion jitter (1,-2) flip, every weight nonzero", dict(method="deepinversion", labels=torch.tensor([0, 3, 4, 1, 2]),
                                                                  jitter=(1, -2), flip=1, weights=(0.5, 3, 10, 1e-3, 0.2, 0.05))),
        ("deepinversion jitter (-2,3) no flip, defaults", dict(method="deepinversion", labels=torch.tensor([4, 0, 1, 2, 3]),
                                                               jitter=(-2, 3), flip=0, weights=DI_DEFAULT_WEIGHTS)),
    ]:
        xv = xt.clone().requires_grad_(True)
        ok = torch.autograd.gradcheck(lambda inp: loss(tiny, inp, spec)[0], (xv,), eps=1e-6, atol=1e-7, rtol=1e-5,
                                      raise_exception=False)
        chk(ok, f"gradcheck float64 of {name} on conv+BN model (3 BN layers, x [5,2,6,6])")
    di_spec = dict(method="deepinversion", labels=torch.tensor([0, 3, 4, 1, 2]), jitter=(1, -2), flip=1,
                   weights=(0.5, 3, 10, 1e-3, 0.2, 0.05))
    _, terms = loss(tiny, xt, di_spec)
    lt = di_spec["labels"]
    ce_j = F.cross_entropy(tiny(di_jitter(xt, (1, -2), True)), lt).item()
    ce_0 = F.cross_entropy(tiny(xt), lt).item()
    chk(close(terms["ce"], ce_j) and abs(ce_j - ce_0) > 1e-3,
        f"the network sees x_j: CE {terms['ce'].item():.10g} == CE(model(x_j)) {ce_j:.10g} != CE(model(x)) {ce_0:.10g}")
    val, g = loss_and_grad(tiny, xt, di_spec)
    e = torch.zeros_like(xt)
    e[1, 0, 0, 5] = h  # a corner pixel: moved by the roll and the flip
    fd = (loss(tiny, xt + e, di_spec)[0].item() - loss(tiny, xt - e, di_spec)[0].item()) / (2 * h)
    chk(abs(fd - g[1, 0, 0, 5].item()) < 1e-6 * max(1, abs(fd)),
        f"deepinversion loss_and_grad: loss {val:.9g}, dL/dx[1,0,0,5] (original x) {g[1, 0, 0, 5].item():.9g} == "
        f"central difference {fd:.9g}")

    # ----------------------------------------------------------------------------- SCI (section 4.1, option of dsg)
    def rows_with_cos(c, scale=(1.0, 1.0)):  # [2,1,1,2]: two rows of R^2 with cosine c, scaled by positive factors
        return torch.tensor([[[[scale[0], 0.0]]], [[[scale[1] * c, scale[1] * math.sqrt(1 - c * c)]]]])

    cs, cg = 0.6, 0.2
    S = row_gram(rows_with_cos(cs, (3.0, 0.5)))
    chk(torch.allclose(S, torch.tensor([[1.0, cs], [cs, 1.0]]), rtol=0, atol=1e-15),
        f"row_gram by hand: rows (3, 0) and 0.5 (0.6, 0.8) -> cosine matrix [[1, .6], [.6, 1]]: {S.flatten().tolist()}")
    # B = 2, cosines c_s = .6 and c_g = .2: both spectra (1 - c, 1 + c) with eigenvectors (1,-1)/sqrt2, (1,1)/sqrt2, so the
    # pairs k match; lam_hat_g = (0, 1); SCI = 1e-4 * ((c_g - c_s)^2 + (c_s - c_g)^2) / 2 + 0 * 1 + 1 * 1
    v = sci_term(rows_with_cos(cs, (3.0, 0.5)), rows_with_cos(cg, (2.0, 7.0)))
    exp = 1e-4 * (cs - cg) ** 2 + 1.0
    chk(close(v, exp, 1e-13), f"SCI by hand, B=2, cos .6 vs .2 (same eigenvectors): {v.item():.15g} == 1e-4 (.4)^2 + 1 = {exp:.15g}")
    # c_g = -.2: S_g's ascending spectrum is (1 + c_g, 1 - c_g) = (.8, 1.2) with eigenvectors (1,1)/sqrt2, (1,-1)/sqrt2, while
    # S_s has (.4, 1.6) with (1,-1)/sqrt2, (1,1)/sqrt2: every pair is orthogonal, only the eigenvalue part remains,
    # 1e-4 * ((.4 - .8)^2 + (1.6 - 1.2)^2) / 2 = 1e-4 (c_s + c_g)^2
    v = sci_term(rows_with_cos(cs), rows_with_cos(-cg))
    exp = 1e-4 * (cs - cg) ** 2
    chk(abs(v.item() - exp) <= 1e-16, f"SCI by hand, B=2, cos .6 vs -.2 (eigenvectors swapped by the ascending order, "
                                      f"orthogonal pairs): {v.item():.12g} == 1e-4 (.6 - .2)^2 = {exp:.12g}")
    # B = 3: x rows e0, (a, sqrt(1-a^2), 0), e2 -> S_s = [[1,a,0],[a,1,0],[0,0,1]], spectrum (1-a, 1, 1+a), eigenvectors
    # (1,-1,0)/sqrt2, e2, (1,1,0)/sqrt2; g rows e0, e1, (0, b, sqrt(1-b^2)) -> S_g = [[1,0,0],[0,1,b],[0,b,1]], spectrum
    # (1-b, 1, 1+b), eigenvectors (0,1,-1)/sqrt2, e0, (0,1,1)/sqrt2, lam_hat_g = (0, .5, 1); |<v_s_k, v_g_k>| = (.5, 0, .5):
    # SCI = 1e-4 * ((b-a)^2 + 0 + (a-b)^2) / 3 + 0 * .5 + .5 * 0 + 1 * .5. Rows scaled, padded to [3,1,2,2] with zeros.
    a_, b_ = 0.6, 0.2
    x3 = torch.tensor([[1.0, 0, 0, 0], [a_, math.sqrt(1 - a_ * a_), 0, 0], [0, 0, 1.0, 0]]) * torch.tensor([[2.0], [0.3], [5.0]])
    g3 = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, b_, math.sqrt(1 - b_ * b_), 0]]) * torch.tensor([[1.5], [4.0], [0.1]])
    v = sci_term(x3.reshape(3, 1, 2, 2), g3.reshape(3, 1, 2, 2))
    exp = 1e-4 * 2 * (a_ - b_) ** 2 / 3 + 0.5
    chk(close(v, exp, 1e-13), f"SCI by hand, B=3 (lam_hat_g = (0, .5, 1), |<v_s, v_g>| = (.5, 0, .5)): {v.item():.15g} == "
                              f"1e-4 * 2 (.4)^2 / 3 + .5 = {exp:.15g}")
    chk(close(sci_term(x3.reshape(3, 1, 2, 2), x3.reshape(3, 1, 2, 2)), 1.0 + 0.5, 1e-13),
        "SCI of a batch against itself: eigenvalue part 0, sum_k lam_hat_k * 1 = 0 + (1 - .4)/(1.6 - .4) + 1 = 1.5")

    # random, non-degenerate cases (B = 5, 18 values per row: the spectrum of S is spread, gaps >> 1e-6)
    torch.manual_seed(11)
    xs5 = torch.randn(5, 2, 3, 3)
    gs5 = torch.randn(5, 2, 3, 3)
    lam_s, v_s = torch.linalg.eigh(row_gram(xs5))
    lam_g, v_g = torch.linalg.eigh(row_gram(gs5))
    gap = min((lam_s[1:] - lam_s[:-1]).min().item(), (lam_g[1:] - lam_g[:-1]).min().item())
    base_sci = sci_from_eig(lam_s, v_s, lam_g, v_g)
    chk(gap > 1e-2 and close(sci_term(xs5, gs5), base_sci, 1e-14),
        f"random B=5 case is non-degenerate (smallest eigenvalue gap {gap:.3g}); SCI {base_sci.item():.12g}")
    eig_part = 1e-4 * ((lam_s - lam_g) ** 2).mean()
    vec_part = sum((lam_g[k] - lam_g[0]) / (lam_g[-1] - lam_g[0]) * abs(float(v_s[:, k] @ v_g[:, k])) for k in range(5))
    chk(close(base_sci, eig_part + vec_part, 1e-14), "sci_from_eig == the formula written out term by term (loop over k)")
    flips = [(torch.tensor([-1.0, 1, 1, -1, 1]), torch.tensor([1.0, 1, 1, 1, 1])),
             (torch.tensor([1.0, 1, 1, 1, 1]), torch.tensor([1.0, -1, -1, 1, -1])),
             (torch.tensor([-1.0, -1, -1, -1, -1]), torch.tensor([-1.0, 1, -1, 1, 1]))]
    chk(all(close(sci_from_eig(lam_s, v_s * fs, lam_g, v_g * fg), base_sci, 1e-14) for fs, fg in flips),
        "SCI invariant under flipping the sign of any eigenvector of S_s or S_g (the |.|)")
    nosign = sci_from_eig(lam_s, v_s, lam_g, v_g) - 1e-4 * ((lam_s - lam_g) ** 2).mean()
    signed = ((lam_g - lam_g.min()) / (lam_g.max() - lam_g.min()) * (v_s * v_g).sum(dim=0)).sum().abs()
    signed_f = ((lam_g - lam_g.min()) / (lam_g.max() - lam_g.min()) * (v_s * flips[0][0] * v_g).sum(dim=0)).sum().abs()
    chk(abs(float(signed - signed_f)) > 1e-3 and float(nosign) >= float(signed) - 1e-15,
        f"without the per-k |.| (the released code's |sum_k ...|) a sign flip changes the term: {float(signed):.6g} vs "
        f"{float(signed_f):.6g}; dsgq's per-k form {float(nosign):.6g} bounds both")
    # a general (non-symmetric) solver gives unsorted, arbitrarily signed eigenpairs: sorted ascending they give the same SCI
    ev, evec = torch.linalg.eig(row_gram(xs5))
    order = torch.argsort(ev.real)
    chk(close(sci_from_eig(ev.real[order], evec.real[:, order], lam_g, v_g), base_sci, 1e-12),
        "SCI from torch.linalg.eig (unsorted, arbitrary signs), sorted ascending == SCI from eigh")
    scales = torch.tensor([0.01, 3.0, 100.0, 0.5, 7.0]).view(5, 1, 1, 1)
    chk(close(sci_term(xs5 * scales, gs5 * scales.flip(0)), base_sci, 1e-12),
        "SCI invariant under positive scaling of the rows of x and of g (factors 0.01 .. 100)")
    neg = torch.tensor([1.0, -1.0, 1.0, 1.0, 1.0]).view(5, 1, 1, 1)
    chk(abs(float(sci_term(xs5 * neg, gs5)) - float(base_sci)) > 1e-3,
        f"but not under a sign change of one row (cosines change sign): {float(sci_term(xs5 * neg, gs5)):.9g} vs "
        f"{float(base_sci):.9g}")
    perm = torch.randperm(18)
    chk(close(sci_term(xs5.reshape(5, -1)[:, perm].reshape(5, 2, 3, 3), gs5), base_sci, 1e-12)
        and close(sci_term(torch.roll(xs5, shifts=(1, 2), dims=(2, 3)), gs5), base_sci, 1e-12),
        "SCI unchanged by one permutation of the coordinates common to all rows (so also by the official preset's roll)")
    chk(abs(float(sci_term(xs5, torch.randn(5, 2, 3, 3))) - float(base_sci)) > 1e-3,
        "SCI depends on the Gaussian tensor (another draw gives another value)")

    xv = xs5.clone().requires_grad_(True)
    ok = torch.autograd.gradcheck(lambda inp: sci_term(inp, gs5), (xv,), eps=1e-6, atol=1e-7, rtol=1e-5,
                                  raise_exception=False)
    chk(ok, "gradcheck float64 of sci_term (x [5,2,3,3], through the row normalisation and eigh's eigenvalues and vectors)")
    xv = xs5.clone().requires_grad_(True)
    (gx,) = torch.autograd.grad(sci_term(xv, gs5), xv)
    xr, gr = xs5.reshape(5, -1), gx.reshape(5, -1)
    radial = ((xr * gr).sum(dim=1).abs() / (xr.norm(dim=1) * gr.norm(dim=1))).max().item()
    chk(radial < 1e-12 and gr.abs().max().item() > 1e-3,
        f"gradient of SCI is orthogonal to each row of x (scale invariance): max |cos(x_n, g_n)| {radial:.2g}")
    gsv = gs5.clone().requires_grad_(True)
    xv = xs5.clone().requires_grad_(True)
    (gg,) = torch.autograd.grad(sci_term(xv, gsv), gsv, allow_unused=True)
    chk(gg is None or float(gg.abs().max()) == 0.0, "the Gaussian tensor is a constant (no gradient flows into it)")
    # each part on its own (the eigenvalue part's 1e-4 would let an error in its gradient hide under the eigenvector part's)
    lam_hat_g = (lam_g - lam_g.min()) / (lam_g.max() - lam_g.min())
    parts = {
        "eigenvalue part / 1e-4, mean_k (lam_s - lam_g)^2":
            lambda inp: ((torch.linalg.eigh(row_gram(inp))[0] - lam_g) ** 2).mean(),
        "eigenvector part, sum_k lam_hat_g |<v_s, v_g>|":
            lambda inp: (lam_hat_g * (torch.linalg.eigh(row_gram(inp))[1] * v_g).sum(dim=0).abs()).sum(),
    }
    for pname, fn in parts.items():
        ok = torch.autograd.gradcheck(fn, (xs5.clone().requires_grad_(True),), eps=1e-6, atol=1e-8, rtol=1e-6,
                                      raise_exception=False)
        chk(ok and close(SCI_EIG_WEIGHT * parts["eigenvalue part / 1e-4, mean_k (lam_s - lam_g)^2"](xs5)
                         + parts["eigenvector part, sum_k lam_hat_g |<v_s, v_g>|"](xs5), base_sci, 1e-14),
            f"gradcheck float64 of the SCI {pname} alone; the parts add up to SCI")

    # dispatch: loss = dsg loss + w * SCI / L (L = 2 BN layers in _TwoBN); x there has cosine 16/sqrt(130*20) != 0
    gtwo = torch.randn(2, 2, 2, 2)
    sci_x = sci_term(x, gtwo)
    for pre, extra_spec in (("paper", dict(lse=True)), ("official", dict(lse=True, labels=labels, roll=1))):
        plain, _ = loss(model, x, dict(base, preset=pre, **extra_spec))
        with_sci, terms = loss(model, x, dict(base, preset=pre, sci_weight=3.0, sci_gauss=gtwo, **extra_spec))
        zero_w, terms0 = loss(model, x, dict(base, preset=pre, sci_weight=0.0, sci_gauss=gtwo, **extra_spec))
        chk(close(with_sci, plain + 3.0 * sci_x / 2, 1e-13) and close(terms["sci"], sci_x, 1e-14)
            and float(zero_w) == float(plain) and "sci" not in terms0,
            f"dsg {pre} with sci_weight 3: {with_sci.item():.12g} == dsg loss {plain.item():.12g} + 3 * SCI {sci_x.item():.9g} / L=2;"
            f" sci_weight 0 leaves the loss exactly as it was")
    w_t, _ = loss(model, x, dict(base, lse=True, sci_weight=torch.tensor(3.0), sci_gauss=gtwo.float()))
    chk(close(w_t, loss(model, x, dict(base, lse=True))[0] + 1.5 * sci_x, 1e-7),
        "sci_weight as a 0-d tensor and sci_gauss in float32 (as in the oracle payload) are accepted")
    for bad in (dict(method="zeroq"), dict(global_batch=6)):
        try:
            loss(model, x, dict(base, lse=True, sci_weight=1.0, sci_gauss=gtwo, **bad))
            raised = False
        except ValueError:
            raised = True
        chk(raised, f"sci_weight refused with {bad} (an option of dsg; needs the whole batch in x)")

    for name, spec in [
        ("dsg paper lse + sci_weight 40", dict(method="dsg", preset="paper", lse=True, delta=dl, gamma=gl,
                                               sci_weight=40.0, sci_gauss=torch.randn(5, 2, 6, 6))),
        ("dsg official lse roll 2 + sci_weight 40", dict(method="dsg", preset="official", lse=True, delta=dl, gamma=gl,
                                                         labels=torch.tensor([0, 3, 4, 1, 2]), roll=2, sci_weight=40.0,
                                                         sci_gauss=torch.randn(5, 2, 6, 6))),
    ]:
        tot, terms = loss(tiny, xt, spec)
        share = 40.0 * terms["sci"].item() / 3 / tot.item()
        xv = xt.clone().requires_grad_(True)
        ok = torch.autograd.gradcheck(lambda inp: loss(tiny, inp, spec)[0], (xv,), eps=1e-6, atol=1e-7, rtol=1e-5,
                                      raise_exception=False)
        chk(ok and share > 0.1, f"gradcheck float64 of {name} on conv+BN model (3 BN layers, x [5,2,6,6]); SCI's weighted "
                                f"share of the loss {100 * share:.0f}%")

    # ------------------------------------------------------------------------------------------------ genie (section 7.3)
    chk(genie_param_shapes(3, 32, 32) == [(8192, 256), (8192,), (128,), (128,), (64, 128, 3, 3), (64,), (64,), (64,),
                                          (3, 64, 3, 3), (3,)]
        and [genie_fan_in(k, genie_param_shapes(3, 32, 32)) for k in range(10)] == [256, 256, None, None, 1152, 1152,
                                                                                     None, None, 576, 576],
        "genie_param_shapes(3, 32, 32): linear [8192, 256] (128 * 8 * 8), BN 128, conv [64,128,3,3], BN 64, conv [3,64,3,3]; "
        "fan_in 256, 1152, 576")
    # a small generator (latent 4, widths 3 and 2, C = 2, 8x8 images) through the functional G, through G assembled from
    # nn modules as Genie's Generator class is (training mode), and through the explicit BN formula
    torch.manual_seed(5)
    gshapes = genie_param_shapes(2, 8, 8, latent=4, c1=3, c2=2)
    gp = [torch.randn(s) * 0.7 for s in gshapes]
    zg = torch.randn(5, 4)
    gt = {}
    xg_ = genie_generator(gp, zg, 8, 8, taps=gt)
    lin = torch.nn.Linear(4, 12)
    seq = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(3, 2, 3, 1, 1),
                              torch.nn.BatchNorm2d(2), torch.nn.LeakyReLU(0.2), torch.nn.Upsample(scale_factor=2),
                              torch.nn.Conv2d(2, 2, 3, 1, 1), torch.nn.Tanh(), torch.nn.BatchNorm2d(2, affine=False))
    with torch.no_grad():
        for dst, src in zip([lin.weight, lin.bias, seq[0].weight, seq[0].bias, seq[2].weight, seq[2].bias, seq[3].weight,
                             seq[3].bias, seq[6].weight, seq[6].bias], gp):
            dst.copy_(src)
        seq.train()
        x_mod = seq(lin(zg).view(5, -1, 2, 2))
        up = lambda t: t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # noqa: E731  nearest x2 by hand
        t = train_bn(F.linear(zg, gp[0], gp[1]).view(5, 3, 2, 2), gp[2], gp[3])
        t = train_bn(F.conv2d(up(t), gp[4], gp[5], padding=1), gp[6], gp[7])
        t = torch.where(t > 0, t, 0.2 * t)
        x_exp = train_bn(torch.tanh(F.conv2d(up(t), gp[8], gp[9], padding=1)))
    chk(torch.allclose(xg_, x_mod, rtol=0, atol=1e-12) and torch.allclose(xg_, x_exp, rtol=0, atol=1e-12),
        f"genie_generator == Genie's Generator from nn modules in training mode (max diff "
        f"{(xg_ - x_mod).abs().max().item():.2g}) == the chain with BN written out (biased var, eps 1e-5; max diff "
        f"{(xg_ - x_exp).abs().max().item():.2g})")
    th = torch.tanh(gt["conv2"])
    vb = ((th - th.mean(dim=(0, 2, 3), keepdim=True)) ** 2).mean(dim=(0, 2, 3))
    gm = xg_.mean(dim=(0, 2, 3))
    gv = ((xg_ - gm.view(1, -1, 1, 1)) ** 2).mean(dim=(0, 2, 3))
    chk(gm.abs().max().item() < 1e-14 and torch.allclose(gv, vb / (vb + 1e-5), rtol=1e-12, atol=0),
        f"G's output: per-channel batch mean 0 ({gm.abs().max().item():.2g}), biased var v/(v + 1e-5) = "
        f"{gv.tolist()} (v the biased var of the tanh output)")

    # swing window by hand (j = 1, reflect: padded index p reads original index |p - 1| mirrored: p 0..4 -> 1,0,1,2,1)
    img3s = torch.tensor([[[[1., 2., 4.], [0., 3., 3.], [7., 1., 2.]]]])
    chk(torch.equal(swing_window(img3s, 0, 2, 1)[0, 0], torch.tensor([[3., 3., 3.], [2., 4., 2.], [3., 3., 3.]]))
        and torch.equal(swing_window(img3s, 2, 0, 1)[0, 0], torch.tensor([[3., 0., 3.], [1., 7., 1.], [3., 0., 3.]]))
        and torch.equal(swing_window(img3s, 1, 1, 1), img3s) and torch.equal(swing_window(img3s, 0, 0, 0), img3s),
        "swing_window by hand on a 3x3 image, jitter 1: (dy,dx)=(0,2) -> rows (1,0,1) cols (1,2,1) of the original; (2,0) -> "
        "rows (1,2,1) cols (1,0,1); (1,1) and jitter 0 leave it unchanged")
    try:
        swing_window(img3s, 3, 0, 1)
        raised = False
    except ValueError:
        raised = True
    chk(raised, "swing offsets outside 0..2j are refused")

    # layer index = forward call order of conv/linear; swing only on strided convs
    xt8 = torch.randn(5, 2, 8, 8)
    lay = genie_layers(tiny, xt8)
    chk([n for n, _ in lay] == ["c1", "c2", "c3", "fc"], f"genie_layers on the tiny model: {[n for n, _ in lay]}")
    _, taps_sw = genie_forward(tiny, xt8, [(-1, -1), (1, 2), (-1, -1), (-1, -1)], 1)
    with torch.no_grad():
        a1 = F.relu(tiny.b1(tiny.c1(xt8)))
        b2_in = tiny.c2(swing_window(a1, 1, 2, 1))
        b2_plain = tiny.c2(a1)
    chk(torch.allclose(taps_sw[1][1], b2_in, rtol=0, atol=1e-13) and (b2_in - b2_plain).abs().max().item() > 1e-3
        and torch.equal(taps_sw[0][1], tiny.c1(xt8)),
        "genie_forward: swing (1,2) at layer 1 (the stride-2 conv c2) feeds c2 the window of its reflect-padded input; "
        "layer 0 unchanged")
    for bad, why in (([(0, 0), (-1, -1), (-1, -1), (-1, -1)], "on a stride-1 conv"),
                     ([(-1, -1), (-1, -1), (-1, -1)], "a list one entry short"),
                     ([(-1, -1)] * 5, "a list one entry long")):
        try:
            genie_forward(tiny, xt8, bad, 1)
            raised = False
        except ValueError:
            raised = True
        chk(raised, f"genie_forward refuses swing {why}")

    # genie_loss by hand on _TwoBN (both BN inputs are x itself), B = 3, C = 2, 2x2 images: B != C, so the /B of the image
    # term and the /C_l of the BN terms are told apart
    xs3 = [[[[1., 2.], [3., 4.]], [[5., 5.], [5., 5.]]],
           [[[0., 0.], [0., 4.]], [[-1., 1.], [-1., 1.]]],
           [[[2., 0.], [1., 1.]], [[3., -3.], [0., 0.]]]]

    def mstd(vals, unbiased=True):
        mu_ = sum(vals) / len(vals)
        return mu_, math.sqrt(sum((v - mu_) ** 2 for v in vals) / (len(vals) - (1 if unbiased else 0)))

    lm_h = ls_h = 0.0
    for im in xs3:
        for ch in im:
            mm_, ss_ = mstd(sum(ch, []))
            lm_h += mm_ * mm_ / 3
            ls_h += (ss_ - 1) ** 2 / 3
    chan = [mstd([v for im in xs3 for v in sum(im[c], [])]) for c in range(2)]
    for layer in range(2):
        lm_h += sum((chan[c][0] - mus[layer][c]) ** 2 for c in range(2)) / 2
        ls_h += sum((chan[c][1] - sigmas[layer][c]) ** 2 for c in range(2)) / 2
    tot, lm, ls = genie_loss(model, torch.tensor(xs3), [], 0)
    chk(close(lm, lm_h) and close(ls, ls_h) and close(tot, lm_h + ls_h),
        f"genie_loss by hand on [3,2,2,2] through two BNs (targets mu (2,5)/(0,1), sigma (1,2)/(2,1)): L_mean "
        f"{lm.item():.12g} == {lm_h:.12g}, L_std {ls.item():.12g} == {ls_h:.12g} (image term / B = 3, BN terms / C = 2, "
        f"unbiased stds, no eps)")
    ls_b = ls_h
    for im in xs3:
        for ch in im:
            ls_b += ((mstd(sum(ch, []), False)[1] - 1) ** 2 - (mstd(sum(ch, []))[1] - 1) ** 2) / 3
    chk(close(genie_loss(model, torch.tensor(xs3), [], 0, input_std_unbiased=False)[2], ls_b),
        "genie_loss input_std_unbiased=False takes the biased std of the image term (by hand)")

    # gradients through G and the swung network: gradcheck in float64 of L w.r.t. z and all 10 parameters of a small G
    # feeding the tiny model (swing (2,0) on its stride-2 conv, jitter 1)
    sw_t = [(-1, -1), (2, 0), (-1, -1), (-1, -1)]

    def genie_fn(zz, *pp):
        return genie_loss(tiny, genie_generator(list(pp), zz, 8, 8), sw_t, 1)[0]

    ins = tuple(v.clone().requires_grad_(True) for v in [zg] + gp)
    ok = torch.autograd.gradcheck(genie_fn, ins, eps=1e-6, atol=1e-7, rtol=1e-5, raise_exception=False)
    chk(ok, "gradcheck float64 of the genie loss w.r.t. z [5,4] and p0..p9 of a small G (widths 3, 2) on the tiny model "
            "with swing (2,0) at its stride-2 conv")
    _, val_g, _, _, gz, gps = genie_step(tiny, gp, zg, sw_t, 1, 8, 8)
    gt2 = {}
    pv = [p.clone().requires_grad_(True) for p in gp]
    tot2 = genie_loss(tiny, genie_generator(pv, zg, 8, 8, taps=gt2), sw_t, 1)[0]
    gt2["conv1"].retain_grad()
    tot2.backward()
    scale5 = gt2["conv1"].grad.abs().sum(dim=(0, 2, 3)).max().item()
    chk(gps[5].abs().max().item() <= 1e-13 * scale5 and scale5 > 1e-3 and gps[4].abs().max().item() > 1e-3,
        f"the gradient of conv1's bias (p5) is 0 (BN(64) in training mode removes it): max {gps[5].abs().max().item():.2g} vs "
        f"max_c sum |dL/d conv1 out| {scale5:.3g}")

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
