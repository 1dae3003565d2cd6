"""Kernel counts to compare with a runtime's own optimized graph: :func:`kernel_summary` derives them
from our kernels, :func:`compare_summaries` lists where two summaries differ. The runtime's side
(:func:`profilers.runtime_graph.runtime_kernel_summary`) runs onnxruntime and lives with the
profilers."""

from __future__ import annotations

from collections import Counter

from .. import ops
from .records import Kernel


def _matmul_label(k: Kernel) -> str:
    op_types = set(k.op_types)
    if k.precision == "int8_dynamic":
        return "matmul_int8_dynamic"
    if "Gemm" in op_types or "FusedGemm" in op_types or "QGemm" in op_types or k.params.get("bias"):
        return "gemm"
    if k.params.get("scale") or k.params.get("trans_b") or "FusedMatMul" in op_types or "Transpose" in op_types:
        return "fused_matmul"
    return "matmul"


def kernel_summary(kernels) -> Counter:
    """Counts comparable with :func:`profilers.runtime_graph.runtime_kernel_summary`: conv, conv_act,
    conv_sum, ("conv", cout, kernel, strides, act), reorder(_input/_output), gemm(_act), fused_matmul,
    matmul, gelu/quickgelu/..., layernorm, skip_layernorm, quant, transpose, pool, elementwise,
    softmax, reduce, cast, free, kernels."""
    c = Counter()
    for k in kernels:
        c["kernels"] += 1
        if k.kind == "Conv":
            p = k.params
            c["conv"] += 1
            if p["act"] != "none":
                c["conv_act"] += 1
            if p["sum"]:
                c["conv_sum"] += 1
            c[("conv", p["cout"], tuple(p["kernel"]), tuple(p["strides"]), p["act"])] += 1
        elif k.kind == "Reorder":
            c["reorder"] += 1
            c["reorder_" + ("input" if k.params["op"] == ops.REORDER_INPUT else "output")] += 1
        elif k.kind == "MatMul":
            label = _matmul_label(k)
            c[label] += 1
            if k.params.get("act", "none") != "none":
                c[label + "_act"] += 1
        elif k.kind == "Activation" and k.params["op"] in ("Gelu", "BiasGelu", "FastGelu", "QuickGelu"):
            c[k.params["op"].lower()] += 1
        elif k.kind == "LayerNorm":
            c["skip_layernorm" if k.params.get("skip") else "layernorm"] += 1
        elif k.kind == "Quant":
            c["quant"] += 1
        elif k.kind == "Transpose":
            c["transpose"] += 1
        elif k.kind == "Pool":
            c["pool"] += 1
        elif k.kind == "Elementwise":
            c["elementwise"] += 1
        elif k.kind == "Softmax":
            c["softmax"] += 1
        elif k.kind == "Reduce":
            c["reduce"] += 1
        elif k.kind == "Activation" and k.params["op"] == "Cast":
            c["cast"] += 1
        elif k.kind == "Free":
            c["free"] += 1
    return c


def compare_summaries(ours: Counter, runtime: Counter, keys=None) -> dict:
    """{key: (ours, runtime)} for every key (or the given ones) where the counts differ."""
    keys = keys if keys is not None else sorted(set(ours) | set(runtime), key=str)
    return {k: (ours.get(k, 0), runtime.get(k, 0)) for k in keys if ours.get(k, 0) != runtime.get(k, 0)}
