#!/usr/bin/python3
"""bench/campaign_floor.py against the multiply-adds written out by hand for a CIFAR ResNet (no hooks, no model):

1. A small sweep (resnet20; real, zeroq and deepinversion sets; the zeroq, adaround and qdrop protocols; W4A4; one
   seed; 1024 images; AdaRound 1000 steps from the file): every phase's FLOP count equals the closed form exactly,
   deepinversion's default 400 half-size + 100 full-size steps included, and the summary's floors are FLOP / peak.
2. The same sweep with --set synth.iters=300: deepinversion runs 300 full-size steps (no half-size phase), zeroq 300.
3. Bad input: a missing sweep file, a --set without '=', an architecture whose convolutions are not modules
   (resnet8): exit 2, one line naming what was wrong."""
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_util import check, check_input_error, finish  # noqa: E402

TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "campaign_floor.py")

SWEEP = """
[sweep]
name = "floor-test"
[model]
arch = "resnet20"
[synth]
method = ["real", "zeroq", "deepinversion"]
preset = "dsgq"
n_images = 1024
batch = 256
seed = [0]
[quant]
protocol = ["zeroq", "adaround", "qdrop"]
bits = ["w4a4"]
[quant.adaround]
iters = 1000
[output]
dir = "runs/floor-test"
"""


def resnet_layers(depth, size):
    """[(unit, flop, cout, k, positions)] in forward order: 2 x Cout x K x positions per conv, K = Cin x 9."""
    n = (depth - 2) // 6
    out = [("stem", 2 * 16 * 27 * size * size, 16, 27, size * size)]
    cin = 16
    for s, planes in enumerate([16, 32, 64]):
        side = size >> s
        for i in range(n):
            pos = side * side
            for j, c_in in enumerate([cin, planes]):
                out.append((f"layer{s + 1}.{i}", 2 * planes * c_in * 9 * pos, planes, c_in * 9, pos))
            cin = planes
    out.append(("fc", 2 * 64 * 10, 10, 64, 1))
    return out


def expected(iters_di_full, iters_di_half, iters_zeroq):
    full, half = resnet_layers(20, 32), resnet_layers(20, 16)
    f32, f16 = sum(x[1] for x in full), sum(x[1] for x in half)
    n, n_eval, steps, batch = 1024, 10000, 1000, 32
    qdrop = 0
    units = {}
    for u, f, *_ in full:
        units.setdefault(u, []).append(f)
    for fs in units.values():
        qdrop += steps * batch * (3 * sum(fs) - fs[0])
    gram = sum(n * p * k * k + steps * 2 * c * k * k for _, _, c, k, p in full)
    base = (n_eval + n) * f32
    return {
        "set real": 0, "set zeroq": n * 2 * iters_zeroq * f32,
        "set deepinversion": n * 2 * (iters_di_full * f32 + iters_di_half * f16),
        "fp32 evaluation": n_eval * f32,
        "points zeroq": 3 * base, "points adaround": 3 * (base + steps * batch * 2 * f32),
        "points adaround (gram), instead": 3 * (base + gram), "points qdrop": 3 * (base + qdrop),
    }


def run(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        sweep = os.path.join(tmp, "floor.toml")
        with open(sweep, "w") as f:
            f.write(SWEEP)
        for extra, iters, what in [([], (100, 400, 500), "default schedule"),
                                   (["--set", "synth.iters=300"], (300, 0, 300), "synth.iters=300")]:
            r = run("--sweep", sweep, "--peak-gflops", "100", "200", *extra)
            check(r.returncode == 0, f"{what}: exit 0 (got {r.returncode}: {r.stderr.strip()[-300:]})")
            if r.returncode != 0:
                continue
            rows = [json.loads(line) for line in r.stdout.splitlines()]
            phases = {o["phase"]: o for o in rows if "phase" in o}
            want = expected(*iters)
            check(set(phases) == set(want), f"{what}: phases {sorted(phases)}")
            for name, flop in want.items():
                got = phases.get(name, {}).get("flop")
                check(got == flop, f"{what}: {name}: {got} FLOP, closed form {flop}")
                if got:
                    check(abs(phases[name]["floor_s_f32"] - flop / 100e9) <= 0.05,
                          f"{what}: {name}: floor {phases[name]['floor_s_f32']} s = FLOP / 100 GFLOP/s")
            s = rows[-1]
            total = sum(v for k, v in want.items() if not k.endswith("instead"))
            best = total - want["points adaround"] + want["points adaround (gram), instead"]
            check(s.get("points") == 9 and s.get("sets") == 3, f"{what}: 9 points, 3 sets ({s.get('points')}, "
                  f"{s.get('sets')})")
            check(abs(s["floor_min_f32"] - total / 100e9 / 60) <= 0.05
                  and abs(s["floor_min_bf16_adaround_gram"] - best / 200e9 / 60) <= 0.05,
                  f"{what}: summary floors {s['floor_min_f32']} / {s['floor_min_bf16_adaround_gram']} min against "
                  f"{total / 100e9 / 60:.1f} / {best / 200e9 / 60:.1f}")

        for args, needle in [(["--sweep", os.path.join(tmp, "missing.toml")], "missing.toml"),
                             (["--sweep", sweep, "--set", "synth.iters"], "synth.iters"),
                             (["--sweep", sweep, "--set", "model.arch=resnet8", "--peak-gflops", "1", "1"], "resnet8")]:
            check_input_error(run(*args), needle, f"bad input {args[-1]}")
    finish("campaign floor")


if __name__ == "__main__":
    main()
