"""Level-1 clean-up passes: Identity/Dropout elimination and the HardSwish pattern.

Both run on every onnxruntime target before any fusion, and change what later passes see: an
eliminated Identity no longer separates a Conv from its BatchNormalization, and a HardSigmoid + Mul
pair becomes the one HardSwish node the NCHWc pass can fold into a conv.
"""

from __future__ import annotations

from ..workgraph import FusionState, Pass

_ELIMINATED_OPS = ("Identity", "Dropout")


def eliminate(state: FusionState) -> None:
    """Identity / Dropout (mask unused) vanish; uses are rewired to the input.

    Mirrors onnxruntime's EliminateIdentity and EliminateDropout (level 1). The eliminated records
    are kept per tensor and attached to the kernel producing that tensor when kernels are emitted.
    """
    for w in list(state.live):
        if not state.is_op(w, *_ELIMINATED_OPS) or not w.inputs or not w.inputs[0]:
            continue
        if w.op == "Dropout" and len(w.outputs) > 1 and w.outputs[1] and \
                (state.consumers(w.outputs[1]) or w.outputs[1] in state.graph_outputs):
            continue
        out, src = w.outputs[0], w.inputs[0]
        if out in state.graph_outputs:
            continue  # a graph output keeps its node (it is a copy)
        for c, i in state.consumers(out):
            c.inputs[i] = src
        w.dead = True
        state.eliminated_on.setdefault(src, []).extend(w.members)
    state.reindex()


#: ops that must never be merged (random draws, control flow, anything with side effects)
_NOT_CSE = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli",
            "If", "Loop", "Scan", "Dropout")


def merge_into(state: FusionState, keep, w) -> None:
    """``w`` computes what ``keep`` computes: its readers read ``keep``'s outputs and its records become
    ``keep``'s, at no extra cost (the caller reindexes)."""
    for old, new in zip(w.outputs, keep.outputs):
        for c, i in list(state.consumers(old)) if old else ():
            c.inputs[i] = new
    keep.members = list(keep.members) + list(w.members)
    w.dead = True


def _input_key(state: FusionState, t: str):
    if not t or not state.const(t):
        return t
    cv = state.graph.const_values
    size = getattr(cv, "size", None)
    if size is not None and t in cv and size(t) > 4096:  # a weight: not decoded only to be found too large
        return t
    v = state.value(t)
    if v is None or v.dtype == object or v.size > 4096:
        return t
    return ("const", str(v.dtype), tuple(v.shape), v.tobytes())


def cse(state: FusionState) -> None:
    """Nodes of one op with equal attributes reading equal inputs (constants compared by value) are
    one node: the later ones' readers read the first one's outputs.

    Mirrors onnxruntime's CommonSubexpressionElimination after ConstantSharing (level 1): e.g. the
    per-MatMul input Reshapes quant_pre_process writes, and then the DynamicQuantizeLinear of each,
    become one.
    """
    seen: dict = {}
    merged = False
    for w in list(state.live):
        if w.op in _NOT_CSE or w.rec.op_type in _NOT_CSE or not w.inputs or len(w.members) != 1:
            continue
        if any(o in state.graph_outputs for o in w.outputs):
            continue
        # EnsureUniqueDQForNodeUnit (earlier in level 1) gave every reader of a DequantizeLinear its own
        # copy, so readers of one DQ never look equal, and Q/DQ nodes themselves are left alone
        if w.op in ("QuantizeLinear", "DequantizeLinear") or \
                any(t and state.is_op(state.producer(t), "DequantizeLinear") for t in w.inputs):
            continue
        try:
            attrs = repr(sorted(w.rec.attrs.items()))
        except TypeError:
            continue
        key = (w.op, w.domain, attrs, tuple(_input_key(state, t) for t in w.inputs), len(w.outputs))
        keep = seen.setdefault(key, w)
        if keep is w or any(o and not k for o, k in zip(w.outputs, keep.outputs)):
            continue
        merge_into(state, keep, w)
        merged = True
    if merged:
        state.reindex()


def hardswish(state: FusionState) -> None:
    """x * HardSigmoid(x, alpha=1/6) -> one HardSwish node (what ORT inlines HardSwish into).

    Mirrors onnxruntime's function inlining of HardSwish, read backwards: the runtime executes
    HardSigmoid + Mul, so the lowering emits those two kernels again unless the NCHWc pass folded
    the pair into a conv (``hs_parts`` remembers which records were which).
    """
    for h in list(state.live):
        if h.dead or not state.is_op(h, "HardSigmoid") or h.domain != "":
            continue
        if abs(float(h.attr("alpha", 0.2)) - 1 / 6) > 1e-4 or abs(float(h.attr("beta", 0.5)) - 0.5) > 1e-6:
            continue
        m = state.out_single(h)
        if not state.is_op(m, "Mul") or state.other_input(m, h.outputs[0]) != h.inputs[0]:
            continue
        state.new_node(m.name, "HardSwish", "", m.rec, [h.inputs[0]], m.outputs, h.members + m.members,
                       {"hs_parts": (list(h.members), list(m.members))})
        h.dead = m.dead = True
        state.reindex()


CSE = Pass("cse", matches="equal ops on equal inputs", produces=(), mirrors="CommonSubexpressionElimination",
           apply=cse, switches=("cse",))
ELIMINATE = Pass("eliminate", matches="Identity; Dropout whose mask is unused", produces=(),
                 mirrors="EliminateIdentity, EliminateDropout", apply=eliminate)
HARDSWISH = Pass("hardswish", matches="x * HardSigmoid(x, alpha=1/6, beta=0.5)", produces=("HardSwish",),
                 mirrors="the HardSwish function body onnxruntime inlines (matched back to one node)",
                 apply=hardswish)
