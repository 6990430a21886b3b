#!/usr/bin/python3
"""Reads dsgq result records (runs/**/results/*.json; records only, never logs) and prints a Markdown table:
one row per point, with top-1/top-5, the published figure where known, images and world size.
usage: analysis/results_table.py RUNS_DIR [--csv]"""
import argparse
import glob
import json
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs_dir")
    ap.add_argument("--csv", action="store_true")
    a = ap.parse_args()
    rows = []
    for path in sorted(glob.glob(os.path.join(a.runs_dir, "**", "results", "*.json"), recursive=True)):
        with open(path) as f:
            rec = json.load(f)
        if rec.get("format") != "dsgq-result/1":
            print(f"{path}: not a dsgq-result/1 record, skipped", file=sys.stderr)
            continue
        p, m = rec["point"], rec["metrics"]
        pub = m.get("published_top1")
        rows.append([rec["key"], p["arch"], p["precision"], f"{m['top1']:.2f}", f"{m['top5']:.2f}",
                     "" if pub is None else f"{pub:.2f}", str(m["n_images"]), str(rec["provenance"]["world_size"])])
    header = ["key", "arch", "precision", "top1", "top5", "published top1", "images", "ranks"]
    if a.csv:
        for r in [header] + rows:
            print(",".join(r))
        return
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
