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


ELIMINATE = Pass("eliminate", matches="Identity; Dropout whose mask is unused", produces=(),
                 mirrors="EliminateIdentity, EliminateDropout", apply=eliminate)
HARDSWISH = Pass("hardswish", matches="x * HardSigmoid(x, alpha=1/6, beta=0.5)", produces=("HardSwish",),
                 mirrors="the HardSwish function body onnxruntime inlines (matched back to one node)",
                 apply=hardswish)
