"""Repeatability of the measuring protocol and the sweep rate on this machine.

Measures the same N configs twice with the project's protocol (two independent passes, fresh
sessions), and prints the disagreement between the passes (median and p90 of |a/b - 1|) and the
sweep rate in configs per hour per core. For contrast it also times the naive protocol (warmup 5,
50 back-to-back runs, median of wall time) twice on the same configs.

``--compare PROFILE.db``: the protocols of :data:`VARIANTS` side by side on configs of the standard
plan drawn from the profile's measured rows in four latency bands (<100 us, 0.1-1 ms, 1-10 ms,
>10 ms; the long kernels are where a sweep spends its time), each protocol measured twice,
alternated (A B C A B C) in one process: per protocol and band the time a config costs, the
disagreement between its two passes, and its ratio to the first protocol (the one the shipped
profiles were measured with); then the time of a full sweep extrapolated from each band's cost and
the profile's count of rows in it.

    python benchmarks/protocol_repeatability.py [--n 100] [--core 0] [--naive]
    python benchmarks/protocol_repeatability.py --compare tables/x86-avx512-ort.xeon-amx.db [--per-band 30] [--core 1]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from latency.ops import Config  # noqa: E402
from profilers.builders import build, feeds  # noqa: E402
from profilers.measure import V1, Protocol, measure_chunk, pin_to_core  # noqa: E402
from profilers.plans import plan  # noqa: E402


def pick(n: int, seed: int) -> list[Config]:
    """N fp32 configs from the standard plan with sub-millisecond expected work."""
    rng = random.Random(seed)
    pool = [c for c in plan("standard", precisions=["fp32"]) if c.kind != "Free" and c.flops() < 1.5e8
            and c.sparsity == "0"]
    return rng.sample(pool, n)


def naive(cfgs):
    import onnxruntime as ort

    out = []
    for c in cfgs:
        m = build(c)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        f = feeds(m)
        for _ in range(5):
            s.run(None, f)
        ts = []
        for _ in range(50):
            t0 = time.perf_counter_ns()
            s.run(None, f)
            ts.append((time.perf_counter_ns() - t0) / 1e3)
        out.append(statistics.median(ts))
    return np.array(out)


def disagreement(a, b):
    d = np.abs(np.asarray(a) / np.asarray(b) - 1.0)
    return float(np.median(d)) * 100, float(np.percentile(d, 90)) * 100, float((d > 0.1).mean()) * 100


#: protocols compared by --compare (name -> Protocol); the first is the reference
VARIANTS = {
    "v1 (3 phases)": V1,
    "v2 (settle after 2, 3 runs from 10 ms)": Protocol(),
}
BANDS = ((0, 100), (100, 1000), (1000, 10000), (10000, float("inf")))


def _band(us: float) -> int:
    return next(i for i, (lo, hi) in enumerate(BANDS) if lo <= us < hi)


def compare(profile: str, per_band: int, seed: int) -> None:
    """Every protocol of VARIANTS twice, alternated, on per_band configs of each latency band."""
    import sqlite3

    db = sqlite3.connect(f"file:{profile}?mode=ro", uri=True)
    rows = db.execute("SELECT key, latency_us FROM measurements WHERE error IS NULL AND source = 'measured' "
                      "AND kind != 'Free'").fetchall()
    rng = random.Random(seed)
    counts = [0] * len(BANDS)
    by_band: list[list] = [[] for _ in BANDS]
    for key, us in rows:
        counts[_band(us)] += 1
        by_band[_band(us)].append(key)
    cfgs, band_of = [], []
    for b, keys in enumerate(by_band):
        for k in rng.sample(keys, min(per_band, len(keys))):
            cfgs.append(Config.from_key(k))
            band_of.append(b)
    band_of = np.array(band_of)
    print(f"profile {profile}: {len(rows)} measured rows; per band (<100 us, 0.1-1 ms, 1-10 ms, >10 ms): "
          f"{counts}; {per_band} configs of each measured, every protocol twice, alternated")
    res = {v: [] for v in VARIANTS}
    secs = {v: [] for v in VARIANTS}
    phases = {v: [] for v in VARIANTS}
    for rep in range(2):
        for name, proto in VARIANTS.items():
            lat, t = np.full(len(cfgs), np.nan), np.zeros(len(cfgs))
            ph = np.zeros(len(cfgs))
            for b in range(len(BANDS)):  # one chunk per band, so each band's time is its own
                idx = np.flatnonzero(band_of == b)
                t0 = time.monotonic()
                out = measure_chunk([cfgs[i] for i in idx], proto)
                t[idx] = (time.monotonic() - t0) / max(1, len(idx))
                for i, r in zip(idx, out):
                    if r["error"] is None:
                        lat[i] = r["latency_us"]
                        ph[i] = r["extra"]["phases"]
            res[name].append(lat)
            secs[name].append(t)
            phases[name].append(ph)
            print(f"  pass {rep + 1} {name}: {sum(t):.1f} s", flush=True)
    ref = next(iter(VARIANTS))
    ref_mean = np.nanmean(np.vstack(res[ref]), axis=0)
    print(f"\n{'protocol':34s} {'band':>10s} {'s/config':>9s} {'phases':>7s} {'pass/pass med':>14s} {'p90':>6s} "
          f"{'>5%':>5s} {'ratio to ' + ref:>24s}")
    names = ["<100us", "0.1-1ms", "1-10ms", ">10ms"]
    for name in VARIANTS:
        a, b = res[name]
        for band in range(len(BANDS)):
            m = (band_of == band) & np.isfinite(a) & np.isfinite(b)
            d = np.abs(a[m] / b[m] - 1)
            mean = (a[m] + b[m]) / 2
            ratio = mean / ref_mean[m]
            cost = np.mean([s[band_of == band].mean() for s in secs[name]])
            print(f"{name:34s} {names[band]:>10s} {cost:9.3f} {np.mean([p[m].mean() for p in phases[name]]):7.2f} "
                  f"{np.median(d) * 100:13.2f}% {np.percentile(d, 90) * 100:5.1f}% {(d > 0.05).mean() * 100:4.0f}% "
                  f"{'median x%.4f (p10 %.3f, p90 %.3f)' % (np.median(ratio), np.percentile(ratio, 10), np.percentile(ratio, 90))}")
    print("\nfull sweep of the profile's rows at each band's measured cost per config (one core):")
    for name in VARIANTS:
        per = [np.mean([s[band_of == b].mean() for s in secs[name]]) for b in range(len(BANDS))]
        print(f"  {name:34s} {sum(c * p for c, p in zip(counts, per)) / 3600:.2f} h")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--naive", action="store_true", help="also run the naive protocol for contrast")
    ap.add_argument("--max-runs", type=int, default=None, help="override the protocol's runs-per-round cap")
    ap.add_argument("--compare", default="", help="a profile database: compare the protocols of VARIANTS on its rows")
    ap.add_argument("--per-band", type=int, default=30)
    a = ap.parse_args()
    pin_to_core(a.core)
    if a.compare:
        if not os.path.exists(a.compare):
            sys.exit(f"error: no profile database {a.compare}")
        print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; host CPU: "
              f"{next((ln.split(':', 1)[1].strip() for ln in open('/proc/cpuinfo') if ln.startswith('model name')), '?')}; "
              f"pinned to core {a.core}")
        compare(a.compare, a.per_band, a.seed)
        return
    cfgs = pick(a.n, a.seed)
    proto = Protocol() if a.max_runs is None else Protocol(max_runs=a.max_runs)
    probe = measure_chunk(cfgs, Protocol(phases=1, rounds_per_phase=1, remeasure_phases=0, max_runs=5))
    cfgs = [c for c, r in zip(cfgs, probe) if r["error"] is None]
    res, secs = [], []
    for rep in range(2):
        t0 = time.monotonic()
        rows = measure_chunk(cfgs, proto)
        secs.append(time.monotonic() - t0)
        res.append([r["latency_us"] for r in rows])
    ok = [i for i in range(len(cfgs)) if res[0][i] and res[1][i]]
    a0, a1 = [res[0][i] for i in ok], [res[1][i] for i in ok]
    med, p90, over = disagreement(a0, a1)
    rate = len(cfgs) / (sum(secs) / 2) * 3600
    print(f"protocol {proto.name}: {proto.phases} phases x {proto.rounds_per_phase} rounds, fresh sessions per phase, "
          f"{proto.min_runs}-{proto.max_runs} runs per round")
    d = np.abs(np.array(a0) / np.array(a1) - 1)
    worst = np.argsort(-d)[:5]
    print("largest disagreements: " + ", ".join(f"{a0[i]:.1f}/{a1[i]:.1f} us" for i in worst))
    print(f"configs: {len(ok)} measured twice; latency range {min(a0):.1f}-{max(a0):.1f} us "
          f"(median {statistics.median(a0):.1f} us)")
    print(f"disagreement between passes: median {med:.2f}%  p90 {p90:.2f}%  >10%: {over:.1f}% of configs")
    print(f"sweep rate: {rate:,.0f} configs/hour/core (pass times {secs[0]:.1f}s, {secs[1]:.1f}s, incl. build + "
          f"session creation + re-measurement of unstable configs)")
    if a.naive:
        n0, n1 = naive(cfgs), naive(cfgs)
        med, p90, over = disagreement(n0, n1)
        print(f"naive (warmup 5, 50 runs, median wall): median {med:.2f}%  p90 {p90:.2f}%  >10%: {over:.1f}%")


if __name__ == "__main__":
    main()
