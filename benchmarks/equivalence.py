"""Refactor guard: do the estimates of a fixed corpus stay exactly what they were?

Records, for every model of a fixed corpus and both x86 targets, each estimate's ``total_ms`` and,
per kernel, its name, kind, precision, sparsity, config key, nodes, op types, ``latency_us``,
``isolated_us`` and source (plus the uncovered nodes), into a JSON file; and the fused kernels
(name, key, nodes, op types) of the rule sets no shipped profile prices (arm64, the generic GPU,
the accuracy benchmark's no-fusion baseline). ``--compare`` recomputes everything and reports how
many models and kernels were compared and the largest relative difference of any number. Any
difference beyond 1e-9, or any changed name, key, source or fused kernel, exits 1.

Corpus: every ``profilers.zoo.NAMES`` model, a few of them at other input sizes and batches, their
fp16 conversions, static int8 (QDQ and QOperator formats, per-channel weights, random calibration
data) and dynamic int8 (``quantize_dynamic``) variants of a few, and onnx's shipped light models.
Quantized models are written once into ``--cache`` (default /tmp/latency_equiv_models) and read
back from there, so a comparison prices the very same files.

    python benchmarks/equivalence.py --out /tmp/equiv_before.json [--tables DIR]
    python benchmarks/equivalence.py --compare /tmp/equiv_before.json

``--tables DIR`` prices from the profiles in DIR (a copy of ``tables/`` taken before the work
starts, so that a profile someone else rebuilds meanwhile does not show as a difference); the
recorded file remembers it and ``--compare`` uses the same one.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TARGETS = ("x86-avx512-ort", "x86-avx2-ort")
#: zoo models at other input sizes / batches: (name, size, batch)
RESIZED = (("resnet18", 96, 2), ("mobilenet_v2", 160, 1), ("mobilenet_v3_small", 128, 3), ("bert_mini", 64, 2),
           ("vit_tiny", 96, 1), ("convnext_tiny_d6", 128, 1), ("efficientnet_b0", 112, 2), ("unet_small", 64, 1),
           ("densenet121", 96, 1), ("distilbert", 32, 1))
#: models quantized statically (QDQ and QOperator), dynamically, and converted to fp16
STATIC_INT8 = ("resnet18_128", "mobilenet_v2_050", "mobilenet_v3_small", "efficientnet_b0_64", "bert_tiny",
               "vit_tiny_64", "squeezenet1_1", "shufflenet_v2_x0_5", "convnext_tiny_d6", "lenet5", "unet_small_48")
QOPERATOR_INT8 = ("resnet18_128", "mobilenet_v2_050", "bert_tiny", "squeezenet1_1", "mobilenet_v3_small")
DYNAMIC_INT8 = ("bert_tiny", "bert_mini", "distilbert", "vit_tiny_64", "mlp_mnist", "wide_mlp", "resnet18_128",
                "mixer_s16", "lenet5")
FP16 = ("resnet18_128", "mobilenet_v3_small", "bert_tiny", "vit_tiny_64", "efficientnet_b0_64")
#: largest relative difference of a number that still counts as the same
TOLERANCE = 1e-9


def _static(model, path_in, path_out, fmt: str):
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from profilers.e2e import make_inputs

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = [make_inputs(sess, model, seed=s) for s in range(2)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    onnx.save(model, path_in)
    quantize_static(path_in, path_out, Reader(), per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8,
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator)


def _dynamic(model, path_in, path_out):
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx.save(model, path_in)
    quantize_dynamic(path_in, path_out, weight_type=QuantType.QInt8)


def _fp16(model, path_out):
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(model, keep_io_types=False), path_out)


def corpus(cache: str):
    """(name, loader) of every corpus model; derived models are built into ``cache`` once."""
    import onnx

    from profilers import zoo

    out = [(n, lambda n=n: zoo.build(n)) for n in zoo.NAMES]
    out += [(f"{n}@{s}x{b}", lambda n=n, s=s, b=b: zoo.build(n, batch=b, size=s)) for n, s, b in RESIZED]
    os.makedirs(cache, exist_ok=True)

    def cached(name, make):
        path = os.path.join(cache, name.replace(":", "_") + ".onnx")
        if not os.path.exists(path):
            with tempfile.TemporaryDirectory() as tmp:
                out_path = os.path.join(tmp, "out.onnx")
                make(tmp, out_path)
                os.replace(out_path, path)
        return lambda: onnx.load(path)

    for n in STATIC_INT8:
        out.append((f"{n}:int8-qdq", cached(f"{n}:int8-qdq", lambda tmp, p, n=n: _static(
            zoo.build(n), os.path.join(tmp, "in.onnx"), p, "qdq"))))
    for n in QOPERATOR_INT8:
        out.append((f"{n}:int8-qop", cached(f"{n}:int8-qop", lambda tmp, p, n=n: _static(
            zoo.build(n), os.path.join(tmp, "in.onnx"), p, "qop"))))
    for n in DYNAMIC_INT8:
        out.append((f"{n}:int8-dynamic", cached(f"{n}:int8-dynamic", lambda tmp, p, n=n: _dynamic(
            zoo.build(n), os.path.join(tmp, "in.onnx"), p))))
    for n in FP16:
        out.append((f"{n}:fp16", cached(f"{n}:fp16", lambda tmp, p, n=n: _fp16(zoo.build(n), p))))
    for n in sorted(zoo.light_models()):
        out.append((f"light:{n}", lambda n=n: zoo.light_models(only=n)[n]))
    return out


def other_fusions() -> dict:
    """Fusion rule sets no shipped profile prices, guarded through their kernels alone: arm64, the
    generic GPU, TensorRT (t4, fp32 build), and the accuracy benchmark's no-fusion baseline of the AVX2 target."""
    from benchmarks.accuracy import no_fusion
    from latency.fusion import GENERIC_GPU_RULES
    from latency.targets import get_target

    return {"arm64-ort": get_target("arm64-ort").fusion_rules(), "generic-gpu": GENERIC_GPU_RULES,
            "t4": get_target("t4").fusion_rules(),
            "x86-avx2-ort:no-fusion": no_fusion(get_target("x86-avx2-ort").fusion_rules())}


def record(tables: str | None, cache: str) -> tuple[dict, dict]:
    """({target: {model: estimate record}}, {rule set: {model: kernels}}) for the whole corpus."""
    from latency.estimator import Estimator
    from latency.fusion import fuse
    from latency.graph import load_graph

    ests = {}
    for t in TARGETS:
        profile = os.path.join(tables, f"{t}.db") if tables else None
        ests[t] = Estimator(t, profile=profile, check_host=False).prepare()
    out = {t: {} for t in TARGETS}
    rule_sets = other_fusions()
    fused = {r: {} for r in rule_sets}
    for name, load in corpus(cache):
        graph = load_graph(load())
        for r, rules in rule_sets.items():
            kernels, uncovered = fuse(graph, rules)
            fused[r][name] = {"kernels": [[k.name, k.key, list(k.nodes), list(k.op_types)] for k in kernels],
                              "uncovered": sorted([u.node, u.op_type, u.reason] for u in uncovered)}
        for t, est in ests.items():
            e = est.estimate(graph)
            out[t][name] = {
                "total_ms": e.total_ms, "kernel_sum_us": e.kernel_sum_us, "overhead_us": e.overhead_us,
                "kernels": [{"name": k.name, "kind": k.kind, "precision": k.precision, "sparsity": k.sparsity,
                             "key": k.key, "nodes": list(k.nodes), "op_types": list(k.op_types),
                             "latency_us": k.latency_us, "isolated_us": k.isolated_us, "source": k.source}
                            for k in e.kernels],
                "uncovered": sorted([u.node, u.op_type, u.reason] for u in e.uncovered),
            }
    return out, fused


def _rel(a, b) -> float:
    if a is None or b is None:
        return 0.0 if a is b else math.inf
    if a == b:
        return 0.0
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


#: the numbers set after fusion and the isolated price (in-model context, overhead, totals)
_PRICE_FIELDS = ("latency_us", "total_ms", "kernel_sum_us", "overhead_us")


def compare(before: dict, after: dict) -> tuple[int, int, float, list[str]]:
    """(models, kernels compared, max relative difference, differences as text)."""
    models = kernels = 0
    worst = 0.0
    diffs: list[str] = []
    for t in sorted(set(before) | set(after)):
        b_models, a_models = before.get(t, {}), after.get(t, {})
        for name in sorted(set(b_models) | set(a_models)):
            b, a = b_models.get(name), a_models.get(name)
            if b is None or a is None:
                diffs.append(f"{t} {name}: only {'before' if a is None else 'after'}")
                continue
            models += 1
            for f in ("total_ms", "kernel_sum_us", "overhead_us"):
                r = _rel(b[f], a[f])
                worst = max(worst, r)
                if r > TOLERANCE:
                    diffs.append(f"{t} {name}: {f} {b[f]!r} -> {a[f]!r}")
            if b["uncovered"] != a["uncovered"]:
                diffs.append(f"{t} {name}: uncovered {len(b['uncovered'])} -> {len(a['uncovered'])}")
            if len(b["kernels"]) != len(a["kernels"]):
                diffs.append(f"{t} {name}: {len(b['kernels'])} kernels -> {len(a['kernels'])}")
                continue
            for kb, ka in zip(b["kernels"], a["kernels"]):
                kernels += 1
                for f in ("name", "kind", "precision", "sparsity", "key", "nodes", "op_types", "source"):
                    if kb[f] != ka[f]:
                        diffs.append(f"{t} {name} kernel {kb['name']}: {f} {kb[f]!r} -> {ka[f]!r}")
                for f in ("latency_us", "isolated_us"):
                    r = _rel(kb[f], ka[f])
                    worst = max(worst, r)
                    if r > TOLERANCE:
                        diffs.append(f"{t} {name} kernel {kb['name']}: {f} {kb[f]!r} -> {ka[f]!r}")
    return models, kernels, worst, diffs


def compare_fused(before: dict, after: dict) -> tuple[int, list[str]]:
    """(kernels compared, differences as text) of the kernels of the rule sets no profile prices."""
    kernels = 0
    diffs: list[str] = []
    for r in sorted(set(before) | set(after)):
        b_models, a_models = before.get(r, {}), after.get(r, {})
        for name in sorted(set(b_models) | set(a_models)):
            b, a = b_models.get(name), a_models.get(name)
            if b is None or a is None:
                diffs.append(f"{r} {name}: only {'before' if a is None else 'after'}")
                continue
            kernels += min(len(b["kernels"]), len(a["kernels"]))
            if b != a:
                diffs.append(f"{r} {name}: fused kernels differ")
    return kernels, diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--out", metavar="FILE", help="record the estimates into FILE (JSON)")
    mode.add_argument("--compare", metavar="FILE", help="recompute and compare with a recorded FILE")
    ap.add_argument("--tables", default=None, metavar="DIR",
                    help="price from the profiles in DIR (default: each target's shipped profile)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "latency_equiv_models"),
                    help="folder of the quantized and fp16 models, built once")
    a = ap.parse_args()
    t0 = time.perf_counter()
    if a.out:
        res, fused = record(a.tables, a.cache)
        with open(a.out, "w") as f:
            json.dump({"tables": a.tables, "cache": a.cache, "results": res, "fused": fused}, f)
        n_models = len(next(iter(res.values())))
        n_kernels = sum(len(r["kernels"]) for per in res.values() for r in per.values())
        print(f"recorded {n_models} models x {len(res)} targets, {n_kernels} kernels -> {a.out} "
              f"({time.perf_counter() - t0:.0f} s)")
        return
    with open(a.compare) as f:
        before = json.load(f)
    after, fused = record(a.tables or before.get("tables"), before.get("cache") or a.cache)
    models, kernels, worst, diffs = compare(before["results"], after)
    fused_kernels, fused_diffs = compare_fused(before.get("fused", {}), fused)
    diffs += fused_diffs
    for d in diffs[:50]:
        print(d)
    if len(diffs) > 50:
        print(f"... and {len(diffs) - 50} more differences")
    priced = sum(any(f" {f} " in d for f in _PRICE_FIELDS) for d in diffs)
    print(f"models compared: {models} (over {len(after)} targets), kernels compared: {kernels}, "
          f"max relative difference: {worst:.3g}; fused kernels of {', '.join(fused)} compared: {fused_kernels}; "
          f"differences: {len(diffs)} ({len(diffs) - priced} in the kernels fusion makes: names, kinds, keys, nodes, "
          f"sources, isolated prices, uncovered nodes; {priced} in prices only) ({time.perf_counter() - t0:.0f} s)")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
