"""What one Loop iteration costs onnxruntime beyond its body's kernels: a Loop whose body only passes its
state through (Identity), timed at 1, 10, 100 and 1000 iterations (1 thread, min over 8 rounds of the
median of 20 runs); the slope is the per-iteration overhead.

    taskset -c 0 python benchmarks/loop_overhead.py      # writes benchmarks/results/loop_overhead.json
"""

import json
import os
import platform
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto as T, helper

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "loop_overhead.json")
TRIPS = (1, 10, 100, 1000)


def loop_model(n: int):
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["s_in"], ["s_out"])],
        "body", [helper.make_tensor_value_info("i", T.INT64, []), helper.make_tensor_value_info("cond_in", T.BOOL, []),
                 helper.make_tensor_value_info("s_in", T.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("cond_out", T.BOOL, []), helper.make_tensor_value_info("s_out", T.FLOAT, [1, 16])])
    g = helper.make_graph([helper.make_node("Loop", ["M", "c", "x"], ["y"], body=body, name="loop")], "m",
                          [helper.make_tensor_value_info("x", T.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", T.FLOAT, [1, 16])],
                          [helper.make_tensor("M", T.INT64, [], [n]), helper.make_tensor("c", T.BOOL, [], [True])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def main():
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    x = np.zeros((1, 16), np.float32)
    run_us = {}
    for n in TRIPS:
        s = ort.InferenceSession(loop_model(n).SerializeToString(), so, providers=["CPUExecutionProvider"])
        for _ in range(5):
            s.run(None, {"x": x})
        meds = []
        for _ in range(8):
            ts = []
            for _ in range(20):
                t = time.perf_counter_ns()
                s.run(None, {"x": x})
                ts.append((time.perf_counter_ns() - t) / 1e3)
            meds.append(statistics.median(ts))
        run_us[n] = min(meds)
    slope = float(np.polyfit(list(run_us), list(run_us.values()), 1)[0])
    res = {"per_iteration_us": slope, "run_us_by_trips": run_us, "onnxruntime": ort.__version__,
           "cpu": platform.processor() or platform.machine(), "threads": 1,
           "what": "measured: Loop with an Identity body, sess.run wall time, min over 8 rounds of 20-run medians"}
    for n, v in run_us.items():
        print(f"trips {n:5d}: {v:9.2f} us per run")
    print(f"per-iteration overhead: {slope:.3f} us (onnxruntime {ort.__version__}, 1 thread)")
    with open(OUT, "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
