"""ONNX file -> shape-inferred, topologically ordered op records.

:func:`load_graph` reads a model (path, bytes or ``ModelProto``), fixes the dimensions of its
inputs (from ``shapes`` / ``batch``), runs ONNX shape inference (with data propagation) and, when
some tensors that priced ops touch still have no static shape (exporter graphs that compute
shapes with Shape -> Gather -> Concat -> Reshape), runs the model once in onnxruntime
(CPU, no optimization, 1 thread) with those tensors added as outputs to read their shapes.

The result is a :class:`Graph` of :class:`OpRecord` s in topological order. Constant nodes,
initializers and the outputs of constant-foldable nodes are constants; foldable nodes
(every input constant, or Shape/Size of a tensor with a static shape) carry ``foldable=True``:
the runtime folds them at session creation, so they cost nothing per run.

Errors are :class:`~latency.errors.ModelError` / :class:`~latency.errors.DynamicShapeError`
with one-line messages.
"""

from __future__ import annotations

import contextlib
import heapq
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from . import ops
from .errors import DynamicShapeError, ModelError

__all__ = ["Tensor", "OpRecord", "Graph", "ControlFlow", "ConstValues", "load_graph", "weight_sparsity",
           "CONTROL_FLOW", "dtype_name"]

#: op types that carry subgraphs; kept as one record each
CONTROL_FLOW = ("If", "Loop", "Scan", "SequenceMap")

#: never folded even when every input is constant (random, or kept by ORT for QDQ fusion)
_NOT_FOLDABLE = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
                 "Multinomial", "Bernoulli", "DequantizeLinear", "If", "Loop", "Scan", "SequenceMap"}

_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64",
    8: "string", 9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64",
    14: "complex64", 15: "complex128", 16: "bfloat16", 17: "float8e4m3fn", 18: "float8e4m3fnuz",
    19: "float8e5m2", 20: "float8e5m2fnuz", 21: "uint4", 22: "int4", 23: "float4e2m1",
}


def dtype_name(elem_type: int) -> str:
    """'float32', 'float16', 'int8', ... for an ONNX TensorProto data type."""
    if elem_type in _DTYPES:
        return _DTYPES[elem_type]
    try:
        import onnx
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except Exception:  # pragma: no cover - unknown enum value
        return "unknown"


# --------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Tensor:
    """A value in the graph. ``shape`` is None unless every dimension has a value.

    An omitted optional input is represented by ``Tensor("", None, "", False)`` so that input
    positions are kept.
    """

    name: str
    shape: tuple | None
    dtype: str
    const: bool = False

    @property
    def present(self) -> bool:
        return bool(self.name)


@dataclass(frozen=True)
class OpRecord:
    """One ONNX node. ``attrs`` maps attribute names to Python values (ints, floats, strings,
    lists, numpy arrays for tensors, GraphProto for subgraphs)."""

    name: str
    op_type: str
    domain: str
    inputs: tuple
    outputs: tuple
    attrs: dict = field(default_factory=dict, hash=False, compare=False)
    foldable: bool = False
    index: int = 0

    @property
    def qualified(self) -> str:
        return f"{self.domain or 'ai.onnx'}:{self.op_type}"

    def attr(self, name: str, default: Any = None) -> Any:
        return self.attrs.get(name, default)


class ConstValues(Mapping):
    """Lazy ``name -> numpy array`` access to initializers and Constant-node values.

    Arrays are converted (and external data read) on first access and cached.
    """

    def __init__(self, protos: dict, base_dir: str | None):
        self._protos = protos
        self._base = base_dir
        self._cache: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._cache:
            return self._cache[name]
        p = self._protos[name]
        if isinstance(p, np.ndarray):
            arr = p
        else:
            from onnx import numpy_helper
            try:
                arr = numpy_helper.to_array(p, self._base or "")
            except Exception as e:  # noqa: BLE001
                raise ModelError(f"cannot read the value of constant {name!r}: {_one_line(e)}") from None
        self._cache[name] = arr
        return arr

    def __contains__(self, name) -> bool:
        return name in self._protos

    def size(self, name: str) -> int:
        """Elements of constant ``name``, read from its dims without decoding its data."""
        p = self._cache.get(name)
        if p is None:
            p = self._protos[name]
        if isinstance(p, np.ndarray):
            return int(p.size)
        return int(np.prod(p.dims, dtype=np.int64)) if len(p.dims) else 1

    def __iter__(self) -> Iterator[str]:
        return iter(self._protos)

    def __len__(self) -> int:
        return len(self._protos)


@dataclass
class Graph:
    """A loaded model: op records in topological order plus lookup tables."""

    ops: list
    inputs: list
    outputs: list
    opset: int
    producers: dict
    consumers: dict
    const_values: ConstValues
    path: str | None = None
    shape_source: str = "inferred"
    tensors: dict = field(default_factory=dict)
    opsets: dict = field(default_factory=dict)
    #: node name -> :class:`ControlFlow` of each If / Loop / Scan node (its bodies, branch, trip count)
    control: dict = field(default_factory=dict)
    #: one-line notes an estimate repeats (a batch dim set to 1, a Loop priced at its upper bound)
    notes: list = field(default_factory=list)
    #: the external data files its weights were read from (paths)
    external_files: tuple = ()

    def tensor(self, name: str) -> Tensor:
        return self.tensors.get(name) or Tensor(name, None, "unknown", False)

    def producer(self, name: str) -> OpRecord | None:
        i = self.producers.get(name)
        return None if i is None else self.ops[i]

    def consumer_ops(self, name: str) -> list:
        return [self.ops[i] for i in self.consumers.get(name, [])]

    @property
    def output_names(self) -> set:
        return {t.name for t in self.outputs}

    def unknown_shapes(self) -> list:
        """Names of tensors touched by non-foldable ops whose shape is still unknown."""
        return _needed_unknown(self.ops, self.tensors, set(self.consumers) | self.output_names)


@dataclass(frozen=True)
class ControlFlow:
    """What an If, Loop or Scan node runs, loaded with the shapes its subgraphs see from outside.

    ``bodies``: subgraph attribute -> :class:`Graph` (If: the branch its constant condition takes, or
    both; Loop and Scan: ``"body"``). ``taken``: the If branch a constant condition selects, None when
    the condition is not constant (the estimate then prices the costlier branch and says so).
    ``trips``: iterations of a Loop or Scan body (None for If); ``trips_source``: where they come from
    (``static``, ``--trip-count``, ``scan length``). ``problem``: why the bodies could not be loaded
    ("" when they were): the node is then listed uncovered with it.
    """

    node: str
    op_type: str
    bodies: dict = field(default_factory=dict)
    taken: str | None = None
    trips: int | None = None
    trips_source: str = ""
    problem: str = ""


# --------------------------------------------------------------------------------------------
# loading


def _one_line(e: BaseException) -> str:
    s = str(e).strip() or type(e).__name__
    line = s.splitlines()[0].strip()
    return line[:300]


def read_model(src):
    """-> (ModelProto, path or None, base_dir or None, label)"""
    import onnx

    if isinstance(src, onnx.ModelProto):
        return src, None, None, "<model>"  # never mutated: load_graph works on a light copy
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        path, base, label = None, None, "<bytes>"
    else:
        try:
            path = os.fspath(src)
        except TypeError:
            raise ModelError(f"a model is a path, bytes, an onnx.ModelProto or a loaded Graph, not "
                             f"{type(src).__name__}") from None
        label = path
        if not os.path.exists(path):
            raise ModelError(f"model file not found: {path}")
        if os.path.isdir(path):
            raise ModelError(f"model path is a directory, not an ONNX file: {path}")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ModelError(f"cannot read model file {path}: {_one_line(e)}") from None
        base = os.path.dirname(os.path.abspath(path))
    if not data:
        raise ModelError(f"{label}: not an ONNX model (empty file)")
    try:
        model = onnx.load_model_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf DecodeError and friends
        raise ModelError(f"{label}: not a valid ONNX model (truncated or corrupt?): {_one_line(e)}") from None
    if not model.HasField("graph") or (model.ir_version == 0 and not model.opset_import) or \
            (not model.graph.node and not model.graph.output):
        raise ModelError(f"{label}: not an ONNX model (no graph found in the file)")
    return model, path, base, label


def _iter_tensor_protos(graph):
    """Initializers and Constant-node tensors of a graph and all its subgraphs."""
    import onnx

    for t in graph.initializer:
        yield t
    for n in graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.TENSOR:
                yield a.t
            elif a.type == onnx.AttributeProto.GRAPH:
                yield from _iter_tensor_protos(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _iter_tensor_protos(g)


def _check_opset(model, label) -> None:
    """ModelError when the model declares a default-domain opset newer than any ONNX release this onnx knows:
    its ops' meaning (and shapes) cannot be read."""
    import onnx

    known = onnx.defs.onnx_opset_version()
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version > known:
            raise ModelError(f"{label}: declares ONNX opset {o.version}; the installed onnx {onnx.__version__} knows "
                             f"opsets up to {known} (re-export it at opset {known} or less, or upgrade onnx)")


def _check_external_data(model, base, label) -> tuple:
    """ModelError when a tensor's external data file is missing or short; the files read (paths)."""
    import onnx

    checked = {}
    for t in _iter_tensor_protos(model.graph):
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if base is None:
            raise ModelError(f"{label}: tensor {t.name!r} keeps its data in external file {loc!r}; "
                             "load the model from its path so the file can be found")
        fpath = os.path.join(base, loc)
        if fpath not in checked:
            checked[fpath] = os.path.getsize(fpath) if os.path.isfile(fpath) else None
        size = checked[fpath]
        if size is None:
            raise ModelError(f"{label}: external data file {loc!r} (tensor {t.name!r}) not found in {base}")
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        if end > size:
            raise ModelError(f"{label}: external data file {loc!r} is truncated ({size} bytes, tensor "
                             f"{t.name!r} needs {end})")
    return tuple(checked)


#: bytes per element in raw_data, by TensorProto data type (4-bit types are packed two per byte)
_RAW_BYTES = {1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 14: 8, 15: 16, 16: 2,
              17: 1, 18: 1, 19: 1, 20: 1}
#: typed-field values per element (complex types store real and imaginary parts)
_TYPED_PER_ELEM = {14: 2, 15: 2}


def _node_label(n, i) -> str:
    return repr(n.name) if n.name else f"#{i} ({n.op_type})"


def _check_structure(model, label) -> None:
    """ModelError, naming the node or tensor, for a graph that no runtime loads: no opset for the
    default domain, a tensor defined twice, a node input or graph output that nothing defines, an
    initializer whose data does not match its shape (a truncated or tampered file)."""
    import onnx

    g = model.graph
    # protobuf hands back bytes for a string field that is not UTF-8 (a flipped bit, a foreign file)
    for i, n in enumerate(g.node):
        for what, v in (("name", n.name), ("op type", n.op_type), ("domain", n.domain)) + \
                tuple(("input", x) for x in n.input) + tuple(("output", x) for x in n.output) + \
                tuple(("attribute name", a.name) for a in n.attribute):
            if not isinstance(v, str):
                raise ModelError(f"{label}: node #{i} has a {what} that is not UTF-8 text ({bytes(v)[:40]!r}); the "
                                 "file is corrupt")
    for what, items in (("graph input", g.input), ("graph output", g.output), ("initializer", g.initializer),
                        ("value_info", g.value_info), ("graph", [g])):
        for x in items:
            if not isinstance(x.name, str):
                raise ModelError(f"{label}: a {what} has a name that is not UTF-8 text ({bytes(x.name)[:40]!r}); "
                                 "the file is corrupt")
    for o in model.opset_import:
        if not isinstance(o.domain, str):
            raise ModelError(f"{label}: an opset_import domain is not UTF-8 text ({bytes(o.domain)[:40]!r}); the "
                             "file is corrupt")
    if any(n.domain in ("", "ai.onnx") for n in g.node) and \
            not any(o.domain in ("", "ai.onnx") for o in model.opset_import):
        raise ModelError(f"{label}: the model imports no opset of the default ONNX domain (ai.onnx) that its nodes "
                         "use; a valid model lists it in opset_import (truncated file?)")
    _check_arity(model, label)
    defined: dict = {}
    for t in g.initializer:
        if t.name in defined:
            raise ModelError(f"{label}: initializer {t.name!r} is defined twice")
        defined[t.name] = "an initializer"
        _check_tensor_data(t, label)
    for vi in g.input:
        defined.setdefault(vi.name, "a graph input")
    for i, n in enumerate(g.node):
        for o in n.output:
            if not o:
                continue
            if o in defined:
                prev = defined[o]
                prev = prev if isinstance(prev, str) else f"node {_node_label(g.node[prev], prev)}"
                raise ModelError(f"{label}: tensor {o!r} is written by node {_node_label(n, i)} and by "
                                 f"{prev}; an ONNX graph defines every tensor once")
            defined[o] = i
    for i, n in enumerate(g.node):
        needed = [x for x in n.input if x]
        for a in n.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                for sg in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
                    needed += sorted(_subgraph_outer_inputs(sg))
        for x in needed:
            if x not in defined:
                raise ModelError(f"{label}: node {_node_label(n, i)} ({n.op_type}) reads tensor {x!r}, which no node, "
                                 "initializer or graph input defines")
    for vi in g.output:
        if vi.name not in defined:
            raise ModelError(f"{label}: graph output {vi.name!r} is not written by any node, initializer or input")


def _check_arity(model, label) -> None:
    """ModelError for a node of a standard op with fewer inputs or outputs than its schema requires,
    a required input left empty, or more than it takes (unknown ops are left to be listed uncovered)."""
    import onnx

    opsets = {(o.domain or ""): int(o.version) for o in model.opset_import if isinstance(o.domain, str)}
    single = onnx.defs.OpSchema.FormalParameterOption.Single
    for i, n in enumerate(model.graph.node):
        dom = "" if n.domain in ("", "ai.onnx") else n.domain
        if dom not in ("", "com.microsoft") or dom not in opsets:
            continue
        try:
            schema = onnx.defs.get_schema(n.op_type, opsets[dom], dom)
        except Exception:  # noqa: BLE001 - SchemaError: an op this onnx does not know
            continue
        why = None
        if len(n.input) < schema.min_input or len(n.input) > schema.max_input:
            why = f"{len(n.input)} input(s); {n.op_type} takes {schema.min_input} to {schema.max_input}"
        elif len(n.output) < schema.min_output or len(n.output) > schema.max_output:
            why = f"{len(n.output)} output(s); {n.op_type} gives {schema.min_output} to {schema.max_output}"
        else:
            for j, formal in enumerate(schema.inputs[:len(n.input)]):
                if formal.option == single and not n.input[j]:
                    why = f"no value for its required input {j} ({formal.name})"
                    break
        if why:
            raise ModelError(f"{label}: node {_node_label(n, i)} ({n.op_type}) has {why}")


def _check_tensor_data(t, label) -> None:
    """ModelError when an inline tensor's data does not hold as many elements as its dims declare."""
    import onnx

    if t.data_location == onnx.TensorProto.EXTERNAL or t.HasField("segment"):
        return  # external data is checked against its file; segments are rare and split across protos
    if any(d < 0 for d in t.dims):
        raise ModelError(f"{label}: initializer {t.name!r} has a negative dim {list(t.dims)}")
    n = 1
    for d in t.dims:
        n *= int(d)
    dt = t.data_type
    if dt == onnx.TensorProto.STRING:
        got, want, unit = len(t.string_data), n, "values"
    elif dt not in _RAW_BYTES:
        return  # 4-bit types (packed) and types this check does not know
    elif t.HasField("raw_data"):
        want = n * _RAW_BYTES[dt]
        got, unit = len(t.raw_data), "bytes"  # (a copy of the bytes: read once)
    else:
        got = (len(t.float_data) + len(t.int32_data) + len(t.int64_data) + len(t.double_data)
               + len(t.uint64_data))
        want, unit = n * _TYPED_PER_ELEM.get(dt, 1), "values"
    if got != want:
        raise ModelError(f"{label}: initializer {t.name!r} declares shape {'x'.join(map(str, t.dims)) or 'scalar'} "
                         f"({want} {unit}) but holds {got}; the file is truncated or corrupt")


#: ops whose spatial attributes must be positive (strides, dilations, kernel) and pads non-negative
_WINDOWED = ("Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool",
             "FusedConv", "NhwcConv", "QLinearAveragePool", "NhwcMaxPool")


def _ints(v) -> list | None:
    if isinstance(v, (list, tuple)) and all(isinstance(x, (int, np.integer)) for x in v):
        return [int(x) for x in v]
    return None


def _check_attributes(r: "OpRecord", label) -> None:
    """ModelError naming the node for attribute values no runtime accepts (what onnxruntime refuses
    at session creation): a Transpose perm that is not a permutation, zero or negative strides,
    dilations, kernel sizes or group, negative pads."""
    if r.domain not in ("", "com.microsoft"):
        return
    bad = None
    if r.op_type == "Transpose" and r.attr("perm") is not None:
        perm = _ints(r.attr("perm"))
        rank = len(r.inputs[0].shape) if r.inputs and r.inputs[0].shape is not None else None
        if perm is None or sorted(perm) != list(range(len(perm))) or (rank is not None and len(perm) != rank):
            bad = f"perm {r.attr('perm')} is not a permutation of the input's {rank if rank is not None else ''} axes"
    elif r.op_type in _WINDOWED:
        for name, lo in (("strides", 1), ("dilations", 1), ("kernel_shape", 1), ("pads", 0)):
            v = r.attr(name)
            if v is not None and (_ints(v) is None or any(x < lo for x in _ints(v))):
                bad = f"{name} {v} (each must be >= {lo})"
                break
        g = r.attr("group")
        if bad is None and g is not None and (not isinstance(g, (int, np.integer)) or g < 1):
            bad = f"group {g} (must be >= 1)"
    if bad:
        raise ModelError(f"{label}: node {r.name!r} ({r.op_type}) has {' '.join(bad.split())}")


def _dims(vi):
    """ValueInfo -> list of (value or None, param) or None when no shape."""
    tt = vi.type.tensor_type if vi.type.HasField("tensor_type") else None
    if tt is None or not tt.HasField("shape"):
        return None
    out = []
    for d in tt.shape.dim:
        if d.HasField("dim_value") and d.dim_value > 0:
            out.append((d.dim_value, d.dim_param))
        elif d.HasField("dim_value") and d.dim_value == 0 and not d.dim_param:
            out.append((None, ""))
        else:
            out.append((None, d.dim_param))
    return out


def _shape_str(dims):
    return "x".join(str(v) if v is not None else f"<{p or '?'}>" for v, p in dims)


def _spec_dims(spec) -> list:
    """The dims of a whole-input --shape value ("1x128", "1,128" or a sequence); TypeError / ValueError when
    it holds something that is not an integer."""
    if isinstance(spec, str):
        spec = [p for p in spec.replace(",", "x").split("x") if p.strip()]
    return [int(v) for v in spec]


def _lead_of(spec):
    """The leading dim of a whole-input --shape value (None where it cannot be read)."""
    try:
        return _spec_dims(spec)[0]
    except (TypeError, ValueError, IndexError):
        return None


def bind_input_shapes(model, shapes, batch, label, init=None, notes=None):
    """Set the dims of the user inputs (in place); raise DynamicShapeError naming the ones without value.

    ``shapes``: input name -> dims, or dim name -> one integer (every dim of that name, in any input).
    A dim left free takes its value from a dim of the same name that ``shapes`` settles; a free
    leading dim (or one named like ``batch_size``) takes ``batch``, else 1, and ``notes`` (a list)
    receives one line saying so. Any other free dim is an error naming every one of them, with a
    complete ``--shape`` example.
    ``init``: names that are initializers (not user inputs); default: the model's initializers."""
    g = model.graph
    init = {t.name for t in g.initializer} if init is None else set(init)
    user = [vi for vi in g.input if vi.name not in init]
    names = [vi.name for vi in user]
    shapes = dict(shapes or {})
    params = {p: None for vi in user for _, p in (_dims(vi) or []) if p}
    named: dict = {}  # dim name -> value
    bad = [n for n in shapes if n not in names and n not in params]
    if bad:
        what = "is not a graph input" if len(bad) == 1 else "are not graph inputs"
        raise ModelError(f"{label}: --shape names {', '.join(repr(b) for b in bad)}, which {what}; "
                         f"valid inputs: {', '.join(_show(n) for n in names) if names else '(none)'}"
                         + (f"; dim names: {', '.join(_show(p) for p in params)}" if params else ""))
    for n in [n for n in shapes if n not in names]:
        spec = shapes.pop(n)
        v = spec[0] if isinstance(spec, (list, tuple)) and len(spec) == 1 else spec
        try:
            v = int(v)
        except (TypeError, ValueError):
            v = -1
        if v < 0 or (v == 0 and not _past_like(n)):  # a cache length may be 0: a prefill
            raise ModelError(f"{label}: --shape {_show(n)}={spec!r}: {n!r} names a dim, give it one integer > 0 "
                             f"(e.g. --shape {_show(n)}=128)")
        named[n] = v
    if batch is not None:
        try:
            whole_batch = not isinstance(batch, bool) and float(batch).is_integer()
        except (TypeError, ValueError):
            whole_batch = False
        if not whole_batch:
            raise ModelError(f"--batch must be a whole number, got {batch!r}")
    if batch is not None and int(batch) <= 0:
        raise ModelError(f"--batch must be a positive integer, got {batch}")
    if batch is not None:
        _check_batch_applies(user, int(batch), label)
    # a dim name or --batch that only inputs given whole by --shape carry would do nothing: refused
    whole = [vi.name for vi in user if vi.name in shapes]
    for n in named:
        having = [vi.name for vi in user if any(p == n for _, p in (_dims(vi) or ()))]
        if having and all(h in shapes for h in having):
            raise ModelError(f"{label}: --shape {_show(n)}={named[n]} does nothing: every input with dim {n!r} "
                             f"({', '.join(_show(h) for h in having)}) is given whole by --shape; give one or the other")
    if batch is not None and whole:
        lead = [vi.name for vi in user if (_dims(vi) or [(1, "")])[0][0] is None]
        if lead and all(h in shapes for h in lead) and any(_lead_of(shapes[h]) != int(batch) for h in lead):
            raise ModelError(f"{label}: --batch {batch} does nothing: every input with a dynamic batch "
                             f"({', '.join(_show(h) for h in lead)}) is given whole by --shape, with another batch; "
                             "put the batch there")
    for vi in user:  # a dim name that one input's --shape settles settles it everywhere
        dims = _dims(vi)
        spec = shapes.get(vi.name)
        if dims is None or spec is None or isinstance(spec, str) or len(dims) != len(spec):
            continue
        for (v, p), w in zip(dims, spec):
            if p and v is None and isinstance(w, (int, np.integer)) and w > 0:
                named.setdefault(p, int(w))
    meta = []  # the model's own metadata: a key that names a free dim, with a whole number, settles it
    for prop in getattr(model, "metadata_props", ()):
        if prop.key in params and prop.key not in named and not _batch_like(prop.key):
            try:
                v = int(str(prop.value).strip())
            except ValueError:
                continue
            if v > 0:
                named[prop.key] = v
                meta.append(f"{prop.key}={v}")
    if meta and notes is not None:
        notes.append(f"dims set from the model's metadata: {', '.join(meta)} (--shape overrides)")
    problems, defaulted, fixed = [], [], {}
    for vi in user:
        if not vi.type.HasField("tensor_type"):
            continue  # sequences / optionals: cannot be fixed here
        tt = vi.type.tensor_type
        if vi.name in shapes:
            spec = orig = shapes[vi.name]
            try:
                want = _spec_dims(spec)
            except (TypeError, ValueError):
                raise ModelError(f"{label}: --shape {vi.name}={orig!r}: give integers like 1x128") from None
            if any(v < 0 or (v == 0 and not (_past_like(vi.name) and i > 0)) for i, v in enumerate(want)):
                raise ModelError(f"{label}: --shape {_show(vi.name)}={'x'.join(map(str, want))}: every dim must be > 0")
            dims = _dims(vi)
            if dims is not None and len(dims) != len(want):
                raise ModelError(f"{label}: input {vi.name!r} has rank {len(dims)} "
                                 f"({_shape_str(dims)}) but --shape gives {len(want)} dims")
            clash = [i for i, ((v, _), w) in enumerate(zip(dims or (), want)) if v is not None and v != w]
            if clash and notes is not None:  # a fully convolutional net takes it; a graph's own constants may not
                notes.append(f"--shape {_show(vi.name)}={'x'.join(map(str, want))} changes dims the model fixes "
                             f"({_shape_str(dims)}): any node whose constants were exported for the old size loses "
                             "its shape and is listed as uncovered; export the model at the size you want")
            _check_size(vi.name, want, label)
            tt.shape.Clear()
            for v in want:
                tt.shape.dim.add().dim_value = v
            continue
        dims = _dims(vi)
        if dims is None:
            problems.append(f"input {vi.name!r} has no shape; pass --shape {_show(vi.name)}=<dims, e.g. 1x3x224x224>")
            continue
        declared = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        for i, (v, p) in enumerate(dims):
            if v is not None:
                continue
            if p and p in named:
                dims[i] = (named[p], p)
            elif (i == 0 and not _sequence_like(p)) or _batch_like(p):
                if batch is not None:
                    dims[i] = (int(batch), p)
                else:
                    dims[i] = (1, p)
                    defaulted.append(f"{_show(vi.name)} dim {i}" + (f" ({p!r})" if p else ""))
        missing = [(i, p) for i, (v, p) in enumerate(dims) if v is None]
        if missing:
            what = ", ".join(f"dim {i}" + (f" ({p!r})" if p else f" (declared {declared[i]})"
                                           if declared[i] is not None else "") for i, p in missing)
            verb = "has" if len(missing) == 1 else "have"
            hint = f"pass --shape {_show(vi.name)}={_shape_str(dims)}"
            if any(i == 0 for i, _ in missing):
                hint += " (or --batch N for dim 0)"
            problems.append(f"input {vi.name!r} {what} {verb} no value; {hint}")
            fixed[vi.name] = [v if v is not None else _EXAMPLE_DIM for v, _ in dims]
            continue
        _check_size(vi.name, [v for v, _ in dims], label)
        tt.shape.Clear()
        for v, _ in dims:
            tt.shape.dim.add().dim_value = v
    if problems:
        example = " ".join(f"--shape {_show(n)}={'x'.join(map(str, d))}" for n, d in fixed.items())
        free = list(dict.fromkeys(p for vi in user if vi.name in fixed for v, p in (_dims(vi) or []) if p and v is None
                                  and p not in named and not _batch_like(p)))
        by_name = " ".join(f"--shape {_show(p)}={_EXAMPLE_DIM}" for p in free)
        raise DynamicShapeError(f"{label}: " + "; ".join(problems) + (f"; e.g. {example}" if example else "")
                                + (f" (or by dim name: {by_name})" if by_name else ""))
    if defaulted and notes is not None:
        notes.append(f"no batch size given: {', '.join(defaulted)} set to 1 (pass --batch N to change it)")
    return user


def _past_like(name: str) -> bool:
    """Whether an input or dim name says it is a key/value cache (``past_key_values.0.key``,
    ``past_sequence_length``, ``cache``): such a dim may be 0 (a prefill has an empty cache)."""
    p = (name or "").lower()
    return "past" in p or "cache" in p


def decode_step_shapes(model, past: int, prompt: int = 1) -> dict:
    """Dim values for one step of a decoder exported with a key/value cache: ``prompt`` new tokens
    (1: one decode step) over ``past`` cached positions. The past-length dim is the free dim before the
    last of every cache input (an input named like ``past_key_values.0.key`` or ``cache``); the other
    free dims that are not a batch take ``past + prompt`` when named like a total length (or in an
    attention mask), else ``prompt`` (the sequence length of ``input_ids``, ``position_ids``).
    Returns dim name -> value (and input name -> dims where a dim has no name), for ``load_graph``'s
    ``shapes``; ModelError naming the option when the model has no cache input with a free length."""
    m, _, _, label = read_model(model)
    if past < 0 or prompt < 1:
        raise ModelError(f"--decode-step {past}: give the past length as a whole number >= 0")
    init = {t.name for t in m.graph.initializer}
    user = [vi for vi in m.graph.input if vi.name not in init]
    caches = [vi for vi in user if _past_like(vi.name) and (_dims(vi) or []) and len(_dims(vi)) >= 3]
    free_past = [vi for vi in caches if _dims(vi)[-2][0] is None]
    if not free_past:
        names = ", ".join(_show(vi.name) for vi in user) or "(none)"
        why = ("its cache inputs have a static length" if caches else
               "it has no key/value cache input (an input named like past_key_values.0.key)")
        raise ModelError(f"{label}: --decode-step names nothing in this model: {why}; inputs: {names}; give the "
                         "shapes with --shape NAME=DIMS instead")
    out: dict = {}
    past_dims = set()
    for vi in free_past:
        d = _dims(vi)
        p = d[-2][1]
        if p:
            out[p] = past
            past_dims.add(p)
        else:  # no dim name: the input's whole shape, batch 1
            out[vi.name] = [v if v is not None else (past if i == len(d) - 2 else 1) for i, (v, _) in enumerate(d)]
    for vi in user:
        if vi in free_past:
            continue
        for i, (v, p) in enumerate(_dims(vi) or []):
            if v is not None or p in past_dims or p in out or (i == 0 and not _sequence_like(p)) or _batch_like(p):
                continue
            total = "total" in (p or "").lower() or "all" in (p or "").lower() or "mask" in vi.name.lower()
            if p:
                out[p] = past + prompt if total else prompt
    return out


#: the value a complete --shape example gives a free dim that is not a batch (a sequence length, a size)
_EXAMPLE_DIM = 128


def _batch_like(param: str) -> bool:
    """Whether a dim name says it is the batch (``batch``, ``batch_size``, ``N``, ``bs`` ...)."""
    p = (param or "").lower()
    return p in ("n", "b", "bs", "nb", "batch", "batchsize", "batch_size", "num_batches") or "batch" in p


def _sequence_like(param: str) -> bool:
    """Whether a dim name says it is a length or a size (a leading dim so named is not a batch)."""
    p = (param or "").lower()
    return p in ("t", "s", "l", "h", "w", "c", "seq") or any(
        k in p for k in ("seq", "len", "time", "step", "token", "frame", "past", "total", "height", "width",
                         "sample", "channel"))


#: no tensor a user feeds may hold more elements than this (4 GB of fp32): beyond any device this prices,
#: and a typo (--shape x=1x3x100000x100000) would otherwise run shape inference and onnxruntime on it
MAX_INPUT_ELEMS = 10**9


def _show(name: str) -> str:
    """A tensor/node name as it can be typed back, on one line: as is when printable, else quoted."""
    return name if name and name.isprintable() and name.strip() == name else repr(name)


def _check_size(name, dims, label) -> None:
    n = 1
    for v in dims:
        n *= int(v)
    if n > MAX_INPUT_ELEMS:
        raise ModelError(f"{label}: input {name!r} of shape {'x'.join(map(str, dims))} would hold {n:.3g} elements, "
                         f"more than {MAX_INPUT_ELEMS:.0e} in one tensor; check --shape / --batch")


def _check_batch_applies(user, batch, label) -> None:
    """ModelError when --batch changes nothing: no user input has a dynamic leading dim (and the
    static ones are not already ``batch``)."""
    static = []
    for vi in user:
        dims = _dims(vi)
        if dims is None or not dims or dims[0][0] is None:
            return  # a dynamic (or unknown) leading dim: --batch fills it
        static.append((vi.name, dims))
    if static and all(d[0][0] == batch for _, d in static):
        return  # says what the model already has
    what = ", ".join(f"{_show(n)}: {_shape_str(d)}" for n, d in static[:4]) or "the model has no inputs"
    hint = f"; use --shape {_show(static[0][0])}={'x'.join([str(batch)] + [str(v) for v, _ in static[0][1][1:]])} " \
           "to change it" if static else ""
    raise ModelError(f"{label}: --batch {batch} does nothing: the batch (dim 0) of every input is static "
                     f"({what}){hint}")


#: initializers kept in the light model used for shape inference (values may steer shapes)
_SMALL_FLOAT = 1024
_SMALL_INT = 1 << 16


def light_copy(model, base=None):
    """The model without its large initializers (they become typed graph inputs): cheap to copy,
    serialize and shape-infer; small external-data initializers are read in (shape inference and
    the runtime need their values). -> (light ModelProto, {name: big TensorProto})"""
    import onnx
    from onnx import numpy_helper

    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.metadata_props.extend(model.metadata_props)  # may settle free dims (bind_input_shapes)
    g, lg = model.graph, light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    listed = {vi.name for vi in g.input}
    big = {}
    for t in g.initializer:
        n = 1
        for d in t.dims:
            n *= int(d)
        limit = _SMALL_INT if t.data_type in (6, 7) else _SMALL_FLOAT
        if n <= limit:
            if t.data_location == onnx.TensorProto.EXTERNAL and base is not None:
                try:
                    t = numpy_helper.from_array(numpy_helper.to_array(t, base), t.name)
                except Exception as e:  # noqa: BLE001
                    raise ModelError(f"cannot read external data of {t.name!r}: {_one_line(e)}") from None
            lg.initializer.append(t)
            continue
        big[t.name] = t
        if t.name not in listed:
            vi = lg.input.add()
            vi.name = t.name
            vi.type.tensor_type.elem_type = t.data_type
            for d in t.dims:
                vi.type.tensor_type.shape.dim.add().dim_value = int(d)
    return light, big


def _static(vi):
    d = _dims(vi)
    return d is not None and all(v is not None for v, _ in d)


def _infer(model):
    import onnx

    # drop non-static value_info hints: they may contradict the dims we just fixed
    keep = [vi for vi in model.graph.value_info if _static(vi)]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
    for kw in ({"data_prop": True}, {"data_prop": False}):
        try:
            return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, **kw)
        except Exception:  # noqa: BLE001 - fall back to a less ambitious inference
            continue
    return model


def _attr_value(a):
    import onnx
    from onnx import helper, numpy_helper

    if a.type == onnx.AttributeProto.TENSOR:
        try:
            return numpy_helper.to_array(a.t)
        except Exception:  # noqa: BLE001 - external data in an attribute: keep the proto
            return a.t
    if a.type == onnx.AttributeProto.GRAPH:
        return a.g
    if a.type == onnx.AttributeProto.GRAPHS:
        return list(a.graphs)
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


def _constant_node_value(node):
    """numpy value of a Constant node (or None)."""
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return a.t if a.t.data_location == 1 else numpy_helper.to_array(a.t)
        if a.name == "value_float":
            return np.array(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.array(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.array(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.array(list(a.ints), dtype=np.int64)
        if a.name == "value_string":
            return np.array(a.s.decode("utf-8", "replace"))
        if a.name == "value_strings":
            return np.array([s.decode("utf-8", "replace") for s in a.strings])
        if a.name == "sparse_value":
            try:
                return _sparse_to_dense(a.sparse_tensor)
            except Exception:  # noqa: BLE001
                return None
    return None


def _sparse_to_dense(sp):
    from onnx import numpy_helper

    vals = numpy_helper.to_array(sp.values)
    idx = numpy_helper.to_array(sp.indices)
    dims = list(sp.dims)
    out = np.zeros(int(np.prod(dims)), dtype=vals.dtype)
    if idx.ndim == 1:
        out[idx] = vals
    else:
        out[np.ravel_multi_index(idx.T, dims)] = vals
    return out.reshape(dims)


def _subgraph_outer_inputs(g, defined=None) -> set:
    """Names a subgraph reads from its enclosing scope."""
    defined = set(defined or ())
    defined |= {i.name for i in g.input} | {t.name for t in g.initializer}
    outer = set()
    for n in g.node:
        for i in n.input:
            if i and i not in defined:
                outer.add(i)
        for a in n.attribute:
            subs = [a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []
            for sg in subs:
                outer |= {x for x in _subgraph_outer_inputs(sg, defined | set(n.output)) if x not in defined}
        defined |= set(n.output)
    return outer


def _toposort(nodes, available: set, label) -> list:
    """Stable topological order (original order where the graph allows)."""
    producers = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            if o:
                producers.setdefault(o, i)
    deps = [set() for _ in nodes]
    users = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        needed = [x for x in n.input if x]
        for a in n.attribute:
            if a.type in (5, 10):
                subs = [a.g] if a.type == 5 else list(a.graphs)
                for sg in subs:
                    needed += list(_subgraph_outer_inputs(sg))
        for x in needed:
            j = producers.get(x)
            if j == i and x not in available:
                raise ModelError(f"{label}: the graph has a cycle (node {n.name or n.op_type!r} reads its own output "
                                 f"{x!r})")
            if j is not None and j != i and x not in available:
                deps[i].add(j)
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    indeg = [len(d) for d in deps]
    heap = [i for i, k in enumerate(indeg) if k == 0]
    heapq.heapify(heap)
    order = []
    while heap:
        i = heapq.heappop(heap)
        order.append(i)
        for u in users[i]:
            indeg[u] -= 1
            if indeg[u] == 0:
                heapq.heappush(heap, u)
    if len(order) != len(nodes):
        stuck = next(i for i, k in enumerate(indeg) if k > 0)
        n = nodes[stuck]
        raise ModelError(f"{label}: the graph has a cycle (node {n.name or n.op_type!r} never becomes ready)")
    return order


def _vi_table(model) -> dict:
    """name -> (shape tuple or None, dtype)"""
    table = {}
    g = model.graph

    def put(vi):
        if not vi.type.HasField("tensor_type"):
            kind = vi.type.WhichOneof("value")
            table[vi.name] = (None, kind or "unknown")
            return
        tt = vi.type.tensor_type
        d = _dims(vi)
        shape = tuple(int(v) for v, _ in d) if d is not None and all(v is not None for v, _ in d) else None
        if shape is None and d is not None:
            # a genuinely zero-sized dim has dim_value 0; keep it when everything else is known
            if tt.HasField("shape") and all(x.HasField("dim_value") for x in tt.shape.dim):
                shape = tuple(int(x.dim_value) for x in tt.shape.dim)
        table[vi.name] = (shape, dtype_name(tt.elem_type))

    for vi in list(g.input) + list(g.value_info) + list(g.output):
        if vi.name in table and table[vi.name][0] is not None:
            continue
        put(vi)
    for t in g.initializer:
        table[t.name] = (tuple(int(x) for x in t.dims), dtype_name(t.data_type))
    return table


def _needed_unknown(records, tensors, used=None) -> list:
    """Tensors read by non-foldable ops, or written by them and read by someone (``used``), whose
    shape is unknown."""
    seen, out = set(), []
    for r in records:
        if r.foldable or r.op_type in CONTROL_FLOW:
            continue
        outs = [t for t in r.outputs if used is None or t.name in used]
        for t in list(r.inputs) + outs:
            if t.name and t.name not in seen:
                seen.add(t.name)
                cur = tensors.get(t.name)
                if cur is None or (cur.shape is None and cur.dtype not in ("sequence_type", "map_type",
                                                                          "optional_type", "sparse_tensor_type")):
                    out.append(t.name)
    return out


def _dummy(dtype: str, shape):
    if dtype in ("float32", "float16", "float64", "bfloat16"):
        return np.ones(shape, dtype=np.float32 if dtype == "bfloat16" else dtype)
    if dtype == "bool":
        return np.zeros(shape, dtype=bool)
    if dtype == "string":
        return np.full(shape, "", dtype=object)
    try:
        return np.zeros(shape, dtype=np.dtype(dtype))
    except TypeError:
        return np.zeros(shape, dtype=np.float32)


def _runtime_shapes(light, names, user_inputs, tensors, base, big, const_values):
    """Run onnxruntime once (no optimization, 1 thread) to read the shapes of ``names``.

    ``light`` is the model without its large initializers; they are fed as inputs."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(light)
    existing = {o.name for o in m.graph.output}
    produced = {o for n in m.graph.node for o in n.output}
    wanted = [n for n in names if n in produced]
    extra = [n for n in wanted if n not in existing]
    if not wanted:
        return {}
    for n in extra:
        vi = onnx.ValueInfoProto()
        vi.name = n
        t = tensors.get(n)
        if t is not None and t.dtype in _DTYPES.values():
            elem = next(k for k, v in _DTYPES.items() if v == t.dtype)
            vi.type.tensor_type.elem_type = elem
        m.graph.output.append(vi)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 4
    if base:
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", base)
    with contextlib.redirect_stdout(io.StringIO()):  # onnxruntime prints an "EP Error" banner on a failed start
        sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    feeds = {}
    for vi in user_inputs:
        t = tensors.get(vi.name)
        if t is None or t.shape is None:
            return {}
        feeds[vi.name] = _dummy(t.dtype, t.shape)
    for name in big:
        feeds[name] = const_values[name]
    outs = [o.name for o in sess.get_outputs()]
    want = [o for o in outs if o in set(wanted)]
    vals = sess.run(want, feeds)
    result = {}
    for n, v in zip(want, vals):
        if isinstance(v, np.ndarray):
            dt = "float32" if v.dtype == np.float32 else str(v.dtype) if v.dtype != object else "string"
            result[n] = (tuple(int(x) for x in v.shape), dt)
    return result


def load_graph(model, shapes: dict | None = None, batch: int | None = None,
               trip_counts: dict | None = None) -> Graph:
    """Load an ONNX model (path, bytes or ModelProto) into a shape-inferred :class:`Graph`.

    ``shapes`` gives full input shapes by input name (or one integer by dim name: ``{"seq": 128}``
    sets every dim so named); ``batch`` fills a leading input dim that is symbolic or unset (left
    unset it is 1, and ``Graph.notes`` says so). ``trip_counts``: iterations of Loop / Scan nodes by
    node name, for loops whose count the graph does not fix. The bodies of If / Loop / Scan nodes
    are loaded too (``Graph.control``). Raises ModelError / DynamicShapeError (one-line messages).
    """
    return _load(model, shapes, batch, trip_counts, 0)


#: how deep If / Loop / Scan bodies nest before loading stops (the node is then uncovered)
_MAX_DEPTH = 8


def _load(model, shapes, batch, trip_counts, depth: int, label_of: str | None = None) -> Graph:
    import onnx

    model, path, base, label = read_model(model)
    label = label_of or label
    if depth == 0:
        trip_counts = _check_trip_counts(model, trip_counts, label)
    external = _check_external_data(model, base, label)
    _check_opset(model, label)
    _check_structure(model, label)
    light, big = light_copy(model, base)
    notes: list = []
    user_inputs = bind_input_shapes(light, shapes, batch, label, init={t.name for t in model.graph.initializer},
                                    notes=notes)

    opsets = {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import}
    opset = opsets.get("ai.onnx", 0)

    inferred = _infer(light)
    table = _vi_table(inferred)
    for t in model.graph.initializer:
        table[t.name] = (tuple(int(x) for x in t.dims), dtype_name(t.data_type))
    g = model.graph

    # constants: initializers + Constant nodes
    const_protos: dict = {t.name: t for t in g.initializer}
    init_names = set(const_protos)
    available = set(init_names) | {vi.name for vi in g.input}
    order = _toposort(list(g.node), available, label)

    nodes = [g.node[i] for i in order]
    names_used: dict[str, int] = {}
    const_names = set(init_names)
    records: list[OpRecord] = []
    tensors: dict[str, Tensor] = {}

    def tensor(name, const=False):
        if not name:
            return Tensor("", None, "", False)
        shape, dt = table.get(name, (None, "unknown"))
        t = Tensor(name, shape, dt, const)
        tensors[name] = t
        return t

    for name in init_names:
        tensor(name, True)

    for idx, n in enumerate(nodes):
        base_name = n.name or f"{n.op_type}_{order[idx]}"
        nm = base_name
        if nm in names_used:
            k = names_used[nm]
            while f"{base_name}_{k}" in names_used:
                k += 1
            names_used[base_name] = k + 1
            nm = f"{base_name}_{k}"
        names_used[nm] = 1
        domain = n.domain if n.domain not in ("ai.onnx",) else ""
        attrs = {a.name: _attr_value(a) for a in n.attribute}
        ins = tuple(tensors.get(i) or tensor(i, i in const_names) if i else Tensor("", None, "", False)
                    for i in n.input)
        has_sub = any(a.type in (5, 10) for a in n.attribute)
        if n.op_type == "Constant" and domain == "":
            foldable = True
            val = _constant_node_value(n)
            if val is not None and n.output:
                const_protos[n.output[0]] = val
                if n.output[0] not in table:
                    shp = tuple(int(x) for x in (val.dims if hasattr(val, "dims") else np.shape(val)))
                    dt = (dtype_name(val.data_type) if hasattr(val, "data_type")
                          else ("float32" if val.dtype == np.float32 else str(val.dtype)))
                    table[n.output[0]] = (shp, dt)
        elif has_sub or n.op_type in _NOT_FOLDABLE:
            foldable = False
        elif n.op_type in ("Shape", "Size") and domain == "" and ins and ins[0].shape is not None:
            foldable = True
        else:
            present = [t for t in ins if t.name]
            foldable = bool(present) and all(t.name in const_names for t in present)
        if foldable:
            const_names.update(o for o in n.output if o)
        outs = tuple(tensor(o, foldable) for o in n.output)
        records.append(OpRecord(nm, n.op_type, domain, ins, outs, attrs, foldable, idx))
        _check_attributes(records[-1], label)

    producers: dict[str, int] = {}
    consumers: dict[str, list] = {}
    for i, r in enumerate(records):
        for t in r.outputs:
            if t.name:
                producers[t.name] = i
        seen = []
        for t in r.inputs:
            if t.name:
                seen.append(t.name)
        if r.op_type in CONTROL_FLOW or any(isinstance(v, onnx.GraphProto) for v in r.attrs.values()):
            for v in r.attrs.values():
                subs = [v] if isinstance(v, onnx.GraphProto) else [x for x in v if isinstance(x, onnx.GraphProto)] \
                    if isinstance(v, list) else []
                for sg in subs:
                    seen += sorted(_subgraph_outer_inputs(sg))
        for nm_ in seen:
            consumers.setdefault(nm_, []).append(i)
            if nm_ not in tensors:  # read only by a subgraph: its shape is what the body sees
                tensor(nm_, nm_ in const_names)

    const_values = ConstValues(const_protos, base)
    shape_source = "inferred"
    used = set(consumers) | {vi.name for vi in g.output}
    unknown = _needed_unknown(records, tensors, used)
    if unknown:
        try:
            got = _runtime_shapes(light, unknown, user_inputs, tensors, base, big, const_values)
        except Exception:  # noqa: BLE001 - the runtime cannot run it: keep the unknowns
            got = {}
        if got:
            shape_source = "runtime"
            for nm_, (shp, dt) in got.items():
                old = tensors.get(nm_)
                dtype = old.dtype if old is not None and old.dtype not in ("unknown", "") else dt
                tensors[nm_] = Tensor(nm_, shp, dtype, old.const if old is not None else False)

            def upd(t):
                return tensors.get(t.name, t) if t.name else t

            records = [OpRecord(r.name, r.op_type, r.domain, tuple(upd(t) for t in r.inputs),
                                tuple(upd(t) for t in r.outputs), r.attrs, r.foldable, r.index)
                       for r in records]

    g_inputs = [tensors.get(vi.name) or Tensor(vi.name, table.get(vi.name, (None, ""))[0],
                                               table.get(vi.name, (None, "unknown"))[1], False)
                for vi in user_inputs]
    g_outputs = [tensors.get(vi.name) or Tensor(vi.name, table.get(vi.name, (None, ""))[0],
                                                table.get(vi.name, (None, "unknown"))[1],
                                                vi.name in const_names)
                 for vi in g.output]
    graph = Graph(ops=records, inputs=g_inputs, outputs=g_outputs, opset=opset, producers=producers,
                  consumers=consumers, const_values=const_values, path=path,
                  shape_source=shape_source, tensors=tensors, opsets=opsets, notes=notes,
                  external_files=external)
    _check_weight_shapes(records, label)
    if any(r.op_type in _BODY_OPS and r.domain == "" for r in records):
        _load_control_flow(graph, model, light, user_inputs, big, base, label, trip_counts or {}, depth)
    return graph


def _check_weight_shapes(records, label) -> None:
    """ModelError (one line) where an input's shape contradicts a constant weight it meets: a Conv's
    channels against its weight's (times ``group``), a MatMul / Gemm's inner dimension against its constant
    B. A ``--shape`` the model cannot run with would otherwise be priced as if it could."""
    def dims(t):
        s = t.shape if t is not None else None
        return list(s) if s is not None and all(isinstance(d, int) and d > 0 for d in s) else None

    for r in records:
        if r.domain not in ("", "ai.onnx") or len(r.inputs) < 2 or not r.inputs[1].name or not r.inputs[1].const:
            continue
        x, w = dims(r.inputs[0]), dims(r.inputs[1])
        if x is None or w is None:
            continue
        if r.op_type == "Conv" and len(x) >= 3 and len(w) == len(x):
            g = int(r.attrs.get("group", 1) or 1)
            if x[1] != w[1] * g:
                raise ModelError(f"{label}: {r.op_type} {_show(r.name)} reads {x[1]} channels ({r.inputs[0].name!r} "
                                 f"{'x'.join(map(str, x))}) but its weight {'x'.join(map(str, w))} (group {g}) "
                                 f"takes {w[1] * g}: check --shape / --batch")
        elif r.op_type == "MatMul" and len(w) == 2 and len(x) >= 1 and x[-1] != w[0]:
            raise ModelError(f"{label}: MatMul {_show(r.name)} reads rows of {x[-1]} ({r.inputs[0].name!r} "
                             f"{'x'.join(map(str, x))}) but its weight is {'x'.join(map(str, w))}: check --shape / --batch")
        elif r.op_type == "Gemm" and len(w) == 2 and len(x) == 2:
            k_a = x[0] if r.attrs.get("transA", 0) else x[1]
            k_b = w[1] if r.attrs.get("transB", 0) else w[0]
            if k_a != k_b:
                raise ModelError(f"{label}: Gemm {_show(r.name)} reads rows of {k_a} ({r.inputs[0].name!r} "
                                 f"{'x'.join(map(str, x))}) but its weight is {'x'.join(map(str, w))}"
                                 f"{' (transB)' if r.attrs.get('transB', 0) else ''}: check --shape / --batch")


# --------------------------------------------------------------------------------------------
# control flow: the bodies of If / Loop / Scan

#: the control-flow ops whose bodies are priced (SequenceMap stays uncovered)
_BODY_OPS = ("If", "Loop", "Scan")
#: a Loop whose static count is above this is a while loop in disguise (exporters write INT64_MAX)
_MAX_STATIC_TRIPS = 1_000_000


def _check_trip_counts(model, trip_counts, label) -> dict:
    """``trip_counts`` validated against the model's Loop / Scan nodes (at any depth): ModelError naming
    what names nothing, or a count that is not a whole number >= 0."""
    trip_counts = dict(trip_counts or {})
    if not trip_counts:
        return trip_counts
    valid: list = []

    def walk(g, top):
        for i, n in enumerate(g.node):
            if n.op_type in ("Loop", "Scan") and n.domain in ("", "ai.onnx"):
                valid.append(n.name or (f"{n.op_type}_{i}" if top else ""))
            for a in n.attribute:
                for sg in ([a.g] if a.type == 5 else list(a.graphs) if a.type == 10 else []):
                    walk(sg, False)

    walk(model.graph, True)
    names = [v for v in valid if v]
    for name, n in trip_counts.items():
        if name not in names:
            raise ModelError(f"{label}: --trip-count names {_show(str(name))!r}, which is not a Loop or Scan node of "
                             f"the model; its Loop/Scan nodes: {', '.join(map(_show, names)) or '(none)'}")
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ModelError(f"{label}: --trip-count {_show(str(name))}={n!r}: give a whole number of iterations >= 0")
    return trip_counts


def _elem_type(dtype: str) -> int:
    return next((k for k, v in _DTYPES.items() if v == dtype), 1)


def _body_model(model, sg, formal: list, outer: dict):
    """A standalone model of subgraph ``sg``: its formal inputs with the shapes ``formal`` gives
    ([(shape or None, dtype)] in order), each tensor it reads from outside as an initializer (``outer``:
    name -> numpy array) or a typed input (name -> (shape, dtype))."""
    import onnx
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.ir_version = model.ir_version
    m.opset_import.extend(model.opset_import)
    g = m.graph
    g.name = sg.name or "body"
    g.node.extend(sg.node)
    g.initializer.extend(sg.initializer)
    g.output.extend(sg.output)
    g.value_info.extend(sg.value_info)
    for vi, (shape, dtype) in zip(sg.input, formal):
        g.input.append(helper.make_tensor_value_info(vi.name, _elem_type(dtype) if dtype else
                                                     vi.type.tensor_type.elem_type or 1,
                                                     list(shape) if shape is not None else None))
    for name, v in sorted(outer.items()):
        if isinstance(v, np.ndarray):
            g.initializer.append(numpy_helper.from_array(v, name))
        else:
            shape, dtype = v
            g.input.append(helper.make_tensor_value_info(name, _elem_type(dtype),
                                                         list(shape) if shape is not None else None))
    return m


def _outer_reads(graph: Graph, sg) -> dict:
    """What subgraph ``sg`` reads from ``graph``: name -> value (constants) or (shape, dtype)."""
    out = {}
    for name in _subgraph_outer_inputs(sg):
        v = _value_of(graph, name) if graph.tensor(name).const else None
        t = graph.tensor(name)
        out[name] = v if isinstance(v, np.ndarray) and v.dtype != object else (t.shape, t.dtype)
    return out


def _folded_values(graph: Graph, names, light, user_inputs, big, base) -> dict:
    """Values of constant-foldable tensors ``names`` that no initializer holds (a Loop count computed from
    a static shape), by running the model once in onnxruntime; {} when it cannot run."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(light)
    have = {o.name for o in m.graph.output}
    for n in names:
        if n not in have:
            vi = m.graph.output.add()
            vi.name = n
            vi.type.tensor_type.elem_type = _elem_type(graph.tensor(n).dtype)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.log_severity_level = 4
    if base:
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", base)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        feeds = {vi.name: _dummy(graph.tensor(vi.name).dtype, graph.tensor(vi.name).shape) for vi in user_inputs}
        feeds.update({k: graph.const_values[k] for k in big})
        return dict(zip(names, sess.run(list(names), feeds)))
    except Exception:  # noqa: BLE001 - cannot run here: the values stay unknown
        return {}


def _load_control_flow(graph: Graph, model, light, user_inputs, big, base, label, trip_counts: dict,
                       depth: int) -> None:
    """Fill ``graph.control`` (and ``graph.notes``) for each If / Loop / Scan node: the branch a constant
    condition takes, the iterations of a loop, each body loaded with the shapes it sees from outside.
    DynamicShapeError naming every Loop whose count is neither static nor given."""
    nodes = [r for r in graph.ops if r.op_type in _BODY_OPS and r.domain == ""]
    # constants the runtime folds but no initializer holds (If conditions, Loop counts): computed once
    want = [r.inputs[0].name for r in nodes if r.op_type in ("If", "Loop") and r.inputs and r.inputs[0].name
            and r.inputs[0].const and _value_of(graph, r.inputs[0].name) is None]
    folded = _folded_values(graph, want, light, user_inputs, big, base) if want else {}

    def value(name):
        if not name or not graph.tensor(name).const:
            return None
        v = folded.get(name)
        return v if v is not None else _value_of(graph, name)

    missing = []
    for r in nodes:
        if depth >= _MAX_DEPTH:
            graph.control[r.name] = ControlFlow(r.name, r.op_type, problem=f"control flow nested deeper than "
                                                                           f"{_MAX_DEPTH} levels")
            continue
        try:
            cf = _control_flow(graph, model, r, value, label, trip_counts, depth)
        except _BadTripCount:
            raise
        except (DynamicShapeError, ModelError) as e:
            cf = ControlFlow(r.name, r.op_type, problem=f"its body cannot be loaded: {str(e).split(': ', 1)[-1]}")
        if cf is None:
            missing.append(r)
            continue
        graph.control[r.name] = cf
        for body in cf.bodies.values():
            graph.notes.extend(f"{r.name}: {n}" for n in body.notes)
    if missing:
        what = ", ".join(f"{r.op_type} node {r.name!r}" for r in missing)
        example = " ".join(f"--trip-count {_show(r.name)}=N" for r in missing)
        raise DynamicShapeError(f"{label}: the trip count of {what} is neither static in the graph (a constant M "
                                f"input) nor given; pass {example} (its iterations per run)")


class _BadTripCount(ModelError):
    """A --trip-count the graph contradicts: the user's input is wrong, not the body (never left as uncovered)."""


def _control_flow(graph: Graph, model, r: OpRecord, value, label, trip_counts, depth) -> ControlFlow | None:
    """The ControlFlow of node ``r``; None for a Loop whose count is neither static nor given."""
    sub_label = f"{label} [{r.op_type} {_show(r.name)}]"

    def load(attr, formal):
        sg = r.attrs.get(attr)
        if sg is None:
            raise ModelError(f"{r.op_type} node {r.name!r} has no {attr} attribute")
        outer = _outer_reads(graph, sg)
        unknown = sorted(n for n, v in outer.items() if not isinstance(v, np.ndarray) and v[0] is None)
        if unknown:
            raise ModelError(f"{sub_label}: the shape of {', '.join(map(repr, unknown))}, which its {attr} reads, is "
                             "unknown")
        return _load(_body_model(model, sg, formal, outer), None, None, trip_counts, depth + 1, label_of=sub_label)

    if r.op_type == "If":
        v = value(r.inputs[0].name)
        taken = None
        if v is not None and np.size(v) == 1:
            taken = "then_branch" if bool(np.asarray(v).reshape(-1)[0]) else "else_branch"
        branches = [taken] if taken else ["then_branch", "else_branch"]
        return ControlFlow(r.name, "If", {b: load(b, []) for b in branches}, taken=taken)
    body = r.attrs.get("body")
    if r.op_type == "Loop":
        m_in = r.inputs[0].name if r.inputs else ""
        trips, source = None, ""
        v = value(m_in)
        static_m = int(np.asarray(v).reshape(-1)[0]) if v is not None and np.size(v) == 1 else None
        if r.name in trip_counts:
            trips, source = int(trip_counts[r.name]), "--trip-count"
            # the graph's own M bounds the loop; with no condition that can end it sooner, M is the count
            if static_m is not None and static_m >= 0 and trips != static_m and (
                    trips > static_m or _runs_all(r, body, value)):
                raise _BadTripCount(f"{label}: --trip-count {_show(r.name)}={trips}: the graph fixes this Loop at "
                                 f"{'at most ' if not _runs_all(r, body, value) else ''}{static_m} iterations "
                                 f"(its input M); give {'0..' if not _runs_all(r, body, value) else ''}{static_m} "
                                 f"or leave it out")
        else:
            if static_m is not None and 0 <= static_m <= _MAX_STATIC_TRIPS:
                trips, source = int(np.asarray(v).reshape(-1)[0]), "static"
                if not _runs_all(r, body, value):
                    graph.notes.append(f"Loop {_show(r.name)} priced at its maximum of {trips} iterations: its "
                                       f"condition may end it sooner (--trip-count {_show(r.name)}=N to say how many)")
        if trips is None:
            return None
        carried = [(t.shape, t.dtype) for t in r.inputs[2:]]
        formal = [((), "int64"), ((), "bool")] + carried
        return ControlFlow(r.name, "Loop", {"body": load("body", formal)}, trips=trips, trips_source=source)
    # Scan (opset >= 9): N state variables, then M scan inputs sliced along their scan axis
    m = int(r.attr("num_scan_inputs", 0) or 0)
    states, scans = r.inputs[:len(r.inputs) - m], r.inputs[len(r.inputs) - m:]
    axes = list(r.attr("scan_input_axes") or [0] * m)
    formal = [(t.shape, t.dtype) for t in states]
    trips, source = None, "scan length"
    for t, ax in zip(scans, axes):
        if t.shape is None:
            formal.append((None, t.dtype))
            continue
        ax = ax + len(t.shape) if ax < 0 else ax
        trips = t.shape[ax] if trips is None else trips
        formal.append((tuple(d for i, d in enumerate(t.shape) if i != ax), t.dtype))
    if r.name in trip_counts:
        trips, source = int(trip_counts[r.name]), "--trip-count"
    if trips is None:
        raise DynamicShapeError(f"Scan node {r.name!r}: the length of its scan inputs is unknown; give the model's "
                                f"input shapes with --shape or pass --trip-count {_show(r.name)}=N")
    return ControlFlow(r.name, "Scan", {"body": load("body", formal)}, trips=trips, trips_source=source)


def _runs_all(r: OpRecord, body, value) -> bool:
    """Whether a Loop with a count M runs all M iterations: no condition given, or a constant true one
    that the body passes through unchanged (or sets to a constant true)."""
    cond = r.inputs[1].name if len(r.inputs) > 1 else ""
    if cond:
        v = value(cond)
        if v is None or not bool(np.asarray(v).reshape(-1)[0]):
            return False
    if body is None or len(body.input) < 2 or not body.output:
        return not cond
    cin, cout = body.input[1].name, body.output[0].name
    seen = {cin}
    for n in body.node:
        if n.op_type == "Identity" and n.input and n.input[0] in seen:
            seen.update(n.output)
        if n.op_type == "Constant" and n.output and n.output[0] == cout:
            v = _constant_node_value(n)
            return v is not None and bool(np.asarray(v).reshape(-1)[0]) if isinstance(v, np.ndarray) else False
    if cout in seen:
        return True
    init = {t.name: t for t in body.initializer}
    if cout in init:
        from onnx import numpy_helper

        return bool(numpy_helper.to_array(init[cout]).reshape(-1)[0])
    return False


# --------------------------------------------------------------------------------------------
# weight sparsity

_PASS_THROUGH = ("Identity", "Cast", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten",
                 "DequantizeLinear")


def _value_of(graph: Graph, name: str, depth: int = 0):
    """numpy value of a constant tensor, following simple unary ops on constants."""
    if name in graph.const_values:
        try:
            v = graph.const_values[name]
        except ModelError:
            return None
        # a numpy scalar (a rewrite's scale) is a 0-d value like any other
        return np.asarray(v) if isinstance(v, (np.ndarray, np.generic)) else None
    if depth > 8:
        return None
    r = graph.producer(name)
    if r is None or r.op_type not in _PASS_THROUGH or not r.inputs:
        return None
    x = _value_of(graph, r.inputs[0].name, depth + 1)
    if x is None:
        return None
    try:
        if r.op_type == "DequantizeLinear":
            zp = _value_of(graph, r.inputs[2].name, depth + 1) if len(r.inputs) > 2 and r.inputs[2].name else None
            q = x.astype(np.float64)
            if zp is not None:
                zp = zp.astype(np.float64)
                if zp.ndim == 1 and zp.size > 1 and q.ndim > 1:
                    axis = int(r.attr("axis", 1)) % q.ndim
                    shp = [1] * q.ndim
                    shp[axis] = zp.size
                    zp = zp.reshape(shp)
                q = q - zp
            return q  # the scale is non-zero: zeros of (q - zp) are the zeros of the weight
        if r.op_type == "Transpose":
            perm = r.attr("perm")
            return np.transpose(x, perm) if perm is not None else x.T
        if r.op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze"):
            out = r.outputs[0].shape
            return x.reshape(out) if out is not None else None
        return x
    except Exception:  # noqa: BLE001
        return None


def _is_2_4(w: np.ndarray, axis: int) -> bool:
    """Every group of 4 consecutive elements along ``axis`` has >= 2 zeros."""
    if w.ndim == 0:
        return False
    a = np.moveaxis(w, axis, -1)
    if a.shape[-1] % 4 != 0 or a.size == 0:
        return False
    z = (a.reshape(-1, 4) == 0).sum(axis=1)
    return bool(np.all(z >= 2))


_BINS = ((0.25, "0"), (0.625, "50"), (0.825, "75"), (0.925, "90"))

#: id(array) -> (weak reference to it, its count of non-zeros): constant arrays are read once per
#: graph (ConstValues caches them) and shared by the graphs a what-if plan rewrites, so each weight
#: is counted once, not once per estimate. An entry leaves with its array.
_NONZERO: dict = {}


def _nonzero_count(w: np.ndarray) -> int:
    import weakref

    i = id(w)
    hit = _NONZERO.get(i)
    if hit is not None and hit[0]() is w:
        return hit[1]
    n = int(np.count_nonzero(w))
    if w.size >= 4096:  # small ones cost less to count than to look up
        try:
            ref = weakref.ref(w, lambda _r, i=i: _NONZERO.pop(i, None))
        except TypeError:
            return n
        _NONZERO[i] = (ref, n)
    return n


def weight_sparsity(graph: Graph, tensor_name: str, axis: int | None = None) -> str:
    """Fraction of zeros of a constant weight, binned to one of ops.SPARSITIES.

    "2:4" when every group of 4 consecutive elements along the reduction axis holds >= 2 zeros
    (and the zero fraction is not above the 50% bin); the reduction axis comes from the
    consumer: Conv weight [O, I, kh, kw] -> input channels (per output channel, either along I
    or along the flattened I*kh*kw row), MatMul B [..., K, N] -> K, Gemm B -> K (axis 1 when
    transB=1), ConvTranspose [I, O, ...] -> I. Otherwise the nearest of 0/50/75/90/95 (< 25% ->
    "0"). A tensor whose value cannot be read gives "0".
    """
    w = _value_of(graph, tensor_name)
    if w is None or w.size == 0 or w.dtype == object:
        return "0"
    zero = 1.0 - float(_nonzero_count(w)) / w.size
    structured = False
    if zero > 0.3:
        if axis is not None:
            structured = _is_2_4(w, axis)
        else:
            cons = _weight_consumer(graph, tensor_name)
            if cons is not None and cons[0] == "Conv" and w.ndim >= 3:
                flat = w.reshape(w.shape[0], -1)
                structured = _is_2_4(w, 1) or _is_2_4(flat, 1)
            elif cons is not None and cons[0] == "ConvTranspose":
                structured = _is_2_4(w, 0)
            elif cons is not None and cons[0] == "Gemm":
                structured = _is_2_4(w, 1 if cons[1].attr("transB", 0) else 0) if w.ndim == 2 else False
            elif cons is not None and w.ndim >= 2:  # MatMul-like B [.., K, N]
                structured = _is_2_4(w, w.ndim - 2)
            else:
                structured = _is_2_4(w.reshape(-1) if w.ndim != 1 else w, 0) if w.size % 4 == 0 else False
    if structured and zero < 0.625:
        return "2:4"
    for hi, name in _BINS:
        if zero < hi:
            return name
    return "95"


def _weight_consumer(graph: Graph, name: str, depth: int = 0):
    """(op_type, record) of the op that uses ``name`` as a weight, skipping pass-through ops."""
    for r in graph.consumer_ops(name):
        if r.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul", "QLinearConv", "ConvInteger",
                         "MatMulInteger", "QLinearMatMul", "FusedConv", "FusedMatMul", "FusedGemm"):
            kind = {"QLinearConv": "Conv", "ConvInteger": "Conv", "FusedConv": "Conv",
                    "FusedGemm": "Gemm"}.get(r.op_type, r.op_type)
            return kind, r
        if r.op_type in _PASS_THROUGH and depth < 8 and r.outputs:
            got = _weight_consumer(graph, r.outputs[0].name, depth + 1)
            if got is not None:
                return got
    return None


def kind_of_record(r: OpRecord) -> str | None:
    """The op kind that prices a record on its own (None: no kind)."""
    return ops.kind_of_op(r.op_type)
