"""How fast the what-if plan answers, and how close its table prices are to full re-estimates.

On ResNet-50 (profilers.zoo), pinned to one core with single-threaded numpy: the time to prepare a
plan (cold: a fresh Estimator, profile evidence loaded on the way; warm: an Estimator that has priced
before), candidates per second through the code matrix and through dict choices (random int8 /
fp32 mixes, after the plan has seen a first batch), a warm plain estimate (of the same loaded graph and
of newly loaded ones), fresh ``latency estimate`` processes (cold CLI, min and median), and the table prices of
random mixed candidates (precision, sparsity, prune) against full re-estimates of the really
rewritten models.

    python benchmarks/whatif_speed.py [--model resnet50] [--target x86-avx512-ort] [--check 20]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cold_cli(a, n: int = 7) -> None:
    """Wall time of fresh ``latency estimate MODEL`` processes (interpreter start, imports, model load,
    profile read, estimate, printing), pinned to core 0."""
    import statistics
    import subprocess
    import tempfile

    import onnx

    from profilers import zoo

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, f"{a.model}.onnx")
        onnx.save(zoo.build(a.model), path)
        cmd = [sys.executable, "-m", "latency.cli", "estimate", path, "--target", a.target]
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        times = []
        for _ in range(n):
            t = time.perf_counter()
            subprocess.run(["taskset", "-c", "0", *cmd], check=True, stdout=subprocess.DEVNULL, env=env)
            times.append(time.perf_counter() - t)
    print(f"cold CLI 'latency estimate {a.model}.onnx --target {a.target}', {n} fresh processes: min "
          f"{min(times):.2f} s, median {statistics.median(times):.2f} s; load average {os.getloadavg()[0]:.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--check", type=int, default=20, help="random candidates checked against full re-estimates")
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    from latency import Estimator
    from latency.graph import load_graph
    from latency.whatif.plan import PRECISIONS, code_of
    from profilers import zoo

    print(f"host: {cpu_model()}, {os.cpu_count()} cores, pinned to core 0, numpy single-threaded; "
          f"load average at start {os.getloadavg()[0]:.2f}")
    graph = load_graph(zoo.build(a.model))
    t = time.perf_counter()
    est = Estimator(a.target)
    plan = est.plan(graph)
    cold = time.perf_counter() - t
    t = time.perf_counter()
    plan = est.plan(graph)
    warm_prepare = time.perf_counter() - t
    st = plan.stats[plan.families[0]]
    print(f"model {a.model}: {len(plan.units)} choosable nodes, {len(plan.structure.owners)} owners; target {a.target}")
    print(f"prepare: {cold:.2f} s cold (fresh Estimator), {warm_prepare:.2f} s warm; {st['probes']} probes "
          f"(whole rewritten models fused and priced), {plan.warm_colors} one-factor groups")
    est.estimate(graph)
    t = time.perf_counter()
    n = 20
    for _ in range(n):
        est.estimate(graph)
    print(f"plain estimate, warm, the same loaded graph (its fused kernels kept on it): "
          f"{1000 * (time.perf_counter() - t) / n:.1f} ms per call")
    fresh = [load_graph(zoo.build(a.model)) for _ in range(3)]
    t = time.perf_counter()
    for g in fresh:
        est.estimate(g)
    print(f"plain estimate, warm Estimator, a newly loaded graph each call (fusion + pricing; loading "
          f"excluded): {1000 * (time.perf_counter() - t) / len(fresh):.1f} ms per call")
    import tempfile

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"{a.model}.onnx")
        onnx.save(zoo.build(a.model), path)
        t = time.perf_counter()
        est.estimate(path)
        first = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n):
            est.estimate(path)
        print(f"plain estimate of a model file: {1000 * first:.1f} ms the first time (read, parse, fuse, price), "
              f"{1000 * (time.perf_counter() - t) / n:.2f} ms per call after (the file unchanged: its estimate kept)")
    cold_cli(a)

    U = len(plan.units)
    rng = np.random.default_rng(1)
    can = np.array(["int8" in u.families for u in plan.structure.units])

    def rand(k):
        return np.where((rng.random((k, U)) < rng.random((k, 1))) & can, code_of(1, 0, 0), 0)

    plan.evaluate_batch(rand(1000))
    for k in (10_000, 100_000):
        m = rand(k)
        t = time.perf_counter()
        plan.evaluate_batch(m)
        dt = time.perf_counter() - t
        print(f"matrix: {k:,} random int8/fp32 candidates in {dt:.3f} s = {k / dt:,.0f} candidates/s")
    units = np.array(plan.units)
    ds = [{"precision": "int8", "fp32_nodes": list(units[rng.random(U) < rng.random()])} for _ in range(5000)]
    t = time.perf_counter()
    plan.evaluate_batch(ds)
    dt = time.perf_counter() - t
    print(f"dicts: {len(ds):,} choices in {dt:.3f} s = {len(ds) / dt:,.0f} choices/s")

    # table prices against full re-estimates of the really rewritten models
    weighted = np.array([u.weighted for u in plan.structure.units])
    prunable = np.array([u.prunable for u in plan.structure.units])
    k = a.check
    p = np.where((rng.random((k, U)) < rng.random((k, 1))) & can, PRECISIONS.index("int8"), 0)
    s = np.where((rng.random((k, U)) < 0.3) & weighted, rng.integers(1, 6, (k, U)), 0)
    r = np.where((rng.random((k, U)) < 0.3) & prunable, rng.integers(1, 3, (k, U)), 0)
    codes = code_of(p, s, r)
    ms = plan.evaluate_batch(codes)
    exact = plan.exactness(codes)
    errs = np.array([100 * (m / est.estimate(plan.rewritten(row).graph).total_ms - 1) for m, row in zip(ms, codes)])
    ab = np.abs(errs)
    print(f"table prices vs full re-estimates, {k} random int8/sparsity/prune mixes: median |err| "
          f"{np.median(ab):.2f}%, p90 {np.percentile(ab, 90):.2f}%, max {ab.max():.2f}%, within 2%: "
          f"{np.mean(ab < 2):.0%}; priced exactly (every owner's situation seen): {exact.mean():.0%}")
    print(f"load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
