"""The work graph the passes rewrite, and the :class:`Pass` record that names each rewrite.

A :class:`FusionState` holds one model's work graph while a target's passes run over it: one
:class:`WorkNode` per future kernel (its member op records, inputs, outputs and what the passes
learned about it in ``info``), the producer/consumer index, the kernels the runtime inserts
itself (reorders, layout transposes), the Identity/Dropout records eliminated on each tensor, and
the nodes no kernel will price. Its helpers (shapes and dtypes as the rewrites see them, constant
values, single-consumer checks) are what every pass and the lowering share.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Callable

from ..graph import CONTROL_FLOW, Graph, OpRecord, _value_of
from .records import Uncovered

FLOAT_DTYPES = ("float32", "float16", "bfloat16", "float64")
INT8_DTYPES = ("int8", "uint8")
CONV_OPS = ("Conv", "FusedConv")
MATMUL_OPS = ("MatMul", "Gemm", "FusedMatMul", "FusedGemm")
POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
#: what ``info["precision"]`` says of an int8 kernel (static QDQ or dynamic quantization)
INT8_PRECISIONS = ("int8", "int8_dynamic")


@dataclass(frozen=True)
class Pass:
    """One rewrite of the work graph, mirroring one onnxruntime graph transformer.

    ``name``: unique among passes; ``matches``: the node pattern it looks for; ``produces``: the op
    types it leaves in the work graph, by the runtime's names (() when it only removes nodes or
    annotates them); ``mirrors``: the onnxruntime transformer(s) it reproduces; ``switches``: the
    :class:`~latency.fusion.rules.FusionRules` fields that turn it on (it runs when any is set; ()
    means it always runs); ``apply``: rewrites a :class:`FusionState` in place.
    """

    name: str
    matches: str
    produces: tuple
    mirrors: str
    apply: Callable[["FusionState"], None] = field(repr=False)
    switches: tuple = ()

    @property
    def doc(self) -> str:
        """The docstring of the function that applies the pass."""
        return inspect.getdoc(self.apply) or ""

    def enabled(self, rules) -> bool:
        """Whether ``rules`` switch this pass on."""
        return not self.switches or any(getattr(rules, s) for s in self.switches)

    def __repr__(self) -> str:
        return f"Pass({self.name})"


@dataclass
class WorkNode:
    """A node of the work graph: one future kernel, covering the op records in ``members``."""

    pos: float
    name: str
    op: str
    domain: str
    rec: OpRecord
    inputs: list
    outputs: list
    members: list
    info: dict = field(default_factory=dict)
    dead: bool = False

    def attr(self, key, default=None):
        return self.rec.attrs.get(key, default)


#: layout transposes the runtime inserts around NHWC int8 regions (what an :class:`InsertedKernel` is,
#: beside the registry's ReorderInput and ReorderOutput)
TO_NHWC = "ToNHWC"
TO_NCHW = "ToNCHW"


@dataclass
class InsertedKernel:
    """A kernel the runtime inserts itself at ``pos``: ``what`` (ReorderInput, ReorderOutput, ToNHWC or
    ToNCHW) of ``tensor``; ``records``: the op records it replaces (the Transpose a channels-last
    ReorderInput absorbs), usually none."""

    pos: float
    what: str
    tensor: str
    records: tuple = ()


class Unpriceable(Exception):
    """A work node no kernel can price (raised by the lowering; its records become uncovered)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _outer_names(attr) -> set:
    """Names the subgraph(s) of attribute value ``attr`` read from the enclosing graph."""
    from ..graph import _subgraph_outer_inputs

    subs = [attr] if hasattr(attr, "node") else [g for g in attr if hasattr(g, "node")] \
        if isinstance(attr, list) else []
    return set().union(*(_subgraph_outer_inputs(g) for g in subs)) if subs else set()


def normalize_axis(axis, rank):
    axis = int(axis)
    return axis + rank if axis < 0 else axis


_POS = attrgetter("pos")


class FusionState:
    """One model's work graph under a target's passes (see the module docstring)."""

    def __init__(self, graph: Graph, rules):
        self.graph = graph
        self.rules = rules
        self.uncovered: list[Uncovered] = []
        self.nodes: list[WorkNode] = []
        #: kernels the runtime inserts (reorders, layout transposes)
        self.inserted: list[InsertedKernel] = []
        #: ids of the nodes the runtime keeps in fp16 (set by the lowering: fusion.lower.fp16_run_nodes)
        self.fp16_run: set = set()
        #: whether any tensor is float16 (else the fp16 rules have nothing to do)
        self.has_fp16 = any(t.dtype == "float16" for t in graph.tensors.values())
        #: tensor -> the Identity/Dropout records eliminated on it
        self.eliminated_on: dict = {}
        self.graph_outputs = set(graph.output_names)
        #: tensor -> the tensor whose recorded shape it now has (a cancelled transpose's output)
        self.shape_alias: dict = {}
        #: shapes of the tensors the rewrites create
        self.synthetic_shapes: dict = {}
        #: tensors each layout pass left in its layout ("blocked": NCHWc, "nhwc"), for latency.whatif
        self.layouts: dict = {}
        #: tensor -> the element type a pass gave it (a Q/DQ pair or a weight the runtime turned to uint8)
        self.dtype_override: dict = {}
        for r in graph.ops:
            if r.foldable:
                continue
            ins = [t.name for t in r.inputs]
            if r.op_type in CONTROL_FLOW:
                if r.name not in graph.control:
                    self.uncovered.append(Uncovered(r.name, r.op_type, f"{r.op_type} bodies are not priced"))
                    continue
                # what its bodies read from outside: a pass must not fuse a producer away from them
                ins += sorted({x for v in r.attrs.values() for x in _outer_names(v)} - set(ins))
            self.nodes.append(WorkNode(float(r.index), r.name, r.op_type, r.domain, r,
                                       ins, [t.name for t in r.outputs], [r]))
        self.reindex()

    # ---- tensors -------------------------------------------------------------------------------
    def shape(self, name):
        if name in self.synthetic_shapes:
            return list(self.synthetic_shapes[name])
        t = self.graph.tensors.get(self.shape_alias.get(name, name))
        return list(t.shape) if t is not None and t.shape is not None else None

    def need_shape(self, name):
        """The shape of tensor ``name``; Unpriceable when it is unknown."""
        s = self.shape(name) if name else None
        if s is None:
            raise Unpriceable(f"shape unknown for {name!r}")
        return s

    def dtype(self, name):
        if name in self.dtype_override:
            return self.dtype_override[name]
        if name in self.synthetic_shapes:
            name = name.rsplit("/untransposed", 1)[0]
        t = self.graph.tensors.get(self.shape_alias.get(name, name))
        return t.dtype if t is not None else "unknown"

    def f32(self, name) -> bool:
        """float32, or float16 where the runtime computes fp16 graphs in fp32"""
        dt = self.dtype(name)
        return dt == "float32" or (self.rules.fp16_as_fp32 and dt == "float16")

    def const(self, name) -> bool:
        if not name:
            return True
        t = self.graph.tensors.get(name)
        return bool(t is not None and t.const)

    def value(self, name):
        if not name or not self.const(name):
            return None
        return _value_of(self.graph, name)

    def scalar(self, name):
        v = self.value(name)
        if v is None or v.size != 1 or v.dtype == object:
            return None
        return float(v.reshape(-1)[0])

    def alias_shape(self, name, like):
        """``name`` now holds the layout of ``like`` (its shape is looked up there)."""
        self.shape_alias[name] = like

    # ---- the graph -----------------------------------------------------------------------------
    def reindex(self):
        """Rebuild the live node list (by position) and the producer/consumer index."""
        live = [w for w in self.nodes if not w.dead]
        live.sort(key=_POS)
        self.live = live
        producer_of: dict = {}
        consumers_of: dict = {}
        for w in live:
            for o in w.outputs:
                if o:
                    producer_of[o] = w
            for i, t in enumerate(w.inputs):
                if t:
                    c = consumers_of.get(t)
                    if c is None:
                        consumers_of[t] = [(w, i)]
                    else:
                        c.append((w, i))
        self._producer_of = producer_of
        self._consumers_of = consumers_of

    def snapshot(self, nodes) -> list:
        """What the index knows of ``nodes`` (each once), for :meth:`update_index` after a rewrite of them."""
        seen: dict = {}
        for w in nodes:
            if w is not None and id(w) not in seen:
                seen[id(w)] = (w, list(w.inputs), list(w.outputs))
        return list(seen.values())

    def update_index(self, snap: list) -> None:
        """Bring the producer/consumer index up to date for the nodes of ``snap`` (a :meth:`snapshot`
        taken before they changed), instead of rebuilding it: afterwards it holds what :meth:`reindex`
        builds, except for the order of each tensor's consumers and of :attr:`live` (a pass that needs
        those reindexes)."""
        gone = {id(w) for w, _, _ in snap}
        for w, ins, outs in snap:
            for o in outs:
                if o and self._producer_of.get(o) is w:
                    del self._producer_of[o]
            for t in set(ins):
                c = self._consumers_of.get(t) if t else None
                if c:
                    c[:] = [e for e in c if id(e[0]) not in gone]
                    if not c:
                        del self._consumers_of[t]
        for w, _, _ in snap:
            if w.dead:
                continue
            for o in w.outputs:
                if o:
                    self._producer_of[o] = w
            for i, t in enumerate(w.inputs):
                if t:
                    self._consumers_of.setdefault(t, []).append((w, i))

    def producer(self, tensor):
        return self._producer_of.get(tensor)

    def consumers(self, tensor):
        """[(node, input position)] of the live nodes reading ``tensor``."""
        return self._consumers_of.get(tensor, [])

    def only_consumer(self, tensor):
        """The single consumer node of ``tensor`` (not a graph output), else None."""
        c = self.consumers(tensor)
        if len(c) != 1 or tensor in self.graph_outputs:
            return None
        return c[0][0]

    def out_single(self, w):
        """w's single consumer when w has one used output consumed once, else None."""
        used = [o for o in w.outputs[1:] if o and (self.consumers(o) or o in self.graph_outputs)]
        if used or not w.outputs:
            return None
        return self.only_consumer(w.outputs[0])

    def absorb(self, keep: WorkNode, gone: WorkNode, outputs=True):
        """``gone`` becomes part of ``keep`` (whose outputs become ``gone``'s unless ``outputs`` is False)."""
        keep.members.extend(gone.members)
        if outputs:
            keep.outputs = list(gone.outputs)
        keep.pos = max(keep.pos, gone.pos)
        gone.dead = True

    def new_node(self, name, op, domain, rec, inputs, outputs, members, info=None):
        w = WorkNode(max([float(m.index) for m in members] or [float(rec.index)]), name, op, domain, rec,
                     list(inputs), list(outputs), list(members), dict(info or {}))
        self.nodes.append(w)
        return w

    def is_op(self, w, *types):
        return w is not None and not w.dead and w.op in types and w.domain in ("", "ai.onnx", "com.microsoft")

    def precision_of(self, w):
        if w.info.get("precision"):
            return w.info["precision"]
        if id(w) in self.fp16_run:  # an op the runtime keeps in fp16 where fp16 graphs run as fp32 kernels
            return "fp16"
        for t in list(w.inputs) + list(w.outputs):
            dt = self.dtype(t) if t else ""
            if dt in ("float16", "bfloat16"):
                if self.rules.fp16_as_fp32:
                    return "fp32"
                # fp16 kernels: an op with none, or an isolated fp16 node, runs in fp32 between Casts
                if dt == "float16" and w.op != "Cast" and self.rules.fp16_no_kernel and \
                        (w.op in self.rules.fp16_no_kernel or self.fp16_run):
                    return "fp32"
                return "fp16"
            if dt == "float32":
                return "fp32"
        return "fp32"

    def other_input(self, w, tensor):
        """The input of two-input node ``w`` that is not ``tensor`` (None unless exactly one is)."""
        ins = [x for x in w.inputs if x]
        if len(ins) != 2:
            return None
        if ins[0] == tensor and ins[1] != tensor:
            return ins[1]
        if ins[1] == tensor and ins[0] != tensor:
            return ins[0]
        return None

    def act_ok(self, a, allowed):
        """Whether node ``a`` is an activation in ``allowed`` that a kernel can absorb."""
        if a is None or a.op not in allowed or a.domain not in ("", "com.microsoft"):
            return False
        if a.op == "Clip":
            for t in a.inputs[1:3]:
                # min/max must be constant; fp16 ones become runtime Casts when fp16 runs as fp32
                if t and (not self.const(t) or (self.rules.fp16_as_fp32 and self.dtype(t) == "float16")):
                    return False
        return True

    def members_in_order(self, nodes) -> list:
        """The op records of ``nodes``, nodes taken by position."""
        return [r for w in sorted(nodes, key=lambda w: w.pos) for r in w.members]
