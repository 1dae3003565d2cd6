"""Repeatability of the end-to-end protocol: how many fresh-session phases a model's latency needs.

Measures the calibration models (profilers.zoo.FIT) twice, back to back, each time in ``--phases``
phases of one round (fresh sessions for every model in each phase), and prints how far the two
passes disagree when each keeps the minimum over its first k phases, for several k, and over all
its phases (the protocol: extra phases for a model until a second round comes within
``profilers.e2e.CONFIRM`` of its fastest). The models of a few MB to a few tens of MB working set
are the ones that move: how much of the shared cache another tenant holds decides their speed.

    python benchmarks/e2e_repeatability.py [--phases 9] [--core 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from profilers import zoo  # noqa: E402
from profilers.e2e import CONFIRM, measure_models  # noqa: E402
from profilers.measure import pin_to_core  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phases", type=int, default=9)
    ap.add_argument("--core", type=int, default=0)
    a = ap.parse_args()
    pin_to_core(a.core)
    models = {n: zoo.build(n).SerializeToString() for n in zoo.FIT}
    passes = []
    for i in range(2):
        t0 = time.time()
        passes.append(measure_models(models, rounds=a.phases, phases=a.phases))
        extra = sum(r["phases"] - a.phases for r in passes[-1].values() if r["error"] is None)
        print(f"pass {i + 1}: {len(models)} models, {a.phases} phases of one round and {extra} extra model-phases for "
              f"models whose fastest round no other came within {100 * CONFIRM:g}% of, {time.time() - t0:.0f} s")
    ok = [n for n in models if all(p[n]["error"] is None for p in passes)]
    print(f"\ndisagreement between the passes, |a/b - 1| over {len(ok)} models, each pass keeping the minimum "
          "over its first k phases:")
    for k in sorted({1, 3, (a.phases + 1) // 2, a.phases}):
        d = np.array([abs(min(passes[0][n]["rounds_ms"][:k]) / min(passes[1][n]["rounds_ms"][:k]) - 1) for n in ok])
        print(f"  k={k:2d}: median {100 * np.median(d):5.1f}%  p90 {100 * np.percentile(d, 90):5.1f}%  "
              f"worst {100 * d.max():5.1f}%  within 5%: {int((d <= 0.05).sum())}/{len(d)}")
    d = np.array([abs(passes[0][n]["latency_ms"] / passes[1][n]["latency_ms"] - 1) for n in ok])
    print(f"  all phases, extra ones included (the protocol): median {100 * np.median(d):5.1f}%  "
          f"p90 {100 * np.percentile(d, 90):5.1f}%  worst {100 * d.max():5.1f}%  within 5%: {int((d <= 0.05).sum())}/{len(d)}")
    print("\nper model, min over all phases (ms) and each phase's round median / that minimum:")
    for n in ok:
        rounds = [r for p in passes for r in p[n]["rounds_ms"]]
        m = min(rounds)
        print(f"  {n:24s} {m:9.3f}  " + " ".join(f"{r / m:.2f}" for r in rounds))


if __name__ == "__main__":
    main()
