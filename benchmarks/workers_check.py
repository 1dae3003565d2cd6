"""Does `--workers 2` (one pinned single-thread process per core) change the numbers?

Measures the same configs (a) with one worker and (b) with two workers side by side, each pass
into its own in-memory profile, and prints the median and p90 of |two/one - 1| next to the
disagreement of two one-worker passes (the noise floor), plus the throughput of each.

    python benchmarks/workers_check.py [--n 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from latency.store import Store  # noqa: E402
from latency.targets import host_target  # noqa: E402
from profilers.sweep import run_sweep  # noqa: E402

from protocol_repeatability import disagreement, pick  # noqa: E402


def one_pass(cfgs, workers):
    st = Store(":memory:")
    t0 = time.monotonic()
    r = run_sweep(st, host_target(), cfgs, workers=workers, chunk_size=max(10, len(cfgs) // 4),
                  cores=[0] if workers == 1 else [0, 1])
    dt = time.monotonic() - t0
    df = st.measurements(ok_only=True).set_index("key")
    return df["latency_us"], r.measured / dt * 3600


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    a = ap.parse_args()
    cfgs = pick(a.n, 11)
    one_a, r1 = one_pass(cfgs, 1)
    two, r2 = one_pass(cfgs, 2)
    one_b, _ = one_pass(cfgs, 1)
    keys = one_a.index.intersection(two.index).intersection(one_b.index)
    m0, p0, _ = disagreement(one_a[keys], one_b[keys])
    m1, p1, _ = disagreement(two[keys], (one_a[keys] + one_b[keys]) / 2)
    ratio = float(np.median(two[keys] / ((one_a[keys] + one_b[keys]) / 2)))
    print(f"{len(keys)} configs")
    print(f"1 worker vs 1 worker (noise floor): median {m0:.2f}%  p90 {p0:.2f}%")
    print(f"2 workers vs 1 worker:             median {m1:.2f}%  p90 {p1:.2f}%  median ratio {ratio:.4f}")
    print(f"throughput: 1 worker {r1:,.0f} cfg/h, 2 workers {r2:,.0f} cfg/h")


if __name__ == "__main__":
    main()
