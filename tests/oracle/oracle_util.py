"""Shared by the oracle scripts: one ok/FAIL line per check, the list of failures, running oracle_tool, and the
real-data folder ($DSGQ_DATA, else ../shared/data beside the checkout)."""
import os
import subprocess

failures = []


def check(cond, msg):
    print(("ok   " if cond else "FAIL ") + msg, flush=True)
    if not cond:
        failures.append(msg)


def run_tool(tool, *args):
    r = subprocess.run([tool, *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{tool} {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


def default_data_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("DSGQ_DATA") or os.path.join(here, "..", "..", "..", "shared", "data")
