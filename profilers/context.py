"""Kernel pairs for the in-model context model: each kernel timed alone and inside real models.

The isolated time is what the estimator prices from the profile (table, else regressor); the
in-model time is onnxruntime's per-node profile of the whole model, the fast-state minimum over
``repeats`` fresh sessions of the median over ``runs`` runs (the protocol of the profiler, in
small). Profile kernels are matched to the estimator's kernels by name where the runtime kept a
name (the node's own name, or its output tensor + ``_nchwc``), the rest in execution order within
the same op kind (the runtime's op types read through the op registry, its fused and int8 ones
included); a kind whose kernel counts disagree in a model is left out of that model's pairs.
"""

from __future__ import annotations

from collections import defaultdict

from latency.ops import get_kind, kind_of_op

from . import e2e


def in_model_times(models: dict, repeats: int = 5, runs: int = 20) -> dict:
    """Per model (name -> ONNX bytes), per kernel in execution order: name, op_name, in_model_us.

    Round-robin over the models ``repeats`` times, a fresh profiled session each time (so each
    repeat of a model lands in a different stretch of the machine's fast/slow states); a kernel's
    time is the minimum over repeats of its median over ``runs`` runs (a repeat whose kernel list
    differs from the first one's is not used). One unrecorded warm-up profile first: a process's
    first sessions run slow.
    """
    best: dict[str, list] = {}
    first = next(iter(models.values()), None)
    if first is not None:
        e2e.kernel_profile(first, runs=3)
    for _ in range(repeats):
        for name, b in models.items():
            ks = e2e.kernel_profile(b, runs=runs)["kernels"]
            cur = best.get(name)
            if cur is None:
                best[name] = [{"name": k["name"], "op_name": k["op_name"], "in_model_us": float(k["dur_us"])}
                              for k in ks]
            elif [k["name"] for k in ks] == [k["name"] for k in cur]:
                for c, k in zip(cur, ks):
                    c["in_model_us"] = min(c["in_model_us"], float(k["dur_us"]))
    return best


def kernel_pairs(model, estimator, name: str = "", repeats: int = 5, runs: int = 20,
                 prof: list | None = None) -> tuple[list[dict], dict]:
    """Pairs (kind, key, isolated_us, in_model_us, source) for one model; and match statistics.

    ``prof``: the model's in-model kernel times from :func:`in_model_times` (measured here if None).
    """
    import onnx

    m = model if isinstance(model, onnx.ModelProto) else onnx.load_from_string(model)
    est = estimator.estimate(m)
    ours = [k for k in est.kernels if k.source != "free"]
    if prof is None:
        prof = in_model_times({name: m.SerializeToString()}, repeats=repeats, runs=runs)[name]
    outputs = {n.name: list(n.output) for n in m.graph.node}
    by_name: dict[str, int] = {}
    for i, k in enumerate(ours):
        for key in (k.name, *k.nodes):
            by_name.setdefault(key, i)
        for nd in k.nodes:
            for o in outputs.get(nd, ()):
                by_name.setdefault(o + "_nchwc", i)
    matched: dict[int, dict] = {}
    rest_prof: dict[str, list] = defaultdict(list)
    for p in prof:
        # the registry knows the runtime's fused and int8 op types too (QGemm, QLinearAdd, NhwcMaxPool...)
        kind = kind_of_op(p["op_name"])
        if kind is None or get_kind(kind).free:
            continue
        i = by_name.get(p["name"])
        if i is not None and i not in matched and ours[i].kind == kind:
            matched[i] = p
        else:
            rest_prof[kind].append(p)
    rest_ours: dict[str, list] = defaultdict(list)
    for i, k in enumerate(ours):
        if i not in matched:
            rest_ours[k.kind].append(i)
    skipped = 0
    by_order = 0
    for kind, idx in rest_ours.items():
        ps = rest_prof.get(kind, [])
        if len(ps) != len(idx):
            skipped += len(idx)
            continue
        for i, p in zip(idx, ps):
            matched[i] = p
            by_order += 1
    pairs = [{"model": name, "kind": ours[i].kind, "key": ours[i].key, "source": ours[i].source,
              "isolated_us": ours[i].isolated_us, "in_model_us": p["in_model_us"], "runtime_node": p["name"]}
             for i, p in sorted(matched.items())]
    return pairs, {"kernels": len(ours), "by_name": len(matched) - by_order, "by_order": by_order,
                   "skipped": skipped}
