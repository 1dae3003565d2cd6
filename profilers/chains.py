"""Synthetic dispatch chains: the calibration models that pin the per-run and per-kernel overhead.

A chain is one small op repeated ``n`` times, each feeding the next (``x -> op -> op -> ... -> y``).
Measured end to end, a chain of length 1 and one of length 16 differ only by 15 dispatches of the
same kernel, so the chains separate what a model run costs once (session entry/exit, input and
output binding) from what each extra kernel costs beyond its isolated price. Real models cannot do
that: each mixes many kernel sizes, and the smallest real model (a LeNet) alone would decide the
per-run term. Measured on one vCPU of an AVX-512 EPYC with onnxruntime 1.32 (three calibrations,
20 families and sizes each): a run costs 4.9-5.4 us beyond its kernels (median intercept; 3.9-7.2
us across families, MaxPool chains 11-15 us), and each extra kernel of 1-30 us costs 0.6-3.2 us
less than its isolated price (median 2.3; MaxPool 5-6.5 us less): the profiler's per-event cost
sits inside every isolated timing.

The same module holds the **cache probe** (:func:`cache_probes`, :func:`gate_curve`): chains of
batch-1 matrix-vector products whose weights add up to 1-50 MB. Their time per product is flat
while the weights stay in the cache between runs and climbs to a from-memory level once they do
not; that step, against the chain's working set, is the cache gate of the context model.

Sizes are chosen so the isolated kernels span about 1 to 30 us, the range where the overhead
terms matter; every family avoids pairs the runtime would fuse or cancel (no Transpose pairs, no
MatMul+Add). :func:`per_run_us` turns the measured chains into the per-run term that
``latency calibrate`` holds fixed when it fits the per-kernel terms on real models.
"""

from __future__ import annotations

import numpy as np

#: chain lengths measured for every family and size
LENGTHS = (1, 4, 16)

#: family -> sizes (the family's own size parameter)
FAMILIES = {
    "tanh": (1024, 8192, 32768),        # Activation on [1, C]
    "add": (1024, 8192, 32768),         # Elementwise: x + constant[C]
    "matmul": (64, 128, 256),           # MatMul [1, d] x [d, d]
    "conv": ((16, 8), (32, 8), (16, 16)),    # Conv 3x3 C->C on C x H x H (NCHWc, reorders at the edges)
    "dwconv": ((64, 7), (96, 14)),      # depthwise Conv 3x3 on C x H x H
    "maxpool": ((32, 14), (64, 7)),     # MaxPool 3x3 stride 1 pad 1 on C x H x H
    "softmax": ((4, 64), (4, 128)),     # Softmax over the last axis of [1, heads, S, S]
    "layernorm": ((16, 128), (64, 256)),  # LayerNormalization over the last axis of [1, S, D]
}


#: the Q + DQ chains (``x -> [QuantizeLinear -> DequantizeLinear -> Tanh] x n`` against ``x -> [Tanh] x n`` on
#: [1, C]): what a small Q / DQ kernel costs inside a model, where its time alone is mostly the profiler's
#: per-event cost (:func:`qdq_pair_us`, used by ``latency calibrate --int8-context``); not part of the
#: per-run calibration
QDQ_SIZES = (16, 256, 1024, 4096, 16384, 65536)
QDQ_LENGTHS = (1, 16)


def build_qdq_chain(c: int, n: int, qdq: bool):
    """``x -> [Q -> DQ ->] Tanh`` repeated ``n`` times on [1, c] (uint8, one scale and zero point: the form
    ``quantize_static`` writes for activations). The Tanh keeps the runtime from dropping a Q -> DQ pair."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = []
    inits = [numpy_helper.from_array(np.array(0.02, np.float32), "s"),
             numpy_helper.from_array(np.array(128, np.uint8), "z")]
    cur = "x"
    for i in range(n):
        if qdq:
            nodes.append(helper.make_node("QuantizeLinear", [cur, "s", "z"], [f"q{i}"], name=f"Q{i}"))
            nodes.append(helper.make_node("DequantizeLinear", [f"q{i}", "s", "z"], [f"d{i}"], name=f"DQ{i}"))
            cur = f"d{i}"
        nodes.append(helper.make_node("Tanh", [cur], [f"t{i}"], name=f"T{i}"))
        cur = f"t{i}"
    g = helper.make_graph(nodes, "qdq_chain" if qdq else "tanh_chain",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c])],
                          [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, c])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def qdq_chains(sizes=QDQ_SIZES, lengths=QDQ_LENGTHS) -> dict:
    """name -> ModelProto: ``qdq:C:N`` and ``tanh:C:N`` for every size and length."""
    return {f"{'qdq' if q else 'tanh'}:{c}:{n}": build_qdq_chain(c, n, q) for c in sizes for n in lengths
            for q in (False, True)}


def qdq_pair_us(e2e: dict, sizes=QDQ_SIZES, lengths=QDQ_LENGTHS) -> dict:
    """C -> one Q + DQ pair's time inside a model (us): the slope per step of the Q + DQ chains minus that of
    the Tanh chains (``e2e``: name -> measure_models result of :func:`qdq_chains`)."""
    out = {}
    a, b = lengths[0], lengths[-1]
    for c in sizes:
        slope = {}
        for q in ("tanh", "qdq"):
            r1, r2 = e2e.get(f"{q}:{c}:{a}"), e2e.get(f"{q}:{c}:{b}")
            if not r1 or not r2 or r1.get("error") or r2.get("error"):
                break
            slope[q] = (r2["latency_ms"] - r1["latency_ms"]) * 1000.0 / (b - a)
        if len(slope) == 2:
            out[c] = slope["qdq"] - slope["tanh"]
    return out


def _size_tag(size) -> str:
    return "x".join(str(s) for s in size) if isinstance(size, tuple) else str(size)


def chain_name(family: str, size, n: int) -> str:
    return f"chain:{family}{_size_tag(size)}x{n}"


def build_chain(family: str, size, n: int, seed: int = 0):
    """One chain model (onnx.ModelProto, opset 17)."""
    from onnx import TensorProto, helper, numpy_helper

    if family not in FAMILIES:
        raise ValueError(f"unknown chain family {family!r}; known: {', '.join(FAMILIES)}")
    if n < 1:
        raise ValueError("a chain has at least one op")
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def w(name, shape, scale):
        inits.append(numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    if family in ("tanh", "add", "matmul"):
        shape = [1, size]
    elif family in ("conv", "dwconv", "maxpool"):
        c, h = size
        shape = [1, c, h, h]
    elif family == "softmax":
        heads, s = size
        shape = [1, heads, s, s]
    else:
        s, d = size
        shape = [1, s, d]
    cur = "x"
    for i in range(n):
        out = f"y{i}"
        if family == "tanh":
            nodes.append(helper.make_node("Tanh", [cur], [out], name=f"tanh{i}"))
        elif family == "add":
            nodes.append(helper.make_node("Add", [cur, w(f"b{i}", [size], 0.01)], [out], name=f"add{i}"))
        elif family == "matmul":
            nodes.append(helper.make_node("MatMul", [cur, w(f"w{i}", [size, size], size ** -0.5)], [out],
                                          name=f"matmul{i}"))
        elif family == "conv":
            c = size[0]
            nodes.append(helper.make_node("Conv", [cur, w(f"w{i}", [c, c, 3, 3], (9 * c) ** -0.5)], [out],
                                          pads=[1, 1, 1, 1], name=f"conv{i}"))
        elif family == "dwconv":
            c = size[0]
            nodes.append(helper.make_node("Conv", [cur, w(f"w{i}", [c, 1, 3, 3], 1 / 3)], [out], group=c,
                                          pads=[1, 1, 1, 1], name=f"dwconv{i}"))
        elif family == "maxpool":
            nodes.append(helper.make_node("MaxPool", [cur], [out], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                          name=f"maxpool{i}"))
        elif family == "softmax":
            nodes.append(helper.make_node("Softmax", [cur], [out], axis=-1, name=f"softmax{i}"))
        else:
            d = size[1]
            nodes.append(helper.make_node("LayerNormalization",
                                          [cur, w(f"g{i}", [d], 0.1), w(f"be{i}", [d], 0.1)], [out], axis=-1,
                                          name=f"layernorm{i}"))
        cur = out
    graph = helper.make_graph(nodes, f"chain_{family}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(cur, TensorProto.FLOAT, shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def chains(families=None, lengths=LENGTHS) -> dict:
    """name -> ModelProto for every family, size and length."""
    out = {}
    for fam in families or FAMILIES:
        for size in FAMILIES[fam]:
            for n in lengths:
                out[chain_name(fam, size, n)] = build_chain(fam, size, n)
    return out


def build(name: str):
    """The chain named ``name`` (as :func:`chain_name` makes it)."""
    for fam, sizes in FAMILIES.items():
        for size in sizes:
            for n in LENGTHS:
                if chain_name(fam, size, n) == name:
                    return build_chain(fam, size, n)
    raise KeyError(f"no chain named {name!r}")


def per_run_us(estimator, e2e: dict, models: dict | None = None) -> dict:
    """The per-run overhead from measured chains: per family and size, a least-squares line of
    ``end-to-end - kernel sum`` against the dispatched kernel count over the chain lengths; its
    intercept is what one run costs beyond its kernels, its slope what each kernel costs beyond its
    isolated price. Returns ``{"per_run_us": median intercept, "per_kernel_us": median slope,
    "families": {family+size: {"per_run_us": intercept, "per_kernel_us": slope}}}``, or None when
    no family has two measured, fully priced lengths.

    ``estimator``: prices the chains (made without overhead); ``e2e``: name -> end-to-end result
    (:func:`profilers.e2e.measure_models`) for the chains (other names are ignored).
    """
    from latency.estimator import dispatched_count

    models = models or chains()
    groups: dict = {}
    for name, model in models.items():
        r = e2e.get(name) or {}
        if not name.startswith("chain:") or not r.get("latency_ms"):
            continue
        est = estimator.estimate(model)
        if est.uncovered:  # a kernel the profile cannot price would count as 0: leave the chain out
            continue
        groups.setdefault(name.rsplit("x", 1)[0], []).append((dispatched_count(est.kernels),
                                                               r["latency_ms"] * 1000 - est.kernel_sum_us))
    fams = {}
    for g, pts in groups.items():
        if len(pts) >= 2 and len({p[0] for p in pts}) >= 2:
            slope, icpt = np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)
            fams[g] = {"per_run_us": float(icpt), "per_kernel_us": float(slope)}
    if not fams:
        return None
    return {k: float(np.median([v[k] for v in fams.values()])) for k in ("per_run_us", "per_kernel_us")} | \
        {"families": fams}


#: cache probe: chains of [1, 256] x [256, 256] products (256 KB of weights each) of these lengths
PROBE_LENGTHS = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192)
PROBE_DIM = 256


def probe_name(n: int) -> str:
    return f"probe:matmul{PROBE_DIM}x{n}"


def cache_probes(lengths=PROBE_LENGTHS) -> dict:
    """name -> ModelProto: matrix-vector chains whose weights add up to ~1 to ~50 MB."""
    return {probe_name(n): build_chain("matmul", PROBE_DIM, n) for n in lengths}


def build_probe(name: str):
    for n in PROBE_LENGTHS:
        if probe_name(n) == name:
            return build_chain("matmul", PROBE_DIM, n)
    raise KeyError(f"no cache probe named {name!r}")


def gate_curve(estimator, e2e: dict, per_run_us: float = 0.0, probes: dict | None = None) -> dict | None:
    """The cache gate measured by the probes: per probe, the time per product ``(end-to-end -
    per_run_us) / length`` against the probe's working set (as the estimator computes a model's);
    0 at the cache-resident level (median of the three smallest working sets), 1 at the
    from-memory level (median of the three largest), clipped, made non-decreasing. Returns
    ``{"footprint_mb": [...], "gate": [...], "us_per_product": [...]}`` or None when fewer than six
    probes were measured or the two levels do not differ by 20%.
    """
    probes = probes or cache_probes()
    pts = []
    for name, model in probes.items():
        r = e2e.get(name) or {}
        if not r.get("latency_ms"):
            continue
        est = estimator.estimate(model)
        if est.uncovered:
            continue
        n = sum(1 for k in est.kernels if k.kind == "MatMul")
        pts.append((est.footprint_mb, (r["latency_ms"] * 1000 - per_run_us) / max(n, 1)))
    if len(pts) < 6:
        return None
    pts.sort()
    fp = np.array([p[0] for p in pts])
    t = np.array([p[1] for p in pts])
    lo, hi = float(np.median(t[:3])), float(np.median(t[-3:]))
    if hi < 1.2 * lo:
        return None
    g = np.maximum.accumulate(np.clip((t - lo) / (hi - lo), 0.0, 1.0))
    return {"footprint_mb": [float(x) for x in fp], "gate": [float(x) for x in g],
            "us_per_product": [float(x) for x in t]}
