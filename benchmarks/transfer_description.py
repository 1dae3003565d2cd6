"""No probe: the base profile scaled by the two device descriptions, scored against every held-out
ground truth kept from earlier transfer runs (nothing is measured).

``benchmarks/transfer.py`` measures its held-out models once per run; the no-probe estimate does not
depend on the run (no probe, no calibration), so every kept ground truth scores it: pair 1 (the shipped
x86-avx512-ort profile, an earlier AMD EPYC without AVX-VNNI -> this Zen 5 host) against the runs
``run1``, ``state-ref`` (benchmarks/results/runs/transfer_amd-epyc-26-2.*/ground_truth*.json, the faster
of each run's two passes) and the two runs of the real command (``cli1``, ``cli2``: the measured
column of transfer_amd-epyc-26-2.cli-10m*.txt; ``cli``: runs/transfer_amd-epyc-26-2.cli/), pair 2
(this host's full sweep -> this host with AVX-512 hidden) against its two runs.

Rows (``latency.transfer.description_model`` for the table, each with its regressors retrained):

* ``context moved``: the base's context and overhead moved by the same description
  (``latency.transfer.transfer_calibration``), what ``latency calibrate --from BASE --budget 0`` writes;
* ``context copied``: the base's context and overhead as they are (what ``--budget 0`` wrote before);
* diagnoses, evaluation only: no context or overhead at all; (pair 1) this host's own context from its
  full sweep; the per-class ratios of the description against this host's full sweep on the kernels
  of the held-out models; (pair 1) the description with a base clock: the base profile records none,
  so ``--base-mhz`` shows what that one fact would be worth (the value is the reader's, not fitted here).

    python benchmarks/transfer_description.py [--pair 1,2] [--base-mhz MHZ] [--out FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.transfer import TARGET, held_models, make_profile, metrics, uptime  # noqa: E402
from latency.estimator import Estimator  # noqa: E402
from latency.ops import Config  # noqa: E402
from latency.profiles import companion, host_device, read_cpu, read_profile, shipped_dir  # noqa: E402
from latency.store import Store  # noqa: E402
from latency.targets import get_target  # noqa: E402
from latency.transfer import COMPUTE_KINDS, description_model, transfer_calibration, variant  # noqa: E402

RES = os.path.join(ROOT, "benchmarks", "results")
RUNS = os.path.join(RES, "runs")


def _passes(folder):
    """The faster of a run's two ground-truth passes, per model (None when the run is not kept)."""
    f1, f2 = (os.path.join(RUNS, folder, f) for f in ("ground_truth.json", "ground_truth_2.json"))
    if not (os.path.exists(f1) and os.path.exists(f2)):
        return None
    g1, g2 = json.load(open(f1))["results"], json.load(open(f2))["results"]
    return {n: min(g1[n]["latency_ms"], g2[n]["latency_ms"]) for n in g1
            if g1[n]["latency_ms"] and g2.get(n, {}).get("latency_ms")}


def _printed(name):
    """The measured column of a `benchmarks/transfer.py --profile` output (its ground truth)."""
    path = os.path.join(RES, name)
    if not os.path.exists(path):
        return None
    out = {}
    for line in open(path):
        m = re.match(r"^(\S+@\S+)\s+([0-9.]+)\s+([0-9.]+)\s+([+-][0-9.]+)%", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out or None


def ground_truths(pair):
    if pair == 1:
        g = {"run1": _passes("transfer_amd-epyc-26-2.run1"), "state-ref": _passes("transfer_amd-epyc-26-2.state-ref"),
             "cli1": _printed("transfer_amd-epyc-26-2.cli-10m.txt"),
             "cli2": _printed("transfer_amd-epyc-26-2.cli-10m.run2.txt"), "cli": _passes("transfer_amd-epyc-26-2.cli")}
    else:
        g = {"first": _passes("transfer_amd-epyc-26-2-avx2-emulated"),
             "state-ref": _passes("transfer_amd-epyc-26-2-avx2-emulated.state-ref")}
    return {k: v for k, v in g.items() if v}


def class_of(cfg):
    if cfg.kind in COMPUTE_KINDS:
        return f"{cfg.kind}/{variant(cfg)}/{cfg.precision}"
    return "memory-bound kinds"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", default="1,2")
    ap.add_argument("--base-mhz", type=float, default=None,
                    help="pair 1 diagnosis: the description with this clock for the base (it records none)")
    ap.add_argument("--out", default="transfer_description.txt")
    a = ap.parse_args()
    t0 = time.time()
    lines = []

    def out(line=""):
        print(line, flush=True)
        lines.append(line)

    models = held_models()
    names = list(models)
    # the kept ground truths were measured on the Zen 5 host; pair 2's base is that host's own sweep
    full_path = os.path.join(ROOT, "tables", f"{TARGET}.epyc-zen5.db")
    host = {**host_device(), "cpu_mhz": read_cpu().get("cpu_mhz")}
    out(f"# no probe: the base scaled by the device descriptions, scored against every kept held-out ground truth "
        f"({time.strftime('%Y-%m-%d %H:%M')} UTC; nothing measured)")
    out(f"uptime at start: {uptime()}")
    tmp = tempfile.mkdtemp(prefix="latency-transfer-desc-")
    try:
        for pair in (int(x) for x in a.pair.split(",")):
            if pair == 1:
                base_path, origin, new_target, new = str(shipped_dir() / f"{TARGET}.db"), "shipped", TARGET, host
            else:
                masked = [f for f in host["cpu_flags"] if not f.startswith(("avx512", "avx_vnni", "amx"))]
                base_path, origin, new_target, new = full_path, "user", "x86-avx2-ort", {**host, "cpu_flags": masked}
            gts = ground_truths(pair)
            info = read_profile(base_path, origin)[0]
            with Store(base_path, readonly=True) as st:
                bdf = st.measurements(st.find_target(TARGET), ok_only=True)
            base_rows = [(k, float(v)) for k, v in zip(bdf["key"], bdf["latency_us"])]
            bctx = {"context": str(companion(base_path, ".context.json")),
                    "overhead": str(companion(base_path, ".overhead.json"))}
            out()
            out(f"## pair {pair}: {os.path.relpath(base_path, ROOT)} -> this host"
                + (" with AVX-512 hidden (target x86-avx2-ort, emulated)" if pair == 2 else ""))
            out("ground truths (held-out models, the faster of two passes): " + ", ".join(
                f"{g} ({len(v)} models)" for g, v in gts.items()))
            devices = [("", info.device)]
            if pair == 1 and a.base_mhz:
                devices.append((f" [diag.: base clock {a.base_mhz:g} MHz]", {**info.device, "cpu_mhz": a.base_mhz}))
            for tag, bdev in devices:
                desc = description_model(bdev, new)
                out(f"description{tag}: {'; '.join(desc.spec['known'])} -> dispatch x{desc.spec['dispatch_ratio']:g}, "
                    f"compute x{desc.spec['compute_ratio']:g} (int8 x{desc.spec['compute_int8_ratio']:g}), "
                    f"memory-bound x{desc.spec['other_ratio']:g}")
                p = os.path.join(tmp, f"p{pair}{len(tag)}.db")
                make_profile(p, get_target(new_target), base_rows, base_path, desc, [])
                c, o = os.path.join(tmp, "moved.context.json"), os.path.join(tmp, "moved.overhead.json")
                transfer_calibration(desc, bctx["context"], bctx["overhead"], c, o)
                variants = {"context moved (as --budget 0)": {"context": c, "overhead": o},
                            "context copied (before)": bctx,
                            "no context, no overhead (diag.)": {"context": False, "overhead": False}}
                if pair == 1:
                    variants["this host's own context (diag.)"] = {
                        "context": str(companion(full_path, ".context.json")),
                        "overhead": str(companion(full_path, ".overhead.json"))}
                for label, kw in variants.items():
                    est = Estimator(new_target, profile=p, check_host=False, **kw)
                    pred = {n: est.estimate(models[n]).total_ms for n in names}
                    cells = []
                    for g, gt in gts.items():
                        nn = [n for n in names if n in gt]
                        m = metrics([pred[n] for n in nn], [gt[n] for n in nn])
                        cells.append(f"{g} {m['within10']:3.0f}% ({m['median_signed']:+5.1f}%)")
                    out(f"  {label + tag:44s} " + "  ".join(cells))
            if pair == 1:
                # evaluation only: per class, new/base on the held-out models' kernels, this host's full sweep vs
                # the description (table prices, no context)
                eb = Estimator(TARGET, profile=base_path, context=False, overhead=False, check_host=False)
                ef = Estimator(TARGET, profile=full_path, context=False, overhead=False, check_host=False)
                desc = description_model(info.device, new)
                tot = collections.defaultdict(lambda: np.zeros(3))
                for n in names:
                    kb = [k for k in eb.estimate(models[n]).kernels if k.source != "free"]
                    kf = {k.key: k.latency_us for k in ef.estimate(models[n]).kernels if k.source != "free"}
                    for k, d in zip(kb, desc.apply_keys([(k.key, k.latency_us) for k in kb])):
                        if k.key in kf:
                            tot[class_of(Config.from_key(k.key))] += (k.latency_us, kf[k.key], d)
                out("held-out models' kernels, new/base by class (time-weighted; evaluation only: this host's full "
                    "sweep vs the description):")
                for g, v in sorted(tot.items(), key=lambda x: -x[1][0]):
                    if v[0] > 1000:
                        out(f"  {g:28s} {v[0] / 1e3:7.1f} ms on the base  measured here x{v[1] / v[0]:.3f}  "
                            f"description x{v[2] / v[0]:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out(f"uptime at the end: {uptime()}; {time.time() - t0:.0f} s")
    with open(os.path.join(RES, a.out), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
