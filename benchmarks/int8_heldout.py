"""int8 estimates of really quantized files of models outside the what-if benchmark and the int8 curve corpus.

Each model is quantized with onnxruntime's own tools (``quantize_static`` QDQ with random calibration feeds after
``quant_pre_process``: :func:`profilers.quantized.qdq_int8`), estimated from the quantized file, and measured end
to end with the robust protocol (:func:`profilers.e2e.measure_models`), in two passes (the machine moves between
passes: FACTS section 9); prints predicted vs measured per pass.

    taskset -c 0 python benchmarks/int8_heldout.py [--target x86-avx512-ort] [--passes 2]
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

#: zoo models at sizes neither benchmarks/whatif.py nor the int8 curve corpus (profilers.calibrate.INT8_CONTEXT_MODELS)
#: uses
MODELS = ("mnasnet1_0:96", "mobilenet_v2_075:96", "bert_mini:128", "resnet18:128", "squeezenet1_1:128",
          "shufflenet_v2_x1_0:96", "densenet121:64", "mobilenet_v3_large:96", "bert_tiny_s256", "vit_tiny_64")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--passes", type=int, default=2)
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import numpy as np

    from latency import Estimator
    from profilers import zoo
    from profilers.e2e import measure_models
    from profilers.quantized import qdq_int8

    est = Estimator(a.target, profile=a.profile).prepare()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"int8 held-out, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; host {cpu}, {os.cpu_count()} vCPUs; "
          f"affinity {sorted(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f}")
    print(f"target {a.target}; profile {est.profile_path_}; files: quant_pre_process + quantize_static (QDQ)\n")
    files, pred = {}, {}
    for spec in a.models.split(","):
        name, _, size = spec.partition(":")
        files[spec] = qdq_int8(zoo.build(name, size=int(size)) if size else zoo.build(name))
        pred[spec] = est.estimate(files[spec]).total_ms
    from profilers.transfer import StateReference

    ref = StateReference.of_profile(est.target, est.profile_path_)  # 24 of its fp32 rows, re-measured around each pass
    states = [ref("before pass 1")["ratio"]]
    errs = {k: [] for k in files}
    for p in range(a.passes):
        meas = measure_models({k: m.SerializeToString() for k, m in files.items()})
        states.append(ref(f"after pass {p + 1}")["ratio"])
        for k in files:
            errs[k].append((meas[k]["latency_ms"], pred[k] / meas[k]["latency_ms"] - 1))
        print(f"pass {p + 1} done {time.strftime('%H:%M:%S', time.gmtime())}; machine state (24 of the profile's rows "
              f"re-measured, now / profile, median) before {states[-2]:.3f}, after {states[-1]:.3f}", flush=True)
    print(f"\n{'model':26s} {'predicted':>10s}  " + "  ".join(f"{'pass ' + str(i + 1):>18s}" for i in range(a.passes)))
    for k in files:
        print(f"{k:26s} {pred[k]:9.3f}  " + "  ".join(f"{m:8.3f} ({100 * e:+6.1f}%)" for m, e in errs[k]))
    for i in range(a.passes):
        e = np.array([errs[k][i][1] for k in files])
        s8 = float(np.sqrt(states[i] * states[i + 1])) if states[i] and states[i + 1] else float("nan")
        eb = (1 + e) * s8 - 1  # against the measured times brought to the profile's state
        print(f"pass {i + 1}: within +-10% {int((np.abs(e) <= 0.1).sum())}/{len(e)}, MAPE {100 * np.abs(e).mean():.1f}%, "
              f"median {100 * np.median(e):+.1f}%; against the times divided by the machine state x{s8:.3f}: within "
              f"+-10% {int((np.abs(eb) <= 0.1).sum())}/{len(eb)}, MAPE {100 * np.abs(eb).mean():.1f}%, "
              f"median {100 * np.median(eb):+.1f}%")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
