"""Does the what-if price each choice as the file the real tool writes? Nothing is timed.

For every zoo model (or ``--models``), each variant of ``benchmarks/whatif.py`` (int8 static QDQ whole and
mixed with ``nodes_to_exclude``, int8 dynamic, fp16 with a block list, 4-bit weight-only, 50% channel
pruning, 50% unstructured sparsity) is made with the real tool (onnxruntime.quantization,
onnxconverter-common, the channel slicer), and the file is estimated whole by the same estimator and
profile. Printed side by side: the what-if price from the fp32 model alone (``plan.evaluate``), the
estimate of the real file, their difference, the arithmetic-only price a search gets from
``evaluate_batch`` (asked first), and the kernels (kind, precision) that one has and the other lacks.
A difference here is the what-if's mirror of the tool or of the runtime's fusion being wrong,
independent of any timing noise.

    python benchmarks/whatif_files.py [--target x86-avx512-ort] [--profile DB] [--models a,b:96] [--tol 2]
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import collections  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

#: zoo defaults larger than needed for a structural check: priced at this input size instead
SIZES = {"resnet50": 96, "resnet50_160": 96, "resnet101": 64, "vgg16_128": 64, "vgg11_160": 64, "densenet121": 64,
         "bert_base": 32, "bert_small": 32, "vit_small": 64, "vit_tiny": 64, "distilgpt2": 16, "distilbert": 32,
         "convnext_tiny_d6": 64, "efficientnet_b0": 96, "mobilenet_v3_large": 96, "googlenet": 96,
         "regnet_x_400mf": 96, "resnet34": 96, "alexnet": 96, "mixer_s16": 64, "unet_small": 64}


def _counts(est, graph):
    from latency.fusion import fuse

    kernels, _ = fuse(graph, est.rules_)
    return collections.Counter(f"{k.kind}/{k.precision}" for k in kernels)


def random_mixes(plan, name, n):
    """``n`` int8 static choices with random weighted nodes kept fp32, and their makers (quantize_static
    with the nodes_to_exclude the what-if returns)."""
    import zlib

    import numpy as np

    from whatif import int8_static

    weighted = [u.name for u in plan.structure.units if u.weighted and "int8" in u.families]
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    out = []
    for k in range(n if len(weighted) > 1 else 0):
        p = rng.uniform(0.1, 0.9)
        fp32 = [w for w in weighted if rng.random() < p]
        ch = {"precision": "int8", "fp32_nodes": fp32}

        def make(tmp_, pre_, ch=ch, k=k):
            return int8_static(pre_, tmp_, plan.evaluate(ch).nodes_to_exclude, f"rand{k}")
        out.append((f"int8, random mix {k} ({len(fp32)} fp32)", ch, make))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="x86-avx512-ort")
    ap.add_argument("--profile", default=None)
    ap.add_argument("--models", default=None, help="comma-separated zoo names (name or name:size); default all")
    ap.add_argument("--tol", type=float, default=2.0, help="flag differences above this many %% (default 2)")
    ap.add_argument("--random", type=int, default=0, metavar="N",
                    help="also N int8 static mixes per model with a random set of weighted nodes kept fp32 "
                         "(each node with a random probability of its mix; seeded by the model's name)")
    a = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    import onnx

    from latency import Estimator
    from latency.errors import LatencyError
    from latency.graph import load_graph
    from profilers import zoo
    from whatif import is_transformer, preprocessed, variants

    if a.models:
        models = [(s.split(":")[0], int(s.split(":")[1]) if ":" in s else None) for s in a.models.split(",")]
    else:
        models = [(n, SIZES.get(n)) for n in zoo.NAMES]
    est = Estimator(a.target, profile=a.profile).prepare()
    now = time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())
    print(f"what-if price vs the estimate of the real tool's file, {now}")
    print(f"target {a.target}; profile {est.profile_path_}; flagged: |difference| > {a.tol:g}%\n")
    n_all = n_flag = n_fail = 0
    arith = []
    worst = []
    t_all = time.perf_counter()
    for name, size in models:
        tag = name + (f"@{size}" if size else "")
        t0 = time.perf_counter()
        try:
            model = zoo.build(name, size=size)
            plan = est.prepare(model)
        except LatencyError as e:
            print(f"{tag}: not prepared: {e}")
            n_fail += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:
            pre = preprocessed(model, tmp)
            print(f"{tag}: baseline {plan.baseline_ms:.3f} ms")
            todo = list(variants(plan, model, name, is_transformer(model)))
            todo += random_mixes(plan, name, a.random)
            for label, choice, make in todo:
                if label == "fp32":
                    continue
                try:
                    # first the arithmetic answer a search gets (evaluate_batch), then evaluate's (which fuses
                    # a situation the tables have not seen)
                    ar = plan.evaluate(choice, refine=False)
                    ev = plan.evaluate(choice)
                except LatencyError as e:
                    print(f"  {label:<26} what-if refused: {e}")
                    continue
                try:
                    made = make(tmp, pre)
                    g = load_graph(onnx.load(made) if isinstance(made, str) else made)
                    real = est.estimate(g)
                except Exception as e:  # noqa: BLE001 - a tool or the estimator failing is a row
                    print(f"  {label:<26} real file not priced: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
                    n_fail += 1
                    continue
                n_all += 1
                diff = 100.0 * (ev.total_ms / real.total_ms - 1.0) if real.total_ms else float("nan")
                ar_diff = 100.0 * (ar.total_ms / real.total_ms - 1.0) if real.total_ms else float("nan")
                arith.append((abs(ar_diff), ar.exact))
                flag = abs(diff) > a.tol
                n_flag += flag
                line = (f"  {label:<26} what-if {ev.total_ms:9.4f} ms  file {real.total_ms:9.4f} ms  "
                        f"diff {diff:+6.2f}%  (arithmetic only {ar_diff:+6.2f}%{', exact' if ar.exact else ''})"
                        + ("  <<" if flag else ""))
                if real.uncovered:
                    line += f"  file uncovered: {len(real.uncovered)}"
                print(line)
                if flag:
                    worst.append((abs(diff), tag, label, diff))
                    try:
                        mine, want = _counts(est, plan.rewritten(choice).graph), _counts(est, g)
                        d = {k: (mine[k], want[k]) for k in sorted(set(mine) | set(want)) if mine[k] != want[k]}
                        print(f"      kernels what-if/file: {d if d else 'same kinds and counts'}")
                    except Exception as e:  # noqa: BLE001
                        print(f"      kernels not compared: {type(e).__name__}: {e}")
        print(f"  ({time.perf_counter() - t0:.0f} s)")
    print(f"\n{n_all} variants priced both ways, {n_flag} differ by more than {a.tol:g}%, {n_fail} not priced; "
          f"{time.perf_counter() - t_all:.0f} s")
    if arith:
        import numpy as np

        e = np.array([x for x, _ in arith])
        print(f"arithmetic only (evaluate_batch, evaluate(refine=False), asked before evaluate): median |diff| "
              f"{np.median(e):.2f}%, p90 {np.percentile(e, 90):.2f}%, max {e.max():.2f}%; within {a.tol:g}% "
              f"{int((e <= a.tol).sum())}/{len(e)}; exact {sum(x for _, x in arith)}/{len(e)}")
    for _, tag, label, diff in sorted(worst, reverse=True)[:25]:
        print(f"  {tag:<24} {label:<26} {diff:+6.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
