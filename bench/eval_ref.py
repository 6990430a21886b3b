#!/usr/bin/python3
"""The reference for bench/eval: FP32 evaluation of the same network on the same 10,000 CIFAR-10 test images in
plain Python on Debian's python3-torch (the definition of tests/oracle/models_ref.py), batch 500. Prints one JSON
object with images/s (best of the repeats) and top-1."""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "oracle"))
import models_ref  # noqa: E402

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--data", default=os.environ.get("DSGQ_DATA") or os.path.join(here, "..", "..", "shared", "data"))
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    raw = np.fromfile(os.path.join(a.data, "cifar10", "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    pixels = torch.from_numpy(raw[:, 1:].copy()).view(-1, 3, 32, 32)
    model = models_ref.build(a.arch).eval()
    model.load_state_dict(torch.load(os.path.join(a.data, "models", f"cifar10_{a.arch}.pt")))
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    best, correct = 0.0, 0
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        correct = 0
        with torch.no_grad():
            for b in range(0, len(labels), 500):
                x = (pixels[b:b + 500].float() / 255 - mean) / std
                correct += (model(x).argmax(1) == labels[b:b + 500]).sum().item()
        best = max(best, len(labels) / (time.perf_counter() - t0))
    print(json.dumps({"bench": "eval", "impl": "python3-torch", "model": a.arch, "ranks": 1,
                      "threads_per_rank": a.threads, "images_per_s": round(best, 1),
                      "top1": 100.0 * correct / len(labels)}))


if __name__ == "__main__":
    main()
