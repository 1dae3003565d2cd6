"""THE registry of op kinds.

An *op kind* is a family of kernels that share a table key layout, a feature function, and a
FLOPs/bytes model. A *config* is one concrete kernel: ``(kind, params, precision, sparsity)``.
``params`` is a small JSON-able dict (ints, strings, lists of ints) whose layout each kind
declares. The same config is produced by the profiler (which builds and times it) and by the
estimator (which derives it from a model's fused kernels), so a table lookup is an exact match
of :func:`config_key`.

Nothing here imports onnx or onnxruntime: the registry is pure Python + math.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Callable

from .errors import InvalidConfig, LatencyError, UnknownOpKind

FEATURE_SCHEMA_VERSION = 3
#: features added to schema 3 without a version bump: a regressor trained before them (every training row
#: at the default, 0) prices configs without them; see latency.regressor
OPTIONAL_FEATURES = frozenset({"runtime_w", "nhwc", "wzp", "eltwise_perm"})
#: what each optional feature describes (a kernel with it non-zero, priced by a regressor trained before it, is
#: flagged as a variant the profile has no rows for)
OPTIONAL_FEATURE_PARAMS = {"runtime_w": "runtime_w", "nhwc": "layout", "wzp": "wzp",
                           "eltwise_perm": "a permutation moving more than one axis"}

PRECISIONS = ("fp32", "fp16", "int8", "int8_dynamic")
SPARSITIES = ("0", "50", "75", "90", "95", "2:4")

#: bytes per element of activations / weights for each precision
_ACT_BYTES = {"fp32": 4, "fp16": 2, "int8": 1, "int8_dynamic": 4}
_W_BYTES = {"fp32": 4, "fp16": 2, "int8": 1, "int8_dynamic": 1}

ACTIVATIONS = ("Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish",
               "Gelu", "Erf", "Swish", "Elu", "Selu", "Softplus", "Softsign", "PRelu", "Mish",
               "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Cast", "Floor", "Ceil", "Round",
               "Sin", "Cos", "Not", "Sign", "QuickGelu", "FastGelu", "BiasGelu", "IsNaN")
#: the activations the runtime can fuse into a Conv or Gemm kernel
FUSABLE_ACTS = ("Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid")
ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where",
               "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor",
               "Mod", "BitShift")
POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool")
REDUCES = ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
           "ReduceL1", "ReduceSumSquare", "ReduceLogSumExp", "ArgMax", "ArgMin")
NORMS = ("BatchNormalization", "InstanceNormalization", "LRN", "GroupNormalization",
         "LpNormalization", "MeanVarianceNormalization")
COPIES = ("Expand", "Tile", "DepthToSpace", "SpaceToDepth", "ScatterND", "ScatterElements",
          "GatherElements", "GatherND", "Trilu", "CumSum", "NonZero", "Range", "OneHot", "TopK")
QUANTS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear")
#: the blocked-layout (NCHWc) reorders onnxruntime inserts on x86: into the blocked layout and back
REORDER_INPUT = "ReorderInput"
REORDER_OUTPUT = "ReorderOutput"
REORDERS = (REORDER_INPUT, REORDER_OUTPUT)
#: ops the runtime executes without doing work proportional to data (metadata / aliasing)
FREE_OPS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Shape",
            "Size", "Constant", "ConstantOfShape", "EyeLike")


@dataclass(frozen=True)
class QuantizedOp:
    """An int8 op type that runs as the kernel of a float op: priced as ``base`` at ``precision``.

    ``x``, ``w``, ``bias``: positions of its data, weight and bias inputs (None: it has none; ``x``
    None: every third input is a data input, as in QLinearConcat's (x, scale, zero point) triples).
    """

    base: str
    x: int | None
    w: int | None = None
    bias: int | None = None
    precision: str = "int8"


#: int8 op types of the QOperator format: what a pre-quantized model holds and what onnxruntime's
#: QDQ fusions (QDQFinalCleanupTransformer, QDQSelectorActionTransformer, MatMulIntegerToFloatFusion,
#: DynamicQuantizeMatMulFusion) turn DQ -> op -> Q node units and dynamic quantization into
QUANTIZED_OPS = {
    "QLinearConv": QuantizedOp("Conv", 0, 3, 8),
    "QLinearMatMul": QuantizedOp("MatMul", 0, 3),
    "QGemm": QuantizedOp("Gemm", 0, 3, 6),
    "QLinearAdd": QuantizedOp("Add", 0, 3),
    "QLinearMul": QuantizedOp("Mul", 0, 3),
    "QLinearSigmoid": QuantizedOp("Sigmoid", 0),
    "QLinearLeakyRelu": QuantizedOp("LeakyRelu", 0),
    "QLinearAveragePool": QuantizedOp("AveragePool", 0),
    "QLinearGlobalAveragePool": QuantizedOp("GlobalAveragePool", 0),
    "QLinearSoftmax": QuantizedOp("Softmax", 0),
    "QLinearConcat": QuantizedOp("Concat", None),
    "ConvInteger": QuantizedOp("Conv", 0, 1),
    "MatMulInteger": QuantizedOp("MatMul", 0, 1),
    "MatMulIntegerToFloat": QuantizedOp("MatMul", 0, 1, 6, precision="int8_dynamic"),
    "DynamicQuantizeMatMul": QuantizedOp("MatMul", 0, 1, 4, precision="int8_dynamic"),
}

#: op types onnxruntime's NHWC layout transformer produces (int8 regions run channels-last), by the op
#: they run as
NHWC_OPS = {"NhwcMaxPool": "MaxPool", "NhwcFusedConv": "FusedConv"}


def _with_variants(op_types: tuple) -> tuple:
    """``op_types`` followed by the quantized and NHWC op types that run as one of them."""
    base_of = {**{op: q.base for op, q in QUANTIZED_OPS.items()}, **NHWC_OPS}
    return tuple(op_types) + tuple(op for op, base in base_of.items() if base in op_types and op not in op_types)


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= int(x)
    return p


def _conv_out(size, k, s, d, p0, p1):
    if s < 1 or d < 1:
        raise InvalidConfig(f"strides and dilations must be >= 1, got stride {s}, dilation {d}")
    return (size + p0 + p1 - d * (k - 1) - 1) // s + 1


def conv_out_shape(p: dict) -> list[int]:
    x = p["x"]
    nsp = len(x) - 2
    pads = p["pads"]
    sp = [_conv_out(x[2 + i], p["kernel"][i], p["strides"][i], p["dilations"][i], pads[i], pads[i + nsp])
          for i in range(nsp)]
    return [x[0], p["cout"]] + sp


def convt_out_shape(p: dict) -> list[int]:
    x = p["x"]
    nsp = len(x) - 2
    pads = p["pads"]
    sp = [p["strides"][i] * (x[2 + i] - 1) + p["output_padding"][i] + (p["kernel"][i] - 1) * p["dilations"][i] + 1
          - pads[i] - pads[i + nsp] for i in range(nsp)]
    return [x[0], p["cout"]] + sp


def pool_out_shape(p: dict) -> list[int]:
    x = p["x"]
    if p["op"].startswith("Global"):
        return x[:2] + [1] * (len(x) - 2)
    nsp = len(x) - 2
    out = []
    for i in range(nsp):
        num = x[2 + i] + p["pads"][i] + p["pads"][i + nsp] - p["kernel"][i]
        o = (math.ceil(num / p["strides"][i]) if p.get("ceil") else num // p["strides"][i]) + 1
        out.append(o)
    return x[:2] + out


def broadcast(*shapes) -> list[int]:
    n = max(len(s) for s in shapes)
    out = []
    for i in range(n):
        dims = [s[i - n + len(s)] for s in shapes if i - n + len(s) >= 0]
        big = [d for d in dims if d != 1]
        out.append(max(big) if big else 1)
    return out


def matmul_dims(p: dict) -> tuple[int, int, int, int]:
    """(batch, M, K, N) of a MatMul/Gemm config, batch = product of broadcast batch dims."""
    a, b = list(p["a"]), list(p["b"])
    if p.get("trans_b"):
        b = b[:-2] + [b[-1], b[-2]] if len(b) >= 2 else b
    if len(a) == 1:
        a = [1] + a
    if len(b) == 1:
        b = b + [1]
    batch = _prod(broadcast(a[:-2], b[:-2])) if (len(a) > 2 or len(b) > 2) else 1
    return batch, a[-2], a[-1], b[-1]


# --------------------------------------------------------------------------------------------
# per-kind math: FLOPs (multiply-add = 2), output elements, the "work" features


def _f_conv(p):
    out = conv_out_shape(p)
    cin = p["x"][1]
    k = _prod(p["kernel"])
    macs = _prod(out) * (cin // p["group"]) * k
    return {
        "flops": 2.0 * macs,
        "in_elems": float(_prod(p["x"])),
        "w_elems": float(p["cout"] * (cin // p["group"]) * k),
        "out_elems": float(_prod(out)),
    }


def _f_convt(p):
    out = convt_out_shape(p)
    cin = p["x"][1]
    k = _prod(p["kernel"])
    macs = _prod(p["x"]) * (p["cout"] // p["group"]) * k
    return {"flops": 2.0 * macs, "in_elems": float(_prod(p["x"])),
            "w_elems": float(cin * (p["cout"] // p["group"]) * k), "out_elems": float(_prod(out))}


def _f_matmul(p):
    bt, m, k, n = matmul_dims(p)
    return {"flops": 2.0 * bt * m * k * n, "in_elems": float(_prod(p["a"])),
            "w_elems": float(_prod(p["b"])), "out_elems": float(bt * m * n)}


def _f_pool(p):
    out = pool_out_shape(p)
    k = _prod(p["x"][2:]) if p["op"].startswith("Global") else _prod(p["kernel"])
    return {"flops": float(_prod(out) * k), "in_elems": float(_prod(p["x"])), "w_elems": 0.0,
            "out_elems": float(_prod(out))}


def _f_elementwise(p):
    out = broadcast(*p["inputs"])
    return {"flops": float(_prod(out) * max(1, len(p["inputs"]) - 1)),
            "in_elems": float(sum(_prod(s) for s in p["inputs"])), "w_elems": 0.0,
            "out_elems": float(_prod(out))}


def _f_unary(p):
    n = float(_prod(p["x"]))
    return {"flops": n, "in_elems": n, "w_elems": 0.0, "out_elems": n}


def _f_softmax(p):
    n = float(_prod(p["x"]))
    return {"flops": 5.0 * n, "in_elems": n, "w_elems": 0.0, "out_elems": n}


def _f_layernorm(p):
    n = float(_prod(p["x"]))
    return {"flops": 8.0 * n, "in_elems": n * (2 if p.get("skip") else 1), "w_elems": 2.0 * p["x"][-1],
            "out_elems": n}


def _f_norm(p):
    n = float(_prod(p["x"]))
    return {"flops": 4.0 * n, "in_elems": n, "w_elems": float(p["x"][1] if len(p["x"]) > 1 else 1),
            "out_elems": n}


def _f_concat(p):
    n = float(sum(_prod(s) for s in p["inputs"]))
    return {"flops": 0.0, "in_elems": n, "w_elems": 0.0, "out_elems": n}


def _f_inout(p):
    i, o = float(_prod(p["x"])), float(_prod(p["y"]))
    return {"flops": 0.0, "in_elems": i, "w_elems": 0.0, "out_elems": o}


def _f_transpose(p):
    n = float(_prod(p["x"]))
    return {"flops": 0.0, "in_elems": n, "w_elems": 0.0, "out_elems": n}


def _f_reduce(p):
    n = float(_prod(p["x"]))
    out = n / max(1, _prod(p["x"][a] for a in p["axes"]))
    return {"flops": n, "in_elems": n, "w_elems": 0.0, "out_elems": out}


def _f_gather(p):
    out = _prod(p["data"][:p["axis"]]) * _prod(p["indices"]) * _prod(p["data"][p["axis"] + 1:])
    return {"flops": 0.0, "in_elems": float(_prod(p["indices"])), "w_elems": float(_prod(p["data"])),
            "out_elems": float(out)}


def _f_free(p):
    return {"flops": 0.0, "in_elems": 0.0, "w_elems": 0.0, "out_elems": 0.0}


# --------------------------------------------------------------------------------------------
# per-kind extra features (beyond the work features), all numeric


def _x_conv(p):
    out = conv_out_shape(p)
    cin, g = p["x"][1], p["group"]
    return {"n": p["x"][0], "cin": cin, "cout": p["cout"], "h": p["x"][2], "w": p["x"][-1],
            "oh": out[2], "ow": out[-1], "kh": p["kernel"][0], "kw": p["kernel"][-1],
            "stride": p["strides"][0], "dilation": p["dilations"][0], "group": g,
            "cin_per_group": cin // g, "depthwise": float(g == cin and g > 1),
            "act": float(p["act"] != "none"), "act_id": float(_ACT_ID.get(p["act"], 0)),
            **{f"act_{a}": float(p["act"] == a) for a in CONV_ACTS},
            "sum": float(p["sum"]), "runtime_w": float(p.get("runtime_w", 0)), "wzp": float(p.get("wzp", 0)),
            "cin_mod8": cin % 8, "cout_mod8": p["cout"] % 8,
            "cin_mod16": cin % 16, "cout_mod16": p["cout"] % 16,
            "log_pflops": math.log1p(_padded_conv_flops(p, 16)),
            "pad_ratio8": _padded_conv_flops(p, 8) / max(1.0, _f_conv(p)["flops"])}


def _padded_conv_flops(p, block: int) -> float:
    """FLOPs when channel counts are rounded up to whole ``block``-channel groups, as the blocked
    (NCHWc) CPU kernels run them: an unaligned conv costs about as much as the next aligned one.
    Depthwise convs pad their channels; dense ones pad input (per group, when >= 8) and output."""
    out = conv_out_shape(p)
    cin, g, cout = p["x"][1], p["group"], p["cout"]
    k = _prod(p["kernel"])
    up = lambda c: -(-c // block) * block  # noqa: E731
    if g == cin and g > 1:
        return 2.0 * out[0] * up(cout) * _prod(out[2:]) * k
    cpg = cin // g
    return 2.0 * out[0] * up(cout) * _prod(out[2:]) * (up(cpg) if cpg >= 8 else cpg) * k


def _x_convt(p):
    return {"n": p["x"][0], "cin": p["x"][1], "cout": p["cout"], "h": p["x"][2], "w": p["x"][-1],
            "kh": p["kernel"][0], "stride": p["strides"][0], "group": p["group"]}


def _x_matmul(p):
    bt, m, k, n = matmul_dims(p)
    return {"batch": bt, "m": m, "k": k, "n": n, "const_b": p["const_b"], "bias": p["bias"],
            "scale": p["scale"], "trans_b": p["trans_b"], "act": float(p.get("act", "none") != "none"),
            "k_mod16": k % 16, "n_mod16": n % 16}


def _x_pool(p):
    x = p["x"]
    glob = p["op"].startswith("Global")
    return {"op_id": float(POOLS.index(p["op"])), "n": x[0], "c": x[1], "h": x[2], "w": x[-1],
            "k": 0 if glob else p["kernel"][0], "stride": 0 if glob else p["strides"][0],
            "nhwc": float(p.get("layout") == "nhwc")}


def _x_shape(x):
    x = list(x) or [1]
    return {"rank": len(x), "last": x[-1], "first": x[0], "outer": _prod(x[:-1])}


def _x_elementwise(p):
    out = broadcast(*p["inputs"])
    bcast = float(any(_prod(s) != _prod(out) for s in p["inputs"]))
    smallest = min(_prod(s) for s in p["inputs"])
    d = {"op_id": float(ELEMENTWISE.index(p["op"])), "n_inputs": len(p["inputs"]), "bcast": bcast,
         "smallest": smallest, "const_b": p.get("const_b", 0)}
    d.update(_x_shape(out))
    return d


def _x_unary(p):
    d = {"op_id": float(ACTIVATIONS.index(p["op"]))}
    d.update(_x_shape(p["x"]))
    return d


def _x_softmax(p):
    x = p["x"]
    d = {"axis_len": x[p["axis"]], "log": float(p["op"] == "LogSoftmax"),
         "axis_last": float(p["axis"] == len(x) - 1)}
    d.update(_x_shape(x))
    return d


def _x_layernorm(p):
    d = {"skip": p.get("skip", 0)}
    d.update(_x_shape(p["x"]))
    return d


def _x_norm(p):
    d = {"op_id": float(NORMS.index(p["op"]))}
    d.update(_x_shape(p["x"]))
    d["c"] = p["x"][1] if len(p["x"]) > 1 else 1
    return d


def _x_concat(p):
    d = {"n_inputs": len(p["inputs"]), "axis": p["axis"],
         "inner": _prod(p["inputs"][0][p["axis"]:])}
    d.update(_x_shape(p["inputs"][0]))
    return d


_MODES = ("nearest", "linear", "cubic", "constant", "reflect", "edge", "wrap")


def _x_inout(p):
    d = {"op_id": float(_OPS_INOUT.index(p["op"])) if p.get("op") in _OPS_INOUT else 0.0,
         "mode_id": float(_MODES.index(p["mode"])) if p.get("mode") in _MODES else -1.0}
    d.update(_x_shape(p["x"]))
    d["y_last"] = p["y"][-1] if p["y"] else 1
    return d


def _x_split(p):
    d = {"axis": p["axis"], "n_out": len(p["splits"]), "inner": _prod(p["x"][p["axis"]:])}
    d.update(_x_shape(p["x"]))
    return d


def moves_one_axis(x, perm) -> bool:
    """Whether ``perm`` of a tensor of shape ``x`` moves at most one axis once axes of size 1 are dropped
    and axes adjacent in both orders are merged (NCHW <-> NHWC, a channel shuffle's [0, 2, 1, 3, 4],
    attention's [0, 2, 1, 3]). onnxruntime's CPU Transpose runs those as block copies or a 2-D
    transpose and any other permutation element by element, 10-15x slower per byte: ShuffleNetV2's
    merged layout-and-shuffle transpose [0, 4, 3, 1, 2] of 12k int8 elements took 52 us alone, the
    shuffle's own [0, 2, 1, 3, 4] of the same tensor 3 us."""
    order = [a for a in perm if x[a] != 1]
    groups: list = []
    for a in order:
        if groups and a == groups[-1][-1] + 1:
            groups[-1].append(a)
        else:
            groups.append([a])
    rank = {g[0]: i for i, g in enumerate(sorted(groups))}
    seq = [rank[g[0]] for g in groups]
    # at most one axis moved: taking one group out leaves the others in order
    return len(seq) <= 1 or any(all(u < v for u, v in zip(rest, rest[1:]))
                                for rest in (seq[:i] + seq[i + 1:] for i in range(len(seq))))


def _x_transpose(p):
    perm = p["perm"]
    moved = sum(1 for i, q in enumerate(perm) if i != q)
    d = {"moved": moved, "last_moved": float(perm[-1] != len(perm) - 1),
         "inner": p["x"][perm[-1]], "eltwise_perm": float(not moves_one_axis(p["x"], perm))}
    d.update(_x_shape(p["x"]))
    return d


def _x_reduce(p):
    d = {"op_id": float(REDUCES.index(p["op"])), "n_axes": len(p["axes"]),
         "last_axis": float((len(p["x"]) - 1) in p["axes"]), "keepdims": p.get("keepdims", 1)}
    d.update(_x_shape(p["x"]))
    return d


def _x_gather(p):
    return {"axis": p["axis"], "rows": p["data"][p["axis"]], "row_elems": _prod(p["data"][p["axis"] + 1:]),
            "n_idx": _prod(p["indices"])}


def _x_quant(p):
    d = {"op_id": float(QUANTS.index(p["op"]))}
    d.update(_x_shape(p["x"]))
    return d


def _x_reorder(p):
    x = p["x"]
    return {"dir": float(p["op"] == REORDER_OUTPUT), "n": x[0], "c": x[1], "hw": _prod(x[2:])}


#: every activation a Conv kernel may carry: the common ones, and those only the blocked (NCHWc)
#: kernels take (or that stay a separate pass: their cost differs by up to 20x, so each is its own feature)
CONV_ACTS = FUSABLE_ACTS + ("HardSwish", "Elu", "Selu", "Softplus", "Gelu", "Swish", "QuickGelu")
_ACT_ID = {a: i + 1 for i, a in enumerate(CONV_ACTS)}
_OPS_INOUT = ("Slice", "Resize", "Pad") + COPIES


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OpKind:
    """One entry of the registry.

    ``onnx_ops``: the op types this kind prices: ONNX ops, onnxruntime's contrib and fused ops
    (FusedConv, Gelu, SkipLayerNormalization...), their int8 forms (:data:`QUANTIZED_OPS`) and NHWC
    forms (:data:`NHWC_OPS`), and the reorders the runtime inserts; each op type in exactly one kind.
    ``work``: params -> {flops, in_elems, w_elems, out_elems}.
    ``extra``: params -> further numeric features.
    ``has_weights``: whether sparsity applies (a constant weight operand exists).
    ``free``: kernels of this kind cost no time proportional to data (Reshape & co).
    """

    name: str
    onnx_ops: tuple
    work: Callable[[dict], dict]
    extra: Callable[[dict], dict]
    has_weights: bool = False
    free: bool = False
    doc: str = ""
    precisions: tuple = ("fp32", "fp16", "int8")
    fields: tuple = field(default_factory=tuple)
    #: fields a config may leave out (absent: the default, so keys measured before them stay valid)
    optional: tuple = ()

    def features(self, params: dict, precision: str = "fp32", sparsity: str = "0") -> dict:
        """Numeric features of one config (pure; schema FEATURE_SCHEMA_VERSION)."""
        w = self.work(params)
        f = dict(w)
        f.update({k: float(v) for k, v in self.extra(params).items()})
        f["bytes"] = work_bytes(w, precision)
        f["log_flops"] = math.log1p(w["flops"])
        f["log_bytes"] = math.log1p(f["bytes"])
        f["intensity"] = w["flops"] / max(1.0, f["bytes"])
        f["precision_id"] = float(PRECISIONS.index(precision))
        f["sparsity"] = sparsity_fraction(sparsity)
        f["structured"] = float(sparsity == "2:4")
        return f


def sparsity_fraction(s: str) -> float:
    return 0.5 if s == "2:4" else float(s) / 100.0


def elem_bytes(precision: str, weights: bool = False) -> int:
    """Bytes per element of a kernel's activations (or, with ``weights``, of its weights) at ``precision``."""
    return (_W_BYTES if weights else _ACT_BYTES).get(precision, 4)


def bytes_moved(kind: OpKind, params: dict, precision: str = "fp32") -> float:
    """Bytes read + written by one kernel, assuming each tensor is touched once."""
    return work_bytes(kind.work(params), precision)


def work_bytes(w: dict, precision: str = "fp32") -> float:
    """:func:`bytes_moved` of a kernel whose :meth:`OpKind.work` ``w`` is already computed."""
    return float((w["in_elems"] + w["out_elems"]) * elem_bytes(precision) + w["w_elems"] * elem_bytes(precision, True))


_KINDS: dict[str, OpKind] = {}


def _register(k: OpKind):
    _KINDS[k.name] = k


_register(OpKind("Conv", _with_variants(("Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcFusedConv")),
                 _f_conv, _x_conv, has_weights=True,
                 precisions=("fp32", "fp16", "int8", "int8_dynamic"),
                 doc="Conv (dense/grouped/depthwise/dilated) with fused bias, activation, residual sum; "
                     "runtime_w=1: weights computed at run time (a DequantizeLinear's output), which the "
                     "runtime can neither pre-pack nor run blocked; wzp=1 (int8): weights with a non-zero zero "
                     "point (quantized asymmetric, e.g. by the runtime's own WeightBiasQuantization for a "
                     "float conv between a DequantizeLinear and a QuantizeLinear), which take the int8 kernel's "
                     "zero-point path",
                 fields=("x", "cout", "kernel", "strides", "pads", "dilations", "group", "act", "sum",
                         "runtime_w", "wzp"), optional=("runtime_w", "wzp")))
_register(OpKind("ConvTranspose", ("ConvTranspose",), _f_convt, _x_convt, has_weights=True,
                 doc="transposed convolution",
                 fields=("x", "cout", "kernel", "strides", "pads", "dilations", "group", "output_padding")))
_register(OpKind("MatMul", _with_variants(("MatMul", "Gemm", "FusedMatMul", "FusedGemm", "QLinearMatMul",
                                           "MatMulInteger", "DynamicQuantizeMatMul")),
                 _f_matmul, _x_matmul, has_weights=True,
                 precisions=("fp32", "fp16", "int8", "int8_dynamic"),
                 doc="MatMul/Gemm, 2-D and batched, with fused bias, scale, activation",
                 fields=("a", "b", "const_b", "bias", "scale", "trans_b", "act")))
_register(OpKind("Pool", _with_variants(POOLS), _f_pool, _x_pool,
                 doc="max/average/global pooling; layout='nhwc': the channels-last int8 kernel (NhwcMaxPool) the "
                     "runtime runs after an NHWC int8 conv, where an NCHW int8 MaxPool takes a slow generic path",
                 fields=("op", "x", "kernel", "strides", "pads", "ceil", "layout"), optional=("layout",)))
_register(OpKind("Elementwise", _with_variants(ELEMENTWISE), _f_elementwise, _x_elementwise,
                 doc="elementwise n-ary ops with broadcasting", fields=("op", "inputs", "const_b")))
_register(OpKind("Activation", _with_variants(ACTIVATIONS), _f_unary, _x_unary, doc="unary activations and math",
                 fields=("op", "x")))
_register(OpKind("Softmax", _with_variants(("Softmax", "LogSoftmax")), _f_softmax, _x_softmax,
                 doc="softmax along one axis",
                 fields=("op", "x", "axis")))
_register(OpKind("LayerNorm", ("LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization",
                               "SkipSimplifiedLayerNormalization"), _f_layernorm, _x_layernorm,
                 doc="LayerNormalization over the last axis; skip=1 fuses the residual add",
                 fields=("x", "skip")))
_register(OpKind("Norm", NORMS, _f_norm, _x_norm, doc="BatchNormalization (when not folded) and other norms",
                 fields=("op", "x")))
_register(OpKind("Concat", _with_variants(("Concat",)), _f_concat, _x_concat, fields=("inputs", "axis")))
_register(OpKind("Split", ("Split",), lambda p: _f_transpose(p), _x_split, fields=("x", "axis", "splits")))
_register(OpKind("Slice", ("Slice",), _f_inout, _x_inout, fields=("op", "x", "y")))
_register(OpKind("Transpose", ("Transpose",), _f_transpose, _x_transpose, fields=("x", "perm")))
_register(OpKind("Resize", ("Resize", "Upsample"), _f_inout, _x_inout, fields=("op", "x", "y", "mode")))
_register(OpKind("Pad", ("Pad",), _f_inout, _x_inout, fields=("op", "x", "y", "mode")))
_register(OpKind("Copy", COPIES, _f_inout, _x_inout, doc="other data-movement ops", fields=("op", "x", "y")))
_register(OpKind("Reduce", REDUCES, _f_reduce, _x_reduce, fields=("op", "x", "axes", "keepdims")))
_register(OpKind("Gather", ("Gather",), _f_gather, _x_gather, fields=("data", "indices", "axis")))
_register(OpKind("Quant", QUANTS, _f_unary, _x_quant, precisions=("int8",),  # the op itself is the int8 edge
                 doc="standalone (de)quantization at int8 region edges", fields=("op", "x")))
_register(OpKind("Reorder", REORDERS, _f_unary, _x_reorder, precisions=("fp32",),
                 doc="blocked-layout (NCHWc) reorders the runtime inserts", fields=("op", "x")))
_register(OpKind("Free", FREE_OPS, _f_free, lambda p: {}, free=True, precisions=PRECISIONS,
                 doc="metadata-only ops (Reshape & co): known to cost no data-proportional time",
                 fields=("op",)))


# --------------------------------------------------------------------------------------------
# recurrent layers, LLM attention and weight-only n-bit ops, Einsum

#: gates per recurrent op: the size of its per-step GEMM is gates x hidden x (input + hidden)
RECURRENT_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DIRECTIONS = ("forward", "reverse", "bidirectional")


def _dirs(p) -> int:
    d = p["direction"]
    if d not in DIRECTIONS:
        raise InvalidConfig(f"direction {d!r} is not one of {', '.join(DIRECTIONS)}")
    return 2 if d == "bidirectional" else 1


def _recurrent(gates: int):
    """(work, extra) of a recurrent kind with ``gates`` gates: the input projection of every step and
    the recurrent GEMM of each step in turn, plus the gate arithmetic (about 8 flops per gate value)."""

    def work(p):
        d, t, b, i, h = _dirs(p), p["seq_len"], p["batch"], p["input_size"], p["hidden_size"]
        w = d * gates * h * (i + h)
        return {"flops": 2.0 * t * b * w + 8.0 * d * t * b * gates * h, "in_elems": float(t * b * i),
                "w_elems": float(w + 2 * d * gates * h), "out_elems": float(t * d * b * h)}

    def extra(p):
        d, t, b, i, h = _dirs(p), p["seq_len"], p["batch"], p["input_size"], p["hidden_size"]
        return {"dirs": d, "seq_len": t, "batch": b, "input_size": i, "hidden_size": h,
                # one step's recurrent GEMM (b x h x gates*h): the serial part a longer sequence repeats
                "step_flops": 2.0 * b * h * gates * h, "log_step_flops": math.log1p(2.0 * b * h * gates * h),
                "lbr": float(p.get("linear_before_reset", 0)), "act_id": float(_RNN_ACTS.index(p["act"]))
                if p.get("act") in _RNN_ACTS else 0.0}

    return work, extra


_RNN_ACTS = ("Tanh", "Relu", "Sigmoid")

#: the attention operators of onnxruntime's contrib domain (transformer optimizer, LLM exporters) and
#: their int8 form: priced by one kind whose ``op`` field tells them apart
ATTENTION_OPS = ("Attention", "MultiHeadAttention", "GroupQueryAttention")


def _attn_dims(p):
    op = p["op"]
    if op not in ATTENTION_OPS:
        raise InvalidConfig(f"attention op {op!r} is not one of {', '.join(ATTENTION_OPS)}")
    b, s, past, kv = p["batch"], p["seq_len"], p["past_len"], p["kv_len"]
    nq, nkv, d = p["num_heads"], p["kv_heads"], p["head_size"]
    if nq < 1 or nkv < 1 or nq % nkv:
        raise InvalidConfig(f"num_heads {nq} must be a positive multiple of kv_heads {nkv}")
    return op, b, s, past, kv, past + kv, nq, nkv, d


def _f_attention(p):
    op, b, s, past, kv, total, nq, nkv, d = _attn_dims(p)
    scores = b * nq * s * total
    flops = 4.0 * scores * d + 5.0 * scores
    hidden = p.get("qkv_hidden", 0)
    w = 0.0
    if op == "Attention":  # the fused Q/K/V projection of its input
        flops += 2.0 * b * s * hidden * (nq + 2 * nkv) * d
        w = float(hidden * (nq + 2 * nkv) * d + (nq + 2 * nkv) * d)
        x = float(b * s * hidden)
    else:
        x = float(b * s * nq * d + 2 * b * kv * nkv * d)
    if p.get("rotary"):
        flops += 6.0 * b * s * (nq + nkv) * d
    x += 2.0 * b * nkv * past * d  # the key/value cache read
    out = float(b * s * nq * d) + (2.0 * b * nkv * total * d if past or op != "Attention" else 0.0)
    return {"flops": flops, "in_elems": x, "w_elems": w, "out_elems": out}


def _x_attention(p):
    op, b, s, past, kv, total, nq, nkv, d = _attn_dims(p)
    return {"op_id": float(ATTENTION_OPS.index(op)), "batch": b, "seq_len": s, "past_len": past, "kv_len": kv,
            "total_len": total, "num_heads": nq, "kv_heads": nkv, "head_size": d, "group": nq // nkv,
            "qkv_hidden": p.get("qkv_hidden", 0), "mask": p.get("mask", 0), "causal": p.get("causal", 0),
            "rotary": p.get("rotary", 0), "decode": float(s == 1),
            "log_scores": math.log1p(b * nq * s * total)}


def _f_rotary(p):
    n = float(_prod(p["x"]))
    rot = p["rotary_dim"]
    last = p["x"][-1] if len(p["x"]) == 4 else p["head_size"]
    if rot < 2 or rot > last:
        raise InvalidConfig(f"rotary_dim {rot} must be between 2 and the head size {last}")
    return {"flops": 3.0 * n * rot / last, "in_elems": n, "w_elems": 0.0, "out_elems": n}


def _x_rotary(p):
    d = {"rotary_dim": p["rotary_dim"], "head_size": p.get("head_size", 0), "interleaved": p.get("interleaved", 0)}
    d.update(_x_shape(p["x"]))
    return d


def _f_embed_ln(p):
    b, s, h = p["batch"], p["seq_len"], p["hidden"]
    tables = 3 if p.get("segment") else 2
    n = float(b * s * h)
    return {"flops": (tables + 7.0) * n, "in_elems": float(b * s * (tables - 1 + bool(p.get("mask")))) + tables * n,
            "w_elems": 2.0 * h, "out_elems": n}


def _x_embed_ln(p):
    return {"batch": p["batch"], "seq_len": p["seq_len"], "hidden": p["hidden"], "segment": p.get("segment", 0),
            "mask": p.get("mask", 0), "tokens": p["batch"] * p["seq_len"]}


def _f_nbits(p):
    m, k, n, bits, blk = p["m"], p["k"], p["n"], p["bits"], p["block_size"]
    if bits not in (2, 4, 8) or blk < 16 or blk & (blk - 1):
        raise InvalidConfig(f"MatMulNBits with bits {bits}, block_size {blk} (bits 2/4/8, block a power of 2 >= 16)")
    blocks = n * -(-k // blk)
    # weights in fp32-sized elements, so that bytes_moved counts bits/8 bytes per weight and one fp32
    # scale (and a bits-wide zero point) per block
    w = k * n * bits / 32.0 + blocks * (1.0 + (bits / 32.0 if p.get("zero_point") else 0.0))
    return {"flops": 2.0 * m * k * n, "in_elems": float(m * k), "w_elems": w, "out_elems": float(m * n)}


def _x_nbits(p):
    return {"m": p["m"], "k": p["k"], "n": p["n"], "bits": p["bits"], "block_size": p["block_size"],
            "accuracy_level": p.get("accuracy_level", 0), "zero_point": p.get("zero_point", 0),
            "bias": p.get("bias", 0), "log_m": math.log1p(p["m"])}


def einsum_parts(equation: str) -> tuple[list[str], str]:
    """(input terms, output term) of an explicit Einsum equation of letters ("bij,bjk->bik")."""
    if not isinstance(equation, str) or "->" not in equation or "." in equation:
        raise InvalidConfig(f"Einsum equation {equation!r}: expected explicit letters with '->' (the lowering "
                            "expands '...' and implicit outputs)")
    lhs, out = equation.replace(" ", "").split("->")
    terms = lhs.split(",")
    if not all(t.isalpha() or t == "" for t in terms + [out]):
        raise InvalidConfig(f"Einsum equation {equation!r}: terms must be letters")
    return terms, out


def _einsum_sizes(p) -> dict:
    terms, out = einsum_parts(p["equation"])
    shapes = p["inputs"]
    if len(terms) != len(shapes) or any(len(t) != len(s) for t, s in zip(terms, shapes)):
        raise InvalidConfig(f"Einsum equation {p['equation']!r} does not match input ranks {shapes}")
    size: dict = {}
    for t, s in zip(terms, shapes):
        for c, v in zip(t, s):
            size[c] = max(size.get(c, 1), int(v))
    if any(c not in size for c in out):
        raise InvalidConfig(f"Einsum equation {p['equation']!r}: output letter not in any input")
    return size


def _f_einsum(p):
    size = _einsum_sizes(p)
    terms, out = einsum_parts(p["equation"])
    every = float(_prod(size.values()))
    n_out = float(_prod(size[c] for c in out))
    return {"flops": 2.0 * every if len(terms) > 1 else every, "in_elems": float(sum(_prod(s) for s in p["inputs"])),
            "w_elems": 0.0, "out_elems": n_out}


def _x_einsum(p):
    """The matmul view of a two-input Einsum: batch letters (in both inputs and the output),
    contracted (in both, not the output), m (only the first and the output), n (only the second)."""
    size = _einsum_sizes(p)
    terms, out = einsum_parts(p["equation"])
    d = {"n_inputs": len(terms), "out_rank": len(out)}
    if len(terms) == 2:
        a, b = terms
        batch = [c for c in a if c in b and c in out]
        red = [c for c in a if c in b and c not in out]
        m = [c for c in a if c not in b and c in out]
        n = [c for c in b if c not in a and c in out]
        d.update(batch=_prod(size[c] for c in batch), k=_prod(size[c] for c in red), m=_prod(size[c] for c in m),
                 n=_prod(size[c] for c in n),
                 a_k_last=float(bool(red) and a.endswith("".join(red))),
                 b_k_last=float(bool(red) and b.endswith("".join(red))))
    return d


for _op, _g in RECURRENT_GATES.items():
    _w, _x = _recurrent(_g)
    _register(OpKind(_op, (_op, "DynamicQuantizeLSTM") if _op == "LSTM" else (_op,), _w, _x, has_weights=True,
                     precisions=("fp32", "int8_dynamic") if _op == "LSTM" else ("fp32",),
                     doc=f"{_op} layer, all its time steps in one kernel (the sequence length is a key field); "
                         + ("int8_dynamic: DynamicQuantizeLSTM" if _op == "LSTM" else "fp32"),
                     fields=("direction", "seq_len", "batch", "input_size", "hidden_size")
                     + (("linear_before_reset",) if _op == "GRU" else ("act",) if _op == "RNN" else ())))
_register(OpKind("Attention", ATTENTION_OPS + ("QAttention",), _f_attention, _x_attention,
                 precisions=("fp32", "fp16", "int8_dynamic"),
                 doc="fused attention (com.microsoft Attention with its Q/K/V projection, MultiHeadAttention, "
                     "GroupQueryAttention) over seq_len new tokens and a past_len key/value cache; fp16: "
                     "TensorRT's fused attention kernels (latency.fusion.tensorrt); int8_dynamic: QAttention "
                     "(quantize_dynamic of an Attention: int8 Q/K/V projection, fp32 attention)",
                 fields=("op", "batch", "seq_len", "past_len", "kv_len", "num_heads", "kv_heads", "head_size",
                         "qkv_hidden", "mask", "causal", "rotary")))
_register(OpKind("EmbedLayerNorm", ("EmbedLayerNormalization", "QEmbedLayerNormalization"), _f_embed_ln, _x_embed_ln,
                 precisions=("fp32", "int8"),
                 doc="BERT embeddings fused by onnxruntime's transformer optimizer (com.microsoft "
                     "EmbedLayerNormalization): word + position (+ segment) lookups, their sum and LayerNormalization, "
                     "with the attention mask reduced to lengths; int8: QEmbedLayerNormalization (int8 tables)",
                 fields=("batch", "seq_len", "hidden", "segment", "mask")))
_register(OpKind("RotaryEmbedding", ("RotaryEmbedding",), _f_rotary, _x_rotary, precisions=("fp32",),
              doc="rotary position embedding (com.microsoft)", fields=("x", "head_size", "rotary_dim", "interleaved")))
_register(OpKind("MatMulNBits", ("MatMulNBits",), _f_nbits, _x_nbits, has_weights=True, precisions=("fp32",),
                 doc="weight-only 2/4/8-bit MatMul (com.microsoft): m rows of activations (fp32) against a "
                     "k x n block-quantized weight; accuracy_level 4 computes in int8",
                 fields=("m", "k", "n", "bits", "block_size", "accuracy_level", "zero_point", "bias")))
_register(OpKind("Einsum", ("Einsum",), _f_einsum, _x_einsum, precisions=("fp32",),
                 doc="Einsum with an explicit equation of letters", fields=("equation", "inputs")))


def kinds() -> dict[str, OpKind]:
    """All registered op kinds by name."""
    return dict(_KINDS)


def get_kind(name: str) -> OpKind:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownOpKind(name, _KINDS) from None


_OP_TO_KIND = {op: k.name for k in _KINDS.values() for op in k.onnx_ops}


def kind_of_op(op_type: str) -> str | None:
    """The op kind that prices an ONNX op type, or None when no kind does."""
    return _OP_TO_KIND.get(op_type)


def _canon(v):
    if isinstance(v, (list, tuple)):
        return [_canon(x) for x in v]
    if isinstance(v, dict):
        return {k: _canon(v[k]) for k in sorted(v)}
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def canonical_params(kind: str, params: dict) -> dict:
    """The params restricted to the kind's declared fields, canonically typed."""
    k = get_kind(kind)
    return {f: _canon(params[f]) for f in k.fields if f in params}


def config_key(kind: str, params: dict, precision: str = "fp32", sparsity: str = "0") -> str:
    """Canonical JSON text of a config: the exact table key."""
    return json.dumps({"kind": kind, "params": canonical_params(kind, params), "precision": precision,
                       "sparsity": str(sparsity)}, sort_keys=True, separators=(",", ":"))


def key_hash(key: str) -> str:
    """Short stable hash of a config key (the database's upsert key)."""
    return hashlib.sha1(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Config:
    """One concrete kernel configuration to measure or price."""

    kind: str
    params: dict = field(hash=False, compare=False)
    precision: str = "fp32"
    sparsity: str = "0"

    @property
    def key(self) -> str:
        return config_key(self.kind, self.params, self.precision, self.sparsity)

    @property
    def hash(self) -> str:
        return key_hash(self.key)

    def features(self) -> dict:
        return get_kind(self.kind).features(self.params, self.precision, self.sparsity)

    def flops(self) -> float:
        return get_kind(self.kind).work(self.params)["flops"]

    def bytes(self) -> float:
        return bytes_moved(get_kind(self.kind), self.params, self.precision)

    @staticmethod
    def from_key(key: str) -> "Config":
        """The config of a table key (:func:`config_key` text); InvalidConfig when ``key`` is not one,
        UnknownOpKind when its kind is not in the registry."""
        try:
            d = json.loads(key)
        except (TypeError, ValueError) as e:  # JSONDecodeError, bytes that are not UTF-8, None
            raise InvalidConfig(f"malformed config key {_short(key)}: not JSON ({e})") from None
        if not isinstance(d, dict) or set(d) != {"kind", "params", "precision", "sparsity"}:
            raise InvalidConfig(f"malformed config key {_short(key)}: expected a JSON object with exactly "
                                "kind, params, precision and sparsity")
        if not isinstance(d["kind"], str) or not isinstance(d["params"], dict):
            raise InvalidConfig(f"malformed config key {_short(key)}: kind must be a string and params an object")
        get_kind(d["kind"])
        if d["precision"] not in PRECISIONS:
            raise InvalidConfig(f"malformed config key {_short(key)}: precision {d['precision']!r} is not one of "
                                f"{', '.join(PRECISIONS)}")
        if d["sparsity"] not in SPARSITIES:
            raise InvalidConfig(f"malformed config key {_short(key)}: sparsity {d['sparsity']!r} is not one of "
                                f"{', '.join(SPARSITIES)}")
        return Config(d["kind"], d["params"], d["precision"], d["sparsity"])


def _short(key) -> str:
    """A key quoted on one line, cut to 120 characters."""
    s = repr(key)
    return s if len(s) <= 120 else s[:117] + "..."


def _has_negative(v) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return v < 0
    if isinstance(v, (list, tuple)):
        return any(_has_negative(x) for x in v)
    if isinstance(v, dict):
        return any(_has_negative(x) for x in v.values())
    return False


@functools.lru_cache(maxsize=1 << 16)
def config_problem(key: str) -> str | None:
    """Why the kernel of table key ``key`` cannot be priced (malformed key, zero stride, negative or
    non-finite work...), in one line; None when it can. Cached per key (the estimator asks per kernel)."""
    try:
        c = Config.from_key(key)
    except LatencyError as e:
        return str(e)
    neg = [k for k, v in c.params.items() if _has_negative(v)]
    if neg:  # dims, axes (normalised), sizes: no field of a real kernel holds a negative number
        return f"invalid {c.kind} config: negative value in {', '.join(sorted(neg))} (a dim below zero?)"
    try:
        f = c.features()
    except LatencyError as e:
        return f"invalid {c.kind} config: {e}"
    except (ArithmeticError, ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        return f"invalid {c.kind} config (dims or attributes out of range): {type(e).__name__}: {e}"
    # every feature of a real kernel is >= 0 (dims, sizes, work; ids aside): a negative one is an output
    # dim below zero (a kernel larger than its padded input) or a negative input dim
    bad = sorted(k for k, v in f.items() if not isinstance(v, (int, float)) or not math.isfinite(v)
                 or (v < 0 and not k.endswith("_id")))
    if bad:
        return f"invalid {c.kind} config: {', '.join(bad)} negative or not finite (dims or attributes out of range)"
    return None
