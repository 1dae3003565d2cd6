"""Does the estimator predict what int8 (static QDQ) does to real models on this target?

For a few zoo models: quantize with onnxruntime.quantization (static, QDQ, per-channel weights,
random calibration data), measure fp32 and int8 end to end in the same run with the robust
protocol, and print measured vs estimated latency and the int8/fp32 speed-up both ways.

    python benchmarks/precision_check.py [--models resnet18_128,mobilenet_v2_050,bert_tiny]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def quantize(model, path_in, path_out):
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from profilers.e2e import make_inputs

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([make_inputs(sess, model, seed=s) for s in range(4)])

        def get_next(self):
            return next(self.items, None)

    import onnx

    onnx.save(model, path_in)
    quantize_static(path_in, path_out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return onnx.load(path_out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="resnet18_128,mobilenet_v2_050,bert_tiny,bert_mini")
    ap.add_argument("--target", default=None, help="default: this host's target")
    a = ap.parse_args()
    from latency.estimator import Estimator
    from latency.targets import host_target
    from latency.graph import load_graph
    from profilers import zoo
    from profilers.e2e import measure_models
    from profilers.measure import pin_to_core

    pin_to_core(0)
    est = Estimator(a.target or host_target())
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in a.models.split(","):
            m = zoo.build(n)
            models[n] = m
            models[n + ":int8"] = quantize(m, os.path.join(tmp, n + ".onnx"), os.path.join(tmp, n + "_q.onnx"))
    meas = measure_models({k: v.SerializeToString() for k, v in models.items()})
    print(f"{'model':24s} {'measured ms':>11s} {'estimate ms':>11s} {'err':>7s}  sources")
    pred = {}
    for k, m in models.items():
        e = est.estimate(load_graph(m))
        pred[k] = e.total_ms
        r = meas[k]
        err = 100 * (e.total_ms / r["latency_ms"] - 1) if r["latency_ms"] else float("nan")
        print(f"{k:24s} {r['latency_ms'] or float('nan'):11.3f} {e.total_ms:11.3f} {err:+6.1f}%  {e.sources}"
              + (f"  uncovered {len(e.uncovered)}" if e.uncovered else ""))
    print("\nint8 speed-up (fp32 / int8):")
    for n in a.models.split(","):
        ms = meas[n]["latency_ms"] / meas[n + ":int8"]["latency_ms"]
        ps = pred[n] / pred[n + ":int8"]
        print(f"  {n:22s} measured {ms:5.2f}x  estimated {ps:5.2f}x  -> {'same' if (ms > 1) == (ps > 1) else 'OPPOSITE'}"
              " verdict on whether int8 pays off")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
