"""onnxruntime's own optimized graph of a model, as kernel counts comparable with the estimator's.

:func:`runtime_kernel_summary` lets onnxruntime optimize a model (it runs the runtime, so it lives on
the measuring side) and counts the kernels of the optimized graph with the keys of
:func:`latency.fusion.kernel_summary`; :func:`check_fusion` compares a target's fusion of the same
model with it (the conformance check behind ``latency estimate --check-fusion``).
"""

from __future__ import annotations

import re
from collections import Counter

from latency import ops

_NCHWC_NAME = re.compile(r"(_bn|_mul)?_nchwc(_token_\d+)?$")


def runtime_kernel_summary(model, level: str = "ALL", threads: int = 1, shapes: dict | None = None,
                           batch: int | None = None, optimized_path: str | None = None) -> Counter:
    """Counts derived from onnxruntime's own optimized graph of ``model`` (path/bytes/ModelProto).

    Same keys as :func:`latency.fusion.kernel_summary`: conv, conv_act, conv_sum, ("conv", cout,
    kernel, strides, act), reorder(_input/_output), gemm(_act), fused_matmul, matmul,
    gelu/quickgelu/..., layernorm, skip_layernorm, quant, transpose, pool, elementwise, softmax,
    reduce, cast, free, kernels. Input dims are fixed like :func:`latency.graph.load_graph` does (``shapes`` /
    ``batch``).
    """
    import os
    import tempfile

    import onnx
    import onnxruntime as ort
    from onnx import helper

    from latency.graph import bind_input_shapes, light_copy, read_model

    m, path, base, label = read_model(model)
    if m is model:  # a caller's ModelProto: never mutate it
        m = onnx.ModelProto()
        m.CopyFrom(model)
    bind_input_shapes(m, shapes, batch, label)
    light, _ = light_copy(m, base)
    inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
    tshape = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            tshape[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    so = ort.SessionOptions()
    so.graph_optimization_level = {"ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "BASIC": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if base:
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", base)
    with tempfile.TemporaryDirectory() as td:
        out = optimized_path or os.path.join(td, "optimized.onnx")
        so.optimized_model_filepath = out
        ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(out)
    inits = {t.name: list(t.dims) for t in opt.graph.initializer}
    producers = {o: n for n in opt.graph.node for o in n.output}
    c = Counter()
    for n in opt.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        act = attrs.get("activation", b"none")
        act = act.decode() if isinstance(act, bytes) else str(act)
        op = n.op_type
        c["kernels"] += 1
        if op in ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcFusedConv"):
            wi = 3 if op == "QLinearConv" else 1
            ws = inits.get(n.input[wi]) if len(n.input) > wi else None
            if ws is None and len(n.input) > wi:  # a weight read through a DequantizeLinear kernel
                ws = tshape.get(n.input[wi])
                dq = producers.get(n.input[wi])
                if ws is None and dq is not None and dq.op_type == "DequantizeLinear":
                    ws = inits.get(dq.input[0])  # one the runtime inserted (WeightBiasQuantization)
            cout = ws[0] if ws else None
            if n.domain == "com.microsoft.nchwc":
                base_t = _NCHWC_NAME.sub("", n.name)
                s = tshape.get(base_t)
                if s is not None and len(s) == 4 and s[1]:
                    cout = s[1]
            kernel = tuple(attrs.get("kernel_shape") or (ws[2:] if ws else ()))
            if not kernel and n.domain == "com.microsoft.nchwc" and ws is None:
                kernel = (1, 1)
            strides = tuple(attrs.get("strides") or [1] * len(kernel))
            if op == "QLinearConv" or op == "ConvInteger":
                act = "none"
            c["conv"] += 1
            if act != "none":
                c["conv_act"] += 1
            has_sum = (n.domain == "com.microsoft.nchwc" and len(n.input) > 3 and n.input[3]) or \
                      (op in ("FusedConv", "NhwcFusedConv") and len(n.input) > 3 and n.input[3])
            if has_sum:
                c["conv_sum"] += 1
            c[("conv", cout, kernel, strides, act)] += 1
        elif op in ops.REORDERS:
            c["reorder"] += 1
            c["reorder_" + ("input" if op == ops.REORDER_INPUT else "output")] += 1
        elif op in ("Gemm", "FusedGemm", "QGemm"):
            c["gemm"] += 1
            if op == "FusedGemm":
                c["gemm_act"] += 1
        elif op in ("MatMulIntegerToFloat", "DynamicQuantizeMatMul"):
            c["matmul_int8_dynamic"] += 1
        elif op == "FusedMatMul":
            c["fused_matmul"] += 1
        elif op in ("MatMul", "QLinearMatMul", "MatMulInteger"):
            c["matmul"] += 1
        elif op in ("Gelu", "BiasGelu", "FastGelu", "QuickGelu"):
            c[op.lower()] += 1
        elif op in ("LayerNormalization", "SimplifiedLayerNormalization"):
            c["layernorm"] += 1
        elif op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
            c["skip_layernorm"] += 1
        elif op in ops.QUANTS:
            c["quant"] += 1
        elif op == "Transpose":
            c["transpose"] += 1
        elif ops.kind_of_op(op) == "Pool":
            c["pool"] += 1
        elif ops.kind_of_op(op) == "Elementwise":
            c["elementwise"] += 1
        elif op in ("Softmax", "QLinearSoftmax"):
            c["softmax"] += 1
        elif ops.kind_of_op(op) == "Reduce":
            c["reduce"] += 1
        elif op == "Cast":
            c["cast"] += 1
        elif op in ops.FREE_OPS:
            c["free"] += 1
    return c


def check_fusion(model, rules, shapes: dict | None = None, batch: int | None = None) -> dict:
    """{key: (ours, runtime)} for every kernel count where ``rules``' fusion of ``model`` differs from
    onnxruntime's own optimized graph on this host (empty: the pass list reproduced the runtime)."""
    from latency.fusion import compare_summaries, fuse, kernel_summary
    from latency.graph import load_graph

    kernels, _ = fuse(load_graph(model, shapes=shapes, batch=batch), rules)
    return compare_summaries(kernel_summary(kernels), runtime_kernel_summary(model, shapes=shapes, batch=batch))
