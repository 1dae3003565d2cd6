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
    for fusion_pass in rules.passes:
        if fusion_pass.enabled(rules):
            fusion_pass.apply(state)
    return state


def fuse(graph: Graph, rules: FusionRules) -> tuple:
    """The kernels a runtime with ``rules`` executes for ``graph``, and the nodes no kernel prices.

    Every non-foldable op record ends up in exactly one kernel's ``nodes`` or in the uncovered
    list; kernels the runtime inserts itself (reorders, layout transposes, duplicated DQs) have
    empty ``nodes``.
    """
    return emit(fused_graph(graph, rules))
