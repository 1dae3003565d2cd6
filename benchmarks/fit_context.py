"""Fit the in-model context model of a profile from the FIT models' per-node profiles.

Every kernel of the FIT models (profilers.zoo.FIT, the models fitting may see) is timed inside its
model with onnxruntime's profiler (fresh sessions, min over repeats of the run median) and paired
with what the estimator prices it at alone. Keeps every pair in
benchmarks/results/context_pairs_<target>.json, prints the ratio per kind and size, and writes
<profile>.context.json. Refit the overhead afterwards (benchmarks/accuracy.py --fit-overhead).

    python benchmarks/fit_context.py [--target x86-avx512-ort] [--core 0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from latency.context import ContextModel, fit_context  # noqa: E402
from latency.estimator import Estimator  # noqa: E402
from latency.targets import get_target, host_target  # noqa: E402
from profilers import zoo  # noqa: E402
from profilers.context import kernel_pairs  # noqa: E402
from profilers.measure import pin_to_core  # noqa: E402

OUT = os.path.join(ROOT, "benchmarks", "results")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=None, help="default: this host's target")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    pin_to_core(a.core)
    target = get_target(a.target) if a.target else host_target()
    est = Estimator(target, profile=a.profile, overhead=False, context=False).prepare()
    pairs, stats = [], {}
    t0 = time.time()
    for name in zoo.FIT:
        p, s = kernel_pairs(zoo.build(name), est, name=name, repeats=a.repeats, runs=a.runs)
        pairs += p
        stats[name] = s
        print(f"  {name:22s} kernels {s['kernels']:4d}  matched by name {s['by_name']:4d}, by order {s['by_order']:4d}, "
              f"left out {s['skipped']:3d}", file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, f"context_pairs_{target.name}.json"), "w") as f:
        json.dump({"host": target.fingerprint(), "seconds": time.time() - t0, "repeats": a.repeats, "runs": a.runs,
                   "models": stats, "pairs": pairs}, f, indent=0)
    spec = fit_context(pairs)
    spec.update({"source": f"fitted from {len(pairs)} kernels of {len(zoo.FIT)} FIT models timed inside the model "
                           f"(onnxruntime per-node profile) on {target.fingerprint().get('cpu_model')}",
                 "fitted_at": time.strftime("%Y-%m-%d"), "models": list(zoo.FIT), "host": target.fingerprint()})
    path = est.profile_path_.replace(".db", ".context.json")
    ContextModel(spec).save(path)
    print(f"\ncontext model saved to {path} ({len(pairs)} pairs)\n")
    print(f"{'kind':14s} {'pairs':>5s} {'median in-model/alone':>22s}   curve: isolated us -> factor")
    kinds = sorted({p["kind"] for p in pairs})
    for k in kinds:
        r = np.array([p["in_model_us"] / p["isolated_us"] for p in pairs if p["kind"] == k and p["isolated_us"] > 0])
        c = spec["kinds"].get(k)
        curve = ("  ".join(f"{np.exp(x):.0f}->{np.exp(y):.2f}" for x, y in zip(c["log_us"], c["log_ratio"]))
                 if c else "(pooled curve)")
        print(f"{k:14s} {len(r):5d} {np.median(r):22.3f}   {curve}")
    c = spec["kinds"]["*"]
    print(f"{'* (pooled)':14s} {len(pairs):5d} {'':22s}   " +
          "  ".join(f"{np.exp(x):.0f}->{np.exp(y):.2f}" for x, y in zip(c["log_us"], c["log_ratio"])))


if __name__ == "__main__":
    main()
