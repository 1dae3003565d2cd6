"""Model-level accuracy: measured vs estimated latency on a corpus of real architectures.

Corpus: the project's zoo (real layer configurations built with onnx.helper) plus onnx's shipped
`light_*` model-zoo architectures. Ground truth: end-to-end latency with the robust protocol
(fresh sessions per phase, round-robin rounds, minimum of round medians), 1 thread, ORT_ENABLE_ALL,
pinned to one core; cached (every round) in benchmarks/results/e2e_<target>.json with the host fingerprint.

Side by side, from the same measurements:
* `latency`:   the estimator (fusion rules + table/regressor/prior + fitted overhead);
* `flops`:     latency proportional to FLOPs, the constant fitted on the FIT models;
* `naive`:     sum of isolated, unfused ops from the same profile (no fusion, no overhead);
* `repeat`:    the machine against itself: the ground truth of the run before the last --remeasure
               (kept in e2e_<target>.previous.json) taken as the prediction of this run's. What no
               estimator can beat when its calibration and the ground truth come from different runs.

Models in profilers.zoo.FIT were used for fitting (context, overhead, plan shapes) and are reported
apart. The rest are held-out (38 architectures) and the sets of zoo architectures at other input
sizes and batches in ``VARIANT_SETS``: fresh (19, added after the first context design), final (20,
measured once after an earlier version's design was frozen), sealed (21, defined before
calibration G), frozen (23, defined after calibration N), and blind to blind9 (28-29 each), each
defined and committed before the change or choice it judged and first scored right after the
calibration that followed; the comment above each set says when it was defined.

    python benchmarks/accuracy.py [--target x86-avx2-ort] [--remeasure | --cached] [--core 0] [--sets fit,held] [--fit-overhead] [--no-context]
    python benchmarks/accuracy.py --calibration DIR --ground-truth FILE    # another calibration vs another run

The shipped context and overhead models come from `latency calibrate` (FIT models only).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import replace

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from latency.context import footprint_gate, llc_mb  # noqa: E402
from latency.estimator import Estimator, fit_overhead  # noqa: E402
from latency.overhead import OverheadModel  # noqa: E402
from latency.graph import load_graph  # noqa: E402

from latency.targets import get_target, host_target  # noqa: E402
from profilers import zoo  # noqa: E402
from profilers.measure import pin_to_core  # noqa: E402

OUT = os.path.join(ROOT, "benchmarks", "results")
#: ONNX bytes measured in one round-robin run (its sessions, about 3x that in memory, are alive together)
RUN_BYTES = 3e9


#: a third set, added after the design of the context gate and the streamed-weights rule was
#: settled on the held-out set: zoo architectures at input sizes and batches no fit or decision saw
FRESH = (("resnet34", 192, 1), ("resnet18", 96, 1), ("mobilenet_v2", 160, 1), ("mobilenet_v3_large", 192, 1),
         ("mobilenet_v3_small", 160, 1), ("efficientnet_b0", 160, 1), ("densenet121", 160, 1), ("googlenet", 160, 1),
         ("regnet_x_400mf", 160, 1), ("mnasnet1_0", 192, 1), ("convnext_tiny_d6", 160, 1), ("squeezenet1_1", 160, 1),
         ("shufflenet_v2_x1_0", 160, 1), ("bert_mini", 64, 1), ("bert_small", 128, 2), ("distilbert", 64, 1),
         ("vit_small", 160, 1), ("resnet50", 128, 2), ("unet_small", 96, 1))


#: a fourth set, defined and measured once after every design choice and calibration of this
#: version was frozen (the held-out and fresh sets had informed choices between designs): zoo
#: architectures at input sizes and batches used nowhere else
FINAL = (("resnet18", 112, 1), ("resnet34", 128, 1), ("resnet50", 192, 1), ("mobilenet_v2_050", 192, 1),
         ("mobilenet_v3_small", 192, 1), ("efficientnet_b0", 192, 1), ("densenet121", 128, 1), ("googlenet", 192, 1),
         ("shufflenet_v2_x0_5", 160, 1), ("mnasnet1_0", 160, 1), ("regnet_x_400mf", 128, 1),
         ("convnext_tiny_d6", 128, 1), ("squeezenet1_1", 128, 1), ("vit_tiny", 160, 1), ("bert_tiny", 64, 2),
         ("bert_small", 96, 1), ("distilbert", 32, 1), ("resnet20_cifar", 40, 4), ("alexnet", 160, 1),
         ("unet_small", 160, 1))


#: a fifth set, defined before calibration G of 2026-11-30 (private-cache curve gate, per-activation
#: conv features) and first measured after it, with every other model's ground truth: the final set
#: had been seen while choosing that design, this one had not (it was seen when J replaced G)
SEALED = (("resnet18", 144, 1), ("resnet34", 160, 1), ("resnet50", 96, 1), ("mobilenet_v2", 128, 1),
          ("mobilenet_v2_050", 160, 1), ("mobilenet_v3_large", 160, 1), ("mobilenet_v3_small", 128, 1),
          ("shufflenet_v2_x1_0", 192, 1), ("shufflenet_v2_x0_5", 192, 1), ("efficientnet_b0", 128, 1),
          ("densenet121", 96, 1), ("googlenet", 128, 1), ("regnet_x_400mf", 192, 1), ("mnasnet1_0", 128, 1),
          ("squeezenet1_1", 192, 1), ("convnext_tiny_d6", 96, 1), ("vit_tiny", 128, 1), ("bert_mini", 128, 2),
          ("distilbert", 96, 1), ("alexnet", 192, 1), ("unet_small", 128, 1))


#: a sixth set, defined after calibration N (shipped until P) and the design it came from
#: were frozen, and measured once after that: zoo architectures at input sizes and batches used
#: nowhere else. Nothing was changed after its first scoring
FROZEN = (("resnet18", 192, 1), ("resnet34", 96, 1), ("resnet50", 144, 1), ("mobilenet_v2", 192, 1),
          ("mobilenet_v2_050", 96, 1), ("mobilenet_v3_large", 128, 1), ("mobilenet_v3_small", 96, 1),
          ("shufflenet_v2_x1_0", 128, 1), ("shufflenet_v2_x0_5", 128, 1), ("efficientnet_b0", 96, 1),
          ("densenet121", 192, 1), ("googlenet", 96, 1), ("regnet_x_400mf", 96, 1), ("mnasnet1_0", 96, 1),
          ("squeezenet1_1", 96, 1), ("convnext_tiny_d6", 192, 1), ("vit_tiny", 96, 1), ("bert_mini", 96, 1),
          ("bert_small", 48, 1), ("distilbert", 48, 1), ("alexnet", 224, 2), ("unet_small", 64, 1),
          ("resnet20_cifar", 48, 1))


#: a seventh set, defined before any design change or calibration after N (the frozen set had been
#: seen when it was scored), to be measured once after the next shipped calibration: zoo
#: architectures at input sizes and batches used nowhere else, a spread of 64 to 176 px
BLIND = (("resnet18", 176, 1), ("resnet34", 112, 1), ("resnet50", 112, 1), ("resnet101", 128, 1),
         ("mobilenet_v2", 112, 1), ("mobilenet_v2_075", 160, 1), ("mobilenet_v2_050", 112, 1),
         ("mobilenet_v3_large", 112, 1), ("mobilenet_v3_small", 144, 1), ("efficientnet_b0", 112, 1),
         ("mnasnet1_0", 144, 1), ("shufflenet_v2_x1_0", 112, 1), ("shufflenet_v2_x0_5", 96, 1),
         ("squeezenet1_1", 144, 1), ("densenet121", 144, 1), ("googlenet", 112, 1), ("regnet_x_400mf", 144, 1),
         ("convnext_tiny_d6", 144, 1), ("vit_tiny", 144, 1), ("vit_small", 112, 1), ("bert_mini", 160, 1),
         ("bert_small", 64, 1), ("distilbert", 80, 1), ("bert_tiny", 96, 1), ("alexnet", 128, 1),
         ("unet_small", 112, 1), ("resnet20_cifar", 64, 1), ("mobilenet_v2", 160, 2))


#: an eighth set, defined after the blind set's first scoring (calibration P) and before the change
#: that followed it (more fresh-session phases in the end-to-end protocol), to be measured once after
#: the next shipped calibration: zoo architectures at input sizes and batches used nowhere else
BLIND2 = (("resnet18", 208, 1), ("resnet34", 176, 1), ("resnet50", 176, 1), ("resnet101", 96, 1),
          ("mobilenet_v2", 208, 1), ("mobilenet_v2_075", 128, 1), ("mobilenet_v2_050", 144, 1),
          ("mobilenet_v3_large", 144, 1), ("mobilenet_v3_small", 176, 1), ("efficientnet_b0", 144, 1),
          ("mnasnet1_0", 176, 1), ("shufflenet_v2_x1_0", 176, 1), ("shufflenet_v2_x0_5", 144, 1),
          ("squeezenet1_1", 176, 1), ("densenet121", 112, 1), ("googlenet", 144, 1), ("regnet_x_400mf", 176, 1),
          ("convnext_tiny_d6", 176, 1), ("vit_tiny", 176, 1), ("vit_small", 144, 1), ("bert_mini", 48, 1),
          ("bert_small", 80, 1), ("distilbert", 112, 1), ("bert_tiny", 128, 1), ("alexnet", 144, 1),
          ("unet_small", 144, 1), ("resnet20_cifar", 56, 1), ("resnet18", 112, 2), ("mobilenet_v3_small", 128, 2))


#: a ninth set, defined after the second blind set's first scoring (calibration Q) and before the
#: change that followed it (the six low-resolution calibration models dropped again), to be measured
#: once after the next shipped calibration: zoo architectures at input sizes and batches used nowhere else
BLIND3 = (("resnet18", 240, 1), ("resnet34", 80, 1), ("resnet50", 80, 1), ("resnet101", 160, 1),
          ("mobilenet_v2", 240, 1), ("mobilenet_v2_075", 192, 1), ("mobilenet_v2_050", 176, 1),
          ("mobilenet_v3_large", 176, 1), ("mobilenet_v3_small", 208, 1), ("efficientnet_b0", 176, 1),
          ("mnasnet1_0", 208, 1), ("shufflenet_v2_x1_0", 208, 1), ("shufflenet_v2_x0_5", 176, 1),
          ("squeezenet1_1", 208, 1), ("densenet121", 80, 1), ("googlenet", 176, 1), ("regnet_x_400mf", 208, 1),
          ("convnext_tiny_d6", 208, 1), ("vit_tiny", 208, 1), ("vit_small", 96, 1), ("bert_mini", 80, 1),
          ("bert_small", 112, 1), ("distilbert", 40, 1), ("bert_tiny", 48, 1), ("alexnet", 176, 1),
          ("unet_small", 176, 1), ("resnet20_cifar", 80, 1), ("resnet18", 96, 4), ("mobilenet_v3_large", 96, 2))


#: a tenth set, defined after calibration Q was chosen to ship again (a choice that used blind3's
#: scores) and before it was measured: the shipped state's own unseen set, measured once, in a run
#: of its own after ground truth R: zoo architectures at input sizes and batches used nowhere else
BLIND4 = (("resnet18", 136, 1), ("resnet34", 144, 1), ("resnet50", 120, 1), ("resnet101", 112, 1),
          ("mobilenet_v2", 136, 1), ("mobilenet_v2_075", 112, 1), ("mobilenet_v2_050", 208, 1),
          ("mobilenet_v3_large", 208, 1), ("mobilenet_v3_small", 112, 1), ("efficientnet_b0", 208, 1),
          ("mnasnet1_0", 112, 1), ("shufflenet_v2_x1_0", 144, 1), ("shufflenet_v2_x0_5", 208, 1),
          ("squeezenet1_1", 120, 1), ("densenet121", 208, 1), ("googlenet", 208, 1), ("regnet_x_400mf", 112, 1),
          ("convnext_tiny_d6", 112, 1), ("vit_tiny", 112, 1), ("vit_small", 128, 1), ("bert_mini", 112, 1),
          ("bert_small", 40, 1), ("distilbert", 24, 1), ("bert_tiny", 160, 1), ("alexnet", 208, 1),
          ("unet_small", 208, 1), ("resnet20_cifar", 32, 2), ("mobilenet_v2", 112, 3), ("resnet50", 224, 2))


#: an eleventh set, defined after blind4's scoring and before the change that followed it (an
#: end-to-end term for big, low-intensity convolutions), to be measured once after it
BLIND5 = (("resnet18", 120, 1), ("resnet34", 208, 1), ("resnet50", 136, 1), ("resnet101", 144, 1),
          ("mobilenet_v2", 120, 1), ("mobilenet_v2_075", 144, 1), ("mobilenet_v2_050", 120, 1),
          ("mobilenet_v3_large", 120, 1), ("mobilenet_v3_small", 120, 1), ("efficientnet_b0", 120, 1),
          ("mnasnet1_0", 120, 1), ("shufflenet_v2_x1_0", 120, 1), ("shufflenet_v2_x0_5", 112, 1),
          ("squeezenet1_1", 136, 1), ("densenet121", 176, 1), ("googlenet", 120, 1), ("regnet_x_400mf", 120, 1),
          ("convnext_tiny_d6", 120, 1), ("vit_tiny", 192, 1), ("vit_small", 176, 1), ("bert_mini", 144, 1),
          ("bert_small", 56, 1), ("distilbert", 56, 1), ("bert_tiny", 80, 1), ("alexnet", 240, 1),
          ("unet_small", 80, 1), ("resnet20_cifar", 72, 1), ("resnet18", 128, 3), ("mobilenet_v3_small", 224, 2))


#: a twelfth set, defined at the start of the session after blind5's scoring, before any change or
#: calibration that follows it, to be measured once after the next shipped state
BLIND6 = (("resnet18", 152, 1), ("resnet34", 232, 1), ("resnet50", 152, 1), ("resnet101", 176, 1),
          ("mobilenet_v2", 152, 1), ("mobilenet_v2_075", 176, 1), ("mobilenet_v2_050", 136, 1),
          ("mobilenet_v3_large", 152, 1), ("mobilenet_v3_small", 136, 1), ("efficientnet_b0", 152, 1),
          ("mnasnet1_0", 136, 1), ("shufflenet_v2_x1_0", 152, 1), ("shufflenet_v2_x0_5", 120, 1),
          ("squeezenet1_1", 152, 1), ("densenet121", 120, 1), ("googlenet", 152, 1), ("regnet_x_400mf", 136, 1),
          ("convnext_tiny_d6", 136, 1), ("vit_tiny", 120, 1), ("vit_small", 120, 1), ("bert_mini", 176, 1),
          ("bert_small", 72, 1), ("distilbert", 72, 1), ("bert_tiny", 112, 1), ("alexnet", 152, 1),
          ("unet_small", 192, 1), ("resnet20_cifar", 88, 1), ("resnet34", 112, 2), ("mobilenet_v2_075", 128, 3))


#: a thirteenth set, defined after blind6's first scoring and before the change that followed it
#: (extra fresh-session phases for models whose fastest phase no second phase confirms), to be
#: measured once after it
BLIND7 = (("resnet18", 168, 1), ("resnet34", 184, 1), ("resnet50", 168, 1), ("resnet101", 104, 1),
          ("mobilenet_v2", 168, 1), ("mobilenet_v2_075", 136, 1), ("mobilenet_v2_050", 152, 1),
          ("mobilenet_v3_large", 136, 1), ("mobilenet_v3_small", 152, 1), ("efficientnet_b0", 136, 1),
          ("mnasnet1_0", 152, 1), ("shufflenet_v2_x1_0", 136, 1), ("shufflenet_v2_x0_5", 136, 1),
          ("squeezenet1_1", 168, 1), ("densenet121", 136, 1), ("googlenet", 136, 1), ("regnet_x_400mf", 152, 1),
          ("convnext_tiny_d6", 152, 1), ("vit_tiny", 136, 1), ("vit_small", 104, 1), ("bert_mini", 192, 1),
          ("bert_small", 88, 1), ("distilbert", 88, 1), ("bert_tiny", 144, 1), ("alexnet", 168, 1),
          ("unet_small", 224, 1), ("resnet20_cifar", 96, 1), ("resnet50", 104, 2), ("mobilenet_v3_large", 112, 3))


#: a fourteenth set, defined after blind7's first scoring and the calibration matrix (which showed
#: calibration T ahead of U on ground truth U) and before T was shipped again, to be measured once
#: right after that choice
BLIND8 = (("resnet18", 184, 1), ("resnet34", 120, 1), ("resnet50", 184, 1), ("resnet101", 120, 1),
          ("mobilenet_v2", 184, 1), ("mobilenet_v2_075", 152, 1), ("mobilenet_v2_050", 168, 1),
          ("mobilenet_v3_large", 168, 1), ("mobilenet_v3_small", 168, 1), ("efficientnet_b0", 168, 1),
          ("mnasnet1_0", 168, 1), ("shufflenet_v2_x1_0", 184, 1), ("shufflenet_v2_x0_5", 152, 1),
          ("squeezenet1_1", 184, 1), ("densenet121", 152, 1), ("googlenet", 168, 1), ("regnet_x_400mf", 168, 1),
          ("convnext_tiny_d6", 168, 1), ("vit_tiny", 152, 1), ("vit_small", 136, 1), ("bert_mini", 208, 1),
          ("bert_small", 104, 1), ("distilbert", 104, 1), ("bert_tiny", 176, 1), ("alexnet", 184, 1),
          ("unet_small", 240, 1), ("resnet20_cifar", 104, 1), ("resnet18", 144, 2), ("mobilenet_v2_050", 128, 4))


#: a fifteenth set, defined after blind8's first scoring with nothing changed since, to be measured
#: once against the same shipped calibration (T) and reported together with blind8
BLIND9 = (("resnet18", 200, 1), ("resnet34", 136, 1), ("resnet50", 200, 1), ("resnet101", 136, 1),
          ("mobilenet_v2", 200, 1), ("mobilenet_v2_075", 168, 1), ("mobilenet_v2_050", 184, 1),
          ("mobilenet_v3_large", 184, 1), ("mobilenet_v3_small", 184, 1), ("efficientnet_b0", 184, 1),
          ("mnasnet1_0", 184, 1), ("shufflenet_v2_x1_0", 200, 1), ("shufflenet_v2_x0_5", 168, 1),
          ("squeezenet1_1", 200, 1), ("densenet121", 168, 1), ("googlenet", 184, 1), ("regnet_x_400mf", 184, 1),
          ("convnext_tiny_d6", 184, 1), ("vit_tiny", 168, 1), ("vit_small", 152, 1), ("bert_mini", 224, 1),
          ("bert_small", 120, 1), ("distilbert", 120, 1), ("bert_tiny", 192, 1), ("alexnet", 200, 1),
          ("unet_small", 256, 1), ("resnet20_cifar", 112, 1), ("resnet34", 96, 2), ("mobilenet_v3_small", 144, 3))


#: every set of zoo variants by the prefix of its models' names, in the order they were defined
VARIANT_SETS = {"fresh": FRESH, "final": FINAL, "sealed": SEALED, "frozen": FROZEN, "blind": BLIND, "blind2": BLIND2,
                "blind3": BLIND3, "blind4": BLIND4, "blind5": BLIND5, "blind6": BLIND6,
                "blind7": BLIND7, "blind8": BLIND8, "blind9": BLIND9}


def fresh_name(name, size, batch, prefix="fresh") -> str:
    return f"{prefix}:{name}@{size}" + (f"x{batch}" if batch != 1 else "")


def set_of(name: str) -> str:
    """fit, the variant set named by the model's prefix (see VARIANT_SETS), or held (every other model)."""
    if name in zoo.FIT:
        return "fit"
    prefix = name.split(":", 1)[0] if ":" in name else ""
    return prefix if prefix in VARIANT_SETS else "held"


class Corpus(Mapping):
    """Name -> ModelProto of every corpus model, built when asked for and not kept: together the
    models hold about 12 GB of weights, more than this machine's memory beside their sessions."""

    def __init__(self):
        self._make = {n: (lambda n=n: zoo.build(n)) for n in zoo.NAMES}
        light = zoo.light_models()  # converted once here to learn which convert; rebuilt when asked for
        self._make.update({n: (lambda n=n: zoo.light_models(only=n)[n]) for n in light})
        del light
        for prefix, variants in VARIANT_SETS.items():
            self._make.update({fresh_name(n, s, b, prefix): (lambda n=n, s=s, b=b: zoo.build(n, batch=b, size=s))
                               for n, s, b in variants})

    def __getitem__(self, name):
        return self._make[name]()

    def __iter__(self):
        return iter(self._make)

    def __len__(self):
        return len(self._make)


def corpus() -> Corpus:
    return Corpus()


def measure(models, path, remeasure: bool, target, cached_only: bool = False):
    """Ground truth for every model; cached models are kept, missing ones measured (every round kept)
    unless ``cached_only``."""
    from profilers.e2e import PROTOCOL as E2E_PROTOCOL, measure_models

    d = {"results": {}}
    if os.path.exists(path) and not remeasure:
        with open(path) as f:
            d = json.load(f)
    elif os.path.exists(path) and host_target().name == target.name:
        os.replace(path, previous_path(path))  # kept: the repeatability baseline compares the two runs
    todo = [n for n in models if n not in d["results"]]
    if not todo or cached_only:
        return d["results"]
    if host_target().name != target.name:  # ground truth of one device must not come from another
        print(f"not measured ({len(todo)} models): this host is not a {target.name} host; its ground truth "
              f"comes from {path}", file=sys.stderr)
        return d["results"]
    t0 = time.time()
    size = {n: models[n].ByteSize() for n in todo}
    # every session of a run is alive at once: beyond a few GB of models the machine runs out of
    # memory, so the models are dealt, largest first, into interleaved runs of similar size
    k = max(1, int(np.ceil(sum(size.values()) / RUN_BYTES)))
    order = sorted(todo, key=lambda n: -size[n])
    for i in range(k):
        part = {n: models[n].SerializeToString() for n in order[i::k]}
        if k > 1:
            print(f"  run {i + 1}/{k}: {len(part)} models", file=sys.stderr)
        d["results"].update(measure_models(part, progress=lambda s: print("  " + s, file=sys.stderr)))
    d.update({"host": target.fingerprint(), "protocol": E2E_PROTOCOL})
    d.setdefault("runs", []).append({"models": sorted(todo), "seconds": time.time() - t0, "interleaved_runs": k,
                                     "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(d, f, indent=1)
    return d["results"]


def previous_path(path: str) -> str:
    return path[:-len(".json")] + ".previous.json"


def load_previous(path: str, host: dict) -> dict:
    """The ground truth of the run before the last --remeasure on this host ({} if none)."""
    try:
        with open(previous_path(path)) as f:
            d = json.load(f)
    except (OSError, ValueError):
        return {}
    if d.get("host", {}).get("cpu_model") != host.get("cpu_model"):
        return {}
    return {n: r["latency_ms"] for n, r in d["results"].items() if r.get("latency_ms")}


def no_fusion(rules):
    """The same target with every fusion switched off: each ONNX node is its own isolated op."""
    from dataclasses import fields

    off = {}
    for f in fields(rules):
        v = getattr(rules, f.name)
        if f.name in ("qdq", "dynamic_quant", "name", "passes", "nchwc_block", "nchwc_align"):
            continue
        if isinstance(v, bool):
            off[f.name] = False
        elif isinstance(v, tuple):
            off[f.name] = ()
    return replace(rules, name="no-fusion", **off)


def kendall_tau(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    n = len(a)
    s = 0
    for i in range(n):
        s += np.sum(np.sign(a[i] - a[i + 1:]) * np.sign(b[i] - b[i + 1:]))
    return float(s / (n * (n - 1) / 2))


#: the sets the summary reports, in order: (label, set_of name)
SETS = (("held-out", "held"), *((p, p) for p in VARIANT_SETS), ("fit", "fit"))


def summary_line(label: str, name: str, m: dict) -> str:
    """One summary row of :func:`metrics` (the format the result files and their readers share)."""
    return (f"{label:9s} {name:8s} n={m['n']:3d}  within ±5% {m['within5']:5.1f}%  ±10% {m['within10']:5.1f}%  "
            f"±20% {m['within20']:5.1f}%  MAPE {m['mape']:6.2f}%  median signed {m['median_signed']:+6.2f}%  "
            f"Kendall tau {m['tau']:.3f}")


def metrics(pred, meas) -> dict:
    pred, meas = np.asarray(pred), np.asarray(meas)
    err = pred / meas - 1.0
    ae = np.abs(err)
    return {"n": len(err), "within5": 100 * float((ae <= 0.05).mean()), "within10": 100 * float((ae <= 0.10).mean()),
            "within20": 100 * float((ae <= 0.20).mean()), "mape": 100 * float(ae.mean()),
            "median_signed": 100 * float(np.median(err)), "tau": kendall_tau(pred, meas) if len(err) > 1 else 1.0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=None, help="default: this host's target")
    ap.add_argument("--profile", default=None)
    gt = ap.add_mutually_exclusive_group()
    gt.add_argument("--remeasure", action="store_true")
    gt.add_argument("--cached", action="store_true", help="score only the models whose ground truth is cached")
    gt.add_argument("--ground-truth", default=None, metavar="FILE",
                    help="score against this ground-truth file (an e2e_<target>.json kept from another run); measures nothing")
    ap.add_argument("--calibration", default=None, metavar="DIR",
                    help="use the <profile>.context.json and <profile>.overhead.json kept in DIR instead of the shipped ones")
    ap.add_argument("--core", type=int, default=0)
    ap.add_argument("--sets", default=None, metavar="A,B",
                    help="only these sets of the corpus (e.g. fit,held: a new device's first check; default: all)")
    ap.add_argument("--fit-overhead", action="store_true",
                    help="ablation: refit the overhead on this run's FIT models (in memory, not saved)")
    ap.add_argument("--no-context", action="store_true",
                    help="ablation: price kernels as timed alone (no in-model context), overhead refitted in memory")
    a = ap.parse_args()
    pin_to_core(a.core)
    target = get_target(a.target) if a.target else host_target()
    models = corpus()
    if a.sets:
        want = [x.strip() for x in a.sets.split(",") if x.strip()]
        unknown = [x for x in want if x not in {s for _, s in SETS}]
        if unknown or not want:
            sys.exit(f"error: --sets {a.sets!r}: valid sets are {', '.join(s for _, s in SETS)}")
        models = {n: m for n, m in models.items() if set_of(n) in want}
    if a.calibration and (a.no_context or a.fit_overhead):
        sys.exit("error: --calibration picks a kept context and overhead; --no-context and --fit-overhead replace them")
    if a.ground_truth and not os.path.exists(a.ground_truth):
        sys.exit(f"error: no ground-truth file {a.ground_truth}")
    # ground truth is per device: a profile other than the target's shipped one (another device of the
    # same target family) keeps its own file, named after the profile
    stem = os.path.splitext(os.path.basename(a.profile))[0] if a.profile else target.name
    gt_path = a.ground_truth or os.path.join(OUT, f"e2e_{stem}.json")
    meas = measure(models, gt_path, a.remeasure, target, cached_only=a.cached or bool(a.ground_truth))
    prev = {} if a.ground_truth else load_previous(gt_path, target.fingerprint())
    kept = {}
    if a.calibration:
        stem = os.path.splitext(os.path.basename(a.profile or str(target.profile_path())))[0]
        kept = {k: os.path.join(a.calibration, f"{stem}.{k}.json") for k in ("context", "overhead")}
        missing = [p for p in kept.values() if not os.path.exists(p)]
        if missing:
            sys.exit(f"error: no calibration file {missing[0]}")
    ctx = False if a.no_context else kept.get("context")
    refit = a.fit_overhead or a.no_context
    est = Estimator(target, profile=a.profile, overhead=False if refit else kept.get("overhead"), context=ctx).prepare()
    if refit:  # the streamed-weights rule of `latency calibrate`, bounds from this host's cache
        g = footprint_gate(llc_mb())
        est = est.using(overhead=OverheadModel({**OverheadModel.none().terms, "weights": {
            "cap_mb": g["llc_mb"], "gated": True, "gate_footprint_mb": g["footprint_mb"]}}))
    naive = Estimator(target, profile=a.profile, overhead=False, context=False).prepare()
    naive.rules_ = no_fusion(est.rules_)
    rows = []
    for name, m in models.items():
        r = meas.get(name, {})
        if not r or r.get("error"):
            print(f"skip {name}: {r.get('error') if r else 'not measured'}", file=sys.stderr)
            continue
        g = load_graph(m)
        e = est.estimate(g)
        nv = naive.estimate(g)
        rows.append({"model": name, "fit": name in zoo.FIT, "set": set_of(name), "measured_ms": r["latency_ms"],
                     "kernel_sum_ms": e.kernel_sum_us / 1000, "n_kernels": len(e.kernels), "est": e,
                     "naive_ms": nv.total_ms, "flops": sum(k_flops(k) for k in e.kernels),
                     "uncovered": len(e.uncovered)})
    fit_rows = [r for r in rows if r["fit"]]
    if a.fit_overhead or a.no_context:
        # ablation: refit the overhead on this run's FIT rows, in memory (`latency calibrate` fits the shipped one)
        ov = fit_overhead([r["est"] for r in fit_rows], [r["measured_ms"] * 1000 for r in fit_rows],
                          est.overhead_.get("weights"))
        print(f"overhead refitted on {len(fit_rows)} FIT models: {ov['per_run_us']:.1f} us/run + "
              f"{ov['per_kernel_us']:.2f} us/kernel + {ov['per_weight_mb_us']:.2f} us/weight-MB "
              f"(fit residual median {100 * ov['residual_rel_median']:.1f}%)")
        est = est.using(overhead=OverheadModel(ov))
        for r in rows:
            r["est"] = est.estimate(load_graph(models[r["model"]]))
    print(f"context: {est.context_source_}\noverhead: {est.overhead_['source']}")
    # FLOPs baseline: one constant (ms per GFLOP) fitted on FIT models, median of ratios
    k_flop = float(np.median([r["measured_ms"] / r["flops"] for r in fit_rows]))
    print(f"\n{'model':30s} {'set':6s} {'kern':>5s} {'measured':>9s} {'latency':>9s} {'err':>7s} {'flops':>9s} "
          f"{'err':>7s} {'naive':>9s} {'err':>7s} unc")
    order = {set_name: i for i, (_, set_name) in enumerate(SETS)}
    for r in sorted(rows, key=lambda r: (order[r["set"]], r["measured_ms"])):
        pe, pf = r["est"].total_ms, k_flop * r["flops"]
        r.update(pred=pe, flops_ms=pf)
        print(f"{r['model']:30s} {r['set']:6s} {r['n_kernels']:5d} {r['measured_ms']:9.3f} "
              f"{pe:9.3f} {100 * (pe / r['measured_ms'] - 1):+6.1f}% {pf:9.3f} {100 * (pf / r['measured_ms'] - 1):+6.1f}% "
              f"{r['naive_ms']:9.3f} {100 * (r['naive_ms'] / r['measured_ms'] - 1):+6.1f}% {r['uncovered']}")
    print()
    for label, set_name in SETS:
        sel = [r for r in rows if r["set"] == set_name]
        if not sel:
            continue
        ms = [r["measured_ms"] for r in sel]
        for r in sel:
            r["repeat_ms"] = prev.get(r["model"])
        for name, key in (("latency", "pred"), ("flops", "flops_ms"), ("naive", "naive_ms"), ("repeat", "repeat_ms")):
            if key == "repeat_ms":  # the machine against itself: the previous ground-truth run as the prediction
                sel = [r for r in sel if r["repeat_ms"]]
                ms = [r["measured_ms"] for r in sel]
                if not sel:
                    continue
            print(summary_line(label, name, metrics([r[key] for r in sel], ms)))
    src: dict = {}
    for r in rows:
        for k in r["est"].kernels:
            src[k.source] = src.get(k.source, 0.0) + k.latency_us
    tot = sum(src.values())
    print("\nshare of estimated kernel time by source: " + ", ".join(f"{k} {100 * v / tot:.1f}%" for k, v in
                                                                     sorted(src.items(), key=lambda x: -x[1])))
    print(ground_truth_quality([meas[r["model"]] for r in rows]))


def ground_truth_quality(results) -> str:
    """One line on how settled the ground truth is: the models whose two fastest rounds agree within
    5% (and how many had a second round within the protocol's confirmation), and the phases run."""
    sp = [r["spread"] for r in results if r.get("spread") is not None]
    if not sp:
        return "ground truth: no model with two rounds"
    line = (f"ground truth: {len(sp)} models, second-fastest round within 5% of the fastest for "
            f"{100 * np.mean(np.array(sp) <= 0.05):.1f}%")
    ph = [r["phases"] for r in results if r.get("phases")]
    if ph:
        conf = sum(bool(r.get("confirmed")) for r in results if r.get("phases"))
        line += (f"; confirmed (protocol) {conf}/{len(ph)}; phases per model median {np.median(ph):g}, "
                 f"max {max(ph)}")
    return line


def k_flops(k) -> float:
    from latency.ops import Config

    return Config.from_key(k.key).flops()


if __name__ == "__main__":
    main()
