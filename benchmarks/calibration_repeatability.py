"""Calibration x ground-truth matrix: how much of the accuracy survives a change of run.

A calibration (`latency calibrate`) and a ground truth (`benchmarks/accuracy.py --remeasure`) are
each one run of a shared, noisy machine. This scores every kept calibration against every kept
ground-truth run (what `benchmarks/accuracy.py --calibration DIR --ground-truth FILE` prints as
its `latency` lines, computed here with each corpus model built once) and prints each pair's summary
lines, then one table of the held-out set.

Kept runs live in ``benchmarks/results/runs/<target>/``: ``cal_<label>/`` holds a calibration's
``<profile>.context.json`` and ``<profile>.overhead.json``, ``gt_<label>.json`` a ground-truth run
(`e2e_<target>.json` as it was after that run), ``RUNS.md`` what each label is (printed first). ``--keep-current LABEL`` first copies the shipped
calibration and the current ground truth in under that label.

    python benchmarks/calibration_repeatability.py [--target x86-avx512-ort] [--keep-current L]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from accuracy import SETS, corpus, metrics, set_of, summary_line  # noqa: E402

from latency.estimator import Estimator  # noqa: E402
from latency.graph import load_graph  # noqa: E402
from latency.targets import get_target, host_target  # noqa: E402

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
    notes = os.path.join(runs, "RUNS.md")
    if os.path.exists(notes):  # what each label is: when it ran, which design
        with open(notes) as f:
            print(f.read())
    label = lambda p: os.path.basename(p).split("_", 1)[1].removesuffix(".json")  # noqa: E731
    models = corpus()
    truths = {}
    for g in gts:
        with open(g) as f:
            truths[label(g)] = {n: r["latency_ms"] for n, r in json.load(f)["results"].items()
                                if r.get("latency_ms") and n in models}
    ests = {label(c): Estimator(target, context=os.path.join(c, f"{stem}.context.json"),
                                overhead=os.path.join(c, f"{stem}.overhead.json"), check_host=False).prepare()
            for c in cals}
    preds = {c: {} for c in ests}
    for n in models:  # one model's graph at a time: the corpus does not fit in memory at once
        g = load_graph(models[n])
        for c, est in ests.items():
            preds[c][n] = est.estimate(g).total_ms
        del g
    table = {}
    for c in cals:
        pred = preds[label(c)]
        for gl, truth in truths.items():
            print(f"## calibration {label(c)}, ground truth {gl}")
            for name, s in SETS:
                sel = [n for n in truth if set_of(n) == s]
                if not sel:
                    continue
                m = metrics([pred[n] for n in sel], [truth[n] for n in sel])
                print(summary_line(name, "latency", m))
                if s == "held":
                    table[label(c), gl] = (m["within10"], m["mape"], m["median_signed"])
    gl = list(truths)
    print("\nheld-out: within ±10% / MAPE / median signed error, calibration (rows) x ground truth (columns)")
    print(f"{'':6s}" + "".join(f"{x:>22s}" for x in gl))
    for c in cals:
        cells = [table.get((label(c), x)) for x in gl]
        print(f"{label(c):6s}" + "".join(f"{v[0]:7.1f}% {v[1]:5.2f}% {v[2]:+5.1f}%" if v else f"{'-':>22s}"
                                          for v in cells))


if __name__ == "__main__":
    main()
