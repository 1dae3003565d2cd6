"""Estimator speed: prepare once, estimate many; and the cold CLI.

Prints, for a ResNet-50-sized graph (and BERT-base): the Estimator's one-time preparation, graph
loading (parse + shape inference), the first estimate call, the warm call on a loaded graph
(median of 30; the goal is <= 50 ms), and the cold `latency estimate --json` command (median of 3;
goal <= 2 s).

    python benchmarks/speed.py [--target x86-avx2-ort]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def timed(fn, n=1):
    ts = []
    out = None
    for _ in range(n):
        t0 = time.perf_counter()
        out = fn()
        ts.append(time.perf_counter() - t0)
    return out, statistics.median(ts) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=None, help="default: this host's target")
    a = ap.parse_args()
    import onnx

    from latency.estimator import Estimator
    from latency.targets import host_target

    a.target = a.target or host_target().name
    from latency.graph import load_graph
    from profilers import zoo

    est, t_prep = timed(lambda: Estimator(a.target).prepare())
    print(f"Estimator({a.target}).prepare(): {t_prep:.0f} ms (table rows {len(est.table_)}, "
          f"regressors {len(est.reg_kinds_)})")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("resnet50", "bert_base"):
            path = os.path.join(tmp, f"{name}.onnx")
            onnx.save(zoo.build(name), path)
            g, t_load = timed(lambda: load_graph(path))
            est.memo_.clear()
            e, t_first = timed(lambda: est.estimate(g))
            _, t_warm = timed(lambda: est.estimate(g), 30)
            print(f"{name}: {len(g.ops)} nodes -> {len(e.kernels)} kernels; load_graph {t_load:.0f} ms; "
                  f"first estimate {t_first:.1f} ms; warm estimate (loaded graph) {t_warm:.1f} ms")
            cmd = [sys.executable, "-m", "latency.cli", "estimate", path, "--target", a.target, "--json"]
            env = dict(os.environ, PYTHONPATH=ROOT)
            _, t_cli = timed(lambda: subprocess.run(cmd, env=env, check=True, capture_output=True), 3)
            print(f"{name}: cold CLI `latency estimate --json` {t_cli / 1000:.2f} s (median of 3)")


if __name__ == "__main__":
    main()
