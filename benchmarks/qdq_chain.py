"""What a QuantizeLinear + DequantizeLinear pair costs inside a model, against what the estimate charges.

Chains ``x -> [Q -> DQ -> Tanh] x n`` and ``x -> [Tanh] x n`` on [1, C] tensors, n = 1 and 16, measured end to
end with the robust protocol (:func:`profilers.e2e.measure_models`, wall clock, no profiler in the timing): the
slope per step of the first minus that of the second is one Q + DQ pair inside a model. The same chains are
estimated; the difference of the predicted slopes is what the estimate charges the pair.

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
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(128, np.uint8), "z")]
    cur = "x"
    for i in range(n):
        if qdq:
            nodes.append(helper.make_node("QuantizeLinear", [cur, "s", "z"], [f"q{i}"], name=f"Q{i}"))
            nodes.append(helper.make_node("DequantizeLinear", [f"q{i}", "s", "z"], [f"d{i}"], name=f"DQ{i}"))
            cur = f"d{i}"
        nodes.append(helper.make_node("Tanh", [cur], [f"t{i}"], name=f"T{i}"))
        cur = f"t{i}"
    g = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c])],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, c])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


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
        slope = {}
        for q in ("tanh", "qdq"):
            m1, m16 = (meas[f"{q}{c}x{n}"]["latency_ms"] * 1000 for n in LENGTHS)
            e1, e16 = (est.estimate(models[f"{q}{c}x{n}"]).total_ms * 1000 for n in LENGTHS)
            slope[q] = ((m16 - m1) / (LENGTHS[1] - LENGTHS[0]), (e16 - e1) / (LENGTHS[1] - LENGTHS[0]))
        pair = (slope["qdq"][0] - slope["tanh"][0], slope["qdq"][1] - slope["tanh"][1])
        print(f"{c:9d}  {slope['tanh'][0]:17.2f} us {slope['tanh'][1]:7.2f}  {pair[0]:17.2f} us {pair[1]:7.2f}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
