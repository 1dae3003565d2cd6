"""The derived GPU targets against published TensorRT latencies at batch 1.

Every published figure below is TensorRT on the named card, with its source and whether it includes
the host<->device copies (``io``: then the estimate adds them over the card's PCIe link,
``GpuCostModel.copy_us``; MLPerf's single-stream latency includes them, the demoBERT and mmdeploy
figures are taken as excluding them); the models are the
zoo's architectures with the same shapes (random weights; BERT: the encoder as NVIDIA's demoBERT
engines run it, without the pooler's 0.6 % of the FLOPs being left out). The T4 figures are split
in two halves: ``fit`` (what ``--fit`` may tune the T4's achievable fractions and launch cost on)
and ``held-out`` (scored only); the A100 figures check a second card with nothing fitted on it.

    python benchmarks/gpu_published.py            # errors of the targets as declared
    python benchmarks/gpu_published.py --fit      # grid-fit the T4 terms on the fit half, score both

Output: one line per figure (published, estimate, error) and the error summary of each half; the
committed copy is ``benchmarks/results/gpu_published.txt``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEMOBERT_T4 = ("NVIDIA/TensorRT demo/BERT/README.md at commit 7d2a70a1 (TensorRT 8.4.3, CUDA 11.6), "
               "'Inference performance: NVIDIA T4 (16GB)', average latency")
DEMOBERT_A100 = ("NVIDIA/TensorRT demo/BERT/README.md at commit 9973b2f4 (TensorRT 10.x OSS release), "
                 "'Inference performance: NVIDIA A100 (40GB)', average latency")
MLPERF_T4 = ("MLPerf Inference v0.7 closed, NVIDIA T4x1_TRT (TensorRT 7.2, CUDA 11.0), resnet50 SingleStream "
             "mlperf_log_summary.txt mean latency (mlcommons/inference_results_v0.7; includes the input copy and the "
             "harness; Inspur 0.873 ms and Lenovo 0.880 ms on the same stack)")

MMDEPLOY_T4 = ("open-mmlab/mmdeploy docs/en/03-benchmark/benchmark.md at commit 0111e1f1 (TensorRT 7.2.3.4, CUDA 11.3), "
               "'Latency benchmark', mmcls, T4, batch 1, static graph, mean of 100 images after 1010 warm-up runs "
               "(timed around the backend wrapper's forward on GPU tensors: no copies added)")


@dataclass(frozen=True)
class Published:
    target: str
    model: str
    seq: int
    precision: str   # our builder precision: demoBERT's and MLPerf's "INT8" engines are int8 with fp16 fallback
    ms: float
    source: str
    half: str        # "fit" | "held-out" | "check" (another card; nothing fitted)
    #: bytes copied host -> device and device -> host inside the published figure (0: it excludes copies)
    io: tuple = (0, 0)


PUBLISHED = (
    Published("t4", "bert_base", 128, "fp16", 1.95, DEMOBERT_T4, "fit"),
    Published("t4", "bert_base", 128, "int8", 1.69, DEMOBERT_T4, "held-out"),
    Published("t4", "bert_base", 384, "fp16", 4.04, DEMOBERT_T4, "held-out"),
    Published("t4", "bert_base", 384, "int8", 2.52, DEMOBERT_T4, "fit"),
    Published("t4", "bert_large", 128, "fp16", 5.53, DEMOBERT_T4, "held-out"),
    Published("t4", "bert_large", 128, "int8", 3.65, DEMOBERT_T4, "fit"),
    Published("t4", "bert_large", 384, "fp16", 12.45, DEMOBERT_T4, "fit"),
    Published("t4", "bert_large", 384, "int8", 7.29, DEMOBERT_T4, "held-out"),
    # MLPerf's single-stream latency includes the input copy (1x3x224x224 int8, NVIDIA's harness) and the
    # top-1 index copied back (4 bytes)
    Published("t4", "resnet50", 224, "int8", 1.000, MLPERF_T4, "held-out", io=(3 * 224 * 224, 4)),
    Published("t4", "resnet50", 224, "fp32", 2.97, MMDEPLOY_T4, "held-out"),
    Published("t4", "resnet50", 224, "fp16", 1.26, MMDEPLOY_T4, "fit"),
    Published("t4", "resnet50", 224, "int8", 1.21, MMDEPLOY_T4, "held-out"),
    Published("t4", "shufflenet_v2_x1_0", 224, "fp32", 1.37, MMDEPLOY_T4, "fit"),
    Published("t4", "shufflenet_v2_x1_0", 224, "fp16", 1.19, MMDEPLOY_T4, "held-out"),
    Published("t4", "shufflenet_v2_x1_0", 224, "int8", 1.13, MMDEPLOY_T4, "fit"),
    Published("a100", "bert_base", 128, "fp16", 0.62, DEMOBERT_A100, "check"),
    Published("a100", "bert_base", 128, "int8", 0.54, DEMOBERT_A100, "check"),
    Published("a100", "bert_base", 384, "fp16", 1.26, DEMOBERT_A100, "check"),
    Published("a100", "bert_base", 384, "int8", 1.14, DEMOBERT_A100, "check"),
    Published("a100", "bert_large", 128, "fp16", 1.54, DEMOBERT_A100, "check"),
    Published("a100", "bert_large", 128, "int8", 1.23, DEMOBERT_A100, "check"),
    Published("a100", "bert_large", 384, "fp16", 2.96, DEMOBERT_A100, "check"),
    Published("a100", "bert_large", 384, "int8", 2.55, DEMOBERT_A100, "check"),
)

#: the grid --fit searches (the T4's achievable tensor-core and DRAM fractions, its per-kernel launch gap)
GRID = {"tensor": [0.30, 0.40, 0.50, 0.55, 0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90],
        "dram": [0.60, 0.65, 0.70, 0.75, 0.80, 0.85, 0.90],
        "launch_us": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0]}


def build(model: str, seq: int):
    """The zoo architecture at batch 1 and this sequence length / image size, as a loaded graph."""
    from latency.graph import load_graph
    from profilers import zoo

    if model == "bert_large":  # BERT-Large (24 layers, 1024 hidden, 16 heads) is not a named zoo entry
        proto = zoo._bert(zoo._Net("bert_large", seed=0, batch=1), size=seq, layers=24, hidden=1024, heads=16)
    elif model.startswith("bert"):
        proto = zoo.build(model, size=seq)
    else:
        proto = zoo.build(model, size=seq)
    return load_graph(proto)


def kernels_of(target: str, graph, precision: str) -> list:
    """The configs TensorRT's graph of ``graph`` runs on ``target`` in ``precision`` (free ones left out)."""
    from latency import ops
    from latency.fusion import fuse
    from latency.targets import get_target

    rules = get_target(target).fusion_rules().with_precision(precision)
    ks, unc = fuse(graph, rules)
    if unc:
        raise SystemExit(f"{len(unc)} node(s) uncovered, e.g. {unc[0]}")
    return [k.config for k in ks if not ops.get_kind(k.kind).free]


def predict_ms(cfgs, model, io=(0, 0)) -> float:
    """Kernels + the per-inference overhead, + the host<->device copies where the figure includes them."""
    copies = model.copy_us(*io)[0] if any(io) else 0.0
    return (sum(model.price(c)[0] for c in cfgs) + model.lat["per_run_us"] + copies) / 1000.0


def error(pred: float, pub: float) -> float:
    return pred / pub - 1.0


def summary(rows) -> str:
    if not rows:
        return "none"
    errs = [e for _, _, e in rows]
    within = sum(abs(e) <= 0.25 for e in errs)
    return (f"{len(errs)} figures: median error {100 * statistics.median(errs):+.1f}%, median |error| "
            f"{100 * statistics.median(abs(e) for e in errs):.1f}%, max |error| {100 * max(abs(e) for e in errs):.1f}%, "
            f"{within}/{len(errs)} within +-25%")


def main(argv=None) -> int:
    from latency.cost.gpu import GpuCostModel
    from latency.targets import get_target

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="grid-fit the T4's terms on the fit half, then score both halves")
    args = ap.parse_args(argv)
    t0 = time.time()
    graphs, cfgs = {}, {}
    for p in PUBLISHED:
        key = (p.model, p.seq)
        if key not in graphs:
            graphs[key] = build(p.model, p.seq)
        cfgs[p] = kernels_of(p.target, graphs[key], p.precision)
    spec_t4 = dict(get_target("t4").spec)
    if args.fit:
        fit = [p for p in PUBLISHED if p.half == "fit"]
        best = None
        for vals in itertools.product(*GRID.values()):
            over = dict(zip(GRID, vals))
            m = GpuCostModel(dict(spec_t4, model=over))
            loss = sum(abs(math.log(predict_ms(cfgs[p], m, p.io) / p.ms)) for p in fit) / len(fit)
            if best is None or loss < best[0]:
                best = (loss, over)
        print(f"fitted on the {len(fit)} T4 'fit' figures (mean |log error| {best[0]:.3f}): {best[1]}")
        spec_t4 = dict(spec_t4, model=best[1])
    print(f"{'target':6s} {'model':12s} {'seq':>4s} {'prec':5s} {'half':9s} {'published':>9s} {'estimate':>9s} "
          f"{'error':>7s}  source")
    halves: dict = {}
    for p in PUBLISHED:
        spec = spec_t4 if p.target == "t4" else get_target(p.target).spec
        est = predict_ms(cfgs[p], GpuCostModel(spec), p.io)
        e = error(est, p.ms)
        halves.setdefault(p.half, []).append((p, est, e))
        print(f"{p.target:6s} {p.model[:12]:12s} {p.seq:4d} {p.precision:5s} {p.half:9s} {p.ms:9.3f} {est:9.3f} "
              f"{100 * e:+6.1f}%  {p.source.split(' (')[0]}")
    print()
    for half in ("fit", "held-out", "check"):
        print(f"{half:9s} {summary(halves.get(half, []))}")
    t4 = halves.get("fit", []) + halves.get("held-out", [])
    print(f"{'all T4':9s} {summary(t4)}")
    print()
    print("sources:")
    for s in sorted({p.source for p in PUBLISHED}):
        print(f"  {s}")
    print("model terms (t4):", ", ".join(f"{k}={v['value']}" for k, v in GpuCostModel(spec_t4).terms().items()))
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
