#!/usr/bin/python3
"""Oracle test (CTest label `oracle`): dsgq's fake quantization (quant::fake_quant_affine) against python3-torch's
torch.fake_quantize_per_channel_affine and torch.fake_quantize_per_tensor_affine with the same scale and zero
point: odd shapes, bits 2..8, values placed exactly on rounding ties, clamping on both ends. Equality is exact.
usage: test_quant_oracle.py --tool build/tests/oracle_tool"""
import argparse
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_util import check, finish  # noqa: E402




def dsgq_fake_quant(tool, tmp, x, scale, zp, qmin, qmax, axis):
    src, out = os.path.join(tmp, "fq.in.pt"), os.path.join(tmp, "fq.out.pt")
    torch.save({"x": x, "scale": scale, "zero_point": zp.float(), "qmin": torch.tensor(qmin),
                "qmax": torch.tensor(qmax), "axis": torch.tensor(axis)}, src)
    r = subprocess.run([tool, "fake-quant", src, out], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr)
    return torch.load(out)["y"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", required=True)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(13)
    with tempfile.TemporaryDirectory() as tmp:
        for bits in range(2, 9):
            qmin, qmax = 0, 2 ** bits - 1
            for axis, shape in ((0, (13, 7, 3, 3)), (1, (5, 11, 4)), (0, (9,))):
                c = shape[axis]
                scale = torch.rand(c, generator=g) * 0.3 + 0.01
                zp = torch.randint(qmin, qmax + 1, (c,), generator=g, dtype=torch.int32)
                x = torch.randn(shape, generator=g) * 2
                # exact ties: x = (k + 0.5) * scale for some elements, and values far outside the range
                flat = x.view(-1)
                idx = torch.arange(0, flat.numel(), 3)
                ch = (idx // int(torch.tensor(shape[axis + 1:]).prod().item() if axis + 1 < len(shape) else 1)) % c
                flat[idx] = (torch.randint(-3, qmax + 3, (len(idx),), generator=g).float() + 0.5) * scale[ch]
                flat[::7] *= 50
                ref = torch.fake_quantize_per_channel_affine(x, scale, zp, axis, qmin, qmax)
                got = dsgq_fake_quant(a.tool, tmp, x, scale, zp, qmin, qmax, axis)
                diff = (got - ref).abs().max().item()
                check(diff == 0.0, f"per-channel bits {bits} shape {shape} axis {axis}: max abs diff {diff}")
            s, z = 0.0371, 3
            x = torch.randn(17, 5, generator=g) * 3
            ref = torch.fake_quantize_per_tensor_affine(x, s, z, qmin, qmax)
            got = dsgq_fake_quant(a.tool, tmp, x, torch.tensor([s]), torch.tensor([z]), qmin, qmax, 0)
            diff = (got - ref).abs().max().item()
            check(diff == 0.0, f"per-tensor bits {bits}: max abs diff {diff}")
    finish("fake-quant oracle")


if __name__ == "__main__":
    main()
