"""Layout passes (level 3): the x86 NCHWc blocked layout with its reorders, and the NHWC transposes
around int8 conv / pool regions."""

from __future__ import annotations

from collections import Counter

from ...ops import REORDER_INPUT, REORDER_OUTPUT
from ..workgraph import (CONV_OPS, INT8_DTYPES, INT8_PRECISIONS, POOL_OPS, FusionState, InsertedKernel, Pass,
                         TO_NCHW, TO_NHWC, WorkNode)

#: activations a blocked conv absorbs, or that run blocked on their own
_NCHWC_ACTS = ("Relu", "Sigmoid", "Tanh", "HardSigmoid")
#: other unary ops with a blocked kernel
_NCHWC_UNARY = ("Gelu", "QuickGelu")


def _uses(state: FusionState) -> Counter:
    """How many live inputs (and graph outputs) read each tensor."""
    u = Counter()
    for w in state.live:
        for t in w.inputs:
            if t:
                u[t] += 1
    for t in state.graph_outputs:
        u[t] += 1
    return u


def _nchwc_conv_ok(state: FusionState, w) -> tuple:
    """(can run blocked, reads NCHW directly) of conv ``w``."""
    if w.info.get("precision") in INT8_PRECISIONS or len(w.inputs) < 2:
        return False, False
    wt = w.inputs[1]
    ws = state.shape(wt)
    if not state.const(wt) or not state.f32(wt) or ws is None or len(ws) != 4:
        return False, False
    if not state.f32(w.inputs[0]):
        return False, False
    if len(w.inputs) > 2 and w.inputs[2]:
        bs = state.shape(w.inputs[2])
        if not state.const(w.inputs[2]) or bs is None or len(bs) != 1 or bs[0] != ws[0]:
            return False, False
    cout, cin_g = ws[0], ws[1]
    g = int(w.attr("group", 1) or 1)
    blk, al = state.rules.nchwc_block, state.rules.nchwc_align
    if g > 1:
        if cin_g == 1 and cout == g:
            return cout % al == 0, False
        return cin_g % blk == 0 and (cout // g) % blk == 0 and cout % g == 0, False
    if cin_g < blk:
        return True, True
    return cin_g % al == 0, False


def _resize_nchwc_ok(state: FusionState, w) -> bool:
    """Whether Resize / Upsample ``w`` has a blocked kernel (integer spatial scales, supported modes)."""
    mode = w.attr("mode", "nearest") or "nearest"
    opset = state.graph.opset
    if w.op == "Upsample" or opset < 11:
        scales_t = w.inputs[1] if len(w.inputs) > 1 else ""
        if mode not in ("nearest", "linear", "bilinear"):
            return False
    else:
        if len(w.inputs) < 3 or not w.inputs[2] or (len(w.inputs) > 3 and w.inputs[3]):
            return False
        scales_t = w.inputs[2]
        ctm = w.attr("coordinate_transformation_mode", "half_pixel") or "half_pixel"
        if mode == "nearest":
            if ctm != "asymmetric" or (w.attr("nearest_mode", "round_prefer_floor") or "") != "floor":
                return False
        elif mode == "linear":
            if ctm not in ("half_pixel", "align_corners", "asymmetric"):
                return False
        else:
            return False
    v = state.value(scales_t)
    if v is None or v.size != 4:
        return False
    sc = [float(s) for s in v.reshape(-1)]
    if any(s < 1 or s != int(s) for s in sc):
        return False
    return sc[0] == 1 and sc[1] == 1


def nchwc(state: FusionState) -> None:
    """The x86 NCHWc blocked layout: float convs whose channels fit the block run blocked
    (``nchwc_block`` channels per block; a conv with fewer input channels than a block reads NCHW
    directly), and so do the pools, BatchNormalization and per-channel Mul (as depthwise 1x1 convs),
    Add/Sum/Mul/Concat/Resize and activations fed only by blocked tensors. A residual Add/Sum and an
    activation fold into a single-use blocked conv; ReorderInput / ReorderOutput kernels are inserted
    where blocked regions start and end; a Transpose to NHWC after a blocked tensor becomes a
    channels-last ReorderOutput, and one from NHWC before a blocked conv a channels-last ReorderInput.

    Mirrors onnxruntime's NchwcTransformer (level 3, x86-64 only).
    """
    block = state.rules.nchwc_block
    uses = _uses(state)
    #: tensor in the blocked layout -> [its producer, channels, uses at the start, uses not yet blocked]
    blocked: dict = {}
    reordered: set = set()

    def channels_of(t):
        s = state.shape(t)
        return s[1] if s is not None and len(s) == 4 else None

    def use_blocked(t):
        blocked[t][3] -= 1

    def reorder_input(t, before: WorkNode):
        if t in reordered:
            return
        reordered.add(t)
        state.inserted.append(InsertedKernel(before.pos - 0.5, REORDER_INPUT, t))

    def mark_blocked(w, t, c, node=None):
        blocked[t] = [node or w, c, uses[t], uses[t]]

    def is_blocked_conv(w):
        return w.info.get("nchwc") and (w.op in CONV_OPS or w.info.get("as_conv"))

    for w in list(state.live):
        if w.dead:
            continue
        op = w.op
        data = [t for t in w.inputs if t and not state.const(t)]
        if op in CONV_OPS and w.domain in ("", "com.microsoft") and not w.info.get("sum"):
            ok, direct = _nchwc_conv_ok(state, w)
            if not ok:
                continue
            x = w.inputs[0]
            if not direct:
                if x in blocked:
                    use_blocked(x)
                else:
                    reorder_input(x, w)
            w.info["nchwc"] = True
            mark_blocked(w, w.outputs[0], state.shape(w.inputs[1])[0])
            continue
        if op in ("MaxPool", "AveragePool") and w.domain == "":
            if len([o for o in w.outputs if o]) > 1 or w.info.get("precision") in ("int8",):
                continue
            c = channels_of(w.inputs[0])
            if c is None or not state.f32(w.inputs[0]) or c % block:
                continue
            x = w.inputs[0]
            if x in blocked and not w.info.get("q_dq_before"):
                use_blocked(x)
            else:  # (a Q -> DQ pair before it reads NCHW: the producer's blocked output is reordered back)
                reorder_input(x, w)
            w.info["nchwc"] = True
            mark_blocked(w, w.outputs[0], c)
            continue
        if op in ("GlobalAveragePool", "GlobalMaxPool") and w.domain == "" and data and \
                (data[0] in blocked or state.producer(data[0]) is None):
            # converted when every producer was converted; a graph input has none (edge count 0)
            x = data[0]
            c = blocked[x][1] if x in blocked else channels_of(x)
            if c is None or c % block or not state.f32(x) or w.info.get("precision") == "int8":
                continue
            if x in blocked:
                use_blocked(x)
            else:
                reorder_input(x, w)
            w.info["nchwc"] = True
            mark_blocked(w, w.outputs[0], c)
            continue
        if not data or any(t not in blocked for t in data) or w.domain not in ("", "com.microsoft"):
            continue
        present = [t for t in w.inputs if t]
        if op in ("Add", "Sum", "Mul") and len(present) == len(data) and len(data) >= 1:
            c = blocked[data[0]][1]
            if any(blocked[t][1] != c for t in data):
                continue
            shapes = [state.shape(t) for t in data]
            same = all(s is not None and s == shapes[0] for s in shapes)
            if not same and op == "Mul":
                continue
            for t in data:
                use_blocked(t)
            if op in ("Add", "Sum") and len(data) == 2 and same and state.rules.nchwc_sum:
                fused = False
                for n in (0, 1):
                    entry = blocked[data[n]]
                    node = entry[0]
                    if is_blocked_conv(node) and not node.info.get("sum") and entry[2] == 1 and \
                            not node.info.get("act"):
                        node.info["sum"] = data[1 - n]
                        node.inputs = list(node.inputs) + [data[1 - n]]
                        node.members = node.members + w.members
                        node.outputs = list(w.outputs)
                        node.pos = max(node.pos, w.pos)
                        w.dead = True
                        mark_blocked(node, w.outputs[0], c, node)
                        fused = True
                        break
                if fused:
                    continue
            w.info["nchwc"] = True
            mark_blocked(w, w.outputs[0], c)
        elif op == "Mul" and len(present) == 2 and len(data) == 1:
            # per-channel constant scale -> depthwise 1x1 NCHWc conv
            x = data[0]
            other = state.other_input(w, x)
            c = blocked[x][1]
            s = state.shape(other) if other else None
            if s is None or list(s) not in ([c, 1, 1], [1, c, 1, 1]):
                continue
            use_blocked(x)
            w.info.update(nchwc=True, as_conv=True)
            mark_blocked(w, w.outputs[0], c)
        elif op == "Concat" and w.attr("axis") == 1 and len(present) == len(data):
            if any(blocked[t][1] % block for t in data):
                continue
            for t in data:
                use_blocked(t)
            w.info["nchwc"] = True
            mark_blocked(w, w.outputs[0], sum(blocked[t][1] for t in data))
        elif op in _NCHWC_ACTS and len(data) == 1:
            x = data[0]
            use_blocked(x)
            entry = blocked[x]
            node = entry[0]
            if is_blocked_conv(node) and entry[2] == 1 and not node.info.get("act"):
                node.info["act"] = op
                node.members = node.members + w.members
                node.outputs = list(w.outputs)
                node.pos = max(node.pos, w.pos)
                w.dead = True
                mark_blocked(node, w.outputs[0], entry[1], node)
            else:
                w.info["nchwc"] = True
                mark_blocked(w, w.outputs[0], entry[1])
        elif op == "HardSwish" and len(data) == 1:
            # inlined as HardSigmoid + Mul; NCHWc folds the pair into a single-use conv
            x = data[0]
            use_blocked(x)
            entry = blocked[x]
            node = entry[0]
            if is_blocked_conv(node) and entry[2] == 1 and not node.info.get("act") and \
                    w.outputs[0] not in state.graph_outputs:
                node.info["act"] = "HardSwish"
                node.members = node.members + w.members
                node.outputs = list(w.outputs)
                node.pos = max(node.pos, w.pos)
                w.dead = True
                mark_blocked(node, w.outputs[0], entry[1], node)
            else:
                w.info["nchwc"] = True
                mark_blocked(w, w.outputs[0], entry[1])
        elif op in _NCHWC_UNARY and len(data) == 1:
            x = data[0]
            use_blocked(x)
            w.info["nchwc"] = True
            mark_blocked(w, w.outputs[0], blocked[x][1])
        elif op == "BatchNormalization" and len([o for o in w.outputs if o]) == 1:
            x = data[0] if len(data) == 1 and w.inputs[0] == data[0] else None
            if x is None:
                continue
            c = blocked[x][1]
            if any(state.shape(t) != [c] or not state.f32(t) for t in w.inputs[1:5]):
                continue
            use_blocked(x)
            w.info.update(nchwc=True, as_conv=True)
            mark_blocked(w, w.outputs[0], c)
        elif op == "Transpose" and len(data) == 1:
            perm = w.info.get("perm", w.attr("perm"))
            if perm is None or list(perm) != [0, 2, 3, 1]:
                continue
            use_blocked(data[0])
            w.info["reorder_nhwc"] = True
        elif op in ("Resize", "Upsample") and w.inputs[0] in blocked and data == [w.inputs[0]]:
            if not _resize_nchwc_ok(state, w):
                continue
            use_blocked(w.inputs[0])
            w.info["nchwc"] = True
            mark_blocked(w, w.outputs[0], blocked[w.inputs[0]][1])
    # ReorderInput of a Transpose(0,3,1,2) output reads the NHWC tensor directly (channels_last);
    # the Transpose goes away when every consumer of its output reads the reordered tensor
    for reorder in state.inserted:
        if reorder.what != REORDER_INPUT:
            continue
        tp = state.producer(reorder.tensor)
        if not state.is_op(tp, "Transpose") or tp.domain != "":
            continue
        perm = tp.info.get("perm", tp.attr("perm"))
        if perm is None or [int(v) for v in perm] != [0, 3, 1, 2]:
            continue
        if reorder.tensor in state.graph_outputs or not all(c.info.get("nchwc") and c.op in CONV_OPS + POOL_OPS
                                                            for c, _ in state.consumers(reorder.tensor)):
            continue
        tp.dead = True
        reorder.records = tuple(tp.members)
    # finalize: ReorderOutput for every blocked tensor still used in NCHW form
    for t, (node, c, start, remaining) in blocked.items():
        if remaining > 0:
            state.inserted.append(InsertedKernel(node.pos + 0.5, REORDER_OUTPUT, t))
    state.layouts["blocked"] = set(blocked)  # read by latency.whatif (which tensors ran blocked)
    state.reindex()


#: int8 ops that run channels-last in an NHWC int8 region (onnxruntime's NhwcTransformer): the convs start one
#: wherever they are, the pools only where their input already is NHWC
_NHWC_INT8_CONVS = ("Conv", "FusedConv", "QLinearConv")
_NHWC_INT8_POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "QLinearAveragePool",
                    "QLinearGlobalAveragePool")


def _is_int8(state: FusionState, w) -> bool:
    """Whether ``w`` runs as an int8 kernel: a QDQ unit, a QLinear op, or a MaxPool of int8 data."""
    return w.info.get("precision") == "int8" or w.op.startswith("QLinear") or \
        (w.op == "MaxPool" and bool(w.inputs) and state.dtype(w.inputs[0]) in INT8_DTYPES)


def _leading(state: FusionState, transparent) -> set:
    """Tensors that lead to the data input of an int8 conv through ops a layout transpose can be pushed
    through (``transparent``, int8 pools and concats): onnxruntime's transpose optimizer computes this set
    (``outputs_leading_to_transpose`` in onnx_transpose_optimization.cc's OptimizeImpl) once, right after
    the NhwcTransformer wrapped every QLinearConv in transposes, and its cost check pushes a transpose
    through a node only when that does not leave a new one in front of a reader that will not cancel it."""
    lead: set = set()
    for w in reversed(state.live):
        int8 = _is_int8(state, w)
        if int8 and w.op in _NHWC_INT8_CONVS and w.inputs and w.inputs[0] and len(state.shape(w.inputs[0]) or []) == 4:
            lead.add(w.inputs[0])
            continue
        passes = w.op in transparent or (int8 and w.op in ("Concat", "QLinearConcat") + _NHWC_INT8_POOLS)
        if passes and any(o in lead for o in w.outputs if o):
            lead.update(t for t in w.inputs if t and not state.const(t))
    return lead


def _mark_nhwc(w, layout: dict) -> None:
    """Node ``w`` runs channels-last: its outputs are NHWC."""
    for o in w.outputs:
        if o:
            layout[o] = "NHWC"
    w.info["nhwc"] = True


def _stays_nhwc(state: FusionState, w, data, layout: dict, transparent, lead: set | None = None) -> bool:
    """Whether ``w`` (one of the ``transparent`` ops) reads only 4-D NHWC tensors and so stays in the region;
    if so its outputs are marked NHWC. onnxruntime's cost check (DefaultCostCheck) pushes the transpose
    through an op with one non-constant input only when the op's output leads on to an int8 conv
    (``lead``): otherwise the push would just move the transpose past it. Q and DQ always stay (the
    transpose in front of their reader is placed by ``need_nchw``, on the int8 side when the DQ does not
    lead on: the same kernels). ``lead`` None: no such check (the fp16 regions, matched on their own)."""
    if not (w.op in transparent and data and all(layout.get(t) == "NHWC" for t in data)
            and all(len(state.shape(t) or []) == 4 for t in data)):
        return False
    if lead is not None and len(data) == 1 and w.op not in ("QuantizeLinear", "DequantizeLinear") and \
            not any(o in lead for o in w.outputs if o):
        return False
    for o in w.outputs:
        if o:
            layout[o] = "NHWC"
    return True


def _concat_nhwc(state: FusionState, w, data, layout: dict, lead: set) -> bool:
    """Whether int8 concat ``w`` (on the channel axis of 4-D tensors, every input a tensor) runs NHWC: the
    transpose optimizer's cost of pushing the layout transposes through it, minus the dims (!= 1) of each
    NHWC input, plus those of each NCHW input and of the output unless it leads on to an int8 conv, is
    negative (GoogLeNet's last two Inception blocks: three NHWC branches and one NCHW)."""
    if not data or len(data) != len([t for t in w.inputs if t]) or w.attr("axis") not in (1, -3) or \
            not all(len(state.shape(t) or []) == 4 for t in data):
        return False
    if not any(layout.get(t) == "NHWC" for t in data):
        return False

    def rank(t):
        return sum(1 for d in (state.shape(t) or []) if d != 1)

    cost = sum(-rank(t) if layout.get(t) == "NHWC" else rank(t) for t in data)
    if not any(o in lead for o in w.outputs if o):
        cost += max(rank(o) for o in w.outputs if o)
    return cost < 0


def _merge_into_shuffle(state: FusionState, t, w) -> bool:
    """A channel shuffle (Reshape [N, C, H, W] -> [N, g, C/g, H, W], Transpose, Reshape) reading the NHWC
    tensor ``t``: onnxruntime's transpose optimizer pushes the transpose back to NCHW through the Reshape
    (which then splits the NHWC channel axis, [N, H, W, g, C/g]) and merges it into the shuffle's
    Transpose, one 5-D permutation that also moves the channels out of the innermost axis (perm
    [0, 4, 3, 1, 2] for the usual [0, 2, 1, 3, 4]; ShuffleNetV2's first block of each stage, whose
    QLinearConcat of two NHWC branches runs NHWC, in onnxruntime 1.32's optimized graph). Marks the
    Transpose with the merged perm and its NHWC input shape; True when it applies (no layout transpose)."""
    if w is None or w.op != "Reshape" or w.inputs[0] != t or len(state.consumers(t)) != 1 or \
            t in state.graph_outputs:
        return False
    x, y = state.shape(t), state.shape(w.outputs[0])
    if not x or not y or len(x) != 4 or len(y) != 5 or y[0] != x[0] or y[3:] != x[2:] or y[1] * y[2] != x[1]:
        return False
    nxt = state.consumers(w.outputs[0])
    if len(nxt) != 1 or nxt[0][0].op != "Transpose" or w.outputs[0] in state.graph_outputs:
        return False
    tr = nxt[0][0]
    perm = tr.attr("perm")
    if perm is None or len(perm) != 5:
        return False
    where = (0, 3, 4, 1, 2)  # the axes (n, g, c, h, w) of the shuffle's input in [N, H, W, g, C/g]
    tr.info["perm"] = [where[int(a)] for a in perm]
    tr.info["x"] = [x[0], x[2], x[3], y[1], y[2]]
    return True


def nhwc_int8(state: FusionState) -> None:
    """Transposes around NHWC int8 regions: int8 convs and pools run NHWC, int8 elementwise ops and
    Q/DQ between them stay NHWC, and a Transpose kernel is inserted where a region starts and where
    an NCHW consumer (or a graph output) reads from it.

    Mirrors onnxruntime's NhwcTransformer (level 3), which turns QLinearConv, int8 MaxPool
    (NhwcMaxPool) and the QLinear pools channels-last.
    """
    nhwc_ops = _NHWC_INT8_CONVS + _NHWC_INT8_POOLS
    # ops the transpose optimizer has a handler for (elementwise, Q/DQ, the QLinear elementwise ops)
    transparent = ("Add", "Mul", "Sub", "Div", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                   "LeakyRelu", "QuantizeLinear", "DequantizeLinear", "QLinearAdd", "QLinearMul", "QLinearSigmoid",
                   "QLinearLeakyRelu")
    layout: dict = {}
    to_nhwc: set = set()
    to_nchw: set = set()
    lead = _leading(state, transparent)

    def need_nchw(t, w):
        if layout.get(t) == "NHWC" and t not in to_nchw:
            to_nchw.add(t)
            if _merge_into_shuffle(state, t, w):
                return
            p = state.producer(t)
            # the transpose stays on the int8 side of a DequantizeLinear read by this one consumer
            if state.is_op(p, "DequantizeLinear") and layout.get(p.inputs[0]) == "NHWC" and \
                    len(state.consumers(t)) == 1 and t not in state.graph_outputs:
                if t in lead:
                    # the DQ leads on to an int8 conv, so the transpose optimizer pushes the transpose through
                    # it; the float reader refuses it (its other operand is NCHW, or the push would not pay),
                    # and FixQDQNodeUnits puts a new Q -> DQ pair after the float transpose
                    # (TryFixTransposeMissingQ -> MakeQDQNodeUnit)
                    state.inserted.append(InsertedKernel(p.pos + 0.25, TO_NCHW, t))
                    state.inserted.append(InsertedKernel(p.pos + 0.3, "QuantizeLinear", t))
                    state.inserted.append(InsertedKernel(p.pos + 0.35, "DequantizeLinear", t))
                    return
                src = p.inputs[0]
                if src in to_nchw:
                    return
                to_nchw.add(src)
                q = state.producer(src)
                state.inserted.append(InsertedKernel((q.pos if q else p.pos) + 0.25, TO_NCHW, src))
                return
            state.inserted.append(InsertedKernel((p.pos if p else w.pos) + 0.25, TO_NCHW, t))

    for w in state.live:
        int8 = _is_int8(state, w)
        data = [t for t in w.inputs if t and not state.const(t)]
        # a conv turns NHWC wherever it is; a pool only where its input already is (no transpose for it)
        starts = w.op in _NHWC_INT8_CONVS or (w.inputs and layout.get(w.inputs[0]) == "NHWC")
        if int8 and w.op in nhwc_ops and starts and w.inputs and w.inputs[0] and \
                (len(state.shape(w.inputs[0]) or []) == 4):
            x = w.inputs[0]
            if layout.get(x) != "NHWC" and x not in to_nhwc:
                to_nhwc.add(x)
                state.inserted.append(InsertedKernel(w.pos - 0.25, TO_NHWC, x))
            for t in data[1:]:
                need_nchw(t, w)
            _mark_nhwc(w, layout)
            continue
        if _stays_nhwc(state, w, data, layout, transparent, lead):
            continue
        if int8 and w.op in ("Concat", "QLinearConcat") and _concat_nhwc(state, w, data, layout, lead):
            # a QLinearConcat runs NHWC (on its last axis) when most of its inputs are NHWC: the NCHW ones
            # get a transpose of their own
            for t in data:
                if layout.get(t) != "NHWC" and t not in to_nhwc:
                    to_nhwc.add(t)
                    p = state.producer(t)
                    state.inserted.append(InsertedKernel((p.pos if p else w.pos) + 0.25, TO_NHWC, t))
            _mark_nhwc(w, layout)
            continue
        for t in data:
            need_nchw(t, w)
    for t in state.graph_outputs:
        need_nchw(t, state.live[-1] if state.live else None)
    state.layouts["nhwc"] = {t for t, v in layout.items() if v == "NHWC"}  # read by latency.whatif
    state.reindex()


def fp16_nhwc_conv(state: FusionState, w) -> bool:
    """Whether conv ``w`` runs as an NHWC fp16 kernel under ``rules.fp16_nhwc``: a float16 Conv /
    FusedConv with group 1 on 4-D data (onnxruntime's NhwcTransformer leaves depthwise fp16 convs NCHW:
    MobileNetV2's run as FusedConv between two Transposes)."""
    if not state.rules.fp16_nhwc or w.op not in CONV_OPS or not w.inputs or not w.inputs[0]:
        return False
    if w.info.get("precision") in INT8_PRECISIONS or state.dtype(w.inputs[0]) != "float16":
        return False
    return int(w.attr("group", 1) or 1) == 1 and len(state.shape(w.inputs[0]) or []) == 4


def fp32_nhwc_conv(state: FusionState, w) -> bool:
    """Whether conv ``w`` runs as an NHWC fp32 kernel under ``rules.fp32_nhwc`` (KleidiAI's SME convolution on
    arm64, taken where MLAS CheckCapabilitiesSme accepts it): a float32 Conv / FusedConv with group 1, batch 1,
    4-D data, a kernel of at least 3x3, the four pads equal, more than one filter and a non-empty output. (The
    runtime converts the conv before ConvAddActivationFusion gives it a residual Add, so a sum input the
    conv_add pass already gave it does not count.)"""
    if not state.rules.fp32_nhwc or w.op not in CONV_OPS or not w.inputs or not w.inputs[0]:
        return False
    if w.info.get("precision") in INT8_PRECISIONS or state.dtype(w.inputs[0]) != "float32":
        return False
    x = state.shape(w.inputs[0]) or []
    wt = state.shape(w.inputs[1]) if len(w.inputs) > 1 and w.inputs[1] else None
    if len(x) != 4 or x[0] != 1 or not wt or len(wt) != 4 or int(w.attr("group", 1) or 1) != 1:
        return False
    if not all(isinstance(d, int) and d > 0 for d in (*x, *wt)) or wt[0] <= 1 or wt[2] < 3 or wt[3] < 3:
        return False
    dil = list(w.attr("dilations", None) or [1, 1])
    strides = list(w.attr("strides", None) or [1, 1])
    if len(dil) != 2 or len(strides) != 2 or min(strides) <= 0:
        return False
    spans = [dil[i] * (wt[2 + i] - 1) + 1 for i in (0, 1)]
    auto = w.attr("auto_pad", "NOTSET") or "NOTSET"
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto == "VALID":
        pads = [0, 0, 0, 0]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):  # the runtime's own padding, head and tail per axis
        total = [max(0, (-(-x[2 + i] // strides[i]) - 1) * strides[i] + spans[i] - x[2 + i]) for i in (0, 1)]
        head = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in total]
        pads = [head[0], head[1], total[0] - head[0], total[1] - head[1]]
    else:
        pads = list(w.attr("pads", None) or [0, 0, 0, 0])
    if len(pads) != 4 or len(set(pads)) != 1:
        return False
    return all(x[2 + i] + 2 * pads[0] >= spans[i] for i in (0, 1))


def nhwc_float_conv(state: FusionState, w) -> bool:
    """Whether float conv ``w`` runs NHWC: fp16 under ``rules.fp16_nhwc`` or fp32 under ``rules.fp32_nhwc``."""
    return fp16_nhwc_conv(state, w) or fp32_nhwc_conv(state, w)


def nhwc_fp16(state: FusionState) -> None:
    """Transposes around NHWC fp16 regions: fp16 convs with group 1 run NHWC (:func:`fp16_nhwc_conv`),
    fp16 pools reading NHWC data and the elementwise ops and Concats between NHWC tensors stay NHWC (the
    transpose optimizer pushes the layout Transposes through them), and a Transpose
    kernel is inserted where a region starts (a conv's data or sum input in NCHW) and where an NCHW
    consumer (or a graph output) reads from it.

    Mirrors onnxruntime's NhwcTransformer (level 3) for fp16 convs, where the CPU EP has fp16 conv
    kernels (arm64): NhwcFusedConv, and MaxPool / GlobalAveragePool in its internal NHWC domain; and for the
    fp32 convs KleidiAI's SME kernels take (``rules.fp32_nhwc``, :func:`fp32_nhwc_conv`), whose pools stay NCHW.
    """
    transparent = ("Add", "Mul", "Relu", "Clip", "Sigmoid", "LeakyRelu", "Tanh", "HardSigmoid", "Concat")
    layout: dict = {}
    moved: set = set()

    def transpose(t, pos, what):
        if t not in moved:
            moved.add(t)
            state.inserted.append(InsertedKernel(pos, what, t))

    for w in state.live:
        data = [t for t in w.inputs if t and not state.const(t)]
        if nhwc_float_conv(state, w) or (w.op in POOL_OPS and data and layout.get(data[0]) == "NHWC"
                                        and state.dtype(data[0]) == "float16"):
            for t in data:  # the data input and a fused residual (sum) input
                if layout.get(t) != "NHWC":
                    transpose(t, w.pos - 0.25, TO_NHWC)
            _mark_nhwc(w, layout)
            continue
        if _stays_nhwc(state, w, data, layout, transparent):
            continue
        for t in data:
            if layout.get(t) == "NHWC":
                p = state.producer(t)
                transpose(t, (p.pos if p else w.pos) + 0.25, TO_NCHW)
    for t in state.graph_outputs:
        if layout.get(t) == "NHWC":
            p = state.producer(t)
            transpose(t, (p.pos if p else len(state.live)) + 0.25, TO_NCHW)
    state.layouts["nhwc"] = set(state.layouts.get("nhwc", ())) | {t for t, v in layout.items() if v == "NHWC"}
    state.reindex()


NCHWC = Pass("nchwc", matches="float Conv / pools / BatchNormalization / per-channel Mul, and the Add, Sum, Mul, "
             "Concat, Resize, activations between them, with channels a multiple of the block",
             produces=("Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Add", "Sum", "Concat",
                       "Upsample", REORDER_INPUT, REORDER_OUTPUT),
             mirrors="NchwcTransformer", apply=nchwc, switches=("nchwc",))
NHWC_INT8 = Pass("nhwc_int8", matches="int8 Conv / pools and the int8 elementwise ops between them",
                 produces=("Transpose", "NhwcMaxPool"), mirrors="NhwcTransformer", apply=nhwc_int8,
                 switches=("qdq_nhwc",))
NHWC_FP16 = Pass("nhwc_fp16", matches="fp16 Conv with group 1, fp16 pools on NHWC data and the elementwise ops "
                 "between them; with rules.fp32_nhwc the fp32 convs KleidiAI's SME kernels take",
                 produces=("Transpose",), mirrors="NhwcTransformer (fp16; fp32 with KleidiAI on SME)", apply=nhwc_fp16,
                 switches=("fp16_nhwc", "fp32_nhwc"))
