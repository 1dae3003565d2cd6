"""Conv passes: BatchNormalization / per-channel Mul / Add folding and Pad folding (level 1),
Conv + activation (level 2), Conv(+bias) + residual Add [+ activation] for the convs that do not run
in the blocked layout (level 3)."""

from __future__ import annotations

from ..workgraph import FLOAT_DTYPES, INT8_PRECISIONS, FusionState, Pass
from .layout import fp32_nhwc_conv, nhwc_float_conv


def _conv_ok_for_fold(state: FusionState, w) -> bool:
    return (state.is_op(w, "Conv") and "act" not in w.info and "sum" not in w.info and len(w.inputs) > 1
            and state.const(w.inputs[1]) and state.dtype(w.inputs[1]) in FLOAT_DTYPES
            and state.shape(w.inputs[1]) is not None)


def _per_channel(state: FusionState, name, cout, rank) -> bool:
    """Whether constant ``name`` broadcasts as one value per output channel (or one value)."""
    s = state.shape(name)
    if s is None or not state.const(name):
        return False
    if len(s) == 0 or all(d == 1 for d in s):
        return True
    if len(s) > rank:
        return False
    # aligned right on [N, C, spatial...]: every dim 1 but the channel one
    full = [1] * (rank - len(s)) + list(s)
    return full[1] == cout and all(d == 1 for i, d in enumerate(full) if i != 1)


def fold_conv(state: FusionState) -> None:
    """Conv -> BatchNormalization, or a per-channel constant Mul / Add, folds into the conv's weights
    and bias (``fold_bn``); a constant-zero Pad before a Conv / MaxPool / AveragePool
    (count_include_pad) folds into the op's pads (``pad_fusion``). Repeated until nothing changes.

    Mirrors onnxruntime's ConvBNFusion, ConvMulFusion, ConvAddFusion and PadFusion (level 1).
    """
    changed = True
    while changed:
        changed = False
        for w in state.live:
            if w.dead:
                continue
            if state.rules.pad_fusion and state.is_op(w, "Pad"):
                changed |= _fold_pad(state, w)
                continue
            if not state.rules.fold_bn or not _conv_ok_for_fold(state, w):
                continue
            c = state.out_single(w)
            if c is None:
                continue
            cout = state.shape(w.inputs[1])[0]
            rank = len(state.shape(w.inputs[1]))
            if state.is_op(c, "BatchNormalization") and len([o for o in c.outputs if o]) == 1 and \
                    all(state.const(t) for t in c.inputs[1:5]):
                state.absorb(w, c)
                w.info.setdefault("folded", []).append("BatchNormalization")
                w.info["bias_folded"] = True  # ConvBNFusion always gives the conv a bias
                changed = True
            elif state.is_op(c, "Mul", "Add") and c.domain == "":
                other = state.other_input(c, w.outputs[0])
                if other is not None and _per_channel(state, other, cout, rank):
                    if c.op == "Add":
                        w.info["bias_folded"] = True
                    state.absorb(w, c)
                    changed = True
        if changed:
            state.reindex()


def _fold_pad(state: FusionState, p) -> bool:
    """Fold Pad node ``p`` into its single consumer's pads; whether it did (PadFusion)."""
    mode = p.attr("mode", "constant") or "constant"
    if mode != "constant" or not p.inputs or not p.inputs[0]:
        return False
    c = state.out_single(p)
    if c is None or not (state.is_op(c, "Conv", "MaxPool") or
                         (state.is_op(c, "AveragePool") and c.attr("count_include_pad", 0))):
        return False
    if c.inputs[0] != p.outputs[0] or (c.attr("auto_pad", "NOTSET") or "NOTSET") != "NOTSET":
        return False
    x = state.shape(p.inputs[0])
    if x is None:
        return False
    if len(p.inputs) > 1 and p.inputs[1]:
        pads_value = state.value(p.inputs[1])
        if pads_value is None:
            return False
        pads = [int(v) for v in pads_value.reshape(-1)]
    else:
        pads = [int(v) for v in (p.attr("pads") or [])]
    if len(p.inputs) > 2 and p.inputs[2]:
        fill = state.scalar(p.inputs[2])
        if fill is None or fill != 0.0:
            return False
    if len(p.inputs) > 3 and p.inputs[3]:
        return False
    n = len(x)
    if len(pads) != 2 * n or any(v < 0 for v in pads) or pads[0] or pads[1] or pads[n] or pads[n + 1]:
        return False
    extra = pads[2:n] + pads[n + 2:]
    c.info["pad_extra"] = [a + b for a, b in zip(c.info.get("pad_extra", [0] * len(extra)), extra)]
    c.inputs[0] = p.inputs[0]
    c.members = list(p.members) + c.members
    p.dead = True
    state.reindex()
    return True


def conv_act(state: FusionState) -> None:
    """A float Conv followed by one of the target's ``conv_act`` activations (of ``fp16_conv_act`` too for
    an fp16 conv, where set) becomes a FusedConv.

    Mirrors onnxruntime's ConvActivationFusion (level 2).
    """
    acts = state.rules.conv_act
    for w in list(state.live):
        if w.dead or not state.is_op(w, "Conv") or "act" in w.info or w.info.get("precision") in INT8_PRECISIONS:
            continue
        if state.dtype(w.inputs[0]) not in FLOAT_DTYPES:
            continue
        if len(w.inputs) > 1 and w.inputs[1] and not state.const(w.inputs[1]):
            continue  # a float conv on weights dequantized at run time keeps its activation apart
        a = state.out_single(w)
        mine = acts
        if state.rules.fp16_conv_act is not None and state.dtype(w.inputs[0]) == "float16":
            mine = tuple(x for x in acts if x in state.rules.fp16_conv_act)
        if not state.act_ok(a, mine) or a.inputs[0] != w.outputs[0]:
            continue
        w.info["act"] = a.op
        w.op = "FusedConv"
        state.absorb(w, a)
    state.reindex()


def conv_add(state: FusionState) -> None:
    """Conv(+bias) + residual Add [+ activation] -> FusedConv with a Z (sum) input, for the convs the
    NCHWc pass left in NCHW (``conv_add_needs_bias``: only convs with a bias; ``conv_add_acts``: the
    activations it takes along).

    Mirrors onnxruntime's ConvAddActivationFusion (level 3); on GPUs the TensorRT-style conv +
    residual epilogue. The Add goes to the first eligible producer in node order; convs that run NHWC in
    fp16 (``rules.fp16_nhwc``) were re-created by the NhwcTransformer, after every other node and in its
    topological order, which reaches an Add's later input first: a downsampling block's shortcut conv
    takes the Add there, its second 3x3 conv in fp32.
    """
    for a in list(state.live):
        if a.dead or not state.is_op(a, "Add") or a.domain != "" or a.info.get("nchwc"):
            continue
        ins = [t for t in a.inputs if t]
        if len(ins) != 2:
            continue
        s0, s1 = state.shape(ins[0]), state.shape(ins[1])
        if s0 is None or s1 is None or len(s0) != 4 or s0 != s1 or state.dtype(ins[0]) not in FLOAT_DTYPES:
            continue
        producers = sorted({id(p): p for p in (state.producer(t) for t in ins) if p is not None}.values(),
                           key=lambda p: (1, -p.rec.index) if nhwc_float_conv(state, p) else (0, p.rec.index))
        conv = None
        for p in producers:
            if not state.is_op(p, "Conv") or p.info.get("nchwc") or p.info.get("sum") or "act" in p.info:
                continue
            if fp32_nhwc_conv(state, p):
                # an NHWC fp32 conv takes the Add only where the Add's other input comes NHWC from a conv; else
                # the layout Transpose back to NCHW sits between the two (resnet18's identity blocks after the
                # NCHW MaxPool: Add and Relu run alone)
                o = state.producer(ins[1] if state.producer(ins[0]) is p else ins[0])
                if o is None or not nhwc_float_conv(state, o):
                    continue
            if p.info.get("precision") in INT8_PRECISIONS or state.out_single(p) is not a:
                continue
            has_bias = (len(p.inputs) > 2 and p.inputs[2]) or p.info.get("bias_folded")
            if state.rules.conv_add_needs_bias and not has_bias:
                continue
            conv = p
            break
        if conv is None:
            continue
        other = ins[1] if state.producer(ins[0]) is conv else ins[0]
        if ins[0] == ins[1]:
            continue
        conv.info["sum"] = other
        conv.inputs = list(conv.inputs) + [other]
        conv.op = "FusedConv"
        state.absorb(conv, a)
        act = state.out_single(a)
        if state.act_ok(act, state.rules.conv_add_acts) and act.inputs[0] == conv.outputs[0]:
            conv.info["act"] = act.op
            state.absorb(conv, act)
        state.reindex()


FOLD_CONV = Pass("fold_conv", matches="Conv -> BatchNormalization | per-channel constant Mul / Add; "
                 "constant-zero Pad -> Conv / MaxPool / AveragePool(count_include_pad)", produces=("Conv",),
                 mirrors="ConvBNFusion, ConvMulFusion, ConvAddFusion, PadFusion", apply=fold_conv,
                 switches=("fold_bn", "pad_fusion"))
CONV_ACTIVATION = Pass("conv_activation", matches="float Conv -> activation in rules.conv_act",
                       produces=("FusedConv",), mirrors="ConvActivationFusion", apply=conv_act,
                       switches=("conv_act",))
CONV_ADD = Pass("conv_add", matches="NCHW Conv(+bias) -> residual Add [-> activation in rules.conv_add_acts]",
                produces=("FusedConv",), mirrors="ConvAddActivationFusion", apply=conv_add, switches=("conv_add",))
