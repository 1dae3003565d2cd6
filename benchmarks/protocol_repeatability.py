"""Repeatability of the measuring protocol and the sweep rate on this machine.

Measures the same N configs twice with the project's protocol (two independent passes, fresh
sessions), and prints the disagreement between the passes (median and p90 of |a/b - 1|) and the
sweep rate in configs per hour per core. For contrast it also times the naive protocol (warmup 5,
50 back-to-back runs, median of wall time) twice on the same configs.

    python benchmarks/protocol_repeatability.py [--n 100] [--core 0] [--naive]
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
from profilers.measure import Protocol, measure_chunk, pin_to_core  # noqa: E402
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--naive", action="store_true", help="also run the naive protocol for contrast")
    ap.add_argument("--max-runs", type=int, default=None, help="override the protocol's runs-per-round cap")
    a = ap.parse_args()
    pin_to_core(a.core)
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
