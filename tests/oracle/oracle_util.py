"""Shared by the oracle scripts: one ok/FAIL line per check, the list of failures, the final verdict, running
oracle_tool, and the real-data folder ($DSGQ_DATA, else ../shared/data beside the checkout), the CIFAR-10 test
images."""
import os
import subprocess
import sys

import numpy as np
import torch

CIFAR_MEAN = (0.485, 0.456, 0.406)
CIFAR_STD = (0.229, 0.224, 0.225)

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def finish(what):
    """End an oracle script: exit 1 naming how many checks failed, else say that all of `what` passed."""
    if failures:
        print(f"{len(failures)} {what} check(s) failed", flush=True)
        sys.exit(1)
    print(f"all {what} checks passed")


def check_input_error(r, needle, what):
    """A bad-input run (a subprocess.run result): exit 2 and exactly one line on stderr, containing `needle`."""
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and needle in lines[0],
          f"{what}: exit {r.returncode}, stderr {r.stderr.strip()!r} (expected 2 and one line with {needle!r})")


def run_tool(tool, *args):
    r = subprocess.run([tool, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def default_data_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("DSGQ_DATA") or os.path.join(here, "..", "..", "..", "shared", "data")


def cifar10_test(data):
    """The 10,000 CIFAR-10 test images, normalised as the real CIFAR models expect ([N,3,32,32] float), and labels."""
    raw = np.fromfile(os.path.join(data, "cifar10", "test_batch.bin"), dtype=np.uint8).reshape(-1, 3073)
    labels = torch.from_numpy(raw[:, 0].astype(np.int64))
    x = torch.from_numpy(raw[:, 1:].copy()).view(-1, 3, 32, 32).float() / 255
    x = (x - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    return x, labels
