"""Rewrites of a loaded :class:`~latency.graph.Graph` as the compression tools would leave the model.

A what-if plan never writes an ONNX file: it rewrites the op records of the fp32 model the way the
tool a user would run rewrites the ONNX graph, then hands the result to the target's fusion passes
exactly as a loaded quantized model would be. Each rewrite mirrors one tool with its defaults, run
on the graph ``quant_pre_process`` leaves (:func:`quant_pre_processed`: what users run first, and what
decides which tensors the quantizer marks: a BatchNormalization folded into its Conv, a decomposed
LayerNorm fused, MatMul + bias Add made a Gemm between Reshapes, constants made initializers):

* :func:`static_qdq`: ``onnxruntime.quantization.quantize_static(quant_format=QDQ)`` (activations and
  weights int8, per-tensor, asymmetric activations): every node of a quantizable op type that is
  not excluded marks its tensors, marked activations get a QuantizeLinear -> DequantizeLinear pair
  read by *all* their consumers, weights become int8 initializers behind a DequantizeLinear, biases
  int32; a Relu/Clip whose input is quantized is removed (its range is the quantized tensor's);
  data-movement ops (Reshape, Transpose, MaxPool, ...) follow their input. Mirrors ORT 1.32's
  ``QDQQuantizer`` marking order (the nodes in file order) and naming.
* :func:`dynamic_int8`: ``onnxruntime.quantization.quantize_dynamic`` (weights int8, activations
  quantized at run time): Conv -> DynamicQuantizeLinear + ConvInteger + Cast + Mul + Add(bias),
  MatMul -> DynamicQuantizeLinear + MatMulInteger + Cast + Mul; one DynamicQuantizeLinear per
  activation, shared by every quantized consumer.
* channel pruning (any of the three, ``prune=``): a node's output channels shrink, and with them
  the tensors of its channel group (through normalisation, activations, pools, elementwise ops
  with constants) and the input channels of the weighted consumers that end it; see
  :func:`channel_group` for what is refused.

``materialize=False`` (the plan's probes) stands tiny arrays in for the weights of weighted nodes
(nothing in fusion reads their values but the sparsity check, which the plan overrides);
``materialize=True`` writes real int8 / pruned / sparsified arrays, so that
:meth:`latency.Estimator.estimate` of the rewritten graph sees what the real file would hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np

from ..graph import _NOT_FOLDABLE, Graph, OpRecord, Tensor, _value_of

#: op types ``quantize_static`` quantizes by default (onnxruntime.quantization.registry:
#: QLinearOpsRegistry | QDQRegistry, ORT 1.32; tests check it against the installed registry)
QDQ_OP_TYPES = frozenset({
    "ArgMax", "AveragePool", "BatchNormalization", "Clip", "Concat", "Conv", "ConvTranspose", "CumSum",
    "EmbedLayerNormalization", "Flatten", "Gather", "GatherElements", "Gemm", "GlobalAveragePool",
    "InstanceNormalization", "LayerNormalization", "LeakyRelu", "MatMul", "MaxPool", "Mul", "Pad", "Relu",
    "Reshape", "Resize", "Sigmoid", "Slice", "Softmax", "Split", "Squeeze", "TopK", "Transpose", "Unsqueeze",
    "Where", "Add",
})
#: op types ``quantize_dynamic`` quantizes by default (IntegerOpsRegistry, ORT 1.32)
DYNAMIC_OP_TYPES = frozenset({"Conv", "MatMul", "Attention", "LSTM", "Gather", "Transpose",
                              "EmbedLayerNormalization"})
#: QDQ ops whose output follows their input's quantization (QDQDirect8BitOp and its kin)
_FOLLOW_INPUT = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "AveragePool", "Slice",
                           "TopK", "MaxPool", "Resize"})
_REMOVABLE = ("Relu", "Clip")
_NORMS = ("InstanceNormalization", "LayerNormalization", "BatchNormalization")
#: ops with a weight (input 1) a plan can sparsify and quantize as a weight
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

_FLOATS = ("float32", "float16")
_NO = Tensor("", None, "", False)


@dataclass
class Rewritten:
    """A rewritten graph and where each of its nodes and tensors came from.

    ``node_origin``: rewritten node name -> the original node it belongs to, or None for nodes that
    belong to a tensor (its Q/DQ pair, its Cast); ``tensor_origin``: rewritten tensor name -> the
    original tensor (Q/DQ outputs, renamed outputs); ``reduced``: original nodes that run in the
    reduced precision.
    """

    graph: Graph
    node_origin: dict
    tensor_origin: dict
    reduced: frozenset = frozenset()
    notes: list = field(default_factory=list)


class _Consts(Mapping):
    """The original graph's constants with some replaced or added (a lazy overlay)."""

    def __init__(self, base, extra: dict):
        self._base, self._extra = base, extra

    def __getitem__(self, name):
        if name in self._extra:
            return self._extra[name]
        return self._base[name]

    def __contains__(self, name):
        return name in self._extra or name in self._base

    def size(self, name) -> int:
        """Elements of constant ``name`` (an original one's read from its dims, see ``ConstValues.size``)."""
        if name in self._extra:
            return int(np.size(self._extra[name]))
        size = getattr(self._base, "size", None)
        return size(name) if size is not None else int(np.size(self._base[name]))

    def __iter__(self):
        yield from self._extra
        yield from (n for n in self._base if n not in self._extra)

    def __len__(self):
        return len(set(self._extra) | set(self._base))


_STAND_IN: dict = {}
_IDS: dict = {}


def _uid(name: str) -> int:
    """A number of its own for each tensor name (stand-ins and scales of different weights never compare
    equal: the runtime merges equal nodes reading equal constants)."""
    return _IDS.setdefault(name, len(_IDS) + 1)


def _stand_in(dtype, name: str | None = None) -> np.ndarray:
    """A one-element non-zero array: what a probe shows the sparsity check of a weight (see module doc);
    with ``name``, a float value of that tensor's own."""
    dt = np.dtype(dtype)
    if name is not None and dt.kind == "f":
        key = (dt, name)
        if key not in _STAND_IN:
            _STAND_IN[key] = np.full((1,), 1.0 + 1e-3 * _uid(name), dt)
        return _STAND_IN[key]
    if dt not in _STAND_IN:
        _STAND_IN[dt] = np.ones((1,), dt)
    return _STAND_IN[dt]


def _int8_stand_in(name: str) -> np.ndarray:
    """An int8 stand-in of a weight of its own (two small non-zero values)."""
    k = _uid(name)
    return np.array([k % 63 + 1, k // 63 % 63 + 1], np.int8)


def _weight_scale(name: str) -> np.float32:
    """The scale a quantized weight is given: its own (real ones differ per tensor)."""
    return np.float32(0.01 * (1.0 + 1e-4 * _uid(name)))


def _quantized_stand_in(g: Graph, w: str, qtype: str) -> np.ndarray:
    """What a probe shows the fusion of weight ``w`` quantized to ``qtype``: one element with the range the
    real quantized tensor has (the runtime turns an int8 constant that does not fit in 7 bits to uint8:
    a quantized non-zero tensor reaches +-127, an all-zero one stays 0, one without a value is ones)."""
    memo = g.__dict__.setdefault("_quantized_stand_ins", {})
    hit = memo.get((w, qtype))
    if hit is None:
        dt = _np_dtype(qtype)
        if w not in g.const_values:
            hit = np.ones((1,), dt)
        elif qtype == "int32" or not np.any(np.asarray(g.const_values[w])):
            hit = np.zeros((1,), dt) if qtype != "int32" else np.ones((1,), dt)
        else:
            hit = np.full((1,), 127, dt)
        memo[(w, qtype)] = hit
    return hit


def _np_dtype(name: str):
    return {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8,
            "int32": np.int32, "int64": np.int64}.get(name, np.float32)


class _Builder:
    """Mutable copy of a graph's records; :meth:`build` makes a new :class:`Graph`."""

    def __init__(self, g: Graph, materialize: bool):
        self.g = g
        self.materialize = materialize
        self.nodes: dict = {}
        for r in g.ops:
            self.nodes[r.name] = {"op": r.op_type, "domain": r.domain, "in": [t.name for t in r.inputs],
                                  "out": [t.name for t in r.outputs], "attrs": r.attrs, "foldable": r.foldable,
                                  "pos": float(r.index), "rec": r}
        self.tensors: dict = dict(g.tensors)
        self.extra: dict = {}
        self.node_origin: dict = {r.name: r.name for r in g.ops}
        self.tensor_origin: dict = {}
        self.outputs = [t.name for t in g.outputs]
        self.inputs = list(g.inputs)
        self._seq = 0
        self.writer: dict = {}
        self.readers: dict = {}
        for n, d in self.nodes.items():
            self._index(n, d)
        if not materialize:  # the weights of weighted nodes: stand-ins (see the module doc)
            for r in g.ops:
                if r.op_type in WEIGHTED_OPS and len(r.inputs) > 1 and _is_init(g, r.inputs[1].name):
                    self.extra[r.inputs[1].name] = _stand_in(_np_dtype(r.inputs[1].dtype), r.inputs[1].name)

    # -- helpers -----------------------------------------------------------------------------
    def _eps(self) -> float:
        self._seq += 1
        return self._seq * 1e-6

    def tensor(self, name, shape, dtype, const=False, value=None, origin=None):
        self.tensors[name] = Tensor(name, tuple(shape) if shape is not None else None, dtype, const)
        if value is not None:
            self.extra[name] = value
        if origin is not None:
            self.tensor_origin[name] = origin
        return name

    def _index(self, n, d):
        for o in d["out"]:
            if o:
                self.writer[o] = n
        for x in d["in"]:
            if x:
                self.readers.setdefault(x, set()).add(n)

    def node(self, name, op, ins, outs, pos, origin, attrs=None, domain=""):
        d = {"op": op, "domain": domain, "in": list(ins), "out": list(outs), "attrs": attrs or {},
             "foldable": False, "pos": pos + self._eps(), "rec": None}
        self.nodes[name] = d
        self.node_origin[name] = origin
        self._index(name, d)
        return name

    def remove(self, name):
        d = self.nodes.pop(name)
        for o in d["out"]:
            if self.writer.get(o) == name:
                del self.writer[o]
        for x in d["in"]:
            self.readers.get(x, set()).discard(name)

    def producer(self, t):
        return self.writer.get(t)

    def replace_input(self, old, new, only=None):
        """Every reader of ``old`` (or only node ``only``) reads ``new``."""
        for n in list(self.readers.get(old, ())) if only is None else [only]:
            d = self.nodes[n]
            d["in"] = [new if x == old else x for x in d["in"]]
            self.readers[old].discard(n)
            self.readers.setdefault(new, set()).add(n)

    def rename_output(self, old, new):
        n = self.writer.pop(old, None)
        if n is not None:
            d = self.nodes[n]
            d["out"] = [new if x == old else x for x in d["out"]]
            self.writer[new] = n

    def set_shape(self, name, shape):
        t = self.tensors[name]
        self.tensors[name] = replace(t, shape=tuple(shape))

    def weight_value(self, name, dtype=None, shape=None, make=None):
        """Value of a (new or resized) weight: real when materializing, a stand-in otherwise."""
        if not self.materialize:
            return _stand_in(dtype or np.float32, name)
        return make() if make is not None else None

    def build(self) -> Graph:
        order = sorted(self.nodes.items(), key=lambda kv: kv[1]["pos"])
        recs, producers, consumers = [], {}, {}
        # constant folding as load_graph decides it: a DequantizeLinear is never folded, so what reads a
        # quantized weight is no longer foldable
        for name, d in order:
            if d["op"] == "Constant" or not d["foldable"] and d["rec"] is not None:
                continue
            present = [x for x in d["in"] if x]
            fold = d["op"] not in _NOT_FOLDABLE and bool(present) and all(
                self.tensors.get(x) is not None and self.tensors[x].const for x in present)
            if d["op"] in ("Shape", "Size") and d["rec"] is not None:
                fold = d["foldable"]
            d["foldable"] = fold
            for o in d["out"]:
                if o and o in self.tensors and self.tensors[o].const != fold:
                    self.tensors[o] = replace(self.tensors[o], const=fold)
        for i, (name, d) in enumerate(order):
            ins = tuple(self.tensors.get(x) or Tensor(x, None, "unknown", False) if x else _NO for x in d["in"])
            outs = tuple(self.tensors.get(x) or Tensor(x, None, "unknown", False) if x else _NO for x in d["out"])
            recs.append(OpRecord(name, d["op"], d["domain"], ins, outs, d["attrs"], d["foldable"], i))
            for o in d["out"]:
                if o:
                    producers[o] = i
            for x in d["in"]:
                if x:
                    consumers.setdefault(x, []).append(i)
        g = self.g
        outs = [self.tensors.get(o) or Tensor(o, None, "unknown", False) for o in self.outputs]
        ins = [self.tensors.get(t.name, t) for t in self.inputs]
        return Graph(ops=recs, inputs=ins, outputs=outs, opset=g.opset, producers=producers, consumers=consumers,
                     const_values=_Consts(g.const_values, self.extra), path=None, shape_source=g.shape_source,
                     tensors=self.tensors, opsets=dict(g.opsets), control=dict(g.control), notes=list(g.notes))


def _is_init(g: Graph, name: str) -> bool:
    """An initializer (a constant no node produces), as onnxruntime.quantization's find_by_name sees it."""
    return bool(name) and name in g.const_values and g.producer(name) is None and g.tensor(name).const


def _is_float(g: Graph, name: str) -> bool:
    return bool(name) and g.tensor(name).dtype in _FLOATS


# ------------------------------------------------------------------------------------------------
# static QDQ (quantize_static)


@dataclass
class _Marks:
    act: dict = field(default_factory=dict)      # tensor -> None (activation or initializer), insertion order
    shared: dict = field(default_factory=dict)   # tensor -> provider tensor
    weight: dict = field(default_factory=dict)   # initializer -> None
    bias: dict = field(default_factory=dict)     # (node, bias tensor) -> None
    removed: dict = field(default_factory=dict)  # removed node -> (upstream output, its own output)
    quantized: list = field(default_factory=list)


def static_marks(g: Graph, quantize) -> _Marks:
    """What ``QDQQuantizer.quantize_model`` marks, node by node in file order.

    ``quantize(name) -> bool``: whether node ``name`` may be quantized (not in ``nodes_to_exclude``).
    """
    m = _Marks()
    calibrated = set()
    for r in g.ops:
        if r.op_type in QDQ_OP_TYPES and r.domain == "":
            for t in list(r.inputs) + list(r.outputs):
                if t.name and t.dtype in _FLOATS and not _is_init(g, t.name):
                    calibrated.add(t.name)
    consumers = {k: len(v) for k, v in g.consumers.items()}
    graph_outputs = {t.name for t in g.outputs}
    graph_inputs = {t.name for t in g.inputs}
    tq: dict = {}  # tensors_to_quantize: name -> ("act" | "weight" | ("shared", provider))

    def quantizable(t):
        return bool(t) and (_is_float(g, t) if (_is_init(g, t) or t in g.tensors) else False)

    def act(t):
        if quantizable(t) and t not in tq:
            tq[t] = "act"

    def weight(t):
        if _is_init(g, t) and _is_float(g, t):
            tq[t] = "weight"

    def shared(t, provider):
        if quantizable(t):
            tq[t] = ("shared", provider)

    def is_q(t):
        return t in tq or any(b == t for _, b in m.bias)

    def bias(node, t):
        if _is_init(g, t) and _is_float(g, t):
            m.bias[(node, t)] = None

    renamed: dict = {}  # upstream output -> the removed activation's output that replaces it

    for r in g.ops:
        op = r.op_type
        if op not in QDQ_OP_TYPES or r.domain != "" or not quantize(r.name):
            continue
        ins = [t.name for t in r.inputs]
        outs = [t.name for t in r.outputs]
        i0 = ins[0] if ins else ""
        i0 = renamed.get(i0, i0)
        before = len(tq), len(m.bias)
        if op in ("Conv", "ConvTranspose"):
            act(i0)
            act(outs[0])
            weight(ins[1])
            if len(ins) == 3:
                bias(r.name, ins[2])
        elif op == "Gemm":
            act(i0)
            act(outs[0])
            weight(ins[1])
            if len(ins) == 3 and _is_init(g, ins[2]):
                bias(r.name, ins[2])
        elif op == "MatMul":
            for t in ins + outs:
                if _is_init(g, t):
                    weight(t)
                else:
                    act(t)
        elif op in _REMOVABLE:
            if not is_q(i0):
                continue
            up, o = i0, outs[0]
            if (o in calibrated and up in calibrated and consumers.get(up, 0) == 1 and up not in graph_outputs
                    and up not in graph_inputs):
                m.removed[r.name] = (up, o)
                renamed[up] = o
                tq.pop(up, None)
                # the producer writes o now: what was marked on up is marked on o
                act(o)
            else:
                act(i0)
            act(o)
        elif op in _FOLLOW_INPUT:
            if (op == "MaxPool" and g.opset < 12) or (op == "Resize" and g.opset < 11):
                continue
            if is_q(i0):
                shared(outs[0], i0)
        elif op == "Pad":
            for t in ins:
                if t:
                    act(t)
            mode = r.attr("mode", "constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            same = mode in ("reflect", "edge", "wrap")
            if mode == "constant":
                v = g.const_values[ins[2]] if len(ins) > 2 and ins[2] and ins[2] in g.const_values else np.float32(0)
                same = np.asarray(v).dtype in (np.float32, np.float16) and float(np.asarray(v).reshape(-1)[0]) == 0
            if same:
                shared(outs[0], i0)
            else:
                act(outs[0])
        elif op == "Split":
            if not is_q(i0):
                act(i0)
            for o in outs:
                if o:
                    shared(o, i0)
        elif op in ("Gather", "GatherElements"):
            if _is_init(g, i0) and _is_float(g, i0):
                act(i0)
                shared(outs[0], i0)
            elif is_q(i0):
                shared(outs[0], i0)
        elif op == "Where":
            if len(ins) > 2 and is_q(ins[1]) and is_q(ins[2]):
                for o in outs:
                    act(o)
        elif op in _NORMS:
            act(i0)
            if _is_init(g, ins[1]):
                weight(ins[1])
            else:
                act(ins[1])
            if len(ins) > 2 and ins[2]:
                bias(r.name, ins[2])
            for o in outs:
                act(o)
        else:  # QDQOperatorBase: every input and output
            for t in ins + outs:
                act(t)
        if (len(tq), len(m.bias)) != before or r.name in m.removed:
            m.quantized.append(r.name)
    for t, kind in tq.items():
        if isinstance(kind, tuple):
            m.shared[t] = kind[1]
        elif kind == "weight":
            m.weight[t] = None
        else:
            m.act[t] = None
    return m


#: ops whose output keeps its input's sign (a ReLU's output stays non-negative through them)
_ORDER_OPS = ("MaxPool", "GlobalMaxPool", "AveragePool", "GlobalAveragePool", "Reshape", "Flatten", "Transpose",
              "Squeeze", "Unsqueeze", "Identity")


def _through_order_ops(b: _Builder, t: str):
    """The node that sets the sign of tensor ``t``: its producer, looked through data-movement and pooling."""
    p = b.producer(t)
    for _ in range(8):
        if p is None or b.nodes[p]["op"] not in _ORDER_OPS or not b.nodes[p]["in"]:
            return p
        p = b.producer(b.nodes[p]["in"][0])
    return p


def _clip_value(b: _Builder, node: str, i: int, attr: str):
    d = b.nodes[node]
    if attr in d["attrs"]:
        return float(d["attrs"][attr])
    if len(d["in"]) > i and d["in"][i]:
        t = d["in"][i]
        v = b.extra.get(t)
        if v is None and b.g.tensor(t).const:
            v = _value_of(b.g, t)
        if v is not None and np.asarray(v).size == 1:
            return float(np.asarray(v).reshape(-1)[0])
    return None


def _clip_low_zero(b: _Builder, node: str) -> bool:
    lo = _clip_value(b, node, 1, "min")
    return lo is not None and lo == 0.0


def _clip_high(b: _Builder, node: str):
    return _clip_value(b, node, 2, "max")


def _q_params(b: _Builder, t: str, pos: float, origin: str, qtype="int8"):
    """Add the Q/DQ pair of activation ``t`` (consumers read the DQ output; a graph output keeps its name)."""
    tt = b.tensors[t]
    shape = tt.shape
    s = b.tensor(t + "_scale", (), "float32", True, np.float32(0.05))
    # calibration gives a ReLU's output (never negative) the bottom of the range as zero point, which lets
    # the runtime drop the ReLU before the Q (ReluQuantFusion); elsewhere a mid-range one
    # (and a Clip(0, hi)'s output the range [0, at most hi], which lets it drop the Clip: ClipQuantFusion)
    p = _through_order_ops(b, t)
    op = b.nodes[p]["op"] if p is not None else None
    low = op == "Relu" or (op == "Clip" and _clip_low_zero(b, p))
    zp = (np.iinfo(_np_dtype(qtype)).min if qtype in ("int8", "uint8") else 0) if low and \
        not getattr(b, "symmetric", False) else 0
    if op == "Clip" and low and qtype in ("int8", "uint8"):
        hi = _clip_high(b, p)
        if hi is not None:
            info = np.iinfo(_np_dtype(qtype))
            b.extra[s] = np.float32(hi / (int(info.max) - int(info.min)))
    z = b.tensor(t + "_zero_point", (), qtype, True, np.array(zp, _np_dtype(qtype)))
    q_out = b.tensor(t + "_QuantizeLinear_Output", shape, qtype, origin=origin)
    if t in b.outputs:
        q_in = b.tensor(t + "_QuantizeLinear_Input", shape, tt.dtype, origin=origin)
        b.rename_output(t, q_in)
        dq_out = t
        b.outputs = list(b.outputs)
    else:
        q_in = t
        dq_out = b.tensor(t + "_DequantizeLinear_Output", shape, tt.dtype, origin=origin)
        b.replace_input(t, dq_out)
    b.node(t + "_QuantizeLinear", "QuantizeLinear", [q_in, s, z], [q_out], pos + 0.3, ("tensor", origin))
    b.node(t + "_DequantizeLinear", "DequantizeLinear", [q_out, s, z], [dq_out], pos + 0.31, ("tensor", origin))


def _weight_dq(b: _Builder, w: str, qtype: str, origin_node: str | None, pos: float):
    """``w`` becomes an int8 (or int32 for biases) initializer behind a DequantizeLinear read by every
    consumer of ``w``."""
    tw = b.tensors[w]
    src = b.g.const_values[w] if (b.materialize and w in b.g.const_values) else None

    def make():
        arr = np.asarray(src, np.float32)
        if qtype == "int32":
            return np.round(arr / 1e-4).astype(np.int32)
        scale = float(np.abs(arr).max()) / 127.0 or 1.0
        return np.clip(np.round(arr / scale), -127, 127).astype(np.int8)

    if b.materialize:
        val = make() if src is not None else np.ones(tw.shape or (1,), _np_dtype(qtype))
    else:
        val = _quantized_stand_in(b.g, w, qtype)
    qn = b.tensor(w + "_quantized", tw.shape, qtype, True, val)
    s = b.tensor(w + "_scale", (), "float32", True, _weight_scale(w))
    z = b.tensor(w + "_zero_point", (), qtype, True, np.zeros((), _np_dtype(qtype)))
    out = w if qtype == "int32" else w + "_DequantizeLinear_Output"
    if qtype != "int32":
        b.tensor(out, tw.shape, tw.dtype, origin=None)
        b.replace_input(w, out)
    else:
        b.tensors[w] = replace(tw, const=False)
        b.extra.pop(w, None)
    # a weight's DequantizeLinear belongs to the weight (its owner: its reader, or the shared constant);
    # a bias's to its node (the quantizer gives each node its own bias)
    origin = origin_node if qtype == "int32" else ("tensor", w)
    b.node(w + "_DequantizeLinear", "DequantizeLinear", [qn, s, z], [out], pos - 0.4, origin)


def static_qdq(g: Graph, quantize, prune: dict | None = None, groups: dict | None = None,
               materialize: bool = False, pre_process: bool = True, symmetric: bool = False) -> Rewritten:
    """``g`` as ``quantize_static(quant_format=QDQ)`` with defaults leaves it (see the module doc);
    ``symmetric``: with ``extra_options={"ActivationSymmetric": True}`` (every zero point 0: what TensorRT's
    parser takes).

    ``quantize(name) -> bool``: whether node ``name`` may be quantized; ``prune``: {head node:
    ratio} with ``groups`` their :func:`channel_group` results; ``pre_process``: run on the graph
    ``quant_pre_process`` leaves (False: a model no tool touches, where nothing is quantized).
    """
    pre = quant_pre_processed(g, materialize) if pre_process else _untouched(g)
    g = pre.graph
    b = _Builder(g, materialize)
    b.symmetric = symmetric
    if prune:
        _apply_prune(b, prune, {h: _pre_group(pre, grp) for h, grp in groups.items()})
    marks = static_marks(g, quantize)
    # removed activations: the upstream node writes the activation's output
    for name, (up, o) in marks.removed.items():
        b.remove(name)
        b.rename_output(up, o)
        b.tensor_origin[up] = o
    pos_of = {}
    for n, d in b.nodes.items():
        for o in d["out"]:
            pos_of[o] = d["pos"]
    first_use = {}
    for n, d in sorted(b.nodes.items(), key=lambda kv: kv[1]["pos"]):
        for x in d["in"]:
            first_use.setdefault(x, (d["pos"], n))
    bias_nodes = {}
    for (node, t) in marks.bias:
        bias_nodes.setdefault(t, []).append(node)
    for t in list(marks.act) + list(marks.weight):
        if _is_init(g, t):
            if t in bias_nodes:
                continue
            pos, user = first_use.get(t, (0.0, None))
            _weight_dq(b, t, "int8", user, pos)
        else:
            prod_pos = pos_of.get(t, -1.0)
            origin = b.tensor_origin.get(t, t)
            _q_params(b, t, prod_pos, origin)
    for t in marks.shared:
        if t in marks.act or _is_init(g, t):
            continue
        _q_params(b, t, pos_of.get(t, -1.0), b.tensor_origin.get(t, t))
    for t, users in bias_nodes.items():
        for k, node in enumerate(users):
            name = t if k == 0 else f"{t}_{k}"
            if k:
                b.tensor(name, b.tensors[t].shape, b.tensors[t].dtype, True)
                b.replace_input(t, name, only=node)
            _weight_dq(b, name, "int32", node, b.nodes[node]["pos"])
    return _in_original(pre, b, frozenset(pre.node_origin.get(n, n) for n in marks.quantized
                                          if n not in marks.removed))


def _in_original(pre: PreProcessed, b: _Builder, reduced) -> Rewritten:
    """The rewritten graph with its origins in the original graph (through what quant_pre_process made)."""
    node_origin = {n: (("tensor", pre.tensor_origin.get(o[1], o[1])) if isinstance(o, tuple) else
                       pre.node_origin.get(o, o) if o is not None else None) for n, o in b.node_origin.items()}
    tensor_origin = dict(pre.tensor_origin)
    tensor_origin.update({t: pre.tensor_origin.get(o, o) for t, o in b.tensor_origin.items()})
    return Rewritten(b.build(), node_origin, tensor_origin, reduced)


def _pre_group(pre: PreProcessed, grp: ChannelGroup) -> ChannelGroup:
    """A channel group of the original graph in the pre-processed one: the tensors made from its tensors
    (a Gemm's 2-D input and output) shrink on the same channel axis, counted from the last."""
    if not grp.tensors:
        return grp
    g = pre.graph
    made: dict = {}
    for t, o in pre.tensor_origin.items():
        made.setdefault(o, []).append(t)
    out = []
    for t, ax in grp.tensors:
        shp = pre.source.tensors[t].shape if t in pre.source.tensors else None
        rank = len(shp) if shp is not None else 0
        for p in [t] + made.get(t, []):
            ps = g.tensors[p].shape if p in g.tensors else None
            if ps is None:
                continue
            a = len(ps) - (rank - ax)
            if 0 <= a < len(ps) and ps[a] == grp.channels:
                out.append((p, a))
    return replace(grp, tensors=tuple(out))


# ------------------------------------------------------------------------------------------------
# quant_pre_process (what users run before quantize_static)


@dataclass
class PreProcessed:
    """``g`` as ``onnxruntime.quantization.shape_inference.quant_pre_process`` (defaults) leaves it for the
    quantizer: constants as initializers, a BatchNormalization folded into the Conv before it, a decomposed
    LayerNorm as one LayerNormalization, MatMul + bias Add as Gemm (between Reshapes for inputs of rank > 2,
    merged with a Reshape next to them). Nodes keep the original name of the node they come from (a Gemm
    its MatMul's, a LayerNormalization its scale Mul's); ``node_origin`` / ``tensor_origin``: new node /
    tensor -> original one; ``tool_names``: original node -> the name the tool's file gives the node it
    became (what ``nodes_to_exclude`` must name there)."""

    graph: Graph
    node_origin: dict
    tensor_origin: dict
    tool_names: dict
    source: Graph | None = None


def quant_pre_processed(g: Graph, materialize: bool = False) -> PreProcessed:
    """The graph ``quant_pre_process`` writes (see :class:`PreProcessed`); ``materialize``: real folded
    weights (made anew each time), else stand-ins (made once per graph).

    Mirrors onnxruntime's basic-level graph optimizations that change what ``quantize_static`` marks:
    constant folding, ConvBNFusion, LayerNormFusion and MatMulAddFusion (ORT 1.32)."""
    memo = g.__dict__.setdefault("_quant_pre_processed", {})
    if not materialize and materialize in memo:
        return memo[materialize]
    b = _Builder(g, materialize)
    b.node_origin = {}
    tool_names: dict = {}
    outputs = set(b.outputs)

    def readers(t):
        return [n for n in b.readers.get(t, ()) if n in b.nodes]

    def const_init(t):
        return bool(t) and b.tensors.get(t) is not None and b.tensors[t].const and b.producer(t) is None and \
            (t in b.extra or t in g.const_values)

    def value(t):
        return b.extra[t] if t in b.extra else g.const_values[t]

    # constant folding: Constant nodes, and folded nodes whose float outputs a live node reads, become
    # initializers
    for r in g.ops:
        d = b.nodes.get(r.name)
        if d is None or not (r.op_type == "Constant" or r.foldable):
            continue
        outs = [o for o in d["out"] if o]
        if r.op_type != "Constant":
            live = [o for o in outs if any(not b.nodes[n]["foldable"] for n in readers(o))]
            if not live or any(b.tensors[o].dtype not in _FLOATS for o in live):
                continue
            for o in outs:
                if o not in g.const_values:
                    shp = b.tensors[o].shape or (1,)
                    b.extra[o] = np.ones(shp, _np_dtype(b.tensors[o].dtype)) if materialize else \
                        _stand_in(_np_dtype(b.tensors[o].dtype), o)
        b.remove(r.name)
    # HardSwish -> HardSigmoid(alpha=1/6, beta=0.5) + Mul: the saved model carries the function body the
    # runtime inlined (HardSwish has no CPU kernel of its own); the two nodes have no name in the tool's
    # file, so nodes_to_exclude cannot keep them float and quantize_static marks the Mul (a QDQ op) always
    for r in g.ops:
        d = b.nodes.get(r.name)
        if d is None or d["op"] != "HardSwish" or d["domain"] or len(d["in"]) != 1:
            continue
        x, y = d["in"][0], d["out"][0]
        pos = d["pos"]
        b.remove(r.name)
        hs = b.tensor(r.name + "/inlined/HardSigmoid_output", b.tensors[y].shape, b.tensors[y].dtype, origin=y)
        b.node(r.name + "/inlined/HardSigmoid", "HardSigmoid", [x], [hs], pos - 0.1, r.name,
               attrs={"alpha": 1.0 / 6.0, "beta": 0.5})
        b.node(r.name + "/inlined/Mul", "Mul", [x, hs], [y], pos, r.name)
    # Conv + BatchNormalization -> Conv (ConvBNFusion)
    for r in g.ops:
        if r.op_type != "Conv" or r.name not in b.nodes:
            continue
        d = b.nodes[r.name]
        y = d["out"][0]
        rs = readers(y)
        if len(d["in"]) < 2 or not const_init(d["in"][1]) or len(rs) != 1 or y in outputs:
            continue
        bn = b.nodes[rs[0]]
        if bn["op"] != "BatchNormalization" or bn["domain"] or len(bn["in"]) < 5 or \
                not all(const_init(x) for x in bn["in"][1:5]) or len([o for o in bn["out"] if o]) != 1:
            continue
        scale, beta, mean, var = bn["in"][1:5]
        has_bias = len(d["in"]) > 2 and bool(d["in"][2])
        bias = d["in"][2] if has_bias and const_init(d["in"][2]) else (beta if not has_bias else None)
        if bias is None:
            continue
        w = d["in"][1]
        if materialize:
            eps = float(bn["attrs"].get("epsilon", 1e-5))
            f = np.asarray(value(scale), np.float32) / np.sqrt(np.asarray(value(var), np.float32) + eps)
            wv = np.asarray(value(w), np.float32)
            b.extra[w] = (wv * f.reshape((-1,) + (1,) * (wv.ndim - 1))).astype(wv.dtype)
            b0 = np.asarray(value(d["in"][2]), np.float32) if has_bias else np.zeros_like(f)
            b.extra[bias] = ((b0 - np.asarray(value(mean), np.float32)) * f +
                             np.asarray(value(beta), np.float32)).astype(np.float32)
        out = bn["out"][0]
        b.remove(rs[0])
        b.remove(r.name)
        b.nodes[r.name] = dict(d, **{"in": [d["in"][0], w, bias], "out": [out]})
        b._index(r.name, b.nodes[r.name])
    # decomposed LayerNorm -> LayerNormalization (LayerNormFusion), named after its scale Mul
    for r in g.ops:
        if r.op_type != "ReduceMean" or r.name not in b.nodes:
            continue
        chain = _layernorm_chain(b, r.name, readers, const_init)
        if chain is None:
            continue
        nodes, x, gamma, beta, eps, out, mul = chain
        pos = b.nodes[mul]["pos"]
        for n in nodes:
            b.remove(n)
        b.node(mul, "LayerNormalization", [x, gamma, beta], [out], pos, mul, attrs={"axis": -1, "epsilon": eps})
        b.nodes[mul]["pos"] = pos
        tool_names[mul] = mul + "/LayerNormFusion/"
    # MatMul + Add(bias) -> Gemm (MatMulAddFusion), between Reshapes when the input has rank > 2; at the basic
    # level it keeps an attention block's four projections for AttentionFusion (preserve_attention_pattern,
    # read in matmul_add_fusion.cc): a LayerNormalization read by one Add, three MatMuls and Shapes only marks
    # the three as Q/K/V, and the Add's other input (the output projection's bias Add) as the fourth. It runs
    # before LayerNormFusion, so a LayerNorm the model writes out in ops does not count (BERT exported
    # decomposed: all fused; DistilBERT with LayerNormalization ops: the four kept as MatMul + Add)
    attn_ln, attn_add = set(), set()

    def attention_pattern(parent, add_name):
        if parent in attn_ln or add_name in attn_add:
            return True
        pd = b.nodes.get(parent) if parent is not None else None
        rec = pd["rec"] if pd is not None else None
        if rec is None or rec.op_type != "LayerNormalization" or pd["op"] != "LayerNormalization":
            return False
        rs = readers(pd["out"][0])
        ops = [b.nodes[n]["op"] for n in rs]
        adds = [n for n in rs if b.nodes[n]["op"] == "Add"]
        if len(adds) != 1 or ops.count("MatMul") != 3 or ops.count("Shape") != len(rs) - 4:
            return False
        ins = b.nodes[adds[0]]["in"]
        other = ins[1] if ins[0] == pd["out"][0] else ins[0]
        q = b.producer(other)
        if q is None or b.nodes[q]["op"] != "Add":
            return False
        attn_ln.add(parent)
        attn_add.add(q)
        return True

    for r in g.ops:
        if r.op_type != "MatMul" or r.name not in b.nodes:
            continue
        d = b.nodes[r.name]
        a, w = d["in"][0], d["in"][1]
        y = d["out"][0]
        rs = readers(y)
        sa, sw = b.tensors[a].shape, b.tensors[w].shape
        if len(rs) != 1 or y in outputs or sa is None or sw is None or len(sw) != 2 or len(sa) < 2 or \
                any(not isinstance(v, int) or v <= 0 for v in sa):
            continue
        add = b.nodes[rs[0]]
        if add["op"] != "Add" or add["domain"] or len(add["in"]) != 2:
            continue
        c = add["in"][1] if add["in"][0] == y else add["in"][0]
        sc = b.tensors[c].shape if c in b.tensors else None
        n_out = sw[1]
        if not const_init(c) or sc is None or tuple(sc) not in ((n_out,), (1, n_out)):
            continue
        if len(sa) != 2 and attention_pattern(b.producer(a), rs[0]):
            continue
        z = add["out"][0]
        sz = b.tensors[z].shape
        pos = d["pos"]
        # the input side: a Reshape read only by this MatMul is merged with the one the fusion adds
        pa = b.producer(a)
        merge_in = pa is not None and b.nodes[pa]["op"] == "Reshape" and len(readers(a)) == 1 and a not in outputs
        b.remove(rs[0])
        b.remove(r.name)
        tool_names[r.name] = r.name + "/MatMulAddFusion"
        if len(sa) == 2:
            b.node(r.name, "Gemm", [a, w, c], [z], pos, r.name)
            b.nodes[r.name]["pos"] = pos
            continue
        m = int(np.prod(sa[:-1]))
        if merge_in:
            b.set_shape(a, (m, sa[-1]))
            a2 = a
        else:
            a2 = b.tensor(r.name + "/gemm_input_reshape_arg", (m, sa[-1]), b.tensors[a].dtype, origin=a)
            shp = b.tensor(r.name + "/gemm_input_shape", (2,), "int64", True, np.array([-1, sa[-1]], np.int64))
            b.node(r.name + "/gemm_input_reshape", "Reshape", [a, shp], [a2], pos - 0.2, r.name)
        g_out = b.tensor(r.name + "/gemm_output_reshape_arg", (m, n_out), b.tensors[z].dtype, origin=z)
        b.node(r.name, "Gemm", [a2, w, c], [g_out], pos, r.name)
        b.nodes[r.name]["pos"] = pos
        # the output side: a Reshape that is the only reader of the sum takes the Gemm's output directly
        zr = readers(z)
        if len(zr) == 1 and z not in outputs and b.nodes[zr[0]]["op"] == "Reshape":
            rd = b.nodes[zr[0]]
            rd["in"] = [g_out] + rd["in"][1:]
            b.readers.setdefault(g_out, set()).add(zr[0])
            b.readers.get(z, set()).discard(zr[0])
        else:
            shp = b.tensor(r.name + "/gemm_output_shape", (len(sz),), "int64", True, np.array(sz, np.int64))
            b.node(r.name + "/gemm_output_reshape", "Reshape", [g_out, shp], [z], pos + 0.2, r.name)
    _push_transposes(b, const_init, value)
    out = PreProcessed(b.build(), dict(b.node_origin), dict(b.tensor_origin), tool_names, g)
    if not materialize:
        memo[materialize] = out
    return out


#: ops onnxruntime's transpose optimizer pushes a Transpose through (its simple and broadcast handlers;
#: the elementwise ones a quantized model meets): every non-scalar input transposed, the output transposed back
_TP_UNARY = frozenset({"Abs", "Ceil", "Cos", "Elu", "Erf", "Exp", "Floor", "HardSigmoid", "LeakyRelu", "Log", "Neg",
                       "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin", "Softplus", "Softsign",
                       "Sqrt", "Tanh", "Gelu"})
_TP_BROADCAST = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "PRelu"})
#: and the ones whose axis follows the permutation (split_handler, squeeze_handler: the first input only)
_TP_AXIS = frozenset({"Split", "Squeeze"})
_TP_MOVES = _TP_UNARY | _TP_BROADCAST | _TP_AXIS


def _rank(shape) -> int:
    """onnxruntime's transpose cost of a value: its dimensions other than 1 (5 when unknown)."""
    return 5 if shape is None else sum(1 for d in shape if d != 1)


def _push_transposes(b: _Builder, const_init, value) -> None:
    """A Transpose pushed through the elementwise ops after it where that removes transposes, as
    onnxruntime's transpose optimizer (level 1, run by quant_pre_process) does: nodes in order; a node
    with an input written by a Transpose of permutation p moves when the cost of transposing its inputs
    by p's inverse is negative (a constant 0; a Transpose of p whose every reader can take it, minus its
    rank; another Transpose 0; any other value plus its rank), plus its output's rank unless the output
    leads through such ops to a Transpose (read in onnx_transpose_optimization.cc: OptimizeImpl,
    EstimateTransposeValueCost, CanLikelyRemoveTranspose). A ConvNeXt block's layer scale and residual
    Add then run channels-last, so its depthwise conv reads a quantized tensor no Add shares; a ViT's
    qkv Transpose moves behind its Split (one Transpose per output, K's merged with the K^T one)."""

    def handled(n):
        d = b.nodes[n]
        return not d["domain"] and (d["op"] in _TP_MOVES or d["op"] == "Transpose")

    def movable(n):
        d = b.nodes[n]
        if d["op"] in _TP_UNARY or d["op"] in _TP_AXIS:
            return [0]
        return [i for i, t in enumerate(d["in"]) if t and (b.tensors[t].shape is None or len(b.tensors[t].shape))]

    def perm_of(n):
        d = b.nodes.get(n)
        if d is None or d["op"] != "Transpose" or d["domain"]:
            return None
        p = d["attrs"].get("perm")
        return tuple(int(v) for v in p) if p is not None else None

    def readers(t):
        return [n for n in b.readers.get(t, ()) if n in b.nodes]

    order = sorted(b.nodes, key=lambda n: b.nodes[n]["pos"])
    leading: set = set()
    for n in reversed(order):
        d = b.nodes[n]
        if d["op"] == "Transpose":
            leading.add(d["in"][0])
        elif handled(n) and any(o in leading for o in d["out"]):
            leading.update(d["in"][i] for i in movable(n))
    outputs = set(b.outputs)
    for n in order:
        d = b.nodes.get(n)
        if d is None or d["domain"]:
            continue
        if d["op"] == "Transpose" and perm_of(n) is not None and perm_of(b.producer(d["in"][0])) is not None:
            # Transpose(Transpose(x, p1), p2): one Transpose of x (none when they cancel; HandleTranspose)
            first = b.producer(d["in"][0])
            p1, p2 = perm_of(first), perm_of(n)
            if len(p1) != len(p2):
                continue
            x, t, y = b.nodes[first]["in"][0], d["in"][0], d["out"][0]
            both = tuple(p1[j] for j in p2)
            if both == tuple(range(len(both))) and y not in outputs:
                b.remove(n)
                b.replace_input(y, x)
            else:
                d["in"][0] = x
                d["attrs"] = dict(d["attrs"], perm=list(both))
                b.readers.get(t, set()).discard(n)
                b.readers.setdefault(x, set()).add(n)
            if not readers(t) and t not in outputs:
                b.remove(first)
            continue
        if d["op"] not in _TP_MOVES:
            continue
        idx = movable(n)
        perm = next((perm_of(b.producer(d["in"][i])) for i in idx if perm_of(b.producer(d["in"][i]))), None)
        if perm is None or any(b.tensors[t].shape is not None and len(b.tensors[t].shape) > len(perm)
                               for t in (d["in"][i] for i in idx)):
            continue
        if any(not const_init(t) and (b.tensors[t].shape is None or len(b.tensors[t].shape) != len(perm))
               for t in (d["in"][i] for i in idx)):
            continue  # a lower-rank activation would need an Unsqueeze first (NormalizeInputRanks): left
        out_perm = perm
        if d["op"] == "Split":
            axis = int(d["attrs"].get("axis", 0))
            if not -len(perm) <= axis < len(perm):
                continue
            new_attrs = dict(d["attrs"], axis=perm[axis % len(perm)])
        elif d["op"] == "Squeeze":
            axes = d["attrs"].get("axes")
            if axes is None and len(d["in"]) > 1 and d["in"][1] and const_init(d["in"][1]):
                axes = np.asarray(value(d["in"][1])).reshape(-1).tolist()
            if axes is None or any(not -len(perm) <= int(a) < len(perm) for a in axes):
                continue  # axes unknown: the output rank is unknown (HandleSqueeze)
            new_axes = sorted(perm[int(a) % len(perm)] for a in axes)
            keep = [i for i in range(len(perm)) if i not in new_axes]
            out_perm = tuple(keep.index(v) for v in perm if v not in new_axes)
        cost = 0
        for i in idx:
            t = d["in"][i]
            if const_init(t):
                continue
            pp = b.producer(t)
            if perm_of(pp) is not None:
                if perm_of(pp) == perm and t not in outputs and all(handled(r) for r in readers(t)):
                    cost -= _rank(b.tensors[t].shape)
                continue
            cost += _rank(b.tensors[t].shape)
        if cost < 0 and not any(o in leading for o in d["out"]):
            cost += max(_rank(b.tensors[o].shape) for o in d["out"] if o)
        if cost >= 0:
            continue
        inv = tuple(int(v) for v in np.argsort(perm))
        out_inv = tuple(int(v) for v in np.argsort(out_perm))
        pos = d["pos"]
        if d["op"] == "Split":
            d["attrs"] = new_attrs
        elif d["op"] == "Squeeze":
            if "axes" in d["attrs"]:
                d["attrs"] = dict(d["attrs"], axes=new_axes)
            else:
                ax = b.tensor(f"{n}/axes_for_transposed_input", (len(new_axes),), "int64", True,
                              np.array(new_axes, np.int64))
                b.readers.get(d["in"][1], set()).discard(n)
                d["in"][1] = ax
                b.readers.setdefault(ax, set()).add(n)
        for i in idx:
            t = d["in"][i]
            pp = b.producer(t)
            if perm_of(pp) == perm:  # transposing it back cancels it
                src = b.nodes[pp]["in"][0]
                d["in"][i] = src
                b.readers.get(t, set()).discard(n)
                b.readers.setdefault(src, set()).add(n)
                if not readers(t) and t not in outputs:
                    b.remove(pp)
                continue
            shp = b.tensors[t].shape
            if shp is not None and len(shp) < len(perm):  # broadcast: leading 1s first
                shp = (1,) * (len(perm) - len(shp)) + tuple(shp)
            new_shape = tuple(shp[j] for j in inv) if shp is not None else None
            nt = f"{t}/transposed_for/{n}"
            if const_init(t):
                v = np.asarray(value(t))
                v = v.reshape((1,) * (len(perm) - v.ndim) + v.shape).transpose(inv)
                b.tensor(nt, new_shape, b.tensors[t].dtype, True, v, origin=t)
            else:
                b.tensor(nt, new_shape, b.tensors[t].dtype, origin=t)
                b.node(nt, "Transpose", [t], [nt], pos - 0.05, n, attrs={"perm": list(inv)})
            d["in"][i] = nt
            b.readers.get(t, set()).discard(n)
            b.readers.setdefault(nt, set()).add(n)
        for k, y in enumerate(d["out"]):
            if not y:
                continue
            ys = b.tensors[y].shape
            yt = b.tensor(f"{y}/before_transpose", tuple(ys[j] for j in out_inv) if ys is not None else None,
                          b.tensors[y].dtype, origin=y)
            d["out"][k] = yt
            b.writer[yt] = n
            b.node(f"{n}/output_transpose_{k}", "Transpose", [yt], [y], pos + 0.05, n,
                   attrs={"perm": list(out_perm)})


def _untouched(g: Graph) -> PreProcessed:
    return PreProcessed(g, {}, {}, {}, g)


def _layernorm_chain(b: _Builder, rm1: str, readers, const_init):
    """(nodes, x, gamma, beta, epsilon, output, scale Mul) of the decomposed LayerNorm starting at ReduceMean
    ``rm1`` (x - mean(x), its square's mean + eps, sqrt, divide, scale, shift over the last axis), or None."""
    def only(t, op):
        rs = readers(t)
        if len(rs) != 1 or t in b.outputs or b.nodes[rs[0]]["op"] != op or b.nodes[rs[0]]["domain"]:
            return None
        return rs[0]

    d1 = b.nodes[rm1]
    x = d1["in"][0]
    shape = b.tensors[x].shape
    axes = d1["attrs"].get("axes")
    if axes is None and len(d1["in"]) > 1 and const_init(d1["in"][1]):
        axes = list(np.asarray(b.g.const_values[d1["in"][1]]).reshape(-1))
    if not shape or axes is None or [int(a) % len(shape) for a in axes] != [len(shape) - 1]:
        return None
    sub = only(d1["out"][0], "Sub")
    if sub is None or b.nodes[sub]["in"] != [x, d1["out"][0]]:
        return None
    dev = b.nodes[sub]["out"][0]
    rs = readers(dev)
    if len(rs) != 2 or dev in b.outputs:
        return None
    pw = next((n for n in rs if b.nodes[n]["op"] == "Pow"), None)
    dv = next((n for n in rs if b.nodes[n]["op"] == "Div"), None)
    if pw is None or dv is None or b.nodes[dv]["in"][0] != dev:
        return None
    rm2 = only(b.nodes[pw]["out"][0], "ReduceMean")
    ad = only(b.nodes[rm2]["out"][0], "Add") if rm2 else None
    sq = only(b.nodes[ad]["out"][0], "Sqrt") if ad else None
    if sq is None or b.nodes[dv]["in"][1] != b.nodes[sq]["out"][0]:
        return None
    eps_t = [t for t in b.nodes[ad]["in"] if t != b.nodes[rm2]["out"][0]]
    if len(eps_t) != 1 or not const_init(eps_t[0]):
        return None
    mul = only(b.nodes[dv]["out"][0], "Mul")
    gamma = [t for t in b.nodes[mul]["in"] if t != b.nodes[dv]["out"][0]] if mul else []
    if len(gamma) != 1 or not const_init(gamma[0]):
        return None
    shift = only(b.nodes[mul]["out"][0], "Add")
    beta = [t for t in b.nodes[shift]["in"] if t != b.nodes[mul]["out"][0]] if shift else []
    if len(beta) != 1 or not const_init(beta[0]):
        return None
    eps = float(np.asarray(b.extra[eps_t[0]] if eps_t[0] in b.extra else b.g.const_values[eps_t[0]]).reshape(-1)[0])
    nodes = [rm1, sub, pw, rm2, ad, sq, dv, mul, shift]
    return nodes, x, gamma[0], beta[0], eps, b.nodes[shift]["out"][0], mul


# ------------------------------------------------------------------------------------------------
# channel pruning


@dataclass(frozen=True)
class ChannelGroup:
    """The tensors and weights whose channel count follows ``head``'s output channels.

    ``tensors``: {tensor: channel axis}; ``weights``: {(node, const input): axis} of the weights and
    per-channel constants that shrink with it (the head's output axis, the consumers' input axis);
    ``depthwise``: depthwise convs inside the group (their ``group`` attribute shrinks too);
    ``channels``: the head's output channels. ``reason``: why pruning ``head`` is refused ("" when
    it is not).
    """

    head: str
    channels: int = 0
    tensors: tuple = ()
    weights: tuple = ()
    depthwise: tuple = ()
    ends: tuple = ()
    reason: str = ""


_PASS_UNARY = frozenset({"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish", "Gelu", "Erf",
                         "Exp", "Neg", "Abs", "Identity", "Dropout", "Softplus", "Selu", "Elu", "Cast", "Sqrt",
                         "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "Mish",
                         "QuickGelu", "FastGelu"})
_PASS_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"})


def _weight_out_axis(g: Graph, r: OpRecord):
    """(output-channel axis of the weight, channel axis of the output) of weighted node ``r``, or None."""
    if len(r.inputs) < 2 or not r.inputs[1].name or not g.tensor(r.inputs[1].name).const:
        return None
    ws = g.tensor(r.inputs[1].name).shape
    if ws is None:
        return None
    if r.op_type == "Conv":
        return (0, 1) if int(r.attr("group", 1) or 1) == 1 else None
    if r.op_type == "ConvTranspose":
        return (1, 1) if int(r.attr("group", 1) or 1) == 1 else None
    if r.op_type == "Gemm":
        return (0 if r.attr("transB", 0) else 1, 1)
    if r.op_type == "MatMul" and len(ws) == 2:
        out = r.outputs[0].shape
        return (1, len(out) - 1) if out else None
    return None


def channel_group(g: Graph, head: str) -> ChannelGroup:
    """The channel group of weighted node ``head`` (see :class:`ChannelGroup`); ``reason`` set when
    pruning its output channels would break the graph: a residual Add or a Concat joining it to
    another branch, a reshape of the channel axis, a graph output, an op that mixes channels."""
    r = next((x for x in g.ops if x.name == head), None)
    if r is None or r.op_type not in WEIGHTED_OPS:
        return ChannelGroup(head, reason="not a Conv, ConvTranspose, Gemm or MatMul with a constant weight")
    axes = _weight_out_axis(g, r)
    if axes is None:
        return ChannelGroup(head, reason=f"{r.op_type} {head!r} is grouped or its weight is not a constant matrix")
    w_axis, c_axis = axes
    out = r.outputs[0].name
    shape = g.tensor(out).shape
    if shape is None:
        return ChannelGroup(head, reason=f"the shape of {out!r} is unknown")
    channels = int(shape[c_axis])
    tensors = {out: c_axis}
    weights = {(head, r.inputs[1].name): w_axis}
    if len(r.inputs) > 2 and r.inputs[2].name:
        weights[(head, r.inputs[2].name)] = 0
    depthwise, ends, joins = [], [], []
    outputs = {t.name for t in g.outputs}
    todo = [out]
    while todo:
        t = todo.pop()
        ax = tensors[t]
        if t in outputs:
            return ChannelGroup(head, reason=f"its channels reach the graph output {t!r}")
        for c in g.consumer_ops(t):
            op = c.op_type
            data = [x.name for x in c.inputs if x.name and not g.tensor(x.name).const]
            consts = [x.name for x in c.inputs if x.name and g.tensor(x.name).const]
            if op in WEIGHTED_OPS and c.inputs[0].name == t:
                if op == "Conv" and int(c.attr("group", 1) or 1) > 1:
                    cs = g.tensor(c.inputs[1].name).shape
                    if cs is not None and cs[1] == 1 and int(c.attr("group")) == channels:
                        depthwise.append(c.name)
                        weights[(c.name, c.inputs[1].name)] = 0
                        if len(c.inputs) > 2 and c.inputs[2].name:
                            weights[(c.name, c.inputs[2].name)] = 0
                        o = c.outputs[0].name
                        if o not in tensors:
                            tensors[o] = 1
                            todo.append(o)
                        continue
                    return ChannelGroup(head, reason=f"grouped Conv {c.name!r} reads it")
                if op == "MatMul" and not (len(c.inputs) > 1 and g.tensor(c.inputs[1].name).const):
                    return ChannelGroup(head, reason=f"MatMul {c.name!r} multiplies it by another activation")
                if op == "Gemm" and c.attr("transA", 0):
                    return ChannelGroup(head, reason=f"Gemm {c.name!r} transposes it")
                ws = g.tensor(c.inputs[1].name).shape
                in_axis = {"Conv": 1, "ConvTranspose": 0}.get(op)
                if op == "Gemm":
                    in_axis = 1 if c.attr("transB", 0) else 0
                if op == "MatMul":
                    in_axis = len(ws) - 2
                weights[(c.name, c.inputs[1].name)] = in_axis
                ends.append(c.name)
                continue
            if op == "BatchNormalization" or op == "InstanceNormalization":
                for x in c.inputs[1:]:
                    if x.name:
                        weights[(c.name, x.name)] = 0
            elif op == "LayerNormalization":
                if ax != len(g.tensor(t).shape) - 1:
                    return ChannelGroup(head, reason=f"LayerNormalization {c.name!r} normalizes another axis")
                for x in c.inputs[1:]:
                    if x.name:
                        weights[(c.name, x.name)] = 0
            elif op in _PASS_UNARY or op in ("QuantizeLinear", "DequantizeLinear"):
                pass
            elif op in _PASS_BINARY or op == "Where":
                joins.append((c, data))  # checked once the whole group is known (x * f(x) stays inside it)
                rank = len(g.tensor(t).shape)
                for x in consts:
                    cs = g.tensor(x).shape or ()
                    # a constant broadcast along the channel axis shrinks with it
                    k = len(cs) - (rank - ax)
                    if 0 <= k < len(cs) and cs[k] == channels and channels > 1:
                        weights[(c.name, x)] = k
            elif op == "Flatten" and all(d == 1 for d in (g.tensor(t).shape or ())[ax + 1:]) and \
                    int(c.attr("axis", 1)) == ax:
                pass
            elif op in ("Concat", "Sum"):
                return ChannelGroup(head, reason=f"{op} {c.name!r} joins it to other branches; prune them together "
                                                 "or not at all")
            else:
                return ChannelGroup(head, reason=f"{op} {c.name!r} reads its channels (only normalisation, "
                                                 "activations, pools and elementwise ops pass a pruned channel on)")
            for o in c.outputs:
                if o.name and o.name not in tensors and not g.tensor(o.name).const:
                    tensors[o.name] = ax if op != "Flatten" else 1
                    todo.append(o.name)
    for c, data in joins:
        others = [x for x in data if x not in tensors]
        if others:
            kind = "residual Add" if c.op_type in ("Add", "Sum") else c.op_type
            return ChannelGroup(head, reason=f"{kind} {c.name!r} joins it to {others[0]!r} (another branch); "
                                             f"prune them together or not at all")
    if not ends:
        return ChannelGroup(head, reason="no Conv, Gemm or MatMul consumes its channels")
    return ChannelGroup(head, channels, tuple(tensors.items()), tuple(weights.items()), tuple(depthwise),
                        tuple(ends))


def kept_channels(channels: int, ratio: float) -> int:
    """Channels left after pruning ``ratio`` of ``channels`` (rounded, at least one)."""
    return max(1, int(round(channels * (1.0 - ratio))))


def _apply_prune(b: _Builder, prune: dict, groups: dict) -> None:
    for head, ratio in prune.items():
        if not ratio:
            continue
        grp = groups[head]
        keep = kept_channels(grp.channels, ratio)
        for t, ax in grp.tensors:
            s = list(b.tensors[t].shape)
            s[ax] = keep
            b.set_shape(t, s)
        for (node, w), ax in grp.weights:
            tw = b.tensors[w]
            s = list(tw.shape)
            if ax >= len(s) or s[ax] != grp.channels:
                continue
            s[ax] = keep
            b.set_shape(w, s)
            src = b.g.const_values[w] if w in b.g.const_values else None
            if b.materialize and src is not None:
                b.extra[w] = np.take(np.asarray(src), np.arange(keep), axis=ax)
            elif not b.materialize and node in b.nodes and b.nodes[node]["op"] in WEIGHTED_OPS and \
                    b.nodes[node]["in"][1] == w:
                b.extra[w] = _stand_in(_np_dtype(tw.dtype), w)
            elif src is not None:
                b.extra[w] = np.take(np.asarray(src), np.arange(keep), axis=ax)
        for node in grp.depthwise:
            b.nodes[node]["attrs"] = dict(b.nodes[node]["attrs"], group=keep)


# ------------------------------------------------------------------------------------------------
# dynamic int8 (quantize_dynamic)


def dynamic_marks(g: Graph, quantize) -> list:
    """Original nodes ``quantize_dynamic`` turns into integer kernels (Conv, MatMul and Gemm with a
    constant weight, Gather of a float table), given ``quantize(name) -> bool``."""
    out = []
    for r in g.ops:
        if r.domain != "" or not quantize(r.name) or r.foldable and r.op_type != "Gather":
            continue
        ins = [t.name for t in r.inputs]
        if r.op_type == "Conv" and len(ins) > 1 and _is_init(g, ins[1]) and _is_float(g, ins[0]):
            out.append(r.name)
        elif r.op_type in ("MatMul", "Gemm") and len(ins) > 1 and _is_init(g, ins[1]) and _is_float(g, ins[1]):
            if r.op_type == "Gemm" and not _gemm_as_matmul(r):
                continue
            out.append(r.name)
        elif r.op_type == "Gather" and _is_init(g, ins[0]) and _is_float(g, ins[0]):
            out.append(r.name)
    return out


def _gemm_as_matmul(r: OpRecord) -> bool:
    """Whether quantize_dynamic rewrites Gemm ``r`` as MatMul + Add (alpha = beta = 1, A not transposed)."""
    return float(r.attr("alpha", 1.0)) == 1.0 and float(r.attr("beta", 1.0)) == 1.0 and not r.attr("transA", 0)


def dynamic_int8(g: Graph, quantize, prune: dict | None = None, groups: dict | None = None,
                 materialize: bool = False, pre_process: bool = True) -> Rewritten:
    """``g`` as ``quantize_dynamic`` with defaults leaves it (see the module doc): every Gemm it can
    becomes MatMul + Add first (quantized or not), then Conv -> ConvInteger, MatMul -> MatMulInteger
    (constant B only, as its MatMulConstBOnly default says), Gather of a float table -> Gather of an
    int8 table + DequantizeLinear; one DynamicQuantizeLinear per quantized activation."""
    pre = quant_pre_processed(g, materialize) if pre_process else _untouched(g)
    g = pre.graph
    b = _Builder(g, materialize)
    if prune:
        _apply_prune(b, prune, {h: _pre_group(pre, grp) for h, grp in groups.items()})
    chosen = set(dynamic_marks(g, quantize))
    # Gemm -> MatMul + Add, for every Gemm (ONNXModel.replace_gemm_with_matmul runs before quantizing)
    for r in g.ops:
        if r.op_type != "Gemm" or r.domain != "" or not _gemm_as_matmul(r):
            continue
        d = b.nodes[r.name]
        a, w = d["in"][0], d["in"][1]
        c = d["in"][2] if len(d["in"]) > 2 else ""
        out = d["out"][0]
        if r.attr("transB", 0):
            ws = b.tensors[w].shape
            wt = b.tensor(w + "_Transposed", (ws[1], ws[0]) if ws else None, b.tensors[w].dtype, True,
                          _stand_in(np.float32, w) if not materialize else np.asarray(g.const_values[w]).T)
            w = wt
        b.remove(r.name)
        mm_out = b.tensor(out + "_MatMul", b.tensors[out].shape, b.tensors[out].dtype) if c else out
        b.node(r.name, "MatMul", [a, w], [mm_out], d["pos"], r.name)
        if c:
            b.node(r.name + "_Add", "Add", [mm_out, c], [out], d["pos"] + 0.01, r.name)
    dql: dict = {}

    def quantize_input(x, pos):
        if x in dql:
            return dql[x]
        shape = b.tensors[x].shape
        origin = b.tensor_origin.get(x, x)
        q = b.tensor(x + "_quantized", shape, "uint8", origin=origin)
        s = b.tensor(x + "_scale", (), "float32", origin=origin)
        z = b.tensor(x + "_zero_point", (), "uint8", origin=origin)
        p = b.nodes[b.producer(x)]["pos"] if b.producer(x) else -1.0
        b.node(x + "_QuantizeLinear", "DynamicQuantizeLinear", [x], [q, s, z], p + 0.3, ("tensor", origin))
        dql[x] = (q, s, z)
        return dql[x]

    def qweight(w, node):
        tw = b.tensors[w]
        val = _int8_stand_in(w) if not materialize else np.clip(
            np.round(np.asarray(g.const_values[w] if w in g.const_values else b.extra[w], np.float32) /
                     (float(np.abs(np.asarray(g.const_values[w] if w in g.const_values else b.extra[w])).max())
                      / 127.0 or 1.0)), -127, 127).astype(np.int8)
        wq = b.tensor(w + "_quantized", tw.shape, "int8", True, val)
        ws = b.tensor(w + "_scale", (), "float32", True, _weight_scale(w))
        wz = b.tensor(w + "_zero_point", (), "int8", True, np.zeros((), np.int8))
        return wq, ws, wz

    for name in sorted(chosen, key=lambda n: b.nodes[n]["pos"]):
        d = b.nodes[name]
        op, pos = d["op"], d["pos"]
        ins, out = d["in"], d["out"][0]
        shape, dt = b.tensors[out].shape, b.tensors[out].dtype
        if op == "Gather":
            wq, ws, wz = qweight(ins[0], name)
            b.remove(name)
            oq = b.tensor(out + "_quantized", shape, "int8")
            b.node(name, "Gather", [wq, ins[1]], [oq], pos, name, attrs=d["attrs"])
            b.node(out + "_DequantizeLinear", "DequantizeLinear", [oq, ws, wz], [out], pos + 0.01, name)
            continue
        xq, xs, xz = quantize_input(ins[0], pos)
        wq, ws, wz = qweight(ins[1], name)
        b.remove(name)
        integer = "ConvInteger" if op == "Conv" else "MatMulInteger"
        acc = b.tensor(out + "_output_quantized", shape, "int32")
        b.node(name + "_quant", integer, [xq, wq, xz, wz], [acc], pos, name,
               attrs=d["attrs"] if op == "Conv" else None)
        cast = b.tensor(acc + "_cast_output", shape, dt)
        b.node(acc + "_cast", "Cast", [acc], [cast], pos + 0.01, name, attrs={"to": 1})
        sm = b.tensor(name + "_quant_scales_mul:0", (), "float32")
        b.node(name + "_quant_scales_mul", "Mul", [xs, ws], [sm], pos - 0.01, name)
        bias = ins[2] if op == "Conv" and len(ins) > 2 and ins[2] else ""
        scaled = b.tensor(out + "_scaled", shape, dt) if bias else out
        b.node(name + "_quant_output_scale_mul", "Mul", [cast, sm], [scaled], pos + 0.02, name)
        if bias:
            bs = b.tensors[bias].shape
            rs = b.tensor(out + "_bias_reshape_shape", (len(b.tensors[ins[1]].shape),), "int64", True,
                          np.array([1, -1] + [1] * (len(b.tensors[ins[1]].shape) - 2), np.int64))
            ro = b.tensor(out + "_bias_reshape_output", (1, bs[0]) + (1,) * (len(shape) - 2), dt, True)
            b.node(out + "_bias_reshape", "Reshape", [bias, rs], [ro], pos + 0.03, name)
            b.nodes[out + "_bias_reshape"]["foldable"] = True
            b.node(out + "_bias_add", "Add", [scaled, ro], [out], pos + 0.04, name)
    return _in_original(pre, b, frozenset(pre.node_origin.get(n, n) for n in chosen))
