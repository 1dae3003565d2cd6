"""Quantization passes: static QDQ node units -> int8 kernels, dynamic quantization -> one
int8_dynamic kernel (level 2)."""

from __future__ import annotations

from ..workgraph import INT8_DTYPES, FusionState, InsertedKernel, Pass
from .cleanup import merge_into

#: op types whose QDQ node unit runs as an int8 kernel of the op's kind (the positions of the data
#: inputs that must come from a DequantizeLinear; None: every input): onnxruntime's QDQ selectors
QDQ_UNIT_OPS = {
    "Conv": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1), "Add": (0, 1), "Mul": (0, 1), "Concat": None,
    "Softmax": (0,), "Sigmoid": (0,), "LeakyRelu": (0,), "AveragePool": (0,), "GlobalAveragePool": (0,),
    "MaxPool": (0,), "Resize": (0,), "Transpose": (0,), "Reshape": (0,), "Squeeze": (0,), "Unsqueeze": (0,),
    "Flatten": (0,), "Gather": (0,), "Slice": (0,), "Split": (0,), "Expand": (0,), "Tile": (0,),
    "DepthToSpace": (0,), "SpaceToDepth": (0,), "Pad": (0,), "ConvTranspose": (0, 1), "Where": (1, 2),
    "InstanceNormalization": (0,), "ArgMax": (0,), "GlobalMaxPool": (0,), "HardSwish": (0,),
}


#: ops whose every present input must come from a DequantizeLinear (onnxruntime's selectors count the
#: node's actual inputs: a float bias keeps a Conv or Gemm out of its int8 unit)
ALL_INPUTS_DQ = ("Conv", "Gemm", "MatMul", "Add", "Mul", "Concat", "ConvTranspose")
#: ops with a weight input (position 1) whose type may differ from the activations'
WEIGHTED = ("Conv", "MatMul", "Gemm", "ConvTranspose")


#: ops QDQPropagationTransformer moves a QuantizeLinear backward across (they run on int8 data as is)
PROPAGATE_Q_ACROSS = ("MaxPool", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten")


def propagate_q(state: FusionState) -> None:
    """A QuantizeLinear that is the only reader of a data-movement op reading a float tensor moves before
    that op, which then runs on int8 data: e.g. the MaxPool after a float conv left out of quantization
    becomes the (slow, NCHW) uint8 MaxPool, with the quantization of its larger input before it.

    Mirrors onnxruntime's QDQPropagationTransformer (level 1) for the backward direction, followed by the
    DropQDQ selector.
    """
    for w in list(state.live):
        if w.dead or w.domain != "" or w.op not in PROPAGATE_Q_ACROSS or not w.inputs or not w.inputs[0]:
            continue
        if state.is_op(state.producer(w.inputs[0]), "DequantizeLinear") or not state.f32(w.inputs[0]):
            continue
        q = state.out_single(w)
        if not state.is_op(q, "QuantizeLinear"):
            continue
        # the moved pair feeds one DQ, so on x86 it turns uint8; the original Q does only where it feeds
        # one DQ read once: otherwise it stays int8, the types differ, and the op runs in float between
        # the new pair and the original Q
        readers = state.consumers(q.outputs[0])
        one_dq = len(readers) == 1 and state.is_op(readers[0][0], "DequantizeLinear") and \
            len(state.consumers(readers[0][0].outputs[0])) == 1 and q.outputs[0] not in state.graph_outputs
        r = state.producer(w.inputs[0])
        if state.is_op(r, "Relu", "Clip") and state.only_consumer(r.outputs[0]) is w and \
                _redundant_before_q(state, r, q):
            # ReluQuantFusion / ClipQuantFusion on the moved Q: the activation goes
            snap = state.snapshot([r, w])
            w.inputs = [r.inputs[0]] + list(w.inputs[1:])
            w.members = list(r.members) + list(w.members)
            r.dead = True
            state.update_index(snap)
        if not state.rules.qdq_int8_allowed and not one_dq:
            state.inserted.append(InsertedKernel(w.pos - 0.5, "QuantizeLinear", w.inputs[0]))
            state.inserted.append(InsertedKernel(w.pos - 0.4, "DequantizeLinear", w.inputs[0]))
            w.info["q_dq_before"] = True  # its input is read through a Q -> DQ pair: NCHW, whatever the producer
            continue
        snap = state.snapshot([w, q])
        w.members = list(w.members) + list(q.members)
        w.outputs = list(q.outputs)
        w.pos = max(w.pos, q.pos)
        w.info.update({"qdq": True, "precision": "int8", "qdq_acts": []})
        q.dead = True
        state.inserted.append(InsertedKernel(w.pos - 0.5, "QuantizeLinear", w.inputs[0]))
        state.update_index(snap)
    state.reindex()


def s8_to_u8(state: FusionState) -> None:
    """Where the runtime cannot run signed int8 activations (x86-64): a QuantizeLinear whose output feeds
    exactly one DequantizeLinear read once (after EnsureUniqueDQForNodeUnit, a DQ read by two nodes is two
    DQs), neither a graph output, both with the same constant scalar int8 zero point, becomes a uint8 pair.
    A Q read by several DQs (a residual branch point) stays int8, and so do constant int8 weights (onnxruntime
    1.32's optimized graphs keep them int8: an int8 embedding table read by a Gather whose output Q turned
    uint8 is dequantized whole every run).

    Mirrors onnxruntime's QDQS8ToU8Transformer (level 2, before the QDQ selectors; weights_to_u8 off).
    """
    for q in state.live:
        if not state.is_op(q, "QuantizeLinear") or len(q.inputs) < 3 or not q.inputs[2] or not q.outputs:
            continue
        out = q.outputs[0]
        if state.dtype(out) != "int8" or out in state.graph_outputs or len(state.consumers(out)) != 1:
            continue
        dq = state.consumers(out)[0][0]
        if not state.is_op(dq, "DequantizeLinear") or len(dq.inputs) < 3 or not dq.inputs[2]:
            continue
        # EnsureUniqueDQForNodeUnit (level 1) has already given each reader of the DQ its own copy:
        # a DQ read twice means a Q with two DQs, which stays int8
        if len(state.consumers(dq.outputs[0])) + (dq.outputs[0] in state.graph_outputs) != 1:
            continue
        zq, zd = state.value(q.inputs[2]), state.value(dq.inputs[2])
        if zq is None or zd is None or zq.size != 1 or zd.size != 1 or \
                int(zq.reshape(-1)[0]) != int(zd.reshape(-1)[0]):
            continue
        state.dtype_override[out] = "uint8"


def _weight_bias_quantized(state: FusionState, w) -> bool:
    """Whether onnxruntime's WeightBiasQuantization quantizes ``w``'s float weight: a Conv, ConvTranspose
    or Gemm whose input is a per-tensor DequantizeLinear, whose output reaches a QuantizeLinear with no
    branch (a Relu/Clip between, or a Reshape/Transpose the Q is propagated across), and whose weight is
    a float32 initializer."""
    if w.op not in ("Conv", "ConvTranspose", "Gemm") or len(w.inputs) < 2 or not w.inputs[1]:
        return False
    d = state.producer(w.inputs[0])
    if not state.is_op(d, "DequantizeLinear") or len(d.inputs) < 2:
        return False
    scale = state.shape(d.inputs[1])
    if scale is None or any(v != 1 for v in scale):  # a per-tensor scale
        return False
    if state.producer(w.inputs[1]) is not None or not state.const(w.inputs[1]) or \
            state.dtype(w.inputs[1]) != "float32":
        return False
    cur = w
    while True:
        nxt = state.out_single(cur)
        if nxt is None:
            return False
        if state.is_op(nxt, "QuantizeLinear"):
            return True
        if nxt.op in PROPAGATE_Q_ACROSS and nxt.info.get("qdq"):
            return True  # the Q that followed it was moved before it (propagate_q)
        # Relu/Clip as the selector allows; data-movement ops QDQPropagation moves the Q across
        if nxt.op not in ("Relu", "Clip", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten"):
            return False
        cur = nxt


def _weight_zero_point(state: FusionState, d) -> bool:
    """Whether weight DequantizeLinear ``d`` has a constant zero point that is not all zero."""
    if d is None or not state.is_op(d, "DequantizeLinear") or len(d.inputs) < 3 or not d.inputs[2]:
        return False
    z = state.value(d.inputs[2])
    return z is not None and bool((z != 0).any())


def _types_ok(state: FusionState, w, dqs, idx, q, weight_type=None) -> bool:
    """onnxruntime's selector type rules for a unit of ``w`` with input DQs ``dqs`` (at ``idx``) and
    output Q ``q`` (None: float output); ``weight_type``: a weight the runtime quantizes itself."""
    types = [state.dtype(d.inputs[0]) for d in dqs]
    act = types[0]
    if w.op in WEIGHTED:
        acts = [t for i, t in zip(idx, types) if i != 1]
        weight = types[idx.index(1)] if 1 in idx else weight_type
        if act == "int8" and weight is not None and weight != "int8":
            return False
        if act == "int8" and w.op != "Gemm" and not state.rules.qdq_int8_allowed:
            return False
    else:
        acts = types
    if any(t != act for t in acts):
        return False
    if q is not None and state.dtype(q.outputs[0]) != act:
        return False
    return True



def _unit(state: FusionState, w) -> tuple:
    """Fuse ``w`` with its DQs and Q into one int8 unit where the runtime does: (fused, whether
    WeightBiasQuantization quantized its weight)."""
    if w.dead or w.domain != "" or w.op not in QDQ_UNIT_OPS or w.info.get("qdq"):
        return False, False
    pos = QDQ_UNIT_OPS[w.op]
    idx = [i for i, t in enumerate(w.inputs) if t] if pos is None else [i for i in pos if i < len(w.inputs)]
    if not idx or any(not w.inputs[i] for i in idx):
        return False, False
    # WeightBiasQuantization (level 1): a float Conv/ConvTranspose/Gemm between a DQ and a Q gets its
    # float weight (and bias) quantized by the runtime, so it forms a QDQ unit after all
    quantized_weight = _weight_bias_quantized(state, w)
    if quantized_weight:
        idx = [i for i in idx if i != 1]
    dqs = [state.producer(w.inputs[i]) for i in idx]
    if any(not state.is_op(d, "DequantizeLinear") for d in dqs):
        return False, quantized_weight
    if any(state.dtype(d.inputs[0]) not in INT8_DTYPES for d in dqs):
        return False, quantized_weight
    if w.op in ALL_INPUTS_DQ and any(t and i not in idx and not state.is_op(state.producer(t), "DequantizeLinear")
                                     and not (quantized_weight and i in (1, 2) and state.const(t))
                                     for i, t in enumerate(w.inputs)):
        return False, quantized_weight
    # a Split unit: one Q on every output (SplitSelector), all of the input's type
    if w.op == "Split" and len([o for o in w.outputs if o]) > 1:
        qs = [state.only_consumer(o) if o else None for o in w.outputs]
        act = state.dtype(dqs[0].inputs[0])
        if any(not state.is_op(q, "QuantizeLinear") or state.dtype(q.outputs[0]) != act for q in qs):
            return False, quantized_weight
        snap = state.snapshot([w, *dqs, *qs])
        d = dqs[0]
        w.inputs = [d.inputs[0]] + list(w.inputs[1:])
        if len(state.consumers(d.outputs[0])) == 1 and d.outputs[0] not in state.graph_outputs:
            w.members = list(d.members) + list(w.members)
            d.dead = True
        else:
            d.info.setdefault("shared_by", []).append(w)
        for q in qs:
            w.members = list(w.members) + list(q.members)
            q.dead = True
        w.outputs = [q.outputs[0] for q in qs]
        w.pos = max([w.pos] + [q.pos for q in qs])
        w.info.update({"qdq": True, "precision": "int8", "qdq_acts": []})
        state.update_index(snap)
        return True, quantized_weight
    # output side: [Relu/Clip ->] Q
    chain = []
    cur = w
    q = state.out_single(cur)
    if q is not None and q.op in ("Relu", "Clip") and w.op not in ("Relu", "Clip"):
        chain.append(q)
        cur = q
        q = state.out_single(q)
    has_q = state.is_op(q, "QuantizeLinear")
    if not has_q:
        if w.op not in ("MatMul", "Gemm") or chain:
            return False, quantized_weight
    if not _types_ok(state, w, dqs, idx, q if has_q else None, "int8" if quantized_weight else None):
        return False, quantized_weight
    # the index is updated for the nodes this unit changes, not rebuilt
    snap = state.snapshot([w, *dqs, *chain, q if has_q else None] +
                          [state.producer(t) for i, t in enumerate(w.inputs) if i not in idx and t])
    members = list(w.members)
    new_inputs = list(w.inputs)
    # the unit's DQs, then the bias / extra DQs of constants
    absorbed = list(zip(idx, dqs)) + [(i, state.producer(t)) for i, t in enumerate(w.inputs) if i not in idx and t]
    # a weight with a non-zero zero point: WeightBiasQuantization quantizes a float weight asymmetric
    # (onnxruntime 1.32: per tensor, the zero point from the weight's range), and a file's own weight
    # DequantizeLinear may carry one; the int8 conv then takes its zero-point path (read before the
    # weight's DQ is absorbed)
    asym = w.op == "Conv" and (quantized_weight or _weight_zero_point(state, dict(absorbed).get(1)))
    for i, d in absorbed:
        if i not in idx and not (state.is_op(d, "DequantizeLinear") and state.const(d.inputs[0])):
            continue
        new_inputs[i] = d.inputs[0]
        if len(state.consumers(d.outputs[0])) == 1 and d.outputs[0] not in state.graph_outputs:
            members = list(d.members) + members
            d.dead = True
        else:
            d.info.setdefault("shared_by", []).append(w)
    for c in chain:
        members += c.members
        c.dead = True
    w.inputs = new_inputs
    w.members = members
    w.info["qdq"] = True
    w.info["precision"] = "int8"
    w.info["qdq_acts"] = [c.op for c in chain]
    if asym:
        w.info["wzp"] = True
    if has_q:
        members += q.members
        w.outputs = list(q.outputs)
        w.pos = max(w.pos, q.pos, *[c.pos for c in chain]) if chain else max(w.pos, q.pos)
        q.dead = True
    state.update_index(snap)
    return True, quantized_weight


def _bottom_zero_point(state: FusionState, q) -> bool:
    """Whether QuantizeLinear ``q``'s zero point is the bottom of its type's range (uint8 0, int8 -128)."""
    if len(q.inputs) < 3 or not q.inputs[2]:
        return False
    zp = state.value(q.inputs[2])
    return zp is not None and zp.size == 1 and \
        int(zp.reshape(-1)[0]) == {"uint8": 0, "int8": -128}.get(str(zp.dtype))


def _clip_bounds(state: FusionState, c):
    """(min, max) of Clip ``c`` (opset 11+: constant inputs; earlier: attributes), None if not constant."""
    import math

    lo, hi = -math.inf, math.inf
    if len(c.inputs) > 1 or c.attr("min") is not None or c.attr("max") is not None:
        if c.attr("min") is not None:
            lo = float(c.attr("min"))
        if c.attr("max") is not None:
            hi = float(c.attr("max"))
        for i in (1, 2):
            if len(c.inputs) > i and c.inputs[i]:
                v = state.value(c.inputs[i])
                if v is None or v.size != 1:
                    return None
                if i == 1:
                    lo = float(v.reshape(-1)[0])
                else:
                    hi = float(v.reshape(-1)[0])
    return lo, hi


def _q_range(state: FusionState, q):
    """The float range QuantizeLinear ``q`` represents, None if its scale or zero point is not constant."""
    import numpy as np

    if len(q.inputs) < 3 or not q.inputs[1] or not q.inputs[2]:
        return None
    s, z = state.value(q.inputs[1]), state.value(q.inputs[2])
    if s is None or z is None or s.size != 1 or z.size != 1 or z.dtype not in (np.uint8, np.int8):
        return None
    info = np.iinfo(z.dtype)
    zp, sc = int(z.reshape(-1)[0]), float(s.reshape(-1)[0])
    return (info.min - zp) * sc, (info.max - zp) * sc


def _redundant_before_q(state: FusionState, a, q) -> bool:
    """Whether activation ``a`` right before QuantizeLinear ``q`` changes nothing the Q keeps: a Relu when
    the Q's zero point is the bottom of its range (ReluQuantFusion), a Clip whose bounds hold the Q's whole
    range (ClipQuantFusion)."""
    if a.op == "Relu":
        return _bottom_zero_point(state, q)
    if a.op == "Clip":
        b, r = _clip_bounds(state, a), _q_range(state, q)
        return b is not None and r is not None and b[0] <= r[0] + 1e-6 and b[1] >= r[1] - 1e-6 * max(1.0, abs(r[1]))
    return False


def _drop_redundant_activations(state: FusionState) -> None:
    """A float Relu or Clip whose only reader is a QuantizeLinear that keeps nothing it would change is
    removed (onnxruntime's ReluQuantFusion and ClipQuantFusion, level 2). Its record goes with the Q kernel."""
    for r in list(state.live):
        if r.dead or not state.is_op(r, "Relu", "Clip") or r.info.get("qdq") or r.outputs[0] in state.graph_outputs:
            continue
        q = state.only_consumer(r.outputs[0])
        if not state.is_op(q, "QuantizeLinear") or q.inputs[0] != r.outputs[0]:
            continue
        if not _redundant_before_q(state, r, q):
            continue
        snap = state.snapshot([r, q])
        q.inputs[0] = r.inputs[0]
        q.members = list(r.members) + list(q.members)
        r.dead = True
        state.update_index(snap)
    state.reindex()


WBQ_INPUTS = (1, 2)


def _runtime_dequantized_weight(state: FusionState, w) -> None:
    """A Conv/Gemm whose weight WeightBiasQuantization quantized (level 1) but whose unit the selectors
    then refused runs in float on weights (and bias) dequantized every run: a DequantizeLinear kernel
    each, and no pre-packed (NCHWc) weights."""
    snap = state.snapshot([w])
    for i in WBQ_INPUTS:
        if i >= len(w.inputs) or not w.inputs[i] or not state.const(w.inputs[i]):
            continue
        t = w.inputs[i]
        dq = f"{t}/weight_bias_dq"
        state.shape_alias[dq] = t
        w.inputs[i] = dq
        # named after the constant it dequantizes (which the what-if tables attribute to the node reading it)
        state.inserted.append(InsertedKernel(w.pos - 0.45 + 0.01 * i, "DequantizeLinear", t))
    state.update_index(snap)

def qdq(state: FusionState) -> None:
    """DQ -> op -> [Relu/Clip ->] Q node units of the ops in :data:`QDQ_UNIT_OPS` become one int8
    kernel of the op's kind (a float-output MatMul/Gemm unit needs no Q); the remaining standalone
    Q/DQ nodes stay Quant kernels, a DQ shared by several consumers once per consumer outside the
    int8 units. A unit whose input and output types differ (int8 against uint8), or whose int8
    activations the target cannot run, is not fused: its op runs in float between Q/DQ kernels.

    Mirrors onnxruntime's WeightBiasQuantization (level 1), QDQS8ToU8Transformer,
    QDQSelectorActionTransformer (the type checks of its selectors), QDQFinalCleanupTransformer and
    EnsureUniqueDQForNodeUnit (level 2).
    """
    propagate_q(state)
    if not state.rules.qdq_int8_allowed:
        s8_to_u8(state)
    for w in list(state.live):
        fused, quantized_weight = _unit(state, w)
        if quantized_weight and not fused:
            _runtime_dequantized_weight(state, w)
    state.reindex()
    _drop_redundant_activations(state)
    state.reindex()
    # EnsureUniqueDQForNodeUnit: a DQ feeding several consumers is duplicated, one per consumer;
    # the copies inside int8 units vanish, every other consumer keeps a DQ kernel
    for d in list(state.live):
        if not state.is_op(d, "DequantizeLinear"):
            continue
        rest = [c for c, _ in state.consumers(d.outputs[0])]
        n = len(rest) + (d.outputs[0] in state.graph_outputs)
        if d.info.get("shared_by") and n == 0:
            owner = d.info["shared_by"][0]
            owner.members = list(d.members) + owner.members
            d.dead = True
        else:
            d.info["copies"] = max(1, n)
    state.reindex()


def dynamic_quant(state: FusionState) -> None:
    """DynamicQuantizeLinear -> MatMulInteger / ConvInteger -> Cast -> Mul(scale) [-> Add(bias)]
    becomes one int8_dynamic MatMul / Conv kernel (a DynamicQuantizeLinear shared with other
    consumers stays a kernel of its own).

    Mirrors onnxruntime's DynamicQuantizeMatMulFusion and MatMulIntegerToFloatFusion (level 2), after
    CommonSubexpressionElimination (level 1) made the DynamicQuantizeLinears of one tensor one node.
    """
    seen: dict = {}
    merged = False
    for d in list(state.live):
        if not state.is_op(d, "DynamicQuantizeLinear") or not d.inputs or not d.inputs[0]:
            continue
        keep = seen.setdefault(d.inputs[0], d)
        if keep is d or any(o in state.graph_outputs for o in d.outputs) or \
                any(o and not k for o, k in zip(d.outputs, keep.outputs)):
            continue
        merge_into(state, keep, d)
        merged = True
    if merged:
        state.reindex()
    for w in list(state.live):
        if w.dead or not state.is_op(w, "MatMulInteger", "ConvInteger"):
            continue
        d = state.producer(w.inputs[0])
        cast = state.out_single(w)
        if not state.is_op(d, "DynamicQuantizeLinear") or not state.is_op(cast, "Cast"):
            continue
        mu = state.out_single(cast)
        if not state.is_op(mu, "Mul"):
            continue
        sc = state.other_input(mu, cast.outputs[0])
        members = [w, cast, mu]
        ms = state.producer(sc) if sc else None
        if state.is_op(ms, "Mul") and state.only_consumer(ms.outputs[0]) is mu:
            members.append(ms)
        last = mu
        bias = None
        if w.op == "MatMulInteger":
            ad = state.out_single(mu)
            if state.is_op(ad, "Add") and state.const(state.other_input(ad, mu.outputs[0]) or ""):
                bias = state.other_input(ad, mu.outputs[0])
                members.append(ad)
                last = ad
        inside = {id(m) for m in members}
        exclusive = all(o == "" or (o not in state.graph_outputs and
                                   all(id(c) in inside for c, _ in state.consumers(o)))
                        for o in d.outputs)
        if not exclusive and w.op == "MatMulInteger":
            # a DynamicQuantizeLinear shared by several MatMulIntegers (attention's Q/K/V projections):
            # onnxruntime 1.32 fuses none of them; each runs MatMulInteger, Cast, Mul [, Add]
            continue
        if exclusive:
            members.append(d)
        recs = state.members_in_order(members)
        op = "MatMul" if w.op == "MatMulInteger" else "Conv"
        # a DynamicQuantizeLinear shared by several MatMulIntegers stays a kernel of its own
        ins = [d.inputs[0] if exclusive else w.inputs[0], w.inputs[1]] + ([bias] if bias else [])
        nw = state.new_node(w.name, op, "", w.rec, ins, last.outputs, recs,
                           {"precision": "int8_dynamic", "dyn": True})
        if bias:
            nw.info["bias"] = bias
        for m in members:
            m.dead = True
        state.reindex()


QDQ = Pass("qdq", matches="DequantizeLinear -> op in QDQ_UNIT_OPS -> [Relu/Clip ->] QuantizeLinear",
           produces=("QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
                     "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearSoftmax",
                     "QLinearConcat", "QuantizeLinear", "DequantizeLinear"),
           mirrors="QDQSelectorActionTransformer, QDQFinalCleanupTransformer, EnsureUniqueDQForNodeUnit",
           apply=qdq, switches=("qdq",))
DYNAMIC_QUANT = Pass("dynamic_quant", matches="DynamicQuantizeLinear -> MatMulInteger | ConvInteger -> Cast -> "
                     "Mul(scale) [-> Add(bias)]",
                     produces=("DynamicQuantizeMatMul", "MatMulIntegerToFloat", "ConvInteger", "DynamicQuantizeLinear"),
                     mirrors="DynamicQuantizeMatMulFusion, MatMulIntegerToFloatFusion", apply=dynamic_quant,
                     switches=("dynamic_quant",))
