"""Transfer fits scored on rows measured on both devices (nothing timed; seconds, not minutes).

Three shipped profiles of one target were measured with the same plans on three devices: an earlier
AMD EPYC (``x86-avx512-ort``), a Zen 5 EPYC (``.epyc-zen5``) and an Intel Xeon guest with AMX
(``.xeon-amx``). For each pair (base -> new), the probes ``latency calibrate --from`` would measure
(:func:`profilers.transfer.choose_probes`, the first N) are taken from the new device's own sweep
instead of being measured, the transfer is fitted on them, and it is scored against the rest of
the new device's sweep:

* ``rows |e|``: median |log error| of every row both devices measured that is not a probe;
* per model, the kernel sum (no context or overhead) of 13 held-out and 27 calibration zoo
  models (``benchmarks/transfer.py``'s HELD and ``profilers.zoo.FIT``): every kernel the base
  profile prices, scaled by the transfer (a probe's own row where it is one), against the new
  device's estimator on its own profile; ``held``/``fit`` within +-10% and median; ``centred``:
  all 40 within +-10% / +-5% and their median |error| once the median error is taken out (the
  whole-model calibration measured on the new device takes out a common factor).

Method variants, all on the same probes: ``curves`` (per-group curves and the intensity slope,
groups by kind and precision, as before the two below), ``+streaming`` (MatMuls that stream their
operands have a curve group of their own, :func:`latency.transfer.curve_group`), ``+footprint``
(and the footprint curve for memory-bound kernels, :func:`latency.transfer.fit_transfer`).
The probe spread is today's (``latency.transfer.variant`` gives streaming MatMuls a variant of their
own) for every variant.

Not the judged figure (that is end-to-end models measured on a device no profile was measured on:
``benchmarks/transfer.py --cli``); this isolates the fit from the noise of timing whole models.

    python benchmarks/transfer_rows.py [--probes 300,1200,2000] [--pairs epyc:zen5,zen5:xeon,epyc:xeon]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from latency.estimator import Estimator  # noqa: E402
from latency.profiles import read_profile, shipped_dir  # noqa: E402
from latency.transfer import fit_transfer  # noqa: E402
from profilers import zoo  # noqa: E402
from profilers.transfer import choose_probes  # noqa: E402

TARGET = "x86-avx512-ort"
PROFILES = {"epyc": "x86-avx512-ort.db", "zen5": "x86-avx512-ort.epyc-zen5.db", "xeon": "x86-avx512-ort.xeon-amx.db"}
VARIANTS = {"curves": {"footprint": False, "streaming_group": False},
            "+streaming": {"footprint": False, "streaming_group": True},
            "+footprint": {"footprint": True, "streaming_group": True}}


def rows(path) -> dict:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return dict(db.execute("SELECT key, latency_us FROM measurements WHERE error IS NULL AND latency_us > 0 "
                           "AND source = 'measured'"))


def models() -> dict:
    from transfer import held_models

    out = held_models()
    for n in zoo.FIT:
        out["FIT:" + n] = zoo.build(n)
    return out


def kernels(path, ms) -> dict:
    est = Estimator(TARGET, profile=str(path), context=False, overhead=False, check_host=False)
    out = {}
    for n, m in ms.items():
        e = est.estimate(m)
        out[n] = [(k.key, k.latency_us) for k in e.kernels if k.source != "free" and k.key]
    return out


def score(model, probes: set, br, nr, common, kb, kn) -> dict:
    rest = [(k, us) for k, us in common if k not in probes]
    e = np.log(model.apply_keys(rest) / np.array([nr[k] for k, _ in rest]))
    merr = {}
    for name, items in kb.items():
        tr = model.apply_keys(items)
        tr = np.array([nr[k] if k in probes else v for (k, _), v in zip(items, tr)])
        merr[name] = tr.sum() / sum(us for _, us in kn[name]) - 1
    held = np.array([v for k, v in merr.items() if not k.startswith("FIT:")])
    fit = np.array([v for k, v in merr.items() if k.startswith("FIT:")])
    lc = np.log1p(np.array(list(merr.values())))
    lc = lc - np.median(lc)
    return {"rows": 100 * float(np.median(np.abs(e))), "held10": 100 * float(np.mean(np.abs(held) <= 0.1)),
            "held_med": 100 * float(np.median(held)), "fit10": 100 * float(np.mean(np.abs(fit) <= 0.1)),
            "fit_med": 100 * float(np.median(fit)), "c10": 100 * float(np.mean(np.abs(lc) <= np.log(1.1))),
            "c5": 100 * float(np.mean(np.abs(lc) <= np.log(1.05))), "cmad": 100 * float(np.median(np.abs(lc))),
            "n": len(merr), "merr": merr}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--probes", default="300,1200,2000")
    ap.add_argument("--pairs", default="epyc:zen5,zen5:xeon,epyc:xeon")
    a = ap.parse_args()
    ns = [int(x) for x in a.probes.split(",")]
    pairs = [tuple(p.split(":")) for p in a.pairs.split(",")]
    for p in {x for pr in pairs for x in pr}:
        if p not in PROFILES:
            sys.exit(f"error: unknown profile {p!r} (known: {', '.join(PROFILES)})")
    d = shipped_dir()
    ms = models()
    print(f"# transfer fits scored on rows measured on both devices ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}); "
          f"{len(ms)} models' kernel sums; probes from the new device's own sweep")
    kern = {}
    for base, new in pairs:
        bp, np_ = d / PROFILES[base], d / PROFILES[new]
        br, nr = rows(bp), rows(np_)
        info = read_profile(str(bp), "shipped")[0]
        order = [k for k in choose_probes(list(br.items()), info, max(ns)) if k in nr]
        common = [(k, us) for k, us in br.items() if k in nr]
        for p in (bp, np_):
            if p not in kern:
                kern[p] = kernels(p, ms)
        kb, kn = kern[bp], kern[np_]
        print(f"\n{base} -> {new}: {len(common)} rows on both, probe order of {len(order)}")
        print(f"  {'variant':12s} {'probes':>6s} {'rows |e|':>9s} {'held ±10%':>10s} {'median':>7s} {'fit ±10%':>9s} "
              f"{'median':>7s} {'centred ±10%':>13s} {'±5%':>5s} {'|e|':>5s}")
        last = {}
        for n in ns:
            probes = order[:n]
            for v, kw in VARIANTS.items():
                m = fit_transfer([(k, br[k], nr[k]) for k in probes], **kw)
                r = score(m, set(probes), br, nr, common, kb, kn)
                last[v] = r
                print(f"  {v:12s} {n:6d} {r['rows']:8.1f}% {r['held10']:9.0f}% {r['held_med']:+6.1f}% {r['fit10']:8.0f}% "
                      f"{r['fit_med']:+6.1f}% {r['c10']:12.0f}% {r['c5']:4.0f}% {r['cmad']:4.1f}%", flush=True)
        for v, r in last.items():
            miss = [f"{k.split('@')[0]} {100 * e:+.0f}%" for k, e in r["merr"].items() if abs(e) > 0.1]
            print(f"  {v} at {ns[-1]} probes, beyond ±10%: {', '.join(miss) or 'none'}")


if __name__ == "__main__":
    main()
