#!/usr/bin/python3
"""The reference for bench/synth: image synthesis written in plain Python on Debian's python3-torch the way a user would
write it from the published code, timed per iteration. `--method dsg` (the default): DSG, the "paper" preset of
docs/method.md sections 2-3 and 5, from the ZeroQ/DSG code; `--method deepinversion` (section 7.1, from NVlabs'
cifar10/deepinversion_cifar10.py) and `--method genie` (section 7.3, from SamsungLabs/Genie distill.py).

The dsg loop (one batch of B images):
  model = tests/oracle/models_ref.py build(arch) with the real weights, eval mode; parameters left requiring grad
  as in the official code (`--frozen yes` or `both` also times the variant with requires_grad_(False));
  forward hooks on every BatchNorm2d collect its input; targets mu = running_mean, sigma = sqrt(running_var + 1e-6);
  SDA margins once, from 1024 Gaussian N(0,1) images (per layer, 0.9-quantile over all (n, c) of |m - mu| and |s - sigma|);
  x = torch.randn(B, 3, H, W, requires_grad=True); Adam([x], lr 0.5); ReduceLROnPlateau(min, 0.1, patience 100,
  min_lr 1e-4); per iteration: zero grads, forward, loss = input term (ZeroQ, targets 0/1, no margin)
  + sum_l (1/B) sum_n w[l,n] sum_c (relu(|m-mu|-delta_l)^2 + relu(|s-sigma|-gamma_l)^2), w = 2 where n mod L == l
  else 1 (LSE, X = I + 11^T), per-sample m = mean over HxW, s = sqrt(unbiased var + 1e-6); backward; Adam step;
  scheduler step on the loss value.
The deepinversion loop: the same model, hooks (forward pre-hooks) and frozen/not choice; targets t_i = i mod K (K = 10
  for CIFAR-10); x = torch.randn(B, 3, H, W, requires_grad=True) (dsgq's recommended preset starts from section 7.2's
  diverse images instead: that changes only the start, not the per-iteration work); Adam([x], lr 0.1), constant;
  per iteration: (dx, dy) uniform on {-2..2} (Python's random, the same for the whole batch), x_j = torch.roll(x,
  (dx, dy), dims (2, 3)); zero grads; forward x_j; loss = CE(logits, t) + bn_weight * sum_l (||var_l - running_var_l||_2
  + ||mean_l - running_mean_l||_2) (batch mean and biased variance over (N, H, W)) + 2.5e-5 * sum_k ||D_k||_F (the four
  difference images of x_j); bn_weight 10 (dsgq's preset "dsgq", section 7.4; the CIFAR-10 script uses 100, which
  changes nothing in the work per iteration); keep x.detach().clone() when the loss is the lowest so far; backward;
  Adam step.
The genie loop: the network's strided convolutions (stride > 1; layer2 and layer3's first convs on resnet20/56)
  replaced by a wrapper that reflect-pads the input by 1 and crops an H x W window at a random offset in {0, 1, 2}^2
  per call (swing convolution); forward pre-hooks on every BatchNorm2d; per batch a fresh generator (linear 256 ->
  128*(H/4)*(W/4), BN(128), upsample x2, conv3x3 128->64, BN(64), LeakyReLU(0.2), upsample x2, conv3x3 64->3, tanh,
  BN(3, affine=False); train mode) and z = torch.randn(B, 256, requires_grad=True); Adam([z], lr 0.1) with
  ReduceLROnPlateau(patience 100, min_lr 1e-4) stepped on the loss every iteration; Adam(generator, lr 0.01) with
  ExponentialLR(0.95) stepped after every 100th iteration; per iteration: zero grads, x = G(z), forward x,
  loss = sum over the input (per image, torch.std_mean over (2, 3), against 0 and 1, ||.||^2 / B) and every BN input
  (torch.std_mean over (0, 2, 3) against running_mean and sqrt(running_var + 1e-6), ||.||^2 / C) of the mean and std
  terms; backward; both Adam steps; scheduler steps. The network's parameters are frozen or not as for dsg.
Timing: `--warmup` iterations (default 3) untimed, then `--iters` timed; images_per_s is the 500-iteration
equivalent batch / (500 * seconds_per_iter).

Modes (each prints JSON objects, one per line):
  synth_ref.py --arch resnet20 --batch 64 --threads 2 --iters 30 [--method dsg|deepinversion|genie]
               [--frozen no|yes|both] [--peak-gflops G] [--device cuda]
  synth_ref.py --flops --arch resnet20          forward FLOPs per image (convs and linear layers, 2 per multiply-add)
  synth_ref.py --peak [--repeats 5]             float32 matrix-multiply GFLOP/s with 1 and 2 threads
"""
import argparse
import json
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "oracle"))
import models_ref  # noqa: E402

EPS = 1e-6
ITERS_EQUIVALENT = 500


def busy_cpu_s():
    """Busy CPU seconds of the whole machine since boot (user, nice, system, irq, softirq, steal of /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(t) for t in f.readline().split()[1:9]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


TORCHVISION = {"resnet18": 224, "resnet50": 224, "mobilenet_v2": 224, "shufflenet_v2_x0_5": 224,
               "shufflenet_v2_x1_0": 224, "inception_v3": 299}  # ImageNet architectures and their input size


def torchvision_model(arch):
    import torchvision
    kw = {"aux_logits": True, "init_weights": True} if arch == "inception_v3" else {}
    return getattr(torchvision.models, arch)(weights=None, **kw).eval()


def save_random_weights(arch, path, seed=0):
    """A torchvision architecture with its default random initialisation and random BN statistics (no ImageNet
    checkpoint exists on these machines; speed does not depend on the values), saved as its state_dict."""
    torch.manual_seed(seed)
    model = torchvision_model(arch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(model.state_dict(), path)


def load_model(arch, data, weights=None):
    if arch in TORCHVISION:
        model = torchvision_model(arch)
        model.load_state_dict(torch.load(weights))
    else:
        model = models_ref.build(arch).eval()
        model.load_state_dict(torch.load(weights or os.path.join(data, "models", f"cifar10_{arch}.pt")))
    model.input_size = input_shape(arch)
    return model


def input_shape(arch):
    s = TORCHVISION.get(arch, 32)  # the CIFAR-10 architectures of models_ref take 32x32
    return (3, s, s)


# ------------------------------------------------------------------------------------------------------------- FLOPs
def forward_flops_per_image(model):
    """2 * Cout * (Cin / groups) * kh * kw * Hout * Wout per conv and 2 * in * out per linear layer, from forward hooks
    on one image. Refuses models whose convs are not called as modules (resnet8's TF-SAME convs call F.conv2d)."""
    counts = {"flops": 0, "convs": 0, "linears": 0}

    def conv_hook(mod, inp, out):
        counts["flops"] += 2 * mod.out_channels * (mod.in_channels // mod.groups) * mod.kernel_size[0] \
            * mod.kernel_size[1] * out.shape[2] * out.shape[3]
        counts["convs"] += 1

    def linear_hook(mod, inp, out):
        counts["flops"] += 2 * mod.in_features * mod.out_features
        counts["linears"] += 1

    hooks = []
    n_conv = n_lin = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
            n_conv += 1
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
            n_lin += 1
    with torch.no_grad():
        model(torch.zeros((1,) + model.input_size))
    for h in hooks:
        h.remove()
    if counts["convs"] != n_conv or counts["linears"] != n_lin:
        raise SystemExit(f"synth_ref.py --flops: {counts['convs']} of {n_conv} convs and {counts['linears']} of {n_lin} "
                         "linear layers ran as modules; expected all (this architecture calls F.conv2d directly)")
    return counts["flops"], n_conv, n_lin


# -------------------------------------------------------------------------------------------------------------- peak
def peak(repeats):
    """float32 GEMM 2048x2048x2048: torch.mm (dispatches to the BLAS that python3-torch links, libblas.so.3) and the
    same product as a 1x1 convolution (dispatches to oneDNN, the library the network's convolutions use)."""
    n = 2048
    flop = 2.0 * n ** 3
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    # x[k, ci, h, 0] = a[k * n/16 + h, ci], so conv output[k, co, h, 0] = (a @ b)[k * n/16 + h, co]; a batch of 16
    # keeps 1x1 convolutions on oneDNN with one thread too (PyTorch sends a single image to its own im2col + BLAS)
    x = a.view(16, n // 16, n).permute(0, 2, 1).contiguous().view(16, n, n // 16, 1)
    w = b.t().contiguous().view(n, n, 1, 1)
    ref = torch.mm(a, b)
    got = F.conv2d(x, w).view(16, n, n // 16).permute(0, 2, 1).reshape(n, n)
    err = (got - ref).abs().max().item() / ref.abs().max().item()
    out = {}
    busy0, own0, start = busy_cpu_s(), time.process_time(), time.perf_counter()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        best_mm = best_conv = float("inf")
        for r in range(repeats):
            if r < 2:  # a reference BLAS takes seconds per product and varies little
                t0 = time.perf_counter()
                torch.mm(a, b)
                best_mm = min(best_mm, time.perf_counter() - t0)
            t0 = time.perf_counter()
            F.conv2d(x, w)
            best_conv = min(best_conv, time.perf_counter() - t0)
        # the same 1x1 convolution in bfloat16 on oneDNN (AVX512-BF16 kernels where the CPU has them)
        xb, wb = x.to(torch.bfloat16), w.to(torch.bfloat16)
        best_bf16 = float("inf")
        for r in range(repeats):
            t0 = time.perf_counter()
            F.conv2d(xb, wb)
            best_bf16 = min(best_bf16, time.perf_counter() - t0)
        out[threads] = (flop / best_mm / 1e9, flop / best_conv / 1e9, flop / best_bf16 / 1e9)
    foreign = max(0.0, (busy_cpu_s() - busy0) - (time.process_time() - own0)) / (time.perf_counter() - start)
    blas = "unknown"
    try:
        blas = os.path.realpath("/usr/lib/x86_64-linux-gnu/libblas.so.3")
    except OSError:
        pass
    return {
        "bench": "synth", "figure": "peak", "impl": "python3-torch " + torch.__version__,
        "gemm": f"float32 {n}x{n} @ {n}x{n}; best of {min(repeats, 2)} (torch.mm) and {repeats} (oneDNN)",
        "torch_mm_gflop_per_s": {str(t): round(v[0], 1) for t, v in out.items()},
        "onednn_gemm_gflop_per_s": {str(t): round(v[1], 1) for t, v in out.items()},
        "peak_gflop_per_s": {str(t): round(max(v[:2]), 1) for t, v in out.items()},
        "bf16_onednn_gemm_gflop_per_s": {str(t): round(v[2], 1) for t, v in out.items()},
        "onednn_gemm_rel_err_vs_mm": float(f"{err:.2g}"),
        "blas_library": blas, "foreign_cpu_load": round(foreign, 2),
        "note": "torch.mm runs on the BLAS python3-torch links (BLAS_INFO=generic: Debian's libblas.so.3); the same "
                "GEMM as a 1x1 convolution runs on oneDNN, which the networks' convolutions use. peak_gflop_per_s is "
                "the better of the two and is what fraction_of_peak refers to",
    }


# --------------------------------------------------------------------------------------------------------- synthesis
def bn_modules(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def sample_stats(f):
    m = f.mean(dim=(2, 3))
    s = torch.sqrt(f.var(dim=(2, 3), unbiased=True) + EPS)
    return m, s


def margins(model, bns, feats, n_images, q, seed, dev):
    """Per-layer scalar margins: q-quantile over all (n, c) of |m - mu| and |s - sigma| on N(0,1) images."""
    g = torch.Generator().manual_seed(seed + 1)
    xg = torch.randn((n_images,) + model.input_size, generator=g).to(dev)
    feats.clear()
    with torch.no_grad():
        model(xg)
    deltas, gammas = [], []
    for bn, f in zip(bns, feats):
        m, s = sample_stats(f)
        mu, sigma = bn.running_mean, torch.sqrt(bn.running_var + EPS)
        deltas.append(torch.quantile((m - mu).abs().flatten(), q).item())
        gammas.append(torch.quantile((s - sigma).abs().flatten(), q).item())
    feats.clear()
    return deltas, gammas


def run_loop(a, frozen):
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    model = load_model(a.arch, a.data, a.weights).to(dev)
    if frozen:
        for p in model.parameters():
            p.requires_grad_(False)
    bns = bn_modules(model)
    L = len(bns)
    feats = []
    for bn in bns:
        bn.register_forward_hook(lambda mod, inp, out: feats.append(inp[0]))
    mus = [bn.running_mean.detach() for bn in bns]
    sigmas = [torch.sqrt(bn.running_var.detach() + EPS) for bn in bns]
    t0 = time.perf_counter()
    deltas, gammas = margins(model, bns, feats, a.margin_samples, a.slack_quantile, a.seed, dev)
    t_margins = time.perf_counter() - t0

    B = a.batch
    idx = torch.arange(B, device=dev)
    lse_w = [1.0 + (idx % L == l).float() for l in range(L)]  # X_LSE = I + 11^T, sample n's own layer is n mod L

    x = torch.randn((B,) + input_shape(a.arch), device=dev, requires_grad=True)
    opt = torch.optim.Adam([x], lr=a.lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=a.patience,
                                                       threshold=1e-4, min_lr=1e-4)

    def step():
        model.zero_grad()
        opt.zero_grad()
        feats.clear()
        model(x)
        m0, s0 = sample_stats(x)
        loss = (m0 * m0).sum() / B + ((s0 - 1) ** 2).sum() / B
        for l, f in enumerate(feats):
            m, s = sample_stats(f)
            dm = torch.relu((m - mus[l]).abs() - deltas[l])
            ds = torch.relu((s - sigmas[l]).abs() - gammas[l])
            loss = loss + (lse_w[l] * (dm * dm + ds * ds).sum(dim=1)).sum() / B
        loss.backward()
        opt.step()
        value = loss.item()
        sched.step(value)
        return value

    for _ in range(a.warmup):
        step()
    busy0, own0, t0 = busy_cpu_s(), time.process_time(), time.perf_counter()
    for _ in range(a.iters):
        value = step()
    wall = time.perf_counter() - t0
    foreign = max(0.0, (busy_cpu_s() - busy0) - (time.process_time() - own0)) / wall
    return wall / a.iters, value, t_margins, L, deltas, gammas, foreign


def common_fields(a, frozen, flops_image, spi, loss, L, method, flop_note):
    """The fields every python3-torch figure carries (dsg, deepinversion, genie)."""
    gflop_iter = 2.0 * flops_image * a.batch / 1e9
    return {
        "bench": "synth", "impl": "python3-torch", "model": a.arch, "method": method,
        "ranks": 1, "device": a.device, "threads_per_rank": a.threads, "threads": a.threads, "batch": a.batch, "arch": a.arch,
        "params_require_grad": not frozen,
        "warmup_iters": a.warmup, "iters_timed": a.iters,
        "seconds_per_iter": round(spi, 5),
        "images_per_s": round(a.batch / (ITERS_EQUIVALENT * spi), 3),
        "images_per_s_definition": "batch / (500 * seconds_per_iter): images per second for 500-iteration synthesis",
        "gflop_per_iter": round(gflop_iter, 3),
        "gflop_per_s": round(gflop_iter / spi, 1),
        "flop_model": "2 x forward FLOPs (forward + backward to the input); convs and linear only" + flop_note
                      + ("" if frozen else "; weight gradients, computed here because the parameters require grad, "
                                           "are extra work not counted"),
        "final_loss": round(loss, 6), "bn_layers": L,
    }


def figure(a, frozen, flops_image):
    spi, loss, t_margins, L, deltas, gammas, foreign = run_loop(a, frozen)
    out = common_fields(a, frozen, flops_image, spi, loss, L, "dsg", "")
    out.update({"preset": "paper", "margin_images": a.margin_samples, "max_delta": round(max(deltas), 3),
                "max_gamma": round(max(gammas), 3), "margins_s": round(t_margins, 2),
                "foreign_cpu_load": round(foreign, 2)})
    if foreign > 0.1:
        print(f"synth_ref.py: warning: other processes used {foreign:.2f} cores during the timed loop; "
              "the figure is not a clean measurement", file=sys.stderr)
    if a.peak_gflops:
        out["peak_gflop_per_s"] = a.peak_gflops
        out["fraction_of_peak"] = round(out["gflop_per_iter"] / spi / a.peak_gflops, 3)
    return out


# ------------------------------------------------------------------------------------- deepinversion and genie
def timed_loop(a, step):
    """`a.warmup` untimed calls of step(it), then `a.iters` timed; returns seconds per iteration, the last value and the
    foreign CPU load during the timed part."""
    it = 0
    for _ in range(a.warmup):
        step(it)
        it += 1
    busy0, own0, t0 = busy_cpu_s(), time.process_time(), time.perf_counter()
    for _ in range(a.iters):
        value = step(it)
        it += 1
    wall = time.perf_counter() - t0
    foreign = max(0.0, (busy_cpu_s() - busy0) - (time.process_time() - own0)) / wall
    return wall / a.iters, value, foreign


def prepare_model(a, frozen):
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    dev = torch.device(a.device)
    model = load_model(a.arch, a.data, a.weights).to(dev)
    if frozen:
        for p in model.parameters():
            p.requires_grad_(False)
    return model, dev


def run_deepinversion(a, frozen):
    """DeepInversion as its CIFAR-10 script (NVlabs cifar10/deepinversion_cifar10.py, get_images) writes it."""
    model, dev = prepare_model(a, frozen)
    bns = bn_modules(model)
    feats = []
    for bn in bns:
        bn.register_forward_pre_hook(lambda mod, inp: feats.append((mod, inp[0])))
    B = a.batch
    n_classes = 1000 if a.arch in TORCHVISION else 10
    targets = torch.arange(B, device=dev) % n_classes
    x = torch.randn((B,) + input_shape(a.arch), device=dev, requires_grad=True)
    opt = torch.optim.Adam([x], lr=a.lr)  # constant learning rate
    best = {"cost": float("inf"), "inputs": None}

    def step(it):
        dx, dy = random.randint(-a.jitter, a.jitter), random.randint(-a.jitter, a.jitter)
        x_j = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
        opt.zero_grad()
        model.zero_grad()
        feats.clear()
        logits = model(x_j)
        loss = F.cross_entropy(logits, targets)
        r_feature = 0
        for bn, f in feats:
            mean = f.mean(dim=(0, 2, 3))
            var = f.var(dim=(0, 2, 3), unbiased=False)
            r_feature = r_feature + torch.norm(var - bn.running_var, 2) + torch.norm(mean - bn.running_mean, 2)
        d1 = x_j[:, :, :, :-1] - x_j[:, :, :, 1:]
        d2 = x_j[:, :, :-1, :] - x_j[:, :, 1:, :]
        d3 = x_j[:, :, 1:, :-1] - x_j[:, :, :-1, 1:]
        d4 = x_j[:, :, :-1, :-1] - x_j[:, :, 1:, 1:]
        loss_var = torch.norm(d1) + torch.norm(d2) + torch.norm(d3) + torch.norm(d4)
        loss = loss + a.bn_weight * r_feature + a.tv_l2 * loss_var
        value = loss.item()
        if value < best["cost"]:  # keep the lowest-loss iterate (a copy: the CIFAR-10 script's alias keeps the last)
            best["cost"] = value
            best["inputs"] = x.detach().clone()
        loss.backward()
        opt.step()
        return value

    spi, value, foreign = timed_loop(a, step)
    return spi, value, foreign, len(bns), {"best_loss": round(best["cost"], 6)}


class Generator(torch.nn.Module):
    """Genie's generator (SamsungLabs/Genie distill.py) for an H x W input, H and W divisible by 4."""

    def __init__(self, height, width, latent_dim=256, c1=128, c2=64):
        super().__init__()
        self.h, self.w = height // 4, width // 4
        self.linear = torch.nn.Linear(latent_dim, c1 * self.h * self.w)
        self.conv_layers = torch.nn.Sequential(
            torch.nn.BatchNorm2d(c1),
            torch.nn.Upsample(scale_factor=2),
            torch.nn.Conv2d(c1, c2, 3, stride=1, padding=1),
            torch.nn.BatchNorm2d(c2),
            torch.nn.LeakyReLU(0.2),
            torch.nn.Upsample(scale_factor=2),
            torch.nn.Conv2d(c2, 3, 3, stride=1, padding=1),
            torch.nn.Tanh(),
            torch.nn.BatchNorm2d(3, affine=False),
        )

    def forward(self, z):
        out = self.linear(z)
        return self.conv_layers(out.view(out.shape[0], -1, self.h, self.w))


class SwingConv2d(torch.nn.Module):
    """Genie's swing convolution: reflect-pad the input by `jitter` and crop it back at a random offset per call."""

    def __init__(self, conv, jitter=1):
        super().__init__()
        self.conv = conv
        self.jitter = jitter

    def forward(self, x):
        sx = random.randint(0, 2 * self.jitter)
        sy = random.randint(0, 2 * self.jitter)
        padded = F.pad(x, [self.jitter] * 4, mode="reflect")
        return self.conv(padded[:, :, sy:sy + x.shape[2], sx:sx + x.shape[3]])


def l2_loss(A, B):
    return (A - B).norm() ** 2 / B.size(0)


def run_genie(a, frozen):
    """Genie's data distillation (SamsungLabs/Genie distill.py, distill_data) for one batch."""
    model, dev = prepare_model(a, frozen)
    strided = [(name, m) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)]
    for name, m in strided:
        parent = model.get_submodule(name.rpartition(".")[0])
        setattr(parent, name.rpartition(".")[2], SwingConv2d(m, jitter=1))
    bns = bn_modules(model)
    feats = []
    for bn in bns:
        bn.register_forward_pre_hook(lambda mod, inp: feats.append(inp[0]))
    bn_stats = [(bn.running_mean.detach().clone(), torch.sqrt(bn.running_var + EPS).detach().clone()) for bn in bns]

    B = a.batch
    _, H, W = input_shape(a.arch)
    z = torch.randn(B, 256, device=dev).requires_grad_()
    generator = Generator(H, W).to(dev).train()
    opt_z = torch.optim.Adam([z], lr=a.lr)
    sched_z = torch.optim.lr_scheduler.ReduceLROnPlateau(opt_z, min_lr=1e-4, patience=a.patience)
    opt_g = torch.optim.Adam(generator.parameters(), lr=a.generator_lr)
    sched_g = torch.optim.lr_scheduler.ExponentialLR(opt_g, gamma=0.95)
    input_mean = torch.zeros(1, 3, device=dev)
    input_std = torch.ones(1, 3, device=dev)

    def step(it):
        model.zero_grad()
        opt_z.zero_grad()
        opt_g.zero_grad()
        feats.clear()
        x = generator(z)
        model(x)
        data_std, data_mean = torch.std_mean(x, [2, 3])
        mean_loss = l2_loss(input_mean, data_mean)
        std_loss = l2_loss(input_std, data_std)
        for (bn_mean, bn_std), f in zip(bn_stats, feats):
            data_std, data_mean = torch.std_mean(f, [0, 2, 3])
            mean_loss = mean_loss + l2_loss(bn_mean, data_mean)
            std_loss = std_loss + l2_loss(bn_std, data_std)
        total_loss = mean_loss + std_loss
        total_loss.backward()
        opt_z.step()
        opt_g.step()
        value = total_loss.item()
        sched_z.step(value)
        if (it + 1) % 100 == 0:
            sched_g.step()
        return value

    spi, value, foreign = timed_loop(a, step)
    return spi, value, foreign, len(bns), {"swing_convs": len(strided),
                                           "generator_params": sum(p.numel() for p in generator.parameters())}


def method_figure(a, frozen, flops_image):
    run = {"deepinversion": run_deepinversion, "genie": run_genie}[a.method]
    spi, loss, foreign, L, extra = run(a, frozen)
    out = common_fields(a, frozen, flops_image, spi, loss, L, a.method,
                        "; genie's generator not counted" if a.method == "genie" else "")
    out["lr"] = a.lr
    if a.method == "deepinversion":
        out.update({"init": "gaussian", "bn_weight": a.bn_weight, "tv_l2": a.tv_l2, "jitter": a.jitter})
    else:
        out.update({"generator_lr": a.generator_lr, "patience": a.patience})
    out.update(extra)
    out["foreign_cpu_load"] = round(foreign, 2)
    if foreign > 0.1:
        print(f"synth_ref.py: warning: other processes used {foreign:.2f} cores during the timed loop; "
              "the figure is not a clean measurement", file=sys.stderr)
    if a.peak_gflops:
        out["peak_gflop_per_s"] = a.peak_gflops
        out["fraction_of_peak"] = round(out["gflop_per_iter"] / spi / a.peak_gflops, 3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20, help="timed iterations")
    ap.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    ap.add_argument("--frozen", choices=("no", "yes", "both"), default="no",
                    help="no: parameters require grad (official code); yes: requires_grad_(False); both: two figures")
    ap.add_argument("--method", choices=("dsg", "deepinversion", "genie"), default="dsg",
                    help="dsg (paper preset), deepinversion (docs/method.md 7.1) or genie (7.3)")
    ap.add_argument("--lr", type=float, default=None,
                    help="Adam's learning rate on the images (dsg: 0.5, deepinversion: 0.1) or latents (genie: 0.1)")
    ap.add_argument("--patience", type=int, default=100)
    ap.add_argument("--bn-weight", type=float, default=10.0,
                    help="deepinversion's BN weight (dsgq's preset dsgq; the CIFAR-10 script uses 100)")
    ap.add_argument("--tv-l2", type=float, default=2.5e-5, help="deepinversion's TV-L2 weight")
    ap.add_argument("--jitter", type=int, default=2, help="deepinversion's roll offsets, uniform on {-J..J}")
    ap.add_argument("--generator-lr", type=float, default=0.01, help="genie's generator learning rate")
    ap.add_argument("--margin-samples", type=int, default=1024)
    ap.add_argument("--slack-quantile", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--peak-gflops", type=float, default=0.0, help="adds fraction_of_peak to the figures")
    ap.add_argument("--flops", action="store_true", help="print the forward FLOPs per image and exit")
    ap.add_argument("--peak", action="store_true", help="print the matrix-multiply peak figure and exit")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--weights", help="state_dict to load (required for the torchvision architectures)")
    ap.add_argument("--save-weights", metavar="PATH", help="save random weights for --arch (torchvision) and exit")
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N] (the loop syncs each step through loss.item())")
    ap.add_argument("--data", default=os.environ.get("DSGQ_DATA") or os.path.join(here, "..", "..", "shared", "data"))
    a = ap.parse_args()
    if a.lr is None:
        a.lr = 0.5 if a.method == "dsg" else 0.1

    if a.peak:
        print(json.dumps(peak(a.repeats)), flush=True)
        return
    torch.set_num_threads(a.threads)
    if a.save_weights:
        save_random_weights(a.arch, a.save_weights)
        return
    flops_image, n_conv, n_lin = forward_flops_per_image(load_model(a.arch, a.data, a.weights))
    if a.flops:
        print(json.dumps({"model": a.arch, "forward_flop_per_image": flops_image, "convs": n_conv, "linears": n_lin}))
        return
    for frozen in {"no": [False], "yes": [True], "both": [False, True]}[a.frozen]:
        print(json.dumps((figure if a.method == "dsg" else method_figure)(a, frozen, flops_image)), flush=True)


if __name__ == "__main__":
    main()
