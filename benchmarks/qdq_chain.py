"""What a QuantizeLinear + DequantizeLinear pair costs inside a model, against what the estimate charges.

Chains ``x -> [Q -> DQ -> Tanh] x n`` and ``x -> [Tanh] x n`` on [1, C] tensors, n = 1 and 16, measured end to
end with the robust protocol (:func:`profilers.e2e.measure_models`, wall clock, no profiler in the timing): the
slope per step of the first minus that of the second is one Q + DQ pair inside a model. Priced: what one step's
kernels add to an estimate (their in-model prices and per-kernel overhead terms, :func:`step_price`).

    taskset -c 0 python benchmarks/qdq_chain.py [--target x86-avx512-ort] [--sizes 1024,8192,32768]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LENGTHS = (1, 16)


def chain(c: int, n: int, qdq: bool):
    """The chain ``latency calibrate --int8-context`` measures (profilers.chains.build_qdq_chain)."""
    from profilers.chains import build_qdq_chain

    return build_qdq_chain(c, n, qdq)


def step_price(est, model) -> float:
    """What one step of ``model``'s chain adds to an estimate of a real model (us): its kernels' in-model prices
    with their per-kernel overhead terms. Not the difference of two whole-chain estimates: on a chain of tiny
    kernels the estimate's floor (the total never under half the kernel sum) binds, which it does not in a
    model of real size."""
    from latency.overhead import kernel_terms_us

    e = est.estimate(model)
    ov = est.overhead_
    terms = (ov.get("per_short_kernel_us", 0.0), ov.get("per_long_kernel_us", 0.0), ov.get("short_us", 0.0)) \
        if "per_long_kernel_us" in ov else (0.0, 0.0, 0.0)
    total = 0.0
    for k in e.kernels:
        iso = k.isolated_us
        f = est.context_.factor(k.kind, iso, e.private_gate, k.precision, k.key) if est.context_ else 1.0
        total += iso * f + kernel_terms_us([k], *terms)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--sizes", default="1024,8192,32768")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from latency import Estimator
    from profilers.e2e import measure_models

    sizes = [int(s) for s in a.sizes.split(",")]
    models = {f"{'qdq' if q else 'tanh'}{c}x{n}": chain(c, n, q) for c in sizes for n in LENGTHS for q in (False, True)}
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"Q + DQ pair inside a model, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; host {cpu}; affinity "
          f"{sorted(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}")
    meas = measure_models({k: m.SerializeToString() for k, m in models.items()})
    est = Estimator(a.target, profile=a.profile)
    print(f"target {a.target}; profile {est.prepare().profile_path_}\n")
    print(f"{'elements':>9}  {'Tanh step: measured':>20} {'priced':>7}  {'Q+DQ pair: measured':>20} {'priced':>7}")
    for c in sizes:
        slope, steps = {}, {}
        for q in ("tanh", "qdq"):
            m1, m16 = (meas[f"{q}{c}x{n}"]["latency_ms"] * 1000 for n in LENGTHS)
            slope[q] = (m16 - m1) / (LENGTHS[1] - LENGTHS[0])
            steps[q] = step_price(est, models[f"{q}{c}x1"])
        pair = slope["qdq"] - slope["tanh"]
        print(f"{c:9d}  {slope['tanh']:17.2f} us {steps['tanh']:7.2f}  {pair:17.2f} us "
              f"{steps['qdq'] - steps['tanh']:7.2f}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
