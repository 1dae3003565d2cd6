"""The fusion driver: :func:`fuse` runs a target's passes over a model's work graph, in order, and
lowers what is left to kernels."""

from __future__ import annotations

from ..graph import Graph
from .lower import emit
from .rules import FusionRules
from .workgraph import FusionState


def fused_graph(graph: Graph, rules: FusionRules) -> FusionState:
    """The work graph of ``graph`` after ``rules.passes`` ran in order (each when one of its switches is
    on): the runtime's optimized graph, before lowering."""
    state = FusionState(graph, rules)
    gate = rules.fp16_passes is not None and state.has_fp16
    for fusion_pass in rules.passes:
        if not fusion_pass.enabled(rules):
            continue
        if gate and fusion_pass.name not in rules.fp16_passes:
            with _fp16_hidden(state):
                fusion_pass.apply(state)
        else:
            fusion_pass.apply(state)
    return state


_HIDDEN = "fp16-hidden"


class _fp16_hidden:
    """Keeps a pass away from fp16 nodes: their domain reads as a foreign one (``is_op`` matches the
    ONNX and com.microsoft domains only) while the pass runs."""

    def __init__(self, state):
        self.state = state
        self.hidden = []

    def __enter__(self):
        st = self.state
        for w in st.live:
            first = list(w.inputs[:1]) + list(w.outputs)
            if w.domain in ("", "ai.onnx") and any(t and st.dtype(t) == "float16" for t in first):
                self.hidden.append((w, w.domain))
                w.domain = _HIDDEN
        return self

    def __exit__(self, *exc):
        for w, d in self.hidden:
            if w.domain == _HIDDEN:
                w.domain = d
        return False


def fuse(graph: Graph, rules: FusionRules) -> tuple:
    """The kernels a runtime with ``rules`` executes for ``graph``, and the nodes no kernel prices.

    Every non-foldable op record ends up in exactly one kernel's ``nodes`` or in the uncovered
    list; kernels the runtime inserts itself (reorders, layout transposes, duplicated DQs) have
    empty ``nodes``.
    """
    return emit(fused_graph(graph, rules))
