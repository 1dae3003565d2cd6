"""Does a stored profile still describe this machine? Re-measure a sample of its rows now.

Picks N measured dense fp32 rows of a profile at random (seeded), measures the same configs again
with the profile's own protocol on this host, and prints now / stored: the median and p10-p90
over all rows and per latency band. A shared machine's speed drifts over hours and days (other
tenants, frequency, cache share); a profile measured in a faster stretch makes every estimate low
by about the drift of the kernels a model uses.

    python benchmarks/profile_drift.py [--db tables/x86-avx512-ort.db] [--target x86-avx512-ort] [--n 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from latency.ops import Config  # noqa: E402
from latency.store import Store  # noqa: E402
from latency.targets import get_target  # noqa: E402
from profilers.measure import Protocol, measure_chunk, pin_to_core  # noqa: E402

BANDS = ((0, 10), (10, 30), (30, 100), (100, 1000), (1000, float("inf")))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=os.path.join(ROOT, "tables", "x86-avx512-ort.db"))
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--core", type=int, default=0)
    a = ap.parse_args()
    target = get_target(a.target)
    ok, why = target.host_supported()
    if not ok:
        print(f"error: {why}", file=sys.stderr)
        return 2
    pin_to_core(a.core)
    with Store(a.db, readonly=True) as st:
        tid = st.find_target(a.target)
        if tid is None:
            print(f"error: target {a.target!r} not in {a.db}", file=sys.stderr)
            return 2
        df = st.measurements(tid, ok_only=True)
    df = df[(df["precision"] == "fp32") & (df["sparsity"] == "0") & (df["kind"] != "Free")]
    rows = df.sample(n=min(a.n, len(df)), random_state=a.seed)
    cfgs = [Config.from_key(k) for k in rows["key"]]
    stored = rows["latency_us"].to_numpy(float)
    t0 = time.time()
    now = np.array([r["latency_us"] if r["error"] is None else np.nan for r in measure_chunk(cfgs, Protocol())])
    ok = np.isfinite(now) & (stored > 0)
    ratio = now[ok] / stored[ok]
    s = stored[ok]
    measured_at = rows["measured_at"].astype(str)
    print(f"{a.db} ({a.target}): {ok.sum()} rows stored {measured_at.min()[:16]} to {measured_at.max()[:16]}, "
          f"re-measured now ({time.time() - t0:.0f} s)")
    print(f"now / stored: median {np.median(ratio):.3f}  p10 {np.percentile(ratio, 10):.3f}  "
          f"p90 {np.percentile(ratio, 90):.3f}")
    for lo, hi in BANDS:
        sel = (s >= lo) & (s < hi)
        if sel.sum():
            print(f"  stored {lo:>5g}-{hi:<5g} us: n={sel.sum():3d}  median {np.median(ratio[sel]):.3f}  "
                  f"p10 {np.percentile(ratio[sel], 10):.3f}  p90 {np.percentile(ratio[sel], 90):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
