"""Quantization passes: static QDQ node units -> int8 kernels, dynamic quantization -> one
int8_dynamic kernel (level 2)."""

from __future__ import annotations

from ..workgraph import INT8_DTYPES, FusionState, Pass

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


def qdq(state: FusionState) -> None:
    """DQ -> op -> [Relu/Clip ->] Q node units of the ops in :data:`QDQ_UNIT_OPS` become one int8
    kernel of the op's kind (a float-output MatMul/Gemm unit needs no Q); the remaining standalone
    Q/DQ nodes stay Quant kernels, a DQ shared by several consumers once per consumer outside the
    int8 units.

    Mirrors onnxruntime's QDQSelectorActionTransformer, QDQFinalCleanupTransformer and
    EnsureUniqueDQForNodeUnit (level 2).
    """
    for w in list(state.live):
        if w.dead or w.domain != "" or w.op not in QDQ_UNIT_OPS or w.info.get("qdq"):
            continue
        pos = QDQ_UNIT_OPS[w.op]
        idx = [i for i, t in enumerate(w.inputs) if t] if pos is None else [i for i in pos if i < len(w.inputs)]
        if not idx or any(not w.inputs[i] for i in idx):
            continue
        dqs = [state.producer(w.inputs[i]) for i in idx]
        if any(not state.is_op(d, "DequantizeLinear") for d in dqs):
            continue
        if any(state.dtype(d.inputs[0]) not in INT8_DTYPES for d in dqs):
            continue
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
                continue
        # the index is updated for the nodes this unit changes, not rebuilt
        snap = state.snapshot([w, *dqs, *chain, q if has_q else None] +
                              [state.producer(t) for i, t in enumerate(w.inputs) if i not in idx and t])
        members = list(w.members)
        new_inputs = list(w.inputs)
        for i, d in zip(idx, dqs):
            new_inputs[i] = d.inputs[0]
            if len(state.consumers(d.outputs[0])) == 1 and d.outputs[0] not in state.graph_outputs:
                members = list(d.members) + members
                d.dead = True
            else:
                d.info.setdefault("shared_by", []).append(w)
        # bias / extra DQs of constants
        for i, t in enumerate(w.inputs):
            if i in idx or not t:
                continue
            d = state.producer(t)
            if state.is_op(d, "DequantizeLinear") and state.const(d.inputs[0]):
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
        if has_q:
            members += q.members
            w.outputs = list(q.outputs)
            w.pos = max(w.pos, q.pos, *[c.pos for c in chain]) if chain else max(w.pos, q.pos)
            q.dead = True
        state.update_index(snap)
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

    Mirrors onnxruntime's DynamicQuantizeMatMulFusion and MatMulIntegerToFloatFusion (level 2).
    """
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
