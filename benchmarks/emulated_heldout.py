"""Profiles of x86-avx2-ort against held-out models measured now on this host with AVX-512 hidden.

The transfer benchmark's 13 held-out models (:func:`benchmarks.transfer.held_models`, none in the calibration
corpus) are measured end to end under the AVX2 CPUID mask (:mod:`profilers.emulate`; the script re-runs itself
masked), two passes with the robust protocol (:func:`profilers.e2e.measure_models`), and estimated with each
profile given. Needs an x86 host with AVX-512 and gcc (the mask is built at first use).

    taskset -c 0 python benchmarks/emulated_heldout.py [--profile DB ...]
        (default: tables/x86-avx2-ort.epyc-zen5-emulated.db and tables/x86-avx2-ort.db)
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DEFAULT = ("tables/x86-avx2-ort.epyc-zen5-emulated.db", "tables/x86-avx2-ort.db")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", action="append", default=None, help="a profile database (repeatable)")
    a = ap.parse_args()
    from profilers import emulate

    if emulate.active_level() != "avx2":
        why = emulate.host_problem()
        if why:
            print(f"error: {why}", file=sys.stderr)
            return 2
        env = emulate.emulated_env("avx2")
        return subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env=env).returncode
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import numpy as np

    from latency import Estimator
    from profilers.e2e import measure_models
    from transfer import held_models

    models = held_models()
    t0 = time.time()
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; onnxruntime under the AVX2 CPUID mask "
          f"(profilers/emulate.py), affinity {sorted(os.sched_getaffinity(0))}; load {os.getloadavg()[0]:.2f}")
    meas = {}
    for p in (1, 2):
        m = measure_models({n: x.SerializeToString() for n, x in models.items()})
        meas[p] = {n: r["latency_ms"] for n, r in m.items()}
    for db in a.profile or [str(ROOT / d) for d in DEFAULT]:
        est = Estimator("x86-avx2-ort", profile=db, check_host=False)
        pred = {n: est.estimate(x).total_ms for n, x in models.items()}
        print(f"\nprofile {db}")
        for p in (1, 2):
            e = np.array([pred[n] / meas[p][n] - 1 for n in models])
            print(f"  pass {p}: within +-10% {int(np.sum(np.abs(e) <= 0.1))}/{len(e)}, MAPE {np.mean(np.abs(e)):.1%}, "
                  f"median {np.median(e):+.1%}")
        for n in models:
            print(f"    {n:28s} predicted {pred[n]:8.3f}  measured {meas[1][n]:8.3f} ({pred[n] / meas[1][n] - 1:+6.1%})"
                  f"  {meas[2][n]:8.3f} ({pred[n] / meas[2][n] - 1:+6.1%})")
    print(f"\n{time.time() - t0:.0f} s; load {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
