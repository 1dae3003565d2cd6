"""What the fp16 and 4-bit weight-only what-if alternatives cost and whether they match the tools' files.

Both are priced by converting the model with the tool itself (onnxconverter-common's
convert_float_to_float16 with a block list; onnxruntime's MatMulNBitsQuantizer) and estimating the
written model whole (latency.whatif.tools). This prints, per model: the seconds per distinct candidate,
the sensitivity table's time, and the what-if price next to the plain estimate of the file the tool
writes (they must agree to ~1e-9: the same estimator on the same graph). Pinned to one core.

    python benchmarks/whatif_tools.py [--target x86-avx512-ort] [--profile DB] [--models resnet50,bert_mini]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--profile", default=None, help="profile database (default: the target's shipped one)")
    ap.add_argument("--models", default="resnet50,bert_mini")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)

    from onnxconverter_common import float16
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from latency import Estimator
    from latency.errors import LatencyError
    from latency.graph import load_graph
    from profilers import zoo

    est = Estimator(a.target, profile=a.profile).prepare()
    print(f"target {a.target}, profile {est.profile_path_}; load average {os.getloadavg()[0]:.2f}")
    for name in a.models.split(","):
        model = zoo.build(name)
        t = time.perf_counter()
        plan = est.prepare(model)
        print(f"\n{name}: plan prepared in {time.perf_counter() - t:.2f} s; plain estimate {plan.baseline_ms:.3f} ms")
        for prec in ("fp16", "int4-weight"):
            cands = plan.tool_path.candidates(prec)
            if prec == "fp16":
                weighted = [u for u in plan.units if plan.op_of[u] in ("Conv", "Gemm", "MatMul")]
                block = [weighted[0], weighted[-1]] if weighted else cands[:1]
            else:
                block = cands[:1]
            for label, choice in (("whole model", {"precision": prec}),
                                  (f"{block} kept fp32", {"precision": prec, "fp32_nodes": block})):
                t = time.perf_counter()
                try:
                    r = plan.evaluate(choice)
                except LatencyError as e:
                    print(f"  {prec:12s} {label}: refused: {e}")
                    break
                dt = time.perf_counter() - t
                m = zoo.build(name)
                if prec == "fp16":
                    written = float16.convert_float_to_float16(m, keep_io_types=True,
                                                               node_block_list=choice.get("fp32_nodes"))
                else:
                    q = MatMulNBitsQuantizer(m, nodes_to_exclude=choice.get("fp32_nodes", []))
                    q.process()
                    written = q.model.model
                ref = est.estimate(load_graph(written)).total_ms
                print(f"  {prec:12s} {label}: what-if {r.total_ms:.4f} ms ({dt:.2f} s), estimate of the tool's file "
                      f"{ref:.4f} ms, |diff| {abs(ref - r.total_ms):.1e} ms; {len(r.uncovered)} uncovered")
        t = time.perf_counter()
        df = plan.sensitivity()
        print(f"  sensitivity ({len(df)} nodes x {len(df.columns) - 2} alternatives): {time.perf_counter() - t:.1f} s; "
              f"sparsity gain here: {df.attrs['sparsity_gain']}")
    print(f"\nload average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
