#!/usr/bin/python3
"""Oracle tests (CTest label `oracle`): dsgq's C++ against Debian's python3-torch.

1. Checkpoint reader: state_dicts saved by python3-torch in every form a user meets (OrderedDict from
   model.state_dict(), plain dict, 'module.' prefixes, a training checkpoint wrapper, pickle protocol 4, odd dtypes,
   views sharing a storage, non-contiguous and empty tensors) read back by dsgq bit-identically.
2. Forward: for resnet20, resnet8 and mobilenet_v1_0.25 with their real weights, dsgq's logits and BN taps equal an
   independent Python definition (models_ref.py) on the same input within 1e-4 (max abs).
3. torchvision: resnet18, resnet50, mobilenet_v2, inception_v3 (299x299), shufflenet_v2_x0_5 and shufflenet_v2_x1_0
   of python3-torchvision with random weights and BN statistics load from torchvision's state_dict and give the same
   logits and BN taps within 1e-4 (max abs).
Fixtures are made at test time in a temporary folder; nothing is committed.
usage: test_oracle.py --tool build/tests/oracle_tool [--data DIR]  (default $DSGQ_DATA, else ../shared/data)
"""
import argparse
import collections
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models_ref  # noqa: E402
from oracle_util import check, default_data_dir, finish, run_tool  # noqa: E402

TOL_LOGITS = 1e-4




def reader_cases():
    torch.manual_seed(7)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.BatchNorm2d(5), torch.nn.Linear(7, 13))
    model[1].running_mean.normal_()
    model[1].num_batches_tracked.fill_(123456789012)
    od = model.state_dict()  # OrderedDict with _metadata, int64 num_batches_tracked
    assert isinstance(od, collections.OrderedDict)
    base = torch.randn(6, 4)
    odd = collections.OrderedDict([
        ("f64", torch.randn(3, 2, dtype=torch.float64)),
        ("f16", torch.randn(7).half()),
        ("bf16", torch.randn(4).bfloat16()),
        ("i32", torch.randint(-2**31, 2**31 - 1, (5,), dtype=torch.int32)),
        ("i8", torch.randint(-128, 127, (9,), dtype=torch.int8)),
        ("u8", torch.randint(0, 255, (2, 3), dtype=torch.uint8)),
        ("bool", torch.rand(11) > 0.5),
        ("scalar", torch.tensor(3.25)),
        ("empty", torch.zeros(0, 4)),
        ("view_t", base.t()),            # non-contiguous view
        ("view_row", base[2]),           # shares the storage, offset 8
        ("base", base),
        ("nan_inf", torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])),
    ])
    return [
        ("ordereddict", od, {}),
        ("plain_dict", dict(od), {}),
        ("module_prefix", collections.OrderedDict(("module." + k, v) for k, v in od.items()), {}),
        ("checkpoint_wrapper", {"state_dict": od, "epoch": 3, "best_prec1": 91.5, "arch": "x"}, {}),
        ("protocol4", od, {"pickle_protocol": 4}),
        ("odd_tensors", odd, {}),
        ("parameters", collections.OrderedDict(model.state_dict(keep_vars=True)), {}),
    ]


def test_reader(tool, tmp):
    for name, obj, kw in reader_cases():
        src = os.path.join(tmp, f"ck_{name}.pt")
        out = os.path.join(tmp, f"ck_{name}.out.pt")
        torch.save(obj, src, **kw)
        info = run_tool(tool, "roundtrip", src, out).strip()
        back = torch.load(out)
        expected = obj["state_dict"] if "state_dict" in obj else obj
        expected = collections.OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in expected.items())
        same_keys = list(back.keys()) == list(expected.keys())
        bad = []
        for k, v in expected.items():
            v = v.detach()
            b = back.get(k)
            if b is None or b.dtype != v.dtype or b.shape != v.shape:
                bad.append(k)
                continue
            # bit-identical: compare the raw bytes (NaN-safe, -0.0-safe)
            if v.numel() and not torch.equal(b.contiguous().view(torch.uint8) if b.dim() else b.reshape(1).view(torch.uint8),
                                             v.contiguous().view(torch.uint8) if v.dim() else v.reshape(1).view(torch.uint8)):
                bad.append(k)
        check(same_keys and not bad, f"reader {name}: {len(expected)} tensors bit-identical, keys in order ({info})"
              + (f"; mismatched: {bad}" if bad else "") + ("" if same_keys else f"; keys {list(back.keys())}"))


def compare_forward(tool, tmp, label, arch, weights, model, x):
    """Runs `model` (python3-torch) and dsgq's `arch` with `weights` on x; checks logits and BN taps in order."""
    taps = []
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.register_forward_pre_hook(lambda mod, inp: taps.append(inp[0].detach().clone()))
    with torch.no_grad():
        ref = model(x)
    xin, out = os.path.join(tmp, f"x_{arch}.pt"), os.path.join(tmp, f"out_{arch}.pt")
    torch.save({"x": x}, xin)
    run_tool(tool, "forward", arch, weights, xin, out)
    got = torch.load(out)
    err = (got["logits"] - ref).abs().max().item()
    check(err < TOL_LOGITS, f"{label} {arch}: logits max abs diff {err:.3g} < {TOL_LOGITS} (batch {x.shape[0]}, "
          f"{x.shape[2]}x{x.shape[3]}, logits scale {ref.abs().max().item():.3g})")
    n_bn = sum(1 for k in got if k.startswith("bn."))
    tap_err = max((got[f"bn.{i}"] - taps[i]).abs().max().item() for i in range(min(n_bn, len(taps))))
    check(n_bn == len(taps) and tap_err < TOL_LOGITS,
          f"{label} {arch}: {n_bn} BN taps in forward order (python {len(taps)}), max abs diff {tap_err:.3g}")


def test_forward(tool, data, tmp, arch, weights, batch, size):
    torch.manual_seed(11)
    model = models_ref.build(arch).eval()
    path = os.path.join(data, "models", weights)
    model.load_state_dict(torch.load(path), strict=True)
    x = torch.rand(batch, 3, size, size) * 255 if arch == "resnet8" else torch.randn(batch, 3, size, size)
    compare_forward(tool, tmp, "forward", arch, path, model, x)


def test_torchvision(tool, tmp, arch, batch, size=224):
    """An architecture of Debian's python3-torchvision (0.14) with random weights and random BN statistics, saved as
    torchvision's state_dict: dsgq loads it unchanged and gives the same logits and BN taps (issue 6, acceptance 1).
    inception_v3 is built as its pretrained checkpoint is (aux_logits=True: the state_dict holds the AuxLogits.* keys,
    which dsgq requires and ignores; AuxLogits does not run in eval mode, so its BN modules record no tap) but with
    transform_input=False: dsgq's forward does no input transform (its InputSpec folds it into mean/std)."""
    import torchvision
    torch.manual_seed(5)
    kw = dict(aux_logits=True, init_weights=True, transform_input=False) if arch == "inception_v3" else {}
    model = getattr(torchvision.models, arch)(weights=None, **kw).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        if arch == "inception_v3":
            # init_weights=True draws every conv weight with std 0.1 whatever its fan-in, which with BN statistics that
            # do not normalize grows the logits to ~1e12; rescaled to He's std sqrt(2 / fan_in) they stay ~30.
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d):
                    m.weight.mul_((2.0 / m.weight[0].numel()) ** 0.5 / 0.1)
    weights = os.path.join(tmp, f"{arch}_tv.pth")
    torch.save(model.state_dict(), weights)
    compare_forward(tool, tmp, "torchvision", arch, weights, model, torch.randn(batch, 3, size, size))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    ap.add_argument("--data", default=default_data_dir())
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        test_reader(a.tool, tmp)
        test_forward(a.tool, a.data, tmp, "resnet20", "cifar10_resnet20.pt", 13, 32)
        test_forward(a.tool, a.data, tmp, "resnet8", "cifar10_resnet8_mlperf_tiny.pt", 7, 32)
        test_forward(a.tool, a.data, tmp, "mobilenet_v1_0.25", "imagenet_mobilenet_v1_0.25_224.pt", 3, 224)
        test_torchvision(a.tool, tmp, "resnet18", 2)
        test_torchvision(a.tool, tmp, "resnet50", 2)
        test_torchvision(a.tool, tmp, "mobilenet_v2", 2)
        test_torchvision(a.tool, tmp, "inception_v3", 2, 299)
        test_torchvision(a.tool, tmp, "shufflenet_v2_x0_5", 2)
        test_torchvision(a.tool, tmp, "shufflenet_v2_x1_0", 2)
    finish("oracle")


if __name__ == "__main__":
    main()
