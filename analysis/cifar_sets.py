"""Shared by the analysis scripts that read dsgq-synth/1 sets of a CIFAR ResNet with python3-torch: opening a set
(format, model and shape checked, exit 2 with one line naming the file otherwise) and a forward pass of the network
from its state_dict (basic blocks, option-A shortcuts, BN in inference mode) that can watch every convolution's
input and returns the features the classifier reads (the global average pool)."""
import os
import re
import sys

import h5py
import torch
import torch.nn.functional as F

CIFAR_RESNETS = r"resnet(20|32|44|56|110)"


def fail(tool, msg):
    print(f"{tool}: {msg}", file=sys.stderr)
    sys.exit(2)


def text_attr(f, name):
    v = f.attrs.get(name, b"")
    return v.decode() if isinstance(v, bytes) else str(v)


def load_set(tool, path, n, labels=False):
    """(model, weights, the first n images[, their stored labels]) of a dsgq-synth/1 file of a CIFAR input size."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        fail(tool, f"{path}: cannot open as HDF5 ({e})")
    fmt = text_attr(f, "format")
    if fmt != "dsgq-synth/1" or "images" not in f:
        fail(tool, f"{path}: format {fmt!r} with datasets {sorted(f)}, expected 'dsgq-synth/1' with 'images'")
    images = f["images"]
    if images.ndim != 4 or tuple(images.shape[1:]) != (3, 32, 32):
        fail(tool, f"{path}: images of shape {tuple(images.shape)}, expected (N, 3, 32, 32)")
    k = min(n, images.shape[0])
    out = (text_attr(f, "model"), text_attr(f, "weights"), torch.from_numpy(images[:k]))
    if labels:
        if "labels" not in f or f["labels"].shape != (images.shape[0],):
            fail(tool, f"{path}: no 'labels' of shape ({images.shape[0]},), expected one label per image")
        out += (torch.from_numpy(f["labels"][:k]).long(),)
    return out


def load_weights(tool, path, model, weights):
    """The float state_dict of `weights` and the depth of `model` (a CIFAR ResNet), both as recorded in `path`
    (`weights` may instead come from the tool's --weights)."""
    if not os.path.isfile(weights):
        fail(tool, f"{path}: weights {weights!r} (recorded in the file) do not exist; name them with --weights")
    m = re.fullmatch(CIFAR_RESNETS, model)
    if not m:
        fail(tool, f"{path}: model {model!r}, expected a CIFAR ResNet (resnet20/32/44/56/110)")
    try:
        sd = torch.load(weights)
    except (OSError, RuntimeError) as e:
        fail(tool, f"{path}: weights {weights!r} cannot be read ({e}); name them with --weights")
    return {k: v.float() for k, v in sd.items()}, int(m.group(1))


def forward(sd, depth, x, on_conv=None):
    """The pooled features [N, 64] the classifier reads; on_conv(name, input) is called for every convolution."""

    def conv(name, a, stride):
        if on_conv is not None:
            on_conv(name, a)
        return F.conv2d(a, sd[name + ".weight"], None, stride, 1)

    def bn(name, a):
        return F.batch_norm(a, sd[name + ".running_mean"], sd[name + ".running_var"], sd[name + ".weight"],
                            sd[name + ".bias"], False, 0.0, 1e-5)

    n = (depth - 2) // 6
    x = F.relu(bn("bn1", conv("conv1", x, 1)))
    for s, planes in ((1, 16), (2, 32), (3, 64)):
        for i in range(n):
            p = f"layer{s}.{i}"
            stride = 2 if (s > 1 and i == 0) else 1
            h = F.relu(bn(p + ".bn1", conv(p + ".conv1", x, stride)))
            h = bn(p + ".bn2", conv(p + ".conv2", h, 1))
            if stride != 1 or x.shape[1] != planes:
                sc = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4))
            else:
                sc = x
            x = F.relu(h + sc)
    return x.mean((2, 3))
