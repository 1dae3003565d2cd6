"""Held-out accuracy of the per-kind latency regressors on a profile database.

Splits each kind's measured rows by *shape* (config key without precision/sparsity), trains on
one side, reports relative error on the other, then refits on all rows and saves the regressors
(to a temporary directory unless --out is given).

    python benchmarks/regressor_accuracy.py [--db tables/x86-avx2-ort.db] [--target x86-avx2-ort]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from latency.errors import LatencyError  # noqa: E402
from latency.regressor import train_all  # noqa: E402
from latency.store import Store  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=str(ROOT / "tables" / "x86-avx2-ort.db"), help="profile database (read-only)")
    ap.add_argument("--target", default="x86-avx2-ort", help="target name (or target id) in the database")
    ap.add_argument("--holdout", type=float, default=0.2, help="fraction of rows held out (by shape)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", nargs="*", default=None, help="op kinds (default: all)")
    ap.add_argument("--out", default=None, help="save the refitted regressors here (default: a temp dir)")
    ap.add_argument("--n-estimators", type=int, default=None)
    ap.add_argument("--max-depth", type=int, default=None)
    ap.add_argument("--learning-rate", type=float, default=None)
    a = ap.parse_args(argv)
    params = {k: v for k, v in (("n_estimators", a.n_estimators), ("max_depth", a.max_depth),
                                ("learning_rate", a.learning_rate)) if v is not None}
    try:
        with Store(a.db, readonly=True) as st:
            tid = st.find_target(a.target) or (a.target if st.target(a.target) else None)
            if tid is None:
                names = sorted({t["name"] for t in st.targets()})
                print(f"error: target {a.target!r} not in {a.db}; targets there: {', '.join(names) or 'none'}",
                      file=sys.stderr)
                return 2
            t0 = time.perf_counter()
            with tempfile.TemporaryDirectory() as tmp:
                rep = train_all(st, tid, a.out or tmp, holdout=a.holdout, seed=a.seed, kinds=a.kinds, params=params)
            dt = time.perf_counter() - t0
    except LatencyError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import pandas as pd

    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 60)
    trained = rep[rep["status"] == "trained"]
    print(f"{a.db} target {a.target} ({tid}): {int(rep['n_rows'].sum())} measured rows, "
          f"{len(trained)} kinds trained, held-out {a.holdout:.0%} by shape, seed {a.seed}, {dt:.1f} s")
    print(rep.to_string(index=False))
    if len(trained):
        w = trained["n_test"].astype(float)
        print(f"row-weighted held-out MAPE {(trained['mape_pct'] * w).sum() / w.sum():.2f}%  "
              f"within ±10% {(trained['within10_pct'] * w).sum() / w.sum():.1f}%  "
              f"within ±20% {(trained['within20_pct'] * w).sum() / w.sum():.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
