#!/usr/bin/python3
"""Oracle test (CTest label `oracle`): `dsgq pack` against torchvision's evaluation preprocessing with PIL (issue 6).
1. The 50 real ILSVRC2012 validation images of imagenet_samples (flat folder + labels.txt): dsgq's packed pixels
   against torchvision.datasets.folder.pil_loader + Resize(256) + CenterCrop(224), within 1 grey level on >= 99 %
   of values and 3 on all (measured: identical); labels and names as listed. Packed on 1, 2 and 3 ranks: the same
   bytes.
2. The real ImageNet MobileNet v1 x0.25 evaluated by dsgq on that packed file: 24/50 top-1, 37/50 top-5 (the Python
   reference of the data folder's README.md), on 1 and 2 ranks.
3. End to end at 224: dsgq run on mobilenet_v1_0.25 with 8 DSG images (5 steps, 20 AdaRound steps) and with 8
   real images from the packed set as calibration data (synth.method = real), W8A8, evaluated on the packed
   samples: both write their records and stay within 6 images of FP32's 24/50.
4. An ImageFolder tree of made-up images in the modes torchvision meets in ImageNet: greyscale and CMYK JPEG, RGBA
   and palette PNG, a PNG named .JPEG, odd sizes (centre-crop rounding), an image smaller than the crop (upscaled);
   against torchvision.datasets.ImageFolder, with and without a synsets file; also at --size 299 (Resize(342)).
   --per-class 2 keeps the first two images of each class.
5. Every shipped config naming ${DSGQ_IMAGENET} validates with packed samples and torchvision-named weights.
6. Bad input, each exit 2 with a message naming the culprit and no output file: a corrupt JPEG and a truncated
   JPEG (both named in one run, from 2 ranks; the .part keeps the good rows, and once the two files are fixed the
   rerun decodes only them and gives the same bytes as a fresh pack), a label file with an out-of-range index / a
   missing image / a non-integer index, a class folder that is not a wnid (these leave no file at all), an output
   file that exists (kept unchanged, also by a failing --force run; a good --force run replaces it).
usage: test_pack_oracle.py --dsgq build/bin/dsgq [--data DIR]"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_util import check, default_data_dir, finish  # noqa: E402


def run(cmd, ranks=1):
    if ranks > 1:
        mpiexec = os.environ.get("DSGQ_MPIEXEC") or "mpiexec"
        cmd = [mpiexec, "-np", str(ranks), "--oversubscribe", "--bind-to", "none", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True)


def packed(path):
    with h5py.File(path, "r") as f:
        return f["images"][:], f["labels"][:], [n.decode() for n in f["names"][:]]


def compare(label, got, ref):
    d = np.abs(got.astype(np.int32) - ref.astype(np.int32))
    within1 = float((d <= 1).mean()) if d.size else 1.0
    check(d.size > 0 and d.max() <= 3 and within1 >= 0.99,
          f"{label}: max |dsgq - torchvision| {d.max()} grey levels, {100 * within1:.3f} % within 1 "
          f"({100 * float((d == 0).mean()):.3f} % identical)")


def reference(paths, resize, crop):
    tf = T.Compose([T.Resize(resize), T.CenterCrop(crop)])
    return np.stack([np.asarray(tf(torchvision.datasets.folder.pil_loader(p))).transpose(2, 0, 1) for p in paths])


def test_samples(dsgq, data, tmp):
    src = os.path.join(data, "imagenet_samples")
    rows = [line.split() for line in open(os.path.join(src, "labels.txt")) if line.strip()]
    outs = {}
    for ranks in (1, 2, 3):
        out = os.path.join(tmp, f"samples{ranks}.h5")
        r = run([dsgq, "pack", "--images", os.path.join(src, "images"), "--labels", os.path.join(src, "labels.txt"),
                 "--out", out], ranks)
        check(r.returncode == 0, f"pack of imagenet_samples on {ranks} rank(s) exits 0"
                                 f"{'' if r.returncode == 0 else ' (' + r.stderr.strip()[-300:] + ')'}")
        if r.returncode != 0:
            return
        outs[ranks] = packed(out)
    images, labels, names = outs[1]
    check(names == [r[0] for r in rows] and labels.tolist() == [int(r[1]) for r in rows],
          f"names and labels follow labels.txt ({len(names)} images)")
    compare("imagenet_samples Resize(256)+CenterCrop(224)", images,
            reference([os.path.join(src, "images", r[0]) for r in rows], 256, 224))
    for ranks in (2, 3):
        same = all(np.array_equal(a, b) for a, b in zip(outs[1][:2], outs[ranks][:2])) and outs[1][2] == outs[ranks][2]
        check(same, f"packed on {ranks} ranks: the same images, labels and names as on 1 rank")

    for ranks in (1, 2):
        res = os.path.join(tmp, f"eval{ranks}")
        r = run([dsgq, "eval", "--threads", "1", "--set", "model.arch=mobilenet_v1_0.25",
                 "--set", f"eval.data={os.path.join(tmp, 'samples1.h5')}", "--set", f"output.dir={res}"], ranks)
        line = [x for x in r.stderr.splitlines() if "fp32: top1" in x]
        ok = r.returncode == 0 and line and "(24/50)" in line[0] and "top5 74.00%" in line[0]
        check(bool(ok), f"mobilenet_v1_0.25 on the packed samples, {ranks} rank(s): 24/50 top-1, 37/50 top-5 "
                        f"({line[0].split('fp32: ')[1] if line else r.stderr.strip()[-300:]})")


def test_run_224(dsgq, tmp):
    """dsgq run at 224x224 on the packed samples, DSG and packed real calibration data (reduced iterations)."""
    import json
    data = os.path.join(tmp, "samples1.h5")
    res = os.path.join(tmp, "run224")
    for method in ("dsg", "real"):
        r = run([dsgq, "run", "--threads", "2", "--set", "model.arch=mobilenet_v1_0.25", "--set", f"eval.data={data}",
                 "--set", f"output.dir={res}", "--set", f"synth.method={method}", "--set", f"synth.real_data={data}",
                 "--set", "synth.n_images=8", "--set", "synth.batch=8", "--set", "synth.iters=5",
                 "--set", "quant.protocol=adaround", "--set", "quant.adaround.iters=20",
                 "--set", "quant.w_bits=8", "--set", "quant.a_bits=8"])
        recs = [f for f in os.listdir(os.path.join(res, "results"))] if os.path.isdir(os.path.join(res, "results")) else []
        quant = [json.load(open(os.path.join(res, "results", f))) for f in recs if f"-{method}-" in f and "adaround" in f]
        m = quant[0]["metrics"] if quant else {}
        ok = r.returncode == 0 and len(quant) == 1 and m.get("n_images") == 50 and abs(m.get("top1_correct", -99) - 24) <= 6
        check(ok, f"dsgq run at 224, {method} calibration (8 images), W8A8: exit {r.returncode}, "
                  f"{m.get('top1_correct')}/50 top-1, {m.get('top5_correct')}/50 top-5 (FP32 24, 37)"
                  + ("" if ok else " " + r.stderr.strip()[-400:]))
    r1 = run([dsgq, "eval", "--set", "model.arch=mobilenet_v1_0.25", "--set", f"eval.data={data}",
              "--set", f"output.dir={res}"])
    r2 = run([dsgq, "report", res])
    table = open(os.path.join(res, "report", "table.md")).read() if r2.returncode == 0 else ""
    check(r1.returncode == 0 and r2.returncode == 0 and "| FP32 | - | 48.00 |" in table and table.count("W8A8") >= 1,
          f"dsgq report over the two runs and dsgq eval's FP32 record: exit {r2.returncode} "
          f"{table.strip().splitlines()[-3:] if table else r2.stderr.strip()[-300:]}")


def test_imagenet_configs(dsgq, tmp):
    """Every shipped config that names ${DSGQ_IMAGENET} validates (run --dry-run, sweep --list) with packed sets in
    $DSGQ_IMAGENET and python3-torchvision weights (random values) under torchvision's file names."""
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.join(here, "..", "..")
    sys.path.insert(0, os.path.join(repo, "bench"))
    import synth_ref  # noqa: E402
    inet, tvw = os.path.join(tmp, "inet"), os.path.join(tmp, "tvw")
    os.makedirs(tvw)
    os.makedirs(inet)
    for size in (224, 299):  # the 50 samples stand in for val and train
        r = run([dsgq, "pack", "--images", os.path.join(default_data_dir(), "imagenet_samples", "images"), "--labels",
                 os.path.join(default_data_dir(), "imagenet_samples", "labels.txt"), "--size", str(size),
                 "--out", os.path.join(inet, f"val_{size}.h5")])
        shutil.copy(os.path.join(inet, f"val_{size}.h5"), os.path.join(inet, f"train_{size}.h5"))
    files = {"resnet18": "resnet18-f37072fd.pth", "resnet50": "resnet50-0676ba61.pth",
             "mobilenet_v2": "mobilenet_v2-b0353104.pth", "inception_v3": "inception_v3_google-0cc3c7bd.pth",
             "shufflenet_v2_x0_5": "shufflenetv2_x0.5-f707e7126e.pth", "shufflenet_v2_x1_0": "shufflenetv2_x1-5666bf0f80.pth"}
    for arch, name in files.items():
        synth_ref.save_random_weights(arch, os.path.join(tvw, name))
    env = dict(os.environ, DSGQ_IMAGENET=inet, DSGQ_TORCHVISION_MODELS=tvw)
    configs = []
    for d, _, names in os.walk(os.path.join(repo, "configs")):
        configs += [os.path.join(d, n) for n in names if n.endswith(".toml") and "${DSGQ_IMAGENET}" in open(os.path.join(d, n)).read()]
    for cfg in sorted(configs):
        sweep = os.path.basename(os.path.dirname(cfg)) == "sweeps"
        # the samples hold 50 images: real calibration sets of a sweep are cut to 32
        cmd = [dsgq, "sweep", "--list", "--set", "synth.n_images=32"] if sweep else [dsgq, "run", "--dry-run"]
        r = subprocess.run(cmd + ["--config", cfg, "--set", f"output.dir={os.path.join(tmp, 'cfg')}"],
                           capture_output=True, text=True, env=env)
        points = r.stdout.count("pending") if sweep else None
        check(r.returncode == 0, f"{os.path.relpath(cfg, repo)} validates" + (f" ({points} points)" if sweep else "")
              + ("" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]))
    check(len(configs) >= 8, f"{len(configs)} ImageNet configs checked")


def make_tree(root):
    """Two classes of made-up images in the modes ImageNet holds (ImageFolder layout)."""
    rng = np.random.default_rng(3)

    def rgb(w, h):  # smooth content, so that resampling differences would show
        y, x = np.mgrid[0:h, 0:w]
        base = np.stack([x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)], -1)
        return Image.fromarray(np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8))

    a, b = os.path.join(root, "n01751748"), os.path.join(root, "n02346627")  # synsets 65 and 334
    os.makedirs(a)
    os.makedirs(b)
    rgb(500, 375).save(os.path.join(a, "rgb_500x375.JPEG"), quality=90)
    rgb(333, 500).save(os.path.join(a, "rgb_333x500.JPEG"), quality=90)
    rgb(401, 257).convert("L").save(os.path.join(a, "grey.JPEG"), quality=90)
    rgb(420, 300).convert("CMYK").save(os.path.join(a, "cmyk.JPEG"), quality=90)
    rgba = rgb(300, 301).convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, (301, 300), dtype=np.uint8)))
    rgba.save(os.path.join(b, "rgba.png"))
    rgb(257, 390).convert("P", palette=Image.ADAPTIVE).save(os.path.join(b, "palette.png"))
    rgb(380, 260).save(os.path.join(b, "png_named.JPEG"), format="PNG")
    rgb(120, 90).save(os.path.join(b, "small_120x90.jpeg"), quality=95)
    with open(os.path.join(b, "notes.txt"), "w") as f:  # not an image: ignored as by ImageFolder
        f.write("x")


def test_tree(dsgq, data, tmp):
    root = os.path.join(tmp, "tree")
    make_tree(root)
    synsets = os.path.join(data, "imagenet_samples", "synsets.txt")
    wnids = [line.split()[0] for line in open(synsets) if line.strip()]
    for size, resize in ((224, 256), (299, 342)):
        ds = torchvision.datasets.ImageFolder(root, transform=T.Compose([T.Resize(resize), T.CenterCrop(size)]))
        ref = np.stack([np.asarray(img).transpose(2, 0, 1) for img, _ in ds])
        for with_synsets in (False, True):
            out = os.path.join(tmp, f"tree{size}{with_synsets}.h5")
            cmd = [dsgq, "pack", "--images", root, "--size", str(size), "--out", out]
            if with_synsets:
                cmd += ["--synsets", synsets]
            r = run(cmd)
            check(r.returncode == 0, f"pack of the tree --size {size} (synsets {with_synsets}) exits 0 "
                                     f"{'' if r.returncode == 0 else '(' + r.stderr.strip()[-300:] + ')'}")
            if r.returncode != 0:
                continue
            images, labels, names = packed(out)
            want = [wnids.index(ds.classes[t]) if with_synsets else t for _, t in ds.samples]
            check(names == [os.path.relpath(p, root) for p, _ in ds.samples] and labels.tolist() == want,
                  f"tree --size {size}, synsets {with_synsets}: ImageFolder's order and labels {labels.tolist()}")
            if not with_synsets:
                compare(f"tree (grey/CMYK JPEG, RGBA/palette PNG, PNG named .JPEG, 120x90) at {size}", images, ref)
    out = os.path.join(tmp, "tree-per-class.h5")
    r = run([dsgq, "pack", "--images", root, "--per-class", "2", "--out", out])
    names = packed(out)[2] if r.returncode == 0 else []
    want = [os.path.relpath(p, root) for p, t in ds.samples if [q for q, u in ds.samples if u == t].index(p) < 2]
    check(r.returncode == 0 and names == want, f"--per-class 2: the first two images of each class {names}")


def test_bad_input(dsgq, data, tmp):
    src = os.path.join(data, "imagenet_samples")
    good = sorted(os.listdir(os.path.join(src, "images")))[:3]

    def flat(name, files, labels_text, extra=None):
        d = os.path.join(tmp, name)
        os.makedirs(d)
        for f in files:
            shutil.copy(os.path.join(src, "images", f), d)
        for f, data_bytes in (extra or {}).items():
            with open(os.path.join(d, f), "wb") as fh:
                fh.write(data_bytes)
        lab = os.path.join(tmp, name + ".txt")
        with open(lab, "w") as fh:
            fh.write(labels_text)
        return d, lab

    def expect(label, cmd, needle, out, ranks=1, part=False):
        r = run(cmd, ranks)
        err = r.stderr.strip()
        leftover = [p for p in (out, out + ".part") if os.path.exists(p)]
        check(r.returncode == 2 and needle in err and leftover == ([out + ".part"] if part else []),
              f"{label}: exit {r.returncode}, files left {[os.path.basename(p) for p in leftover]}, message: "
              f"{[x for x in err.splitlines() if needle in x][:1] or err[-300:]}")

    first = open(os.path.join(src, "images", good[0]), "rb").read()
    lines = "".join(f"{f} 1\n" for f in good)
    d, lab = flat("corrupt", good, lines + "broken.JPEG 2\ntruncated.JPEG 3\n",
                  {"broken.JPEG": b"\xff\xd8\xff" + bytes(range(256)) * 4, "truncated.JPEG": first[: len(first) // 2]})
    out = os.path.join(tmp, "corrupt.h5")
    expect("corrupt JPEG, 2 ranks", [dsgq, "pack", "--images", d, "--labels", lab, "--out", out],
           "broken.JPEG: cannot decode JPEG", out, ranks=2, part=True)
    expect("truncated JPEG, same run", [dsgq, "pack", "--images", d, "--labels", lab, "--out", out],
           "truncated.JPEG: JPEG data ends early", out, part=True)
    for name in ("broken.JPEG", "truncated.JPEG"):  # fixed: the rerun resumes the .part
        shutil.copy(os.path.join(src, "images", good[1]), os.path.join(d, name))
    r = run([dsgq, "pack", "--images", d, "--labels", lab, "--out", out])
    resumed = [x for x in r.stderr.splitlines() if "resuming" in x]
    fresh = os.path.join(tmp, "fresh.h5")
    r2 = run([dsgq, "pack", "--images", d, "--labels", lab, "--out", fresh])
    same = r.returncode == 0 and r2.returncode == 0 and all(
        np.array_equal(a, b) for a, b in zip(packed(out)[:2], packed(fresh)[:2])) and packed(out)[2] == packed(fresh)[2]
    check(same and resumed and "3 of 5 images already written" in resumed[0] and not os.path.exists(out + ".part"),
          f"after fixing them the rerun resumes ({resumed[0].split('info: ')[-1] if resumed else 'no resume line'}) "
          f"and equals a fresh pack")

    d, lab = flat("badlabels", good, f"{good[0]} 1\n{good[1]} 1000\n")
    out = os.path.join(tmp, "bad.h5")
    expect("label out of range", [dsgq, "pack", "--images", d, "--labels", lab, "--out", out],
           "badlabels.txt:2: class index 1000 is out of range; expected 0..999", out)
    with open(lab, "w") as fh:
        fh.write(f"{good[0]} 1\nmissing.JPEG 4\n")
    expect("label file names a missing image", [dsgq, "pack", "--images", d, "--labels", lab, "--out", out],
           "badlabels.txt:2: image 'missing.JPEG' is not in", out)
    with open(lab, "w") as fh:
        fh.write(f"{good[0]} sea_snake\n")
    expect("non-integer class index", [dsgq, "pack", "--images", d, "--labels", lab, "--out", out],
           "badlabels.txt:1: class index 'sea_snake' is not an integer", out)

    tree = os.path.join(tmp, "badtree")
    os.makedirs(os.path.join(tree, "n01440764"))
    os.makedirs(os.path.join(tree, "goldfish"))
    for sub in ("n01440764", "goldfish"):
        shutil.copy(os.path.join(src, "images", good[0]), os.path.join(tree, sub))
    expect("class folder that is not a wnid", [dsgq, "pack", "--images", tree, "--out", out],
           "class folder 'goldfish' is not a WordNet id", out)

    d, lab = flat("exists", good, lines)
    out = os.path.join(tmp, "exists.h5")
    with open(out, "wb") as fh:
        fh.write(b"precious")
    r = run([dsgq, "pack", "--images", d, "--labels", lab, "--out", out])
    check(r.returncode == 2 and "exists; pass --force" in r.stderr and open(out, "rb").read() == b"precious",
          f"an existing output file: exit {r.returncode}, kept unchanged, '{r.stderr.strip()[-160:]}'")
    with open(lab, "a") as fh:
        fh.write("bad.JPEG 5\n")
    with open(os.path.join(d, "bad.JPEG"), "wb") as fh:
        fh.write(b"not an image")
    r = run([dsgq, "pack", "--images", d, "--labels", lab, "--out", out, "--force"])
    check(r.returncode == 2 and open(out, "rb").read() == b"precious",
          f"--force with a bad image: exit {r.returncode}, the old file kept")
    os.remove(os.path.join(d, "bad.JPEG"))
    with open(lab, "w") as fh:
        fh.write(lines)
    r = run([dsgq, "pack", "--images", d, "--labels", lab, "--out", out, "--force"])
    check(r.returncode == 0 and packed(out)[0].shape == (3, 3, 224, 224), "--force replaces it once every image decodes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsgq", required=True)
    ap.add_argument("--data", default=default_data_dir())
    a = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        test_samples(a.dsgq, a.data, tmp)
        test_run_224(a.dsgq, tmp)
        test_imagenet_configs(a.dsgq, tmp)
        test_tree(a.dsgq, a.data, tmp)
        test_bad_input(a.dsgq, a.data, tmp)
    finish("pack")


if __name__ == "__main__":
    main()
