"""Lowering: fused work nodes -> :class:`~latency.fusion.records.Kernel` records.

Each live node of the work graph becomes one kernel (or a few) of a registry op kind, its params laid
out as the kind declares them (:mod:`latency.ops`), its precision and weight sparsity read from the
graph; the kernels the runtime inserts (reorders, layout transposes, fp16 edge Casts) are added at
their positions, and a node no kind prices becomes uncovered with the reason.
"""

from __future__ import annotations

from dataclasses import replace

from .. import ops
from ..graph import CONTROL_FLOW, weight_sparsity
from .records import Kernel, Uncovered
from .workgraph import (CONV_OPS, INT8_DTYPES, MATMUL_OPS, TO_NHWC, FusionState, Unpriceable, WorkNode,
                        normalize_axis)


#: domains whose ops the registry prices by op type; an op of any other domain is uncovered
PRICED_DOMAINS = ("", "ai.onnx", "com.microsoft", "com.microsoft.nchwc")


def _same_pads(auto_pad, in_sp, k, s, d):
    n = len(in_sp)
    pads = [0] * (2 * n)
    for i in range(n):
        out = -(-in_sp[i] // s[i])
        total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_sp[i])
        small, big = total // 2, total - total // 2
        if auto_pad == "SAME_LOWER":
            pads[i], pads[i + n] = big, small
        else:
            pads[i], pads[i + n] = small, big
    return pads


def _explicit_pads(attrs, in_sp, k, s, d):
    """The pads of a conv / pool with ``attrs``, auto_pad resolved (begins then ends)."""
    ap = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    n = len(in_sp)
    if ap in ("SAME_UPPER", "SAME_LOWER"):
        return _same_pads(ap, in_sp, k, s, d)
    if ap == "VALID":
        return [0] * (2 * n)
    p = attrs.get("pads")
    return [int(x) for x in p] if p else [0] * (2 * n)


def emit(state: FusionState) -> tuple[list, list]:
    """(kernels in execution order, uncovered nodes) of the fused work graph: each live node lowered,
    the kernels the runtime inserts, fp16-as-fp32 Casts, eliminated Identity/Dropout records attached."""
    out: list[tuple] = []
    state.fp16_run = fp16_run_nodes(state)
    for w in state.live:
        try:
            ks = lower_node(state, w)
        except Unpriceable as e:
            for r in w.members:
                state.uncovered.append(Uncovered(r.name, r.op_type, e.reason))
            continue
        step = min(1e-3, 0.5 / len(ks)) if ks else 0.0  # a loop's many kernels stay before the next node's
        for j, k in enumerate(ks):
            out.append((w.pos + j * step, k))
    for inserted in state.inserted:
        pos, what, t, recs = inserted.pos, inserted.what, inserted.tensor, inserted.records
        s = state.shape(t)
        if s is None:
            state.uncovered.extend(Uncovered(r.name, r.op_type, f"shape unknown for {t!r}") for r in recs)
            continue
        if what in ("QuantizeLinear", "DequantizeLinear"):
            k = Kernel(f"{what}({t})", "Quant", {"op": what, "x": s}, "int8", "0", (), (what,))
        elif what in ops.REORDERS:
            k = Kernel(f"{what}({t})", "Reorder", {"op": what, "x": s}, "fp32", "0",
                       tuple(r.name for r in recs), (what,) + tuple(r.op_type for r in recs))
        else:
            perm = [0, 2, 3, 1] if what == TO_NHWC else [0, 3, 1, 2]
            x = s if what == TO_NHWC else [s[0], s[2], s[3], s[1]]
            prec = "int8" if state.dtype(t) in INT8_DTYPES else "fp32"
            if state.dtype(t) == "float16" and not state.rules.fp16_as_fp32:
                prec = "fp16"  # the layout Transposes of an fp16 NHWC region (arm64)
            k = Kernel(f"Transpose({t},{'NHWC' if what == TO_NHWC else 'NCHW'})", "Transpose",
                       {"x": x, "perm": perm}, prec, "0", (), ("Transpose",))
        out.append((pos, k))
    if state.rules.fp16_as_fp32:
        # the fp32 graph is entered and left through Casts
        for t in state.graph.inputs:
            if t.dtype == "float16" and t.shape is not None and state.consumers(t.name):
                out.append((-1.0, Kernel(f"Cast({t.name})", "Activation", {"op": "Cast", "x": list(t.shape)},
                                         "fp32", "0", (), ("Cast",))))
        # fp16 constants read by elementwise kernels are cast at run time (once per constant)
        seen = set()
        for w in state.live:
            kind = ops.kind_of_op(w.op)
            if kind not in ("Elementwise", "Activation") or w.info.get("layout_perm"):
                continue
            for t in w.inputs:
                if not (t and state.const(t) and state.dtype(t) == "float16" and state.shape(t) is not None):
                    continue
                v = state.value(t)  # ConstantSharing: equal constants are one initializer
                key = (tuple(state.shape(t)), v.tobytes()) if v is not None and v.size <= 4096 else t
                if key not in seen:
                    seen.add(key)
                    out.append((w.pos - 0.1, Kernel(f"Cast({t})", "Activation", {"op": "Cast", "x": state.shape(t)},
                                                    "fp32", "0", (), ("Cast",))))
        out.extend(_fp16_boundary_casts(state))
        for t in state.graph.outputs:
            p = state.producer(t.name)
            if t.dtype == "float16" and t.shape is not None and p is not None:
                out.append((p.pos + 0.75, Kernel(f"Cast({t.name})", "Activation", {"op": "Cast", "x": list(t.shape)},
                                                 "fp16", "0", (), ("Cast",))))
    elif state.rules.fp16_no_kernel:
        out.extend(_fp16_boundary_casts(state))  # fp16 kernels: Casts around the ops run in fp32
    out.sort(key=lambda pk: pk[0])
    kernels = [k for _, k in out]
    # Identity / Dropout eliminated by the runtime: attach them to the kernel that produces
    # their input (they cost nothing), or give them a Free kernel when no kernel does
    if state.eliminated_on:
        where = {n: i for i, k in enumerate(kernels) for n in k.nodes}
        for t, recs in state.eliminated_on.items():
            prod = state.graph.producer(t)
            i = where.get(prod.name) if prod is not None else None
            if i is not None:
                k = kernels[i]
                kernels[i] = replace(k, nodes=k.nodes + tuple(r.name for r in recs),
                                     op_types=k.op_types + tuple(r.op_type for r in recs))
                for r in recs:
                    where[r.name] = i
            else:
                for r in recs:
                    kernels.append(Kernel(r.name, "Free", {"op": r.op_type}, "fp32", "0", (r.name,),
                                          (r.op_type,)))
    return kernels, state.uncovered


def fp16_run_nodes(state: FusionState) -> set:
    """ids of the live nodes the runtime runs in fp16 itself, less the isolated ones: ``rules.fp16_native``
    ops on fp16 data where fp16 graphs run as fp32 kernels, every op on fp16 data but those in
    ``rules.fp16_no_kernel`` where they run as fp16 kernels; empty where neither list is given."""
    rules = state.rules
    native_ops = set(rules.fp16_native) - {"Cast"}
    no_kernel = set(rules.fp16_no_kernel)
    if not state.has_fp16 or not ((rules.fp16_as_fp32 and native_ops) or (not rules.fp16_as_fp32 and no_kernel)):
        return set()

    def fp16_data(w) -> bool:
        return any(t and state.dtype(t) == "float16" for t in list(w.inputs[:1]) + list(w.outputs[:1]))

    def fp16_kernel(w) -> bool:
        if w.info.get("precision") or not fp16_data(w):
            return False
        if rules.fp16_as_fp32:
            return w.op in native_ops and w.domain in ("", "ai.onnx")
        return w.op != "Cast" and w.op not in no_kernel

    fp16_nodes = {id(w) for w in state.live if fp16_kernel(w)}
    # IsIsolatedFp16NodeOnCpu: an fp16-capable node whose fp16 inputs all come from nodes run in fp32 and
    # whose fp16 outputs all go to such nodes runs in fp32 too (no Casts around it); one pass in graph
    # order, each decision seen by the later ones. LayerNormalization never qualifies (its fp32 kernel
    # lookup needs the statistics' type, which a one-output node does not give)
    for w in state.live:
        if id(w) not in fp16_nodes or w.op == "LayerNormalization":
            continue
        if any(t in state.graph_outputs for t in w.outputs):
            continue
        prods = [state.producer(t) for t in w.inputs if t and state.dtype(t) == "float16"]
        prods = [p for p in prods if p is not None]
        users = [c for t in w.outputs if t and state.dtype(t) == "float16" for c, _ in state.consumers(t)]
        if not prods or not users:
            continue
        if all(id(p) not in fp16_nodes and p.op != "Cast" for p in prods) and \
                all(id(c) not in fp16_nodes and c.op != "Cast" for c in users):
            fp16_nodes.discard(id(w))
    return fp16_nodes


def _fp16_boundary_casts(state: FusionState) -> list:
    """(position, Cast kernel) for every fp16 tensor between an op the runtime runs in fp16 itself
    (:func:`fp16_run_nodes`) and one it runs in fp32: one Cast per tensor and direction, as
    InsertCastTransformer leaves them once duplicate Casts are removed."""
    fp16_nodes = state.fp16_run
    if not fp16_nodes:
        return []

    def native(w) -> bool:
        return id(w) in fp16_nodes

    def f32_run(w) -> bool:
        return w.op != "Cast" and not native(w)

    def cast(t, to):
        return Kernel(f"Cast({t},{to})", "Activation", {"op": "Cast", "x": state.shape(t)}, "fp32", "0", (),
                      ("Cast",))

    out = []
    for w in state.live:
        for t in w.outputs:
            if not t or state.dtype(t) != "float16" or state.shape(t) is None:
                continue
            users = [c for c, _ in state.consumers(t)]
            if native(w) and any(f32_run(c) for c in users):
                out.append((w.pos + 0.5, cast(t, "fp32")))
            elif f32_run(w) and any(native(c) for c in users):
                out.append((w.pos + 0.5, cast(t, "fp16")))
    return out


def _fp16_inline_casts(state: FusionState, w: WorkNode, ks: list, reads: tuple, writes: tuple, shapes: dict) -> list:
    """The kernels ``ks`` of an fp16 node whose function body the runtime inlines (kernel i reads the
    tensors ``reads[i]``, writes ``writes[i]``; ``x`` the node's fp16 input, the last output its fp16
    output), where the EP has fp16 kernels: those of ``rules.fp16_no_kernel`` in fp32, the others in fp16,
    and a Cast kernel wherever a tensor is read (or leaves the node) in the other precision."""
    have = {"x": {"fp16"}}
    out = []

    def cast(label, to):
        out.append(Kernel(f"Cast({w.name}/{label},{to})", "Activation", {"op": "Cast", "x": shapes[label]}, "fp32",
                          "0", (), ("Cast",)))
        have[label].add(to)

    for k, ins, o in zip(ks, reads, writes):
        prec = "fp32" if k.params.get("op") in state.rules.fp16_no_kernel else "fp16"
        for label in ins:
            if prec not in have[label]:
                cast(label, prec)
        allowed = ops.get_kind(k.kind).precisions
        out.append(replace(k, precision=prec if prec in allowed else allowed[0]))
        have[o] = {prec}
    if "fp16" not in have[writes[-1]]:
        shapes.setdefault(writes[-1], shapes["x"])
        cast(writes[-1], "fp16")
    return out


#: float element types no target measures kernels in: a node computing on them is uncovered, never priced as fp32
UNMEASURED_FLOATS = frozenset({"float64", "bfloat16"})
#: float products: on integer data (not a quantized form) onnxruntime runs a generic kernel, nothing like MLAS's
_FLOAT_GEMMS = ("MatMul", "Gemm", "Conv", "ConvTranspose")


def lower_node(state: FusionState, w: WorkNode) -> list:
    """The kernels of one live work node (one, or more: a HardSwish run inlined, a Gemm on N-D A with
    its Reshapes, a shared DequantizeLinear once per consumer); Unpriceable when none prices it."""
    op = w.op
    if w.domain not in PRICED_DOMAINS:  # a custom domain's "Relu" is not ONNX's Relu: never priced as one
        raise Unpriceable(f"no op kind prices {w.domain}:{op}")
    if w.rec.name in state.graph.control and w.rec.op_type in CONTROL_FLOW:
        return _lower_control_flow(state, w)
    nodes = tuple(r.name for r in w.members)
    op_types = tuple(r.op_type for r in w.members)
    prec = state.precision_of(w)
    if op not in ops.FREE_OPS and op != "Cast":  # a Cast's cost is its bytes: priced as a copy whatever the types
        odd = sorted({state.dtype(t) for t in list(w.inputs) + list(w.outputs) if t} & UNMEASURED_FLOATS)
        if odd:
            raise Unpriceable(f"{odd[0]} data: no profile measures {odd[0]} kernels (fp32, fp16 and int8 are "
                              "measured)")
        if op in _FLOAT_GEMMS and w.domain in ("", "ai.onnx") and op_types == (op,) and not w.info and \
                w.inputs and state.dtype(w.inputs[0]).startswith(("int", "uint")):
            dt = state.dtype(w.inputs[0])
            raise Unpriceable(f"{op} on {dt} data: the runtime's generic integer kernel, which no profile "
                              "measures (quantized products are MatMulInteger / QLinearMatMul / Q-DQ pairs)")

    def make_kernel(kind, params, sparsity="0", name=None, precision=None, nodes=nodes, op_types=op_types):
        p = precision or prec
        allowed = ops.get_kind(kind).precisions
        if p not in allowed:
            p = allowed[0]
        return Kernel(name or w.name, kind, ops.canonical_params(kind, params), p, sparsity, nodes, op_types)

    if w.info.get("view"):  # a layer the runtime runs as a view of its input (TensorRT: slice removal)
        return [make_kernel("Free", {"op": op})]
    if w.info.get("concat_copy") is not None:  # an eliminated concatenation: one copy per input that cannot move
        ins = [state.need_shape(w.inputs[i]) for i in w.info["concat_copy"]]
        ax = normalize_axis(w.attr("axis", 0), len(ins[0]))
        return [make_kernel("Concat", {"inputs": [x], "axis": ax}, name=w.name if j == 0 else f"{w.name}/copy{j}",
                            nodes=nodes if j == 0 else (), op_types=op_types if j == 0 else ("Concat",))
                for j, x in enumerate(ins)]
    if op in ops.QUANTIZED_OPS and w.domain in ("", "com.microsoft") and not w.info.get("dyn"):
        return _lower_quantized_op(state, w, make_kernel)
    if w.info.get("as_conv"):
        x = state.need_shape(w.inputs[0])
        c = x[1]
        p = {"x": x, "cout": c, "kernel": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0],
             "dilations": [1, 1], "group": c, "act": w.info.get("act", "none"),
             "sum": 1 if w.info.get("sum") else 0}
        return [make_kernel("Conv", p)]
    if w.info.get("reorder_nhwc"):
        return [make_kernel("Reorder", {"op": ops.REORDER_OUTPUT, "x": state.need_shape(w.inputs[0])},
                            precision="fp32")]
    if (op == "Softmax" and w.domain in ("", "ai.onnx") and state.rules.fp16_softmax_inline
            and state.dtype(w.inputs[0]) == "float16"):
        # no fp16 Softmax kernel (x86, arm64): the runtime inlines its function body, five fp32 kernels
        x = state.need_shape(w.inputs[0])
        ax = int(w.attr("axis", -1)) % len(x)
        r = [1 if i == ax else d for i, d in enumerate(x)]
        parts = (("Reduce", {"op": "ReduceMax", "x": x, "axes": [ax], "keepdims": 1}),
                 ("Elementwise", {"op": "Sub", "inputs": [x, r], "const_b": 0}),
                 ("Activation", {"op": "Exp", "x": x}),
                 ("Reduce", {"op": "ReduceSum", "x": x, "axes": [ax], "keepdims": 1}),
                 ("Elementwise", {"op": "Div", "inputs": [x, r], "const_b": 0}))
        ks = [make_kernel(kind, params, name=w.name if i == 0 else f"{w.name}/{params['op']}", precision="fp32",
                          nodes=nodes if i == 0 else (), op_types=op_types if i == 0 else (params["op"],))
              for i, (kind, params) in enumerate(parts)]
        if id(w) not in state.fp16_run or state.rules.fp16_as_fp32:
            return ks
        # fp16 kernels (arm64): the inlined ops with an fp16 kernel run in fp16, Casts between
        return _fp16_inline_casts(state, w, ks, (("x",), ("x", "m"), ("s",), ("e",), ("e", "r")),
                                  ("m", "s", "e", "r", "y"), {"x": x, "m": r, "s": x, "e": x, "r": r})
    if op == "HardSwish" and state.rules.hardswish_inline:
        x = state.need_shape(w.inputs[0])
        hs, mul = w.info.get("hs_parts", (w.members, []))
        ks = [make_kernel("Activation", {"op": "HardSigmoid", "x": x}, name=hs[0].name,
                          nodes=tuple(r.name for r in hs), op_types=tuple(r.op_type for r in hs)),
              make_kernel("Elementwise", {"op": "Mul", "inputs": [x, x], "const_b": 0},
                          name=mul[0].name if mul else w.name + "/Mul",
                          nodes=tuple(r.name for r in mul), op_types=tuple(r.op_type for r in mul) or ("Mul",))]
        if id(w) not in state.fp16_run or state.rules.fp16_as_fp32:
            return ks
        return _fp16_inline_casts(state, w, ks, (("x",), ("x", "h")), ("h", "y"), {"x": x, "h": x})
    if op in CONV_OPS or (op == "Conv" and w.info.get("dyn")):
        return [_lower_conv(state, w, make_kernel)]
    if op in MATMUL_OPS or w.info.get("dyn"):
        k = _lower_matmul(state, w, make_kernel)
        if not w.info.get("gemm_3d"):
            return [k]
        # MatMulAddFusion on N-D A: Reshape -> Gemm -> Reshape; a neighbouring Reshape absorbs
        # the new one (ReshapeFusion)
        ks = []
        p = state.producer(w.inputs[0])
        if not (state.is_op(p, "Reshape", "Flatten") and state.only_consumer(p.outputs[0]) is w):
            ks.append(make_kernel("Free", {"op": "Reshape"}, name=w.name + "/gemm_input_reshape", nodes=(),
                                  op_types=("Reshape",)))
        ks.append(k)
        c = state.out_single(w)
        if not (state.is_op(c, "Reshape", "Flatten") and c.inputs[0] == w.outputs[0]):
            ks.append(make_kernel("Free", {"op": "Reshape"}, name=w.name + "/gemm_output_reshape", nodes=(),
                                  op_types=("Reshape",)))
        return ks
    if op in ("DequantizeLinear",) and w.info.get("copies", 1) > 1:
        x = state.need_shape(w.inputs[0])
        ks = [make_kernel("Quant", {"op": op, "x": x}, precision="int8")]
        for j in range(1, w.info["copies"]):
            ks.append(make_kernel("Quant", {"op": op, "x": x}, precision="int8", name=f"{w.name}/dup{j}", nodes=(),
                                  op_types=(op,)))
        return ks
    kind = ops.kind_of_op(op)
    if kind is None:
        dom = w.domain or "ai.onnx"
        raise Unpriceable(f"no op kind prices {dom}:{op}")
    return [lower_by_kind(state, w, kind, make_kernel)]


def _lower_conv(state: FusionState, w: WorkNode, make_kernel) -> Kernel:
    x = list(state.need_shape(w.inputs[0]))
    ws = state.need_shape(w.inputs[1])
    nsp = len(ws) - 2
    if len(x) != nsp + 2:
        raise Unpriceable(f"shape unknown for {w.inputs[0]!r}")
    k = list(ws[2:])
    s = [int(v) for v in (w.attr("strides") or [1] * nsp)]
    d = [int(v) for v in (w.attr("dilations") or [1] * nsp)]
    pads = _explicit_pads(w.rec.attrs, x[2:], k, s, d)
    extra = w.info.get("pad_extra")
    if extra:
        pads = [a + b for a, b in zip(pads, extra)]
    act = w.info.get("act")
    if act is None and w.rec.op_type == "FusedConv":
        act = w.attr("activation")
    g = int(w.attr("group", 1) or 1)
    p = {"x": x, "cout": ws[0], "kernel": k, "strides": s, "pads": pads, "dilations": d, "group": g,
         "act": act or "none", "sum": 1 if w.info.get("sum") else 0}
    weights_known = state.const(w.inputs[1]) or state.producer(w.inputs[1]) is None
    if not state.const(w.inputs[1]) and not (w.info.get("precision") or "").startswith("int8"):
        p["runtime_w"] = 1  # e.g. a float conv reading a DequantizeLinear: no pre-packed weights
    if w.info.get("wzp") and w.info.get("precision") == "int8":
        p["wzp"] = 1  # an int8 weight with a non-zero zero point (fusion/passes/quant.py)
    sparsity = weight_sparsity(state.graph, w.inputs[1]) if weights_known else "0"
    return make_kernel("Conv", p, sparsity)


def _lower_matmul(state: FusionState, w: WorkNode, make_kernel) -> Kernel:
    a = list(state.need_shape(w.inputs[0]))
    b = list(state.need_shape(w.inputs[1]))
    bias = 1 if (w.info.get("bias") or (w.rec.op_type in ("Gemm", "FusedGemm") and len(w.inputs) > 2
                                               and w.inputs[2])) else 0
    trans_b = int(w.info.get("trans_b", 0) or 0)
    scale = int(bool(w.info.get("scale")))
    if w.rec.op_type in ("Gemm", "FusedGemm", "FusedMatMul") and not w.info.get("dyn"):
        if w.attr("transA", 0):
            a = a[:-2] + [a[-1], a[-2]]
        trans_b = int(w.attr("transB", 0) or 0) or trans_b
        if float(w.attr("alpha", 1.0)) != 1.0:
            scale = 1
    if w.info.get("trans_a"):
        a = a[:-2] + [a[-1], a[-2]]
    if w.info.get("trans_b") and w.info.get("trans_src_trans_b") is not None:
        b = list(w.info["trans_src_trans_b"])
    if w.info.get("gemm_3d") and len(a) != 2:
        m = 1
        for v in a[:-1]:
            m *= v
        a = [m, a[-1]]
    act = w.info.get("act")
    if act is None and w.rec.op_type == "FusedGemm":
        act = w.attr("activation")
    p = {"a": a, "b": b, "const_b": 1 if state.const(w.inputs[1]) else 0, "bias": bias, "scale": scale,
         "trans_b": trans_b, "act": act or "none"}
    sparsity = weight_sparsity(state.graph, w.inputs[1]) if p["const_b"] else "0"
    return make_kernel("MatMul", p, sparsity)


def _lower_quantized_op(state: FusionState, w: WorkNode, make_kernel) -> list:
    """The kernel of a QOperator-format node (:data:`latency.ops.QUANTIZED_OPS`): its base op's kind
    at int8 (or int8_dynamic)."""
    quantized = ops.QUANTIZED_OPS[w.op]
    base, xi, wi, bi = quantized.base, quantized.x, quantized.w, quantized.bias
    prec = quantized.precision
    if base == "Conv":
        x = state.need_shape(w.inputs[xi])
        ws = state.need_shape(w.inputs[wi])
        nsp = len(ws) - 2
        k = list(ws[2:])
        s = [int(v) for v in (w.attr("strides") or [1] * nsp)]
        d = [int(v) for v in (w.attr("dilations") or [1] * nsp)]
        p = {"x": x, "cout": ws[0], "kernel": k, "strides": s, "pads": _explicit_pads(w.rec.attrs, x[2:], k, s, d),
             "dilations": d, "group": int(w.attr("group", 1) or 1), "act": "none", "sum": 0}
        return [make_kernel("Conv", p, weight_sparsity(state.graph, w.inputs[wi]), precision=prec)]
    if base in ("MatMul", "Gemm"):
        a = list(state.need_shape(w.inputs[xi]))
        b = list(state.need_shape(w.inputs[wi]))
        if base == "Gemm" and w.attr("transA", 0):
            a = a[::-1]
        p = {"a": a, "b": b, "const_b": 1 if state.const(w.inputs[wi]) else 0,
             "bias": 1 if bi is not None and len(w.inputs) > bi and w.inputs[bi] else 0,
             "scale": 0, "trans_b": int(w.attr("transB", 0) or 0), "act": "none"}
        sparsity = weight_sparsity(state.graph, w.inputs[wi]) if p["const_b"] else "0"
        return [make_kernel("MatMul", p, sparsity, precision=prec)]
    if base in ("Add", "Mul"):
        ins = [state.need_shape(w.inputs[0]), state.need_shape(w.inputs[3])]
        const_b = int(state.const(w.inputs[0]) or state.const(w.inputs[3]))
        return [make_kernel("Elementwise", {"op": base, "inputs": ins, "const_b": const_b}, precision=prec)]
    if base in ("Sigmoid", "LeakyRelu"):
        return [make_kernel("Activation", {"op": base, "x": state.need_shape(w.inputs[0])}, precision=prec)]
    if base in ("AveragePool", "GlobalAveragePool"):
        as_base = replace(w, op=base)
        return [lower_by_kind(state, as_base, "Pool", make_kernel, precision=prec)]
    if base == "Softmax":
        x = state.need_shape(w.inputs[0])
        return [make_kernel("Softmax", {"op": "Softmax", "x": x, "axis": normalize_axis(w.attr("axis", -1), len(x))},
                            precision=prec)]
    if base == "Concat":
        ins = [state.need_shape(t) for t in w.inputs[2::3]]
        return [make_kernel("Concat", {"inputs": ins, "axis": normalize_axis(w.attr("axis", 0), len(ins[0]))},
                            precision=prec)]
    raise Unpriceable(f"no op kind prices {w.domain or 'ai.onnx'}:{w.op}")


def _shape_as_seen(state: FusionState, w: WorkNode, t):
    """shape of input t of w as w really sees it (after a cancelled transpose chain)"""
    s = state.need_shape(t)
    q = w.info.get("layout_perm")
    if q is None or t in w.info.get("untransposed", ()):
        return s
    if len(s) < len(q):
        s = [1] * (len(q) - len(s)) + list(s)
    return [s[i] for i in q]


def lower_by_kind(state: FusionState, w: WorkNode, kind: str, make_kernel, precision=None) -> Kernel:
    """The kernel of node ``w`` as op kind ``kind`` (the params each kind declares, from the node's
    shapes and attributes)."""
    if w.info.get("layout_perm") and kind in ("Elementwise", "Activation"):
        if kind == "Elementwise":
            ins = [t for t in w.inputs if t]
            # a scalar constant stays a scalar; every other input is seen in the node's own layout
            shapes = [_shape_as_seen(state, w, t) if not state.const(t) or len(state.need_shape(t)) else []
                      for t in ins]
            const_b = int(any(state.const(t) for t in ins))
            return make_kernel("Elementwise", {"op": w.op, "inputs": shapes, "const_b": const_b}, precision=precision)
        return make_kernel("Activation", {"op": w.op, "x": _shape_as_seen(state, w, w.inputs[0])}, precision=precision)
    op = w.op
    ins = w.inputs
    outs = w.outputs
    attrs = w.rec.attrs
    if kind == "Free":
        return make_kernel("Free", {"op": op}, precision=precision)
    if kind == "Elementwise":
        shapes = [state.need_shape(t) for t in ins if t]
        const_b = int(any(state.const(t) for t in ins if t))
        return make_kernel("Elementwise", {"op": op, "inputs": shapes, "const_b": const_b}, precision=precision)
    if kind == "Activation":
        return make_kernel("Activation", {"op": op, "x": state.need_shape(ins[0])}, precision=precision)
    if kind == "Softmax":
        x = state.need_shape(ins[0])
        default = -1 if state.graph.opset >= 13 else 1
        axis = normalize_axis(attrs.get("axis", default), max(1, len(x)))
        return make_kernel("Softmax", {"op": op, "x": x, "axis": axis},
                 precision=precision)
    if kind == "LayerNorm":
        return make_kernel("LayerNorm", {"x": state.need_shape(ins[0]), "skip": int(bool(w.info.get("skip")) or
                                                                     op.startswith("Skip"))}, precision=precision)
    if kind == "Norm":
        return make_kernel("Norm", {"op": op, "x": state.need_shape(ins[0])}, precision=precision)
    if kind == "Pool":
        x = state.need_shape(ins[0])
        nsp = len(x) - 2
        if op.startswith("Global"):
            p = {"op": op, "x": x, "kernel": list(x[2:]), "strides": [1] * nsp, "pads": [0] * (2 * nsp), "ceil": 0}
        else:
            k = [int(v) for v in (attrs.get("kernel_shape") or [1] * nsp)]
            s = [int(v) for v in (attrs.get("strides") or [1] * nsp)]
            d = [int(v) for v in (attrs.get("dilations") or [1] * nsp)]
            pads = _explicit_pads(attrs, x[2:], k, s, d)
            extra = w.info.get("pad_extra")
            if extra:
                pads = [u + v for u, v in zip(pads, extra)]
            p = {"op": op, "x": x, "kernel": k, "strides": s, "pads": pads, "ceil": int(attrs.get("ceil_mode", 0) or 0)}
            if op == "MaxPool" and (precision or state.precision_of(w)) == "int8" and w.info.get("nhwc"):
                p["layout"] = "nhwc"  # NhwcMaxPool (x stays the NCHW shape)
        return make_kernel("Pool", p, precision=precision)
    if kind == "Concat":
        shapes = [state.need_shape(t) for t in ins if t]
        axis = normalize_axis(attrs.get("axis", 0), len(shapes[0]))
        if w.info.get("nhwc") and axis == 1 and all(len(s) == 4 for s in shapes):
            # a channel concat in an NHWC int8 region (layout.nhwc_int8): the channels are innermost
            shapes, axis = [[s[0], s[2], s[3], s[1]] for s in shapes], 3
        return make_kernel("Concat", {"inputs": shapes, "axis": axis}, precision=precision)
    if kind == "Split":
        x = state.need_shape(ins[0])
        ax = normalize_axis(attrs.get("axis", 0), len(x))
        if w.info.get("split_src"):
            ax = w.info["split_src"][1]
        splits = [state.need_shape(o)[ax] for o in outs if o]
        return make_kernel("Split", {"x": x, "axis": ax, "splits": splits}, precision=precision)
    if kind in ("Slice", "Copy"):
        return make_kernel(kind, {"op": op, "x": state.need_shape(ins[0]), "y": state.need_shape(outs[0])},
                           precision=precision)
    if kind == "Resize":
        mode = attrs.get("mode", "nearest") or "nearest"
        mode = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
        return make_kernel("Resize", {"op": op, "x": state.need_shape(ins[0]), "y": state.need_shape(outs[0]),
                                      "mode": mode},
                 precision=precision)
    if kind == "Pad":
        return make_kernel("Pad", {"op": op, "x": state.need_shape(ins[0]), "y": state.need_shape(outs[0]),
                         "mode": attrs.get("mode", "constant") or "constant"}, precision=precision)
    if kind == "Transpose":
        x = w.info.get("x") or state.need_shape(ins[0])
        perm = w.info.get("perm", attrs.get("perm"))
        perm = [int(v) for v in perm] if perm is not None else list(range(len(x)))[::-1]
        return make_kernel("Transpose", {"x": x, "perm": perm}, precision=precision)
    if kind == "Reduce":
        x = state.need_shape(ins[0])
        if op in ("ArgMax", "ArgMin"):
            axes = [normalize_axis(attrs.get("axis", 0), len(x))]
        else:
            axes = attrs.get("axes")
            if axes is None and len(ins) > 1 and ins[1]:
                v = state.value(ins[1])
                if v is None:
                    raise Unpriceable(f"reduction axes of {w.name!r} are not constant")
                axes = [int(t) for t in v.reshape(-1)]
            if not axes:
                axes = list(range(len(x)))
            axes = sorted({normalize_axis(t, len(x)) for t in axes})
        return make_kernel("Reduce", {"op": op, "x": x, "axes": axes, "keepdims": int(attrs.get("keepdims", 1))},
                           precision=precision)
    if kind == "Gather":
        d = state.need_shape(ins[0])
        return make_kernel("Gather", {"data": d, "indices": state.need_shape(ins[1]),
                            "axis": normalize_axis(attrs.get("axis", 0), len(d))}, precision=precision)
    if kind == "Quant":
        return make_kernel("Quant", {"op": op, "x": state.need_shape(ins[0])}, precision="int8")
    if kind == "ConvTranspose":
        x = state.need_shape(ins[0])
        ws = state.need_shape(ins[1])
        nsp = len(ws) - 2
        g = int(attrs.get("group", 1) or 1)
        k = list(ws[2:])
        s = [int(v) for v in (attrs.get("strides") or [1] * nsp)]
        d = [int(v) for v in (attrs.get("dilations") or [1] * nsp)]
        op_ = [int(v) for v in (attrs.get("output_padding") or [0] * nsp)]
        y = state.need_shape(outs[0])
        ap = attrs.get("auto_pad", "NOTSET") or "NOTSET"
        if attrs.get("output_shape") is not None or ap in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0] * (2 * nsp)
            for i in range(nsp):
                total = s[i] * (x[2 + i] - 1) + op_[i] + (k[i] - 1) * d[i] + 1 - y[2 + i]
                if ap == "SAME_LOWER":
                    pads[i], pads[i + nsp] = total - total // 2, total // 2
                else:
                    pads[i], pads[i + nsp] = total // 2, total - total // 2
        elif ap == "VALID":
            pads = [0] * (2 * nsp)
        else:
            pads = [int(v) for v in (attrs.get("pads") or [0] * (2 * nsp))]
        p = {"x": x, "cout": ws[1] * g, "kernel": k, "strides": s, "pads": pads, "dilations": d, "group": g,
             "output_padding": op_}
        sparsity = weight_sparsity(state.graph, ins[1]) if state.const(ins[1]) else "0"
        return make_kernel("ConvTranspose", p, sparsity, precision=precision)
    if kind == "Reorder":
        return make_kernel("Reorder", {"op": op, "x": state.need_shape(ins[0])}, precision="fp32")
    if kind == "Conv":
        return _lower_conv(state, w, make_kernel)
    if kind == "MatMul":
        return _lower_matmul(state, w, make_kernel)
    if kind in SEQUENCE_KINDS:
        return _lower_sequence_op(state, w, kind, make_kernel, precision)
    raise Unpriceable(f"no op kind prices {w.domain or 'ai.onnx'}:{op}")


#: kinds of recurrent layers and LLM operators, lowered by :func:`_lower_sequence_op`
SEQUENCE_KINDS = ("LSTM", "GRU", "RNN", "Attention", "RotaryEmbedding", "MatMulNBits", "Einsum", "EmbedLayerNorm")


def _needs(state: FusionState, w: WorkNode, t: str, what: str) -> list:
    """The shape of ``w``'s input ``t``; Unpriceable naming the node, the input and what settles it."""
    s = state.shape(t) if t else None
    if s is None:
        raise Unpriceable(f"{w.op} node {w.name!r}: the shape of its {what} {t!r} is unknown; give the model's "
                          "input shapes with --shape NAME=DIMS")
    return s


def _input(w: WorkNode, i: int) -> str:
    return w.inputs[i] if len(w.inputs) > i and w.inputs[i] else ""


def _lower_sequence_op(state: FusionState, w: WorkNode, kind: str, make_kernel, precision=None) -> Kernel:
    """The kernel of a recurrent layer, an attention / rotary / n-bit op or an Einsum: its table key from
    the node's shapes and attributes (see the kinds in :mod:`latency.ops`)."""
    op = w.op
    if kind in ops.RECURRENT_GATES:
        x = _needs(state, w, w.inputs[0], "input X")
        if len(x) != 3:
            raise Unpriceable(f"{op} node {w.name!r}: input X has rank {len(x)}, expected 3")
        seq, batch = (x[1], x[0]) if int(w.attr("layout", 0) or 0) == 1 else (x[0], x[1])
        # sequence_lens (input 4): the runtime stops each batch row at its length; a constant one bounds
        # the steps run, one fed at run time is priced at the full length X allows (its upper bound)
        lens = state.value(_input(w, 4)) if _input(w, 4) else None
        if lens is not None and getattr(lens, "size", 0) and lens.dtype != object:
            seq = max(1, min(seq, int(lens.max())))
        direction = w.attr("direction", "forward") or "forward"
        h = w.attr("hidden_size")
        if h is None:
            ws = _needs(state, w, w.inputs[1], "weight W")
            h = ws[-1] // 4 if op == "DynamicQuantizeLSTM" else ws[1] // ops.RECURRENT_GATES[kind]
        p = {"direction": direction, "seq_len": seq, "batch": batch, "input_size": x[2], "hidden_size": int(h)}
        if kind == "GRU":
            p["linear_before_reset"] = int(w.attr("linear_before_reset", 0) or 0)
        if kind == "RNN":
            acts = w.attr("activations") or ["Tanh"]
            p["act"] = acts[0] if acts[0] in ("Tanh", "Relu", "Sigmoid") else acts[0]
        prec = "int8_dynamic" if op == "DynamicQuantizeLSTM" else precision
        # dense: onnxruntime's recurrent kernels have no sparse path (a pruned layer runs the dense GEMMs)
        return make_kernel(kind, p, "0", precision=prec)
    if kind == "Attention" and op == "QAttention":  # quantize_dynamic's Attention: int8 projection
        q = _needs(state, w, w.inputs[0], "input")
        wsh = _needs(state, w, w.inputs[1], "weight")
        nq = int(w.attr("num_heads", 0) or 0)
        if nq < 1 or len(q) != 3:
            raise Unpriceable(f"QAttention node {w.name!r}: needs a num_heads attribute and a 3-D input")
        p = {"op": "Attention", "batch": q[0], "seq_len": q[1], "past_len": 0, "kv_len": q[1], "num_heads": nq,
             "kv_heads": nq, "head_size": wsh[-1] // 3 // nq, "qkv_hidden": q[-1], "mask": int(bool(_input(w, 5))),
             "causal": int(bool(w.attr("unidirectional", 0))), "rotary": 0}
        if _input(w, 8):
            p["past_len"] = _needs(state, w, w.inputs[8], "past state")[3]
        return make_kernel("Attention", p, precision="int8_dynamic")
    if kind == "EmbedLayerNorm":
        ids = _needs(state, w, w.inputs[0], "input ids")
        word = _needs(state, w, w.inputs[2], "word embedding")
        if len(ids) != 2:
            raise Unpriceable(f"{op} node {w.name!r}: input ids have rank {len(ids)}, expected 2")
        p = {"batch": ids[0], "seq_len": ids[1], "hidden": word[-1], "segment": int(bool(_input(w, 1))),
             "mask": int(bool(_input(w, 7)))}
        return make_kernel("EmbedLayerNorm", p, precision="int8" if op == "QEmbedLayerNormalization" else "fp32")
    if kind == "Attention":  # a pass that fused an attention graph states its params (latency.fusion.tensorrt)
        params = w.info.get("attention_params") or _attention_params(state, w)
        return make_kernel("Attention", params, precision=precision)
    if kind == "RotaryEmbedding":
        x = _needs(state, w, w.inputs[0], "input")
        cos = _needs(state, w, w.inputs[2] if w.domain == "com.microsoft" else w.inputs[1], "cos cache")
        heads = int(w.attr("num_heads", 0) or 0)
        if len(x) == 4:
            head = x[-1]
        else:
            head = x[-1] // heads if heads else 2 * cos[-1]
        rot = int(w.attr("rotary_embedding_dim", 0) or 0) or 2 * cos[-1]
        return make_kernel("RotaryEmbedding", {"x": x, "head_size": head, "rotary_dim": rot,
                                               "interleaved": int(w.attr("interleaved", 0) or 0)}, precision=precision)
    if kind == "MatMulNBits":
        a = _needs(state, w, w.inputs[0], "input A")
        m = 1
        for v in a[:-1]:
            m *= v
        k, n = w.attr("K"), w.attr("N")
        if k is None or n is None:
            raise Unpriceable(f"MatMulNBits node {w.name!r} has no K or N attribute")
        p = {"m": m, "k": int(k), "n": int(n), "bits": int(w.attr("bits", 4) or 4),
             "block_size": int(w.attr("block_size", 32) or 32), "accuracy_level": int(w.attr("accuracy_level", 0) or 0),
             "zero_point": int(bool(_input(w, 3))), "bias": int(bool(_input(w, 5)))}
        return make_kernel("MatMulNBits", p, precision=precision)
    if kind == "Einsum":
        shapes = [_needs(state, w, t, f"operand {i}") for i, t in enumerate(w.inputs) if t]
        eq = explicit_einsum(w.attr("equation", ""), shapes)
        if eq is None:
            raise Unpriceable(f"Einsum node {w.name!r}: equation {w.attr('equation')!r} does not match its "
                              f"operands' ranks {shapes}")
        return make_kernel("Einsum", {"equation": eq, "inputs": shapes}, precision=precision)
    raise Unpriceable(f"no op kind prices {w.domain or 'ai.onnx'}:{op}")


def _attention_params(state: FusionState, w: WorkNode) -> dict:
    """Attention params of a com.microsoft Attention, MultiHeadAttention or GroupQueryAttention node."""
    op = w.op
    q = _needs(state, w, w.inputs[0], "query")
    nq = int(w.attr("num_heads", 0) or 0)
    if nq < 1:
        raise Unpriceable(f"{op} node {w.name!r} has no num_heads attribute")
    b, s = q[0], q[1]
    p = {"op": op, "batch": b, "seq_len": s, "past_len": 0, "kv_len": s, "num_heads": nq, "kv_heads": nq,
         "qkv_hidden": 0, "mask": 0, "causal": int(bool(w.attr("unidirectional", 0))), "rotary": 0}
    if op == "Attention":
        wsh = _needs(state, w, w.inputs[1], "weights")
        sizes = w.attr("qkv_hidden_sizes")
        q_hidden = int(sizes[0]) if sizes else wsh[-1] // 3
        p.update(head_size=q_hidden // nq, qkv_hidden=q[-1], mask=int(bool(_input(w, 3))))
        if _input(w, 4):
            p["past_len"] = _needs(state, w, w.inputs[4], "past state")[3]
        return p
    if op == "MultiHeadAttention":
        if len(q) == 5:  # packed [b, s, heads, 3, d]
            p["head_size"] = q[-1]
        else:
            p["head_size"] = q[-1] // nq
        k = _input(w, 1)
        if k:
            ks = _needs(state, w, k, "key")
            p["kv_len"] = ks[2] if len(ks) == 4 else ks[1]
        p["mask"] = int(bool(_input(w, 4)))
        if _input(w, 6):
            p["past_len"] = _needs(state, w, w.inputs[6], "past key")[2]
        return p
    nkv = int(w.attr("kv_num_heads", 0) or 0)
    if nkv < 1:
        raise Unpriceable(f"GroupQueryAttention node {w.name!r} has no kv_num_heads attribute")
    packed = not _input(w, 1)
    p.update(kv_heads=nkv, head_size=q[-1] // (nq + 2 * nkv) if packed else q[-1] // nq, causal=1,
             rotary=int(bool(w.attr("do_rotary", 0))))
    past = 0
    if _input(w, 3):
        past = _needs(state, w, w.inputs[3], "past key")[2]
    total = state.scalar(_input(w, 6)) if _input(w, 6) else None
    if total is not None and total >= s:  # a shared past/present buffer is longer than the cache in use
        past = int(total) - s
    p["past_len"] = past
    return p


def explicit_einsum(equation: str, shapes: list) -> str | None:
    """``equation`` with its '...' spelled out in letters and its output written out (as ONNX defines an
    implicit one: the letters used once, in alphabetical order); None when it does not fit ``shapes``."""
    eq = (equation or "").replace(" ", "")
    lhs, arrow, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        return None
    used = set(c for c in eq if c.isalpha())
    free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if c not in used]
    ell_rank = 0
    for t, s in zip(terms, shapes):
        if "..." in t:
            ell_rank = max(ell_rank, len(s) - (len(t) - 3))
    if ell_rank < 0 or ell_rank > len(free):
        return None
    ell = "".join(free[:ell_rank])
    new_terms = []
    for t, s in zip(terms, shapes):
        if "..." in t:
            n = len(s) - (len(t) - 3)
            t = t.replace("...", ell[ell_rank - n:] if n else "")
        if len(t) != len(s) or not t.isalpha() and t != "":
            return None
        new_terms.append(t)
    if arrow:
        out = out.replace("...", ell)
    else:
        counts: dict = {}
        for t in new_terms:
            for c in t:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    if not (out.isalpha() or out == "") or any(c not in "".join(new_terms) for c in out):
        return None
    return ",".join(new_terms) + "->" + out


#: a Loop / Scan whose body times its iterations would make more kernels than this is not expanded
MAX_EXPANDED_KERNELS = 2_000_000


def _lower_control_flow(state: FusionState, w: WorkNode) -> list:
    """The kernels an If, Loop or Scan node runs: its bodies fused with the same rules (recursively),
    named ``node/branch/kernel``; an If with a constant condition runs the branch it takes, otherwise
    both branches' kernels are tagged with ``Kernel.branch`` (the estimate keeps the costlier); a
    Loop or Scan runs its body once per iteration (the first iteration's kernels carry the body's
    node names, the others none, as a duplicate does)."""
    from .driver import fuse

    cf = state.graph.control[w.rec.name]
    if cf.problem:
        raise Unpriceable(f"{cf.op_type} {w.name!r}: {cf.problem}")
    out: list = []
    for attr, body in cf.bodies.items():
        ks, unc = fuse(body, state.rules)
        prefix = f"{w.name}/{attr}/"
        tag = ((w.name, attr),) if cf.op_type == "If" and cf.taken is None else ()
        state.uncovered.extend(Uncovered(prefix + u.node, u.op_type, u.reason) for u in unc)
        ks = [replace(k, name=prefix + k.name, nodes=tuple(prefix + n for n in k.nodes), branch=tag + k.branch)
              for k in ks]
        if cf.op_type == "If":
            out += ks
            continue
        if cf.trips * len(ks) > MAX_EXPANDED_KERNELS:
            raise Unpriceable(f"{cf.op_type} {w.name!r}: {cf.trips} iterations of a {len(ks)}-kernel body exceed "
                              f"{MAX_EXPANDED_KERNELS:,} kernels")
        out += ks
        for i in range(1, cf.trips):
            out += [replace(k, name=f"{w.name}/{attr}[{i}]/{k.name[len(prefix):]}", nodes=(), repeat=True) for k in ks]
        if cf.trips == 0:
            out = []
    # the control-flow node itself belongs to its first kernel (or to a free one when its bodies run none)
    if out:
        out[0] = replace(out[0], nodes=(w.name,) + out[0].nodes, op_types=(w.op,) + out[0].op_types)
    else:
        out = [Kernel(w.name, "Free", {"op": w.op}, "fp32", "0", (w.name,), (w.op,))]
    return out
