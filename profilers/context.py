"""Kernel pairs for the in-model context model: each kernel timed alone and inside real models.

The isolated time is what the estimator prices from the profile (table, else regressor); the
in-model time is onnxruntime's per-node profile of the whole model, the fast-state minimum over
``repeats`` fresh sessions of the median over ``runs`` runs (the protocol of the profiler, in
small). Profile kernels are matched to the estimator's kernels by name where the runtime kept a
name (the node's own name, or its output tensor + ``_nchwc``), the rest in execution order within
the same op kind; a kind whose kernel counts disagree in a model is left out of that model's pairs.
"""

from __future__ import annotations

from collections import defaultdict

from latency.ops import kind_of_op

from . import e2e


def _profile_kind(op_name: str) -> str | None:
    k = kind_of_op(op_name)
    if k is None and op_name in ("Sum",):
        return "Elementwise"
    return k


def in_model_times(model_bytes: bytes, repeats: int = 3, runs: int = 20) -> list[dict]:
    """Per kernel (execution order): name, op_name, in_model_us (min over repeats of run medians)."""
    best: list[dict] | None = None
    for _ in range(repeats):
        prof = e2e.kernel_profile(model_bytes, runs=runs)
        ks = prof["kernels"]
        if best is None:
            best = [dict(k) for k in ks]
        elif [k["name"] for k in ks] == [k["name"] for k in best]:
            for b, k in zip(best, ks):
                b["dur_us"] = min(b["dur_us"], k["dur_us"])
    return [{"name": k["name"], "op_name": k["op_name"], "in_model_us": float(k["dur_us"])} for k in best or []]


def kernel_pairs(model, estimator, name: str = "", repeats: int = 3, runs: int = 20) -> tuple[list[dict], dict]:
    """Pairs (kind, key, isolated_us, in_model_us, source) for one model; and match statistics."""
    import onnx

    m = model if isinstance(model, onnx.ModelProto) else onnx.load_from_string(model)
    est = estimator.estimate(m)
    ours = [k for k in est.kernels if k.source != "free"]
    prof = in_model_times(m.SerializeToString(), repeats=repeats, runs=runs)
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
        kind = _profile_kind(p["op_name"])
        if kind is None or kind == "Free":
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
              "isolated_us": ours[i].latency_us, "in_model_us": p["in_model_us"], "runtime_node": p["name"]}
             for i, p in sorted(matched.items())]
    return pairs, {"kernels": len(ours), "by_name": len(matched) - by_order, "by_order": by_order,
                   "skipped": skipped}
