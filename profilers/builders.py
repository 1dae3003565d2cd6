"""Config -> a small ONNX model that makes the runtime execute exactly that kernel.

Each builder writes the fp32 graph the way exporters write it (the op, plus the nodes the runtime
fuses into it); :func:`build` then applies the precision (fp16 tensors, static QDQ, dynamic int8)
and the weight sparsity. Auxiliary nodes that only exist to put the kernel in its in-model context
(for example the producer of a residual input in blocked layout) are named ``aux_*`` so the
measurement can leave them out.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from latency.ops import REORDER_INPUT, REORDER_OUTPUT, Config, conv_out_shape, get_kind

OPSET = 17
_MS = "com.microsoft"
_NCHWC = "com.microsoft.nchwc"

_BOOL_IN = {"And", "Or", "Xor", "Not", "Where"}
_BOOL_OUT = {"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Not", "IsNaN"}


class NotBuildable(Exception):
    """The builder cannot express this config as a runnable model."""


class _G:
    """Tiny graph-writing helper: collects nodes, inputs, initializers."""

    def __init__(self, seed: int = 0, tag: str = ""):
        self.tag = tag
        self.nodes, self.inputs, self.inits, self.outputs = [], [], [], []
        self.rng = np.random.default_rng(seed)
        self.domains = {"": OPSET}
        self._n = 0

    def name(self, p="t"):
        self._n += 1
        return f"{p}{self.tag}{self._n}"

    def inp(self, shape, dtype=TensorProto.FLOAT, name=None):
        name = name or self.name("in")
        self.inputs.append(helper.make_tensor_value_info(name, dtype, list(shape)))
        return name

    def const(self, arr, name=None):
        name = name or self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def weight(self, shape, fan_in, name="W"):
        # cheap fill: tile one random block, He-style scale, float32 (never float64)
        n = int(np.prod(shape))
        block = self.rng.standard_normal(min(n, 4099)).astype(np.float32)
        w = np.resize(block, n).reshape(shape) * np.float32(np.sqrt(2.0 / max(1, fan_in)))
        return self.const(w.astype(np.float32), name)

    def node(self, op, ins, n_out=1, domain="", name=None, **attrs):
        if domain and domain not in self.domains:
            self.domains[domain] = 1
        outs = [self.name("v") for _ in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name=name or self.name(op.lower()), domain=domain,
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def out(self, name, dtype=TensorProto.FLOAT):
        self.outputs.append(helper.make_tensor_value_info(name, dtype, None))

    def model(self) -> onnx.ModelProto:
        g = helper.make_graph(self.nodes, "kernel", self.inputs, self.outputs, self.inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid(d, v) for d, v in self.domains.items()])
        m.ir_version = 8
        return m


def _act(g: _G, op: str, x: str) -> str:
    if op == "Clip":
        return g.node("Clip", [x, g.const(np.float32(0)), g.const(np.float32(6))])
    if op == "LeakyRelu":
        return g.node("LeakyRelu", [x], alpha=0.1)
    if op == "HardSigmoid":
        return g.node("HardSigmoid", [x], alpha=1 / 6, beta=0.5)
    if op in ("Gelu", "QuickGelu", "FastGelu", "BiasGelu"):
        if op == "BiasGelu":
            raise NotBuildable("BiasGelu needs its bias shape")
        return g.node(op, [x], domain=_MS)
    if op == "Swish":
        return g.node("Mul", [x, g.node("Sigmoid", [x])])
    if op == "Mish":
        g.domains[""] = 18
        return g.node("Mish", [x])
    if op == "PRelu":
        return g.node("PRelu", [x, g.const(np.full([1], 0.25, np.float32))])
    if op == "Cast":
        return g.node("Cast", [x], to=TensorProto.FLOAT16)
    return g.node(op, [x])


# ------------------------------------------------------------------------------------------------
# fp32 builders, one per kind: params -> (graph, name of the output tensor)


def _b_conv(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    cin, grp, cout = p["x"][1], p["group"], p["cout"]
    k = p["kernel"]
    if p.get("runtime_w"):
        # weights the graph computes (as a DequantizeLinear does in a QDQ model): fed as an input
        w = g.inp([cout, cin // grp] + list(k), name="w_runtime")
    else:
        w = g.weight([cout, cin // grp] + list(k), (cin // grp) * int(np.prod(k)))
    b = g.const(np.zeros(cout, np.float32), "B")
    y = g.node("Conv", [x, w, b], name="conv", kernel_shape=list(k), strides=p["strides"], pads=p["pads"],
               dilations=p["dilations"], group=grp)
    if p.get("sum"):
        # the residual operand comes from a blocked-layout producer, as inside a network
        s_in = g.inp(conv_out_shape(p), name="aux_s")
        s = "aux_s_pooled"
        g.nodes.append(helper.make_node("MaxPool", [s_in], [s], name="aux_pool", kernel_shape=[1, 1]))
        y = g.node("Add", [y, s], name="add")
    if p.get("act", "none") != "none":
        y = _act(g, p["act"], y)
    if p.get("act") == "HardSwish":
        # onnxruntime fuses HardSwish into a blocked conv only when something consumes it: as the
        # graph's output it stays Conv + HardSigmoid + Mul, three kernels where a network runs one
        y = g.node("Relu", [y], name="aux_consumer")
    return y


def _b_convt(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    cin, grp, cout = p["x"][1], p["group"], p["cout"]
    w = g.weight([cin, cout // grp] + list(p["kernel"]), cin * int(np.prod(p["kernel"])))
    b = g.const(np.zeros(cout, np.float32), "B")
    return g.node("ConvTranspose", [x, w, b], kernel_shape=p["kernel"], strides=p["strides"], pads=p["pads"],
                  dilations=p["dilations"], group=grp, output_padding=p["output_padding"])


def _b_matmul(g: _G, p: dict):
    a = g.inp(p["a"], name="x")
    bshape = list(p["b"])
    if p["const_b"]:
        b = g.weight(bshape, bshape[-1] if p["trans_b"] else bshape[-2] if len(bshape) > 1 else bshape[0])
    else:
        b = g.inp(bshape, name="x2")
    n = bshape[-2] if p["trans_b"] else bshape[-1]
    if p["trans_b"]:
        if len(bshape) != 2 or len(p["a"]) != 2:
            b = g.node("Transpose", [b], perm=list(range(len(bshape) - 2)) + [len(bshape) - 1, len(bshape) - 2])
            y = g.node("MatMul", [a, b])
        else:
            bias = [g.const(np.zeros(n, np.float32), "B")] if p["bias"] else []
            y = g.node("Gemm", [a, b] + bias, transB=1)
            if p["scale"]:
                y = g.node("Mul", [y, g.const(np.float32(0.125))])
            if p.get("act", "none") != "none":
                y = _act(g, p["act"], y)
            return y
    else:
        y = g.node("MatMul", [a, b], name="matmul")
    if p["scale"]:
        y = g.node("Mul", [y, g.const(np.float32(0.125))])
    if p["bias"]:
        y = g.node("Add", [y, g.const(np.zeros(n, np.float32), "B")])
    if p.get("act", "none") != "none":
        y = _act(g, p["act"], y)
    return y


def _b_pool(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    if p["op"].startswith("Global"):
        return g.node(p["op"], [x])
    attrs = dict(kernel_shape=p["kernel"], strides=p["strides"], pads=p["pads"])
    if p["op"] in ("MaxPool", "AveragePool"):
        attrs["ceil_mode"] = int(p.get("ceil", 0))
    return g.node(p["op"], [x], **attrs)


def _b_elementwise(g: _G, p: dict):
    op = p["op"]
    ins = []
    shapes = p["inputs"]
    for i, s in enumerate(shapes):
        dt = TensorProto.BOOL if (op in _BOOL_IN and (op != "Where" or i == 0)) else TensorProto.FLOAT
        if p.get("const_b") and i == len(shapes) - 1 and dt == TensorProto.FLOAT:
            # Pow in real graphs squares (LayerNorm variance); the runtime special-cases exponent 2
            ins.append(g.const(np.full(s, 2.0 if op == "Pow" else 0.5, np.float32)))
        else:
            ins.append(g.inp(s, dt, name=f"x{i}" if i else "x"))
    if op == "Mod":
        return g.node("Mod", ins, fmod=1)
    if op == "BitShift":
        raise NotBuildable("BitShift needs integer tensors")
    y = g.node(op, ins)
    if op in _BOOL_OUT:
        g.out(y, TensorProto.BOOL)
        return None
    return y


def _b_activation(g: _G, p: dict):
    x = g.inp(p["x"], TensorProto.BOOL if p["op"] == "Not" else TensorProto.FLOAT, name="x")
    y = _act(g, p["op"], x)
    if p["op"] in ("Cast", "Not"):
        g.out(y, TensorProto.FLOAT16 if p["op"] == "Cast" else TensorProto.BOOL)
        return None
    return y


def _b_softmax(g: _G, p: dict):
    return g.node(p["op"], [g.inp(p["x"], name="x")], axis=p["axis"])


def _b_layernorm(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    h = p["x"][-1]
    gamma, beta = g.const(np.ones(h, np.float32)), g.const(np.zeros(h, np.float32))
    if p.get("skip"):
        s = g.inp(p["x"], name="x2")
        return g.node("SkipLayerNormalization", [x, s, gamma, beta], domain=_MS, epsilon=1e-5)
    return g.node("LayerNormalization", [x, gamma, beta], axis=-1, epsilon=1e-5)


def _b_norm(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    c = p["x"][1]
    op = p["op"]
    if op == "BatchNormalization":
        return g.node(op, [x, g.const(np.ones(c, np.float32)), g.const(np.zeros(c, np.float32)),
                           g.const(np.zeros(c, np.float32)), g.const(np.ones(c, np.float32))])
    if op == "InstanceNormalization":
        return g.node(op, [x, g.const(np.ones(c, np.float32)), g.const(np.zeros(c, np.float32))])
    if op == "LRN":
        return g.node(op, [x], size=5)
    if op == "LpNormalization":
        return g.node(op, [x], axis=1)
    if op == "MeanVarianceNormalization":
        return g.node(op, [x])
    raise NotBuildable(f"Norm op {op}")


def _b_concat(g: _G, p: dict):
    return g.node("Concat", [g.inp(s, name=f"x{i}" if i else "x") for i, s in enumerate(p["inputs"])],
                  axis=p["axis"])


def _b_split(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    outs = g.node("Split", [x, g.const(np.array(p["splits"], np.int64))], n_out=len(p["splits"]), axis=p["axis"])
    for o in outs[1:]:
        g.out(o)
    return outs[0]


def _b_slice(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    axes = [i for i, (a, b) in enumerate(zip(p["x"], p["y"])) if a != b]
    if not axes:
        axes = [0]
    starts = [(p["x"][a] - p["y"][a]) // 2 for a in axes]
    ends = [s + p["y"][a] for s, a in zip(starts, axes)]
    return g.node("Slice", [x, g.const(np.array(starts, np.int64)), g.const(np.array(ends, np.int64)),
                            g.const(np.array(axes, np.int64))])


def _b_transpose(g: _G, p: dict):
    return g.node("Transpose", [g.inp(p["x"], name="x")], perm=p["perm"])


def _b_resize(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    return g.node("Resize", [x, "", "", g.const(np.array(p["y"], np.int64))], mode=p.get("mode", "nearest"))


def _b_pad(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    diff = [b - a for a, b in zip(p["x"], p["y"])]
    pads = [d // 2 for d in diff] + [d - d // 2 for d in diff]
    return g.node("Pad", [x, g.const(np.array(pads, np.int64))], mode=p.get("mode", "constant"))


def _b_copy(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    op = p["op"]
    if op == "Expand":
        return g.node("Expand", [x, g.const(np.array(p["y"], np.int64))])
    if op == "Tile":
        return g.node("Tile", [x, g.const(np.array([b // a for a, b in zip(p["x"], p["y"])], np.int64))])
    if op == "DepthToSpace":
        return g.node(op, [x], blocksize=p["y"][2] // p["x"][2])
    if op == "SpaceToDepth":
        return g.node(op, [x], blocksize=p["x"][2] // p["y"][2])
    raise NotBuildable(f"Copy op {op}")


def _b_reduce(g: _G, p: dict):
    x = g.inp(p["x"], name="x")
    op = p["op"]
    if op in ("ArgMax", "ArgMin"):
        y = g.node(op, [x], axis=p["axes"][0], keepdims=p.get("keepdims", 1))
        g.outputs.append(helper.make_tensor_value_info(y, TensorProto.INT64, None))
        return None
    if op == "ReduceSum":
        return g.node(op, [x, g.const(np.array(p["axes"], np.int64))], keepdims=p.get("keepdims", 1))
    return g.node(op, [x], axes=p["axes"], keepdims=p.get("keepdims", 1))


def _b_gather(g: _G, p: dict):
    data = g.weight(p["data"], 1)
    idx = g.inp(p["indices"], TensorProto.INT64, name="idx")
    return g.node("Gather", [data, idx], axis=p["axis"])


def _b_quant(g: _G, p: dict):
    op = p["op"]
    if op == "DequantizeLinear":
        x = g.inp(p["x"], TensorProto.UINT8, name="x")
        return g.node(op, [x, g.const(np.float32(0.05)), g.const(np.uint8(128))])
    x = g.inp(p["x"], name="x")
    if op == "QuantizeLinear":
        y = g.node(op, [x, g.const(np.float32(0.05)), g.const(np.uint8(128))])
        g.out(y, TensorProto.UINT8)
        return None
    y, s, z = g.node("DynamicQuantizeLinear", [x], n_out=3)
    g.out(y, TensorProto.UINT8)
    return None


def _b_reorder(g: _G, p: dict):
    g.domains[_NCHWC] = 1
    c = p["x"][1]
    if c % 4:
        if p["op"] == REORDER_INPUT:
            raise NotBuildable(f"{REORDER_INPUT} needs channels divisible by 4")
        # an NCHWc tensor carries its channels padded to the block; ReorderOutput drops the padding
        x = g.inp([p["x"][0], -(-c // 8) * 8] + list(p["x"][2:]), name="x")
        r = g.node(REORDER_INPUT, [x], domain=_NCHWC, name=REORDER_INPUT)
        return g.node(REORDER_OUTPUT, [r], domain=_NCHWC, name=REORDER_OUTPUT, channels=c)
    x = g.inp(p["x"], name="x")
    r = g.node(REORDER_INPUT, [x], domain=_NCHWC, name=REORDER_INPUT)
    return g.node(REORDER_OUTPUT, [r], domain=_NCHWC, name=REORDER_OUTPUT, channels=c)


def _b_recurrent(op: str):
    """An ``op`` layer as exporters write it: X [seq_len, batch, input_size], W, R and B constant,
    Y (every step's hidden state) the output."""

    def build_it(g: _G, p: dict):
        from latency.ops import RECURRENT_GATES

        gates, h, i = RECURRENT_GATES[op], p["hidden_size"], p["input_size"]
        dirs = 2 if p["direction"] == "bidirectional" else 1
        x = g.inp([p["seq_len"], p["batch"], i], name="x")
        w = g.weight([dirs, gates * h, i], i, "W")
        r = g.weight([dirs, gates * h, h], h, "R")
        b = g.const(np.zeros([dirs, 2 * gates * h], np.float32), "B")
        attrs = {"hidden_size": h, "direction": p["direction"]}
        if op == "GRU" and p.get("linear_before_reset"):
            attrs["linear_before_reset"] = 1
        if op == "RNN" and p.get("act", "Tanh") != "Tanh":
            attrs["activations"] = [p["act"]] * dirs
        return g.node(op, [x, w, r, b], name=op.lower(), **attrs)

    return build_it


def _dynamic_lstm(p: dict) -> onnx.ModelProto:
    """DynamicQuantizeLSTM as onnxruntime.quantization.quantize_dynamic writes an LSTM: int8 W
    [dirs, input, 4h] and R [dirs, h, 4h] (transposed) with per-direction scales and zero points."""
    g = _G()
    g.domains[_MS] = 1
    h, i = p["hidden_size"], p["input_size"]
    dirs = 2 if p["direction"] == "bidirectional" else 1
    x = g.inp([p["seq_len"], p["batch"], i], name="x")

    def q(shape, name):
        return g.const(np.resize(g.rng.integers(-127, 127, 4099), int(np.prod(shape))).reshape(shape).astype(np.int8),
                       name)

    ins = [x, q([dirs, i, 4 * h], "Wq"), q([dirs, h, 4 * h], "Rq"), g.const(np.zeros([dirs, 8 * h], np.float32), "B"),
           "", "", "", "", g.const(np.full([dirs], 0.01, np.float32)), g.const(np.zeros([dirs], np.int8)),
           g.const(np.full([dirs], 0.01, np.float32)), g.const(np.zeros([dirs], np.int8))]
    g.out(g.node("DynamicQuantizeLSTM", ins, domain=_MS, name="dqlstm", hidden_size=h, direction=p["direction"]))
    return g.model()


def _b_attention(g: _G, p: dict):
    """Attention (input + packed Q/K/V weight, optional past [2, b, heads, past, d]), MultiHeadAttention
    (projected q, k, v, optional past key/value [b, heads, past, d]) or GroupQueryAttention (q, k, v with
    kv_heads, past key/value, seqlens_k and total length as constants, cos/sin caches with rotary)."""
    g.domains[_MS] = 1
    op, b, s, past, kv = p["op"], p["batch"], p["seq_len"], p["past_len"], p["kv_len"]
    nq, nkv, d = p["num_heads"], p["kv_heads"], p["head_size"]
    total = past + kv
    if op == "Attention":
        if nq != nkv or kv != s:
            raise NotBuildable("Attention projects its own keys and values: kv_heads = num_heads, kv_len = seq_len")
        hid = p["qkv_hidden"]
        x = g.inp([b, s, hid], name="x")
        ins = [x, g.weight([hid, 3 * nq * d], hid, "W"), g.const(np.zeros(3 * nq * d, np.float32), "B")]
        ins += [g.inp([b, total], TensorProto.INT32, name="mask") if p.get("mask") else ""]
        if past:
            ins.append(g.inp([2, b, nq, past, d], name="past"))
        outs = g.node("Attention", ins, n_out=2 if past else 1, domain=_MS, name="attention", num_heads=nq,
                      unidirectional=int(bool(p.get("causal"))))
        if past:
            g.out(outs[1])
            return outs[0]
        return outs
    q = g.inp([b, s, nq * d], name="x")
    k = g.inp([b, kv, nkv * d], name="k")
    v = g.inp([b, kv, nkv * d], name="v")
    pk = g.inp([b, nkv, past, d], name="past_k") if past else ""
    pv = g.inp([b, nkv, past, d], name="past_v") if past else ""
    if op == "MultiHeadAttention":
        if nq != nkv:
            raise NotBuildable("MultiHeadAttention has kv_heads = num_heads")
        mask = g.inp([b, total], TensorProto.INT32, name="mask") if p.get("mask") else ""
        ins = [q, k, v, "", mask, "", pk, pv]
        while ins and ins[-1] == "":
            ins.pop()
        outs = g.node("MultiHeadAttention", ins, n_out=3 if past else 1, domain=_MS, name="mha", num_heads=nq,
                      unidirectional=int(bool(p.get("causal"))))
    else:
        if kv != s:
            raise NotBuildable("GroupQueryAttention takes as many new keys as queries (kv_len = seq_len)")
        ins = [q, k, v, pk, pv, g.const(np.full([b], total - 1, np.int32), "seqlens_k"),
               g.const(np.array(total, np.int32), "total_len")]
        attrs = {}
        if p.get("rotary"):
            ins += [g.const(np.ones([total, d // 2], np.float32), "cos"), g.const(np.zeros([total, d // 2], np.float32),
                                                                                  "sin")]
            attrs["do_rotary"] = 1
        outs = g.node("GroupQueryAttention", ins, n_out=3, domain=_MS, name="gqa", num_heads=nq, kv_num_heads=nkv,
                      **attrs)
    if isinstance(outs, str):
        return outs
    for o in outs[1:]:
        g.out(o)
    return outs[0]


def _qattention(p: dict) -> onnx.ModelProto:
    """QAttention as onnxruntime.quantization.quantize_dynamic writes an Attention: the input quantized
    by a DynamicQuantizeLinear (an auxiliary node, not timed as the kernel), int8 packed Q/K/V weight
    with its scale and zero point, fp32 bias, optional mask."""
    op, b, s, past, nq, nkv, d = p["op"], p["batch"], p["seq_len"], p["past_len"], p["num_heads"], p["kv_heads"], \
        p["head_size"]
    if op != "Attention" or nq != nkv or p["kv_len"] != s or past:
        raise NotBuildable("QAttention is the int8 form of Attention without a past: op Attention, kv_heads = "
                           "num_heads, kv_len = seq_len, past_len 0")
    g = _G()
    g.domains[_MS] = 1
    hid = p["qkv_hidden"]
    x = g.inp([b, s, hid], name="x")
    xq, xs, xz = g.node("DynamicQuantizeLinear", [x], n_out=3, name="aux_dql")
    shape = [hid, 3 * nq * d]
    wq = g.const(np.resize(g.rng.integers(-127, 127, 4099), int(np.prod(shape))).reshape(shape).astype(np.int8), "Wq")
    mask = g.inp([b, s], TensorProto.INT32, name="mask") if p.get("mask") else ""
    ins = [xq, wq, g.const(np.zeros(3 * nq * d, np.float32), "B"), xs, g.const(np.float32(0.01), "w_scale"), mask, xz,
           g.const(np.int8(0), "w_zero")]
    g.out(g.node("QAttention", ins, domain=_MS, name="qattention", num_heads=nq,
                 unidirectional=int(bool(p.get("causal")))))
    return g.model()


def _b_embed_ln(g: _G, p: dict):
    """EmbedLayerNormalization as onnxruntime's transformer optimizer fuses BERT embeddings: int32 ids
    (and segment ids), word / position (/ segment) tables, gamma, beta, optional mask -> mask index."""
    g.domains[_MS] = 1
    b, s, h = p["batch"], p["seq_len"], p["hidden"]
    ids = g.inp([b, s], TensorProto.INT32, name="idx")
    seg = g.inp([b, s], TensorProto.INT32, name="seg") if p.get("segment") else ""
    word = g.weight([_EMBED_VOCAB, h], h, "word")
    pos = g.weight([max(s, 512), h], h, "position")
    segt = g.weight([2, h], h, "segment") if p.get("segment") else ""
    mask = g.inp([b, s], TensorProto.INT32, name="mask") if p.get("mask") else ""
    ins = [ids, seg, word, pos, segt, g.const(np.ones(h, np.float32), "gamma"), g.const(np.zeros(h, np.float32), "beta"),
           mask]
    while ins[-1] == "":
        ins.pop()
    outs = g.node("EmbedLayerNormalization", ins, n_out=2, domain=_MS, name="embed_ln", epsilon=1e-12)
    g.out(outs[1], TensorProto.INT32)
    return outs[0]


#: rows of the word table of a built EmbedLayerNormalization (a BERT vocabulary)
_EMBED_VOCAB = 30522


def _qembed_ln(p: dict) -> onnx.ModelProto:
    """QEmbedLayerNormalization as quantize_dynamic writes an EmbedLayerNormalization: uint8 tables,
    gamma and beta, each with a scale and zero point."""
    g = _G()
    g.domains[_MS] = 1
    b, s, h = p["batch"], p["seq_len"], p["hidden"]
    ids = g.inp([b, s], TensorProto.INT32, name="idx")
    seg = g.inp([b, s], TensorProto.INT32, name="seg") if p.get("segment") else ""

    def q(shape, name):
        return g.const(np.resize(g.rng.integers(0, 255, 4099), int(np.prod(shape))).reshape(shape).astype(np.uint8),
                       name)

    tables = [q([_EMBED_VOCAB, h], "word"), q([max(s, 512), h], "position"),
              q([2, h], "segment") if p.get("segment") else "", q([h], "gamma"), q([h], "beta")]
    mask = g.inp([b, s], TensorProto.INT32, name="mask") if p.get("mask") else ""
    scale, zero = g.const(np.float32(0.01), "scale"), g.const(np.uint8(128), "zero")
    ins = [ids, seg] + tables + [mask] + [scale if t else "" for t in tables] + [zero if t else "" for t in tables]
    outs = g.node("QEmbedLayerNormalization", ins, n_out=2, domain=_MS, name="qembed_ln", epsilon=1e-12)
    g.out(outs[0])
    g.out(outs[1], TensorProto.INT32)
    return g.model()


def _b_rotary(g: _G, p: dict):
    g.domains[_MS] = 1
    x = g.inp(p["x"], name="x")
    rot = p["rotary_dim"]
    b, s = p["x"][0], p["x"][-2] if len(p["x"]) == 4 else p["x"][1]
    pos = g.inp([b, s], TensorProto.INT64, name="pos")
    cache = [max(2, s), rot // 2]
    attrs = {"interleaved": int(bool(p.get("interleaved")))}
    if len(p["x"]) == 3:
        attrs["num_heads"] = p["x"][-1] // p["head_size"]
    if rot != (p["x"][-1] if len(p["x"]) == 4 else p["head_size"]):
        attrs["rotary_embedding_dim"] = rot
        attrs.setdefault("num_heads", p["x"][1] if len(p["x"]) == 4 else attrs.get("num_heads"))
    return g.node("RotaryEmbedding", [x, pos, g.const(np.ones(cache, np.float32), "cos"),
                                      g.const(np.zeros(cache, np.float32), "sin")], domain=_MS, name="rotary", **attrs)


def _b_nbits(g: _G, p: dict):
    g.domains[_MS] = 1
    m, k, n, bits, blk = p["m"], p["k"], p["n"], p["bits"], p["block_size"]
    nb = -(-k // blk)
    a = g.inp([m, k], name="x")
    wq = np.resize(g.rng.integers(0, 255, 4099), n * nb * blk * bits // 8).reshape([n, nb, blk * bits // 8])
    ins = [a, g.const(wq.astype(np.uint8), "Wq"), g.const(np.full([n * nb], 0.01, np.float32), "scales")]
    if p.get("zero_point"):
        ins.append(g.const(np.full([n * -(-nb * bits // 8)], 136 if bits == 4 else 128, np.uint8), "zero_points"))
    if p.get("bias"):
        ins += [""] * (4 - len(ins)) + ["", g.const(np.zeros([n], np.float32), "B")]
    return g.node("MatMulNBits", ins, domain=_MS, name="matmulnbits", K=k, N=n, bits=bits, block_size=blk,
                  accuracy_level=int(p.get("accuracy_level", 0)))


def _b_einsum(g: _G, p: dict):
    ins = [g.inp(s, name=f"x{i}" if i else "x") for i, s in enumerate(p["inputs"])]
    return g.node("Einsum", ins, name="einsum", equation=p["equation"])


_BUILDERS = {
    "Conv": _b_conv, "ConvTranspose": _b_convt, "MatMul": _b_matmul, "Pool": _b_pool,
    "Elementwise": _b_elementwise, "Activation": _b_activation, "Softmax": _b_softmax,
    "LayerNorm": _b_layernorm, "Norm": _b_norm, "Concat": _b_concat, "Split": _b_split, "Slice": _b_slice,
    "Transpose": _b_transpose, "Resize": _b_resize, "Pad": _b_pad, "Copy": _b_copy, "Reduce": _b_reduce,
    "Gather": _b_gather, "Quant": _b_quant, "Reorder": _b_reorder,
    "LSTM": _b_recurrent("LSTM"), "GRU": _b_recurrent("GRU"), "RNN": _b_recurrent("RNN"), "Attention": _b_attention,
    "RotaryEmbedding": _b_rotary, "MatMulNBits": _b_nbits, "Einsum": _b_einsum, "EmbedLayerNorm": _b_embed_ln,
}
#: kinds that are priced by declaration, never measured
UNMEASURED = ("Free",)


def buildable_kinds() -> tuple:
    return tuple(_BUILDERS)


# ------------------------------------------------------------------------------------------------
# precision and sparsity transforms


def _to_fp16(m: onnx.ModelProto) -> onnx.ModelProto:
    """Every float32 tensor (inputs, outputs, initializers) becomes float16."""
    g = m.graph
    for vi in list(g.input) + list(g.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    for i, t in enumerate(g.initializer):
        if t.data_type == TensorProto.FLOAT:
            arr = numpy_helper.to_array(t).astype(np.float16)
            g.initializer[i].CopyFrom(numpy_helper.from_array(arr, t.name))
    outs = {vi.name: vi for vi in g.output}
    for n in g.node:
        if n.op_type == "Cast":
            for a in n.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT16:
                    a.i = TensorProto.FLOAT
                    if n.output[0] in outs:
                        outs[n.output[0]].type.tensor_type.elem_type = TensorProto.FLOAT
    return m


def _qdq(g: _G, x: str, edge_first: bool) -> str:
    # inside a network only one of the pair belongs to this kernel: the Q that feeds the graph
    # input and the DQ behind the graph output stand in for the neighbours' and are "edge_"
    s, z = g.const(np.float32(0.05)), g.const(np.uint8(128))
    q = g.node("QuantizeLinear", [x, s, z], name=g.name("edge_q" if edge_first else "q"))
    return g.node("DequantizeLinear", [q, s, z], name=g.name("dq" if edge_first else "edge_dq"))


def _to_qdq(m: onnx.ModelProto, transposed_weight: bool = False, quantize_weight: bool = True,
            asym_weight: bool = False) -> onnx.ModelProto:
    """Static QDQ int8: Q->DQ on every float input and output, int8 weights behind a DQ. ``asym_weight``:
    the weight per tensor with a non-zero zero point (its range mapped onto [-128, 127]), as onnxruntime's
    WeightBiasQuantization quantizes a float weight it finds between a DQ and a Q."""
    g = _G(tag="_q")
    g.domains = {o.domain: o.version for o in m.opset_import}
    g.inputs = list(m.graph.input)
    g.outputs = list(m.graph.output)
    ren = {}
    for vi in m.graph.input:
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            ren[vi.name] = _qdq(g, vi.name, True)
    w_scale, w_axis = np.float32(1.0), None
    x_scale = np.float32(0.05)  # the scale _qdq gives every activation
    for t in m.graph.initializer:
        if t.name == "W" and t.data_type == TensorProto.FLOAT and quantize_weight:
            w = numpy_helper.to_array(t)
            w_zero = None
            if asym_weight:  # per tensor, asymmetric: zero point = round(-128 - min / scale)
                lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
                w_scale = np.float32((hi - lo) / 255.0 + 1e-8)
                zp = int(np.clip(np.round(-128.0 - lo / float(w_scale)), -128, 127))
                if zp == 0:  # a weight centred exactly on zero: the kernel's zero-point path needs zp != 0
                    zp = -1
                wq = np.clip(np.round(w / w_scale) + zp, -128, 127).astype(np.int8)
                w_zero = np.int8(zp)
            elif w.ndim == 4 and not transposed_weight:  # Conv [O, I, kh, kw]: per output channel, as quantizers do
                w_axis = 0
                w_scale = (np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127.0 + 1e-8).astype(np.float32)
                wq = np.clip(np.round(w / w_scale.reshape([-1, 1, 1, 1])), -127, 127).astype(np.int8)
            else:  # MatMul/Gemm B, ConvTranspose: per tensor
                w_scale = np.float32(np.abs(w).max() / 127.0 + 1e-8)
                wq = np.clip(np.round(w / w_scale), -127, 127).astype(np.int8)
            g.inits.append(numpy_helper.from_array(wq, "Wq"))
            attrs = {} if w_axis is None else {"axis": w_axis}
            zero = w_zero if w_zero is not None else np.zeros(np.shape(w_scale), np.int8)
            g.nodes.append(helper.make_node("DequantizeLinear", ["Wq", g.const(w_scale), g.const(zero)],
                                            ["W"], name="w_dq", **attrs))
        elif t.name == "B" and t.data_type == TensorProto.FLOAT:
            # the runtime fuses a quantized bias only when its scale is input scale x weight scale
            arr = numpy_helper.to_array(t)
            b_scale = (x_scale * w_scale).astype(np.float32)
            per = b_scale.reshape(-1) if np.ndim(b_scale) else b_scale
            bq = np.round(arr.reshape(-1) / per).astype(np.int32).reshape(arr.shape)
            g.inits.append(numpy_helper.from_array(bq, "Bq"))
            attrs = {"axis": 0} if np.ndim(b_scale) and arr.ndim == 1 else {}
            if np.ndim(b_scale) and arr.ndim != 1:
                b_scale, attrs = np.float32(np.max(b_scale)), {}
            g.nodes.append(helper.make_node("DequantizeLinear", ["Bq", g.const(b_scale),
                                                                 g.const(np.zeros(np.shape(b_scale), np.int32))],
                                            ["B"], name="b_dq", **attrs))
        else:
            g.inits.append(t)
    for n in m.graph.node:
        n2 = onnx.NodeProto()
        n2.CopyFrom(n)
        for i, name in enumerate(n2.input):
            if name in ren:
                n2.input[i] = ren[name]
        g.nodes.append(n2)
    outs = []
    for vo in m.graph.output:
        if vo.type.tensor_type.elem_type == TensorProto.FLOAT:
            y = _qdq(g, vo.name, False)
            outs.append(helper.make_tensor_value_info(y, TensorProto.FLOAT, None))
        else:
            outs.append(vo)
    g.outputs = outs
    out = helper.make_model(helper.make_graph(g.nodes, "kernel", g.inputs, g.outputs, g.inits),
                            opset_imports=[helper.make_opsetid(d, v) for d, v in g.domains.items()])
    out.ir_version = 8
    return out


def _dynamic_int8(cfg: Config) -> onnx.ModelProto:
    """Dynamic int8 as onnxruntime.quantization writes it: DynamicQuantizeLinear + *Integer + rescale."""
    p = cfg.params
    if cfg.kind == "LSTM":
        return _dynamic_lstm(p)
    if cfg.kind == "Attention":
        return _qattention(p)
    g = _G()
    if cfg.kind == "MatMul":
        if not p["const_b"] or p["trans_b"]:
            raise NotBuildable("dynamic int8 MatMul needs a constant, untransposed B")
        x = g.inp(p["a"], name="x")
        xq, xs, xz = g.node("DynamicQuantizeLinear", [x], n_out=3, name="dql")
        wq = g.const(np.resize(g.rng.integers(-127, 127, 4099), int(np.prod(p["b"]))).reshape(p["b"]).astype(np.int8),
                     "Wq")
        y = g.node("MatMulInteger", [xq, wq, xz, g.const(np.int8(0))], name="mmi")
        y = g.node("Cast", [y], to=TensorProto.FLOAT)
        y = g.node("Mul", [y, g.node("Mul", [xs, g.const(np.float32(0.01))])])
        if p["bias"]:
            y = g.node("Add", [y, g.const(np.zeros(p["b"][-1], np.float32))])
    elif cfg.kind == "Conv":
        x = g.inp(p["x"], name="x")
        xq, xs, xz = g.node("DynamicQuantizeLinear", [x], n_out=3, name="dql")
        cin, grp, cout = p["x"][1], p["group"], p["cout"]
        shape = [cout, cin // grp] + list(p["kernel"])
        wq = g.const(np.resize(g.rng.integers(-127, 127, 4099), int(np.prod(shape))).reshape(shape).astype(np.int8),
                     "Wq")
        y = g.node("ConvInteger", [xq, wq, xz, g.const(np.int8(0))], kernel_shape=p["kernel"], strides=p["strides"],
                   pads=p["pads"], dilations=p["dilations"], group=grp)
        y = g.node("Cast", [y], to=TensorProto.FLOAT)
        y = g.node("Mul", [y, g.node("Mul", [xs, g.const(np.float32(0.01))])])
        y = g.node("Add", [y, g.const(np.zeros([cout, 1, 1], np.float32))])
        if p.get("act", "none") != "none":
            y = _act(g, p["act"], y)
    else:
        raise NotBuildable(f"dynamic int8 applies to Conv, MatMul, LSTM and Attention, not {cfg.kind}")
    g.out(y)
    return g.model()


def _sparsify(m: onnx.ModelProto, sparsity: str, kind: str, rng) -> None:
    """Zero the main weight ('W' or 'Wq'): unstructured fraction, or 2:4 along the reduction axis."""
    for i, t in enumerate(m.graph.initializer):
        if t.name not in ("W", "Wq"):
            continue
        w = numpy_helper.to_array(t).copy()
        if sparsity == "2:4":
            # reduction axis: Conv [O, I, kh, kw] -> I (then kh, kw); MatMul B [K, N] -> K
            v = np.moveaxis(w, -2, -1) if kind == "MatMul" else w
            flat = v.reshape(-1, 4) if v.size % 4 == 0 else None
            if flat is None:
                raise NotBuildable("2:4 sparsity needs a reduction size divisible by 4")
            order = np.argsort(np.abs(flat), axis=1)[:, :2]
            np.put_along_axis(flat, order, 0, axis=1)
            v = flat.reshape(v.shape)
            w = np.moveaxis(v, -1, -2) if kind == "MatMul" else v
        else:
            frac = float(sparsity) / 100.0
            mask = rng.random(w.shape) < frac
            w[mask] = 0
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(w.astype(w.dtype), t.name))


def _nhwc_int8_pool(cfg: Config) -> onnx.ModelProto:
    """NhwcMaxPool on a uint8 channels-last tensor: the kernel onnxruntime's NhwcTransformer makes of an
    int8 MaxPool after an NHWC int8 conv (``x`` in the config is the NCHW shape)."""
    p = cfg.params
    if cfg.precision != "int8" or p["op"] != "MaxPool":
        raise NotBuildable("the NHWC pool layout is the int8 MaxPool's (NhwcMaxPool)")
    n, c, h, w = p["x"]
    g = _G()
    g.domains["com.microsoft"] = 1
    x = g.inp([n, h, w, c], TensorProto.UINT8, name="x")
    y = g.node("NhwcMaxPool", [x], domain="com.microsoft", kernel_shape=p["kernel"], strides=p["strides"],
               pads=p["pads"], ceil_mode=int(p.get("ceil", 0)))
    g.out(y, TensorProto.UINT8)
    return g.model()


def build(cfg: Config, seed: int = 0) -> onnx.ModelProto:
    """The ONNX model that runs ``cfg``'s kernel. Raises NotBuildable when it cannot be expressed."""
    kind = get_kind(cfg.kind)
    if cfg.kind not in _BUILDERS:
        raise NotBuildable(f"kind {cfg.kind} is priced by declaration, not measured")
    if cfg.precision not in kind.precisions:
        raise NotBuildable(f"{cfg.kind} has no {cfg.precision} variant")
    if cfg.sparsity != "0" and not kind.has_weights:
        raise NotBuildable(f"{cfg.kind} has no weights to sparsify")
    if cfg.params.get("wzp") and cfg.precision != "int8":
        raise NotBuildable("wzp (a weight zero point) is a static int8 variant; precision int8 only")
    if cfg.precision == "int8_dynamic":
        m = _dynamic_int8(cfg)
    elif cfg.kind == "Pool" and cfg.params.get("layout") == "nhwc":
        m = _nhwc_int8_pool(cfg)
    else:
        g = _G(seed)
        y = _BUILDERS[cfg.kind](g, cfg.params)
        if y is not None:
            g.out(y)
        m = g.model()
        if cfg.precision == "fp16":
            m = _to_fp16(m)
        elif cfg.precision == "int8" and cfg.kind == "EmbedLayerNorm":
            m = _qembed_ln(cfg.params)
        elif cfg.precision == "int8" and cfg.kind != "Quant":
            m = _to_qdq(m, transposed_weight=cfg.kind == "ConvTranspose",
                        quantize_weight=cfg.kind in ("Conv", "ConvTranspose", "MatMul"),
                        asym_weight=bool(cfg.params.get("wzp")))
    if cfg.sparsity != "0":
        _sparsify(m, cfg.sparsity, cfg.kind, np.random.default_rng(seed))
    return m


def feeds(model: onnx.ModelProto, seed: int = 0) -> dict:
    """Input arrays for every graph input of a built model: random, except boolean inputs, which are
    all True. In networks a boolean tensor is a mask (attention, padding), long runs of one value;
    a random one costs a select like Where 3x more (branch mispredictions: 850 us against 260-270 us
    for all-True, causal or padded masks on a [1, 12, 128, 128] Where here)."""
    rng = np.random.default_rng(seed)
    out = {}
    for vi in model.graph.input:
        tt = vi.type.tensor_type
        shape = [d.dim_value for d in tt.shape.dim]
        dt = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if dt == np.bool_:
            out[vi.name] = np.ones(shape, np.bool_)
        elif np.issubdtype(dt, np.integer) and vi.name == "mask":  # attention masks: every position attended
            out[vi.name] = np.ones(shape, dt)
        elif np.issubdtype(dt, np.integer):
            hi = 2
            if vi.name == "idx":
                hi = max(1, _gather_rows(model))
            out[vi.name] = rng.integers(0, hi, size=shape).astype(dt)
        elif dt == np.float32:  # drawn in float32 directly: a float64 draw and a copy took 13.6 ms a config, 8 here
            out[vi.name] = rng.standard_normal(shape, dtype=np.float32)
        else:
            out[vi.name] = rng.standard_normal(shape).astype(dt)
    return out


def _gather_rows(model) -> int:
    for n in model.graph.node:
        if n.op_type == "Gather":
            axis = next((a.i for a in n.attribute if a.name == "axis"), 0)
            for t in model.graph.initializer:
                if t.name == n.input[0]:
                    return int(t.dims[axis])
    return 2
