"""Calibration x ground-truth matrix: how much of the accuracy survives a change of run.

A calibration (`latency calibrate`) and a ground truth (`benchmarks/accuracy.py --remeasure`) are
each one run of a shared, noisy machine. This scores every kept calibration against every kept
ground-truth run with `benchmarks/accuracy.py --calibration DIR --ground-truth FILE` and prints
each pair's summary lines, then one table of the held-out set.

Kept runs live in ``benchmarks/results/runs/<target>/``: ``cal_<label>/`` holds a calibration's
``<profile>.context.json`` and ``<profile>.overhead.json``, ``gt_<label>.json`` a ground-truth run
(`e2e_<target>.json` as it was after that run). ``--keep-current LABEL`` first copies the shipped
calibration and the current ground truth in under that label.

    python benchmarks/calibration_repeatability.py [--target x86-avx512-ort] [--keep-current L]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from latency.targets import get_target, host_target  # noqa: E402

LINE = re.compile(r"^(held-out|fresh|final|sealed|fit)\s+latency\s+n=\s*(\d+)\s+within ±5%\s+([\d.]+)%\s+±10%\s+([\d.]+)%"
                  r"\s+±20%\s+([\d.]+)%\s+MAPE\s+([\d.]+)%\s+median signed\s+([+-][\d.]+)%\s+Kendall tau\s+([\d.]+)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=None, help="default: this host's target")
    ap.add_argument("--keep-current", default=None, metavar="LABEL",
                    help="first keep the shipped calibration and the current ground truth under LABEL")
    a = ap.parse_args()
    target = get_target(a.target) if a.target else host_target()
    runs = os.path.join(ROOT, "benchmarks", "results", "runs", target.name)
    profile = target.profile_path()
    stem = profile.stem
    if a.keep_current:
        os.makedirs(os.path.join(runs, f"cal_{a.keep_current}"), exist_ok=True)
        for k in ("context", "overhead"):
            shutil.copy(profile.with_name(f"{stem}.{k}.json"), os.path.join(runs, f"cal_{a.keep_current}", f"{stem}.{k}.json"))
        shutil.copy(os.path.join(ROOT, "benchmarks", "results", f"e2e_{target.name}.json"),
                    os.path.join(runs, f"gt_{a.keep_current}.json"))
    cals = sorted(d for d in glob.glob(os.path.join(runs, "cal_*")) if os.path.isdir(d))
    gts = sorted(glob.glob(os.path.join(runs, "gt_*.json")))
    if not cals or not gts:
        sys.exit(f"error: no kept calibrations or ground truths in {runs}")
    label = lambda p: os.path.basename(p).split("_", 1)[1].removesuffix(".json")  # noqa: E731
    table = {}
    for c in cals:
        for g in gts:
            out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "accuracy.py"), "--target",
                                  target.name, "--calibration", c, "--ground-truth", g],
                                 capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"error: accuracy.py failed for {c} x {g}: {out.stderr.strip().splitlines()[-1]}")
            print(f"## calibration {label(c)}, ground truth {label(g)}")
            for line in out.stdout.splitlines():
                m = LINE.match(line)
                if m:
                    print(line)
                    if m.group(1) == "held-out":
                        table[label(c), label(g)] = (float(m.group(4)), float(m.group(6)), float(m.group(7)))
    gl = [label(g) for g in gts]
    print("\nheld-out: within ±10% / MAPE / median signed error, calibration (rows) x ground truth (columns)")
    print(f"{'':6s}" + "".join(f"{x:>22s}" for x in gl))
    for c in cals:
        cells = [table.get((label(c), x)) for x in gl]
        print(f"{label(c):6s}" + "".join(f"{v[0]:7.1f}% {v[1]:5.2f}% {v[2]:+5.1f}%" if v else f"{'-':>22s}"
                                          for v in cells))


if __name__ == "__main__":
    main()
