"""Op records + a target's fusion rules -> the kernels the runtime will execute.

:func:`fuse` mimics what a runtime's graph optimizer does to a model before running it, so that
the estimator can sum one table lookup per *executed kernel*. It is pure (no onnxruntime): a
rewrite of a small work graph in the order onnxruntime applies its transformers:

* level 1: Identity/Dropout elimination; HardSwish inlined as HardSigmoid + Mul; transpose
  optimizer (simplified: Transpose->Split pushed behind the Split, Transpose->Squeeze->Transpose and
  Transpose->Transpose merged, T(p) -> elementwise ops -> T(p^-1) cancelled); Conv +
  BatchNormalization / per-channel Mul / per-channel Add folding; constant-zero Pad -> Conv/Pool;
  MatMul + bias Add -> Gemm (N-D A via Reshape -> Gemm -> Reshape); Erf-GELU -> Gelu; decomposed
  LayerNorm -> LayerNormalization;
* level 2: QDQ node units -> int8 kernels (standalone Q/DQ -> Quant, one DQ per consumer), Gemm +
  activation, dynamic quantization (DynamicQuantizeLinear + MatMulInteger/ConvInteger + Cast + Mul
  [+ Add] -> one int8_dynamic kernel), Conv + activation, RMSNorm -> SimplifiedLayerNormalization,
  Transpose(last two dims) + MatMul -> FusedMatMul, bias Add + Gelu -> BiasGelu, Add + LayerNorm ->
  SkipLayerNormalization, tanh-GELU -> FastGelu, x*Sigmoid(a*x) -> QuickGelu, MatMul + scalar
  Mul/Div -> FusedMatMul(alpha);
* level 3: the x86 NCHWc layout pass (blocked convs, pools, BN / per-channel Mul as depthwise 1x1
  convs, Add/Sum/Mul/Concat/Resize/activations inside the blocked region, residual Add/Sum [+ act]
  and activations folded into single-use convs, ReorderInput / ReorderOutput where blocked regions
  start and end, channels-last reorders replacing NHWC<->NCHW Transposes); Conv(+bias) + residual
  Add [+ act] for the convs that stay NCHW; NHWC Transposes around int8 conv/pool regions.

Each rule is a flag of :class:`FusionRules`; the per-target rule sets are
:func:`ORT_CPU_X86_RULES`, :data:`ORT_CPU_ARM64_RULES` and :data:`GENERIC_GPU_RULES`. The x86 rules
were checked against onnxruntime 1.31's optimized graphs (ORT_ENABLE_ALL, AVX2) on hand-built
patterns, the onnx "light" model zoo and profilers/zoo: same kernels, same reorders.
:func:`runtime_kernel_summary` derives comparable counts from onnxruntime's own optimized graph
(the conformance check); :func:`kernel_summary` derives the same counts from our kernels.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field, replace


from . import ops
from .graph import CONTROL_FLOW, Graph, OpRecord, weight_sparsity, _value_of

__all__ = ["Kernel", "Uncovered", "FusionRules", "ORT_CPU_X86_RULES", "ORT_CPU_ARM64_RULES",
           "GENERIC_GPU_RULES", "fuse", "kernel_summary", "runtime_kernel_summary", "compare_summaries"]


# --------------------------------------------------------------------------------------------
# public records


@dataclass(frozen=True)
class Kernel:
    """One executed kernel: an op-kind config plus the original nodes it covers.

    Kernels the runtime inserts (NCHWc reorders, NHWC transposes) have ``nodes=()``.
    """

    name: str
    kind: str
    params: dict = field(hash=False, compare=False)
    precision: str = "fp32"
    sparsity: str = "0"
    nodes: tuple = ()
    op_types: tuple = ()

    @property
    def config(self) -> ops.Config:
        return ops.Config(self.kind, ops.canonical_params(self.kind, self.params), self.precision, self.sparsity)

    @property
    def key(self) -> str:
        return self.config.key


@dataclass(frozen=True)
class Uncovered:
    """A node no kernel prices, and why."""

    node: str
    op_type: str
    reason: str


_GEMM_ACTS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "HardSigmoid", "Softplus", "Selu", "Softsign",
              "ThresholdedRelu")
_CONV_ADD_ACTS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid")


@dataclass(frozen=True)
class FusionRules:
    """What the runtime of one target fuses. Tuples of activations double as on/off flags."""

    name: str = "custom"
    #: Conv + BatchNormalization (and Conv + per-channel constant Mul / Add) fold into the conv
    fold_bn: bool = True
    #: activations a Conv absorbs (ConvActivationFusion); () disables
    conv_act: tuple = ops.FUSABLE_ACTS
    #: constant-zero Pad before Conv / MaxPool folds into the op's pads
    pad_fusion: bool = True
    #: x86 NCHWc blocked layout (ORT_ENABLE_ALL on x86-64)
    nchwc: bool = False
    #: channels per NCHWc block: 8 with AVX2, 16 with AVX-512
    nchwc_block: int = 8
    #: a group=1 conv with cin >= block, and a depthwise conv, need channels % nchwc_align == 0
    nchwc_align: int = 4
    #: residual Add/Sum [+ Relu] folded into a NCHWc conv
    nchwc_sum: bool = True
    #: Conv(+bias) + residual Add [+ activation] -> FusedConv with a Z input, for convs that are not
    #: NCHWc (ConvAddActivationFusion); on GPUs the TensorRT-style conv+residual fusion
    conv_add: bool = False
    conv_add_needs_bias: bool = True
    conv_add_acts: tuple = _CONV_ADD_ACTS
    #: MatMul + bias Add -> Gemm (3-D A flattened to 2-D)
    matmul_add: bool = True
    #: MatMul + scalar Mul/Div on an input or the output -> FusedMatMul(alpha)
    matmul_scale: bool = True
    #: Transpose of the last two dims + MatMul -> FusedMatMul(transA/transB)
    matmul_trans: bool = True
    #: activations a 2-D Gemm absorbs (FusedGemm); () disables
    gemm_act: tuple = _GEMM_ACTS
    #: activations a (3-D) MatMul + bias absorbs as well (GPU epilogues); () disables
    matmul_act: tuple = ()
    gelu: bool = True
    bias_gelu: bool = True
    fast_gelu: bool = True
    quick_gelu: bool = True
    layernorm: bool = True
    simplified_layernorm: bool = True
    skip_layernorm: bool = True
    #: DQ -> op -> Q node units -> int8 kernels; standalone Q/DQ -> Quant kernels
    qdq: bool = True
    #: int8 convs / pools run NHWC: Transpose kernels where int8 regions start and end
    qdq_nhwc: bool = False
    #: DynamicQuantizeLinear + MatMulInteger/ConvInteger (+ Cast, Mul, Add) -> int8_dynamic kernel
    dynamic_quant: bool = True
    #: Transpose -> Transpose merged into one (TransposeOptimizer)
    transpose_merge: bool = True
    #: HardSwish runs as HardSigmoid + Mul (ORT inlines its function body), except where NCHWc fuses
    #: it into the conv; False: one HardSwish kernel
    hardswish_inline: bool = True

    #: fp16 graphs run as fp32 kernels with Casts at the edges (ORT >= 1.31 on x86: no fp16 kernels, the
    #: inserted Cast pairs between ops cancel); False: fp16 kernels
    fp16_as_fp32: bool = False

    def __post_init__(self):
        # activation lists also accept True (the default list), False/None (none) or one name
        defaults = {"conv_act": ops.FUSABLE_ACTS, "gemm_act": _GEMM_ACTS, "matmul_act": ("Relu", "Gelu"),
                    "conv_add_acts": _CONV_ADD_ACTS}
        for f, d in defaults.items():
            v = getattr(self, f)
            if v is True:
                v = d
            elif not v:
                v = ()
            elif isinstance(v, str):
                v = (v,)
            object.__setattr__(self, f, tuple(v))


def ORT_CPU_X86_RULES(block: int = 8) -> FusionRules:
    """onnxruntime CPU EP on x86-64 at ORT_ENABLE_ALL. ``block``: 8 (AVX2) or 16 (AVX-512)."""
    return FusionRules(name=f"ort-cpu-x86-nchwc{block}", nchwc=True, nchwc_block=int(block), conv_add=True,
                       qdq_nhwc=True, fp16_as_fp32=True)


#: onnxruntime CPU EP on arm64 (Neoverse-N1 class): no NCHWc; Conv(+bias)+Add(+act) -> FusedConv
ORT_CPU_ARM64_RULES = FusionRules(name="ort-cpu-arm64", nchwc=False, conv_add=True, qdq_nhwc=True)

#: a generic GPU runtime (TensorRT-like): conv+BN+act+residual, GEMM epilogues, LN, GELU, no reorders
GENERIC_GPU_RULES = FusionRules(
    name="generic-gpu", nchwc=False, conv_add=True, conv_add_needs_bias=False,
    conv_act=ops.CONV_ACTS,
    conv_add_acts=("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish"),
    gemm_act=("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "HardSigmoid", "Softplus", "Gelu", "Clip"),
    matmul_act=("Relu", "Gelu", "FastGelu", "QuickGelu", "Sigmoid", "Tanh"), qdq_nhwc=False,
    hardswish_inline=False)


# --------------------------------------------------------------------------------------------
# the work graph

_FLOAT = ("float32", "float16", "bfloat16", "float64")
_INT8 = ("int8", "uint8")
_ELIMINATE = ("Identity", "Dropout")
_MATMULS = ("MatMul", "Gemm", "FusedMatMul", "FusedGemm")
_CONVS = ("Conv", "FusedConv")
_POOLS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool")
_NCHWC_ACTS = ("Relu", "Sigmoid", "Tanh", "HardSigmoid")
_NCHWC_UNARY = ("Gelu", "QuickGelu")

#: op types whose QDQ node unit runs as an int8 kernel of the op's kind (data input positions)
_QDQ_OPS = {
    "Conv": (0, 1), "MatMul": (0, 1), "Gemm": (0, 1), "Add": (0, 1), "Mul": (0, 1), "Concat": None,
    "Softmax": (0,), "Sigmoid": (0,), "LeakyRelu": (0,), "AveragePool": (0,), "GlobalAveragePool": (0,),
    "MaxPool": (0,), "Resize": (0,), "Transpose": (0,), "Reshape": (0,), "Squeeze": (0,), "Unsqueeze": (0,),
    "Flatten": (0,), "Gather": (0,), "Slice": (0,), "Split": (0,), "Expand": (0,), "Tile": (0,),
    "DepthToSpace": (0,), "SpaceToDepth": (0,), "Pad": (0,), "ConvTranspose": (0, 1), "Where": (1, 2),
    "InstanceNormalization": (0,), "ArgMax": (0,), "GlobalMaxPool": (0,), "HardSwish": (0,),
}
#: QOperator-format ops -> (op priced as, input positions of x / w / bias)
_QOPS = {"QLinearConv": ("Conv", 0, 3, 8), "QLinearMatMul": ("MatMul", 0, 3, None),
         "QGemm": ("Gemm", 0, 3, 6), "QLinearAdd": ("Add", 0, 3, None), "QLinearMul": ("Mul", 0, 3, None),
         "QLinearSigmoid": ("Sigmoid", 0, None, None), "QLinearLeakyRelu": ("LeakyRelu", 0, None, None),
         "QLinearAveragePool": ("AveragePool", 0, None, None),
         "QLinearGlobalAveragePool": ("GlobalAveragePool", 0, None, None),
         "QLinearSoftmax": ("Softmax", 0, None, None), "QLinearConcat": ("Concat", None, None, None),
         "ConvInteger": ("Conv", 0, 1, None), "MatMulInteger": ("MatMul", 0, 1, None),
         "MatMulIntegerToFloat": ("MatMul", 0, 1, 6), "DynamicQuantizeMatMul": ("MatMul", 0, 1, 4)}

_KIND_OVERRIDE = {"Gelu": "Activation", "BiasGelu": "Activation", "FastGelu": "Activation",
                  "QuickGelu": "Activation", "LayerNormalization": "LayerNorm",
                  "SkipLayerNormalization": "LayerNorm", "SimplifiedLayerNormalization": "LayerNorm",
                  "SkipSimplifiedLayerNormalization": "LayerNorm", "QLinearAdd": "Elementwise",
                  "QLinearMul": "Elementwise", "QLinearSigmoid": "Activation", "QLinearLeakyRelu": "Activation",
                  "QLinearAveragePool": "Pool", "QLinearGlobalAveragePool": "Pool", "QLinearConcat": "Concat",
                  "QLinearSoftmax": "Softmax", "QGemm": "MatMul", "MatMulIntegerToFloat": "MatMul",
                  "NhwcMaxPool": "Pool"}


@dataclass
class _W:
    """A node of the work graph: one future kernel."""

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

    def attr(self, k, d=None):
        return self.rec.attrs.get(k, d)


class _Unc(Exception):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _norm_axis(a, rank):
    a = int(a)
    return a + rank if a < 0 else a


def _same_pads(auto_pad, in_sp, k, s, d):
    n = len(in_sp)
    pads = [0] * (2 * n)
    for i in range(n):
        out = -(-in_sp[i] // s[i])
        total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - in_sp[i])
        small, big = total // 2, total - total // 2
        if auto_pad == "SAME_LOWER":
            pads[i], pads[i + n] = big, small
        else:
            pads[i], pads[i + n] = small, big
    return pads


def _explicit_pads(attrs, in_sp, k, s, d):
    ap = attrs.get("auto_pad", "NOTSET") or "NOTSET"
    n = len(in_sp)
    if ap in ("SAME_UPPER", "SAME_LOWER"):
        return _same_pads(ap, in_sp, k, s, d)
    if ap == "VALID":
        return [0] * (2 * n)
    p = attrs.get("pads")
    return [int(x) for x in p] if p else [0] * (2 * n)


class _Fuser:
    def __init__(self, graph: Graph, rules: FusionRules):
        self.g = graph
        self.r = rules
        self.unc: list[Uncovered] = []
        self.nodes: list[_W] = []
        self.extra: list[tuple] = []  # (pos, Kernel) inserted by the runtime (reorders, transposes)
        self.attach: dict = {}  # tensor -> [records eliminated on it] (Identity/Dropout)
        self.graph_outputs = set(graph.output_names)
        self.alias: dict = {}
        self.synth: dict = {}  # shapes of tensors the rewrites create
        for r in graph.ops:
            if r.foldable:
                continue
            if r.op_type in CONTROL_FLOW:
                self.unc.append(Uncovered(r.name, r.op_type, "control flow (If/Loop/Scan) cannot be priced statically"))
                continue
            self.nodes.append(_W(float(r.index), r.name, r.op_type, r.domain, r,
                                 [t.name for t in r.inputs], [t.name for t in r.outputs], [r]))
        self._index()

    # ---- tensor helpers ------------------------------------------------------------------
    def shape(self, name):
        if name in self.synth:
            return list(self.synth[name])
        t = self.g.tensors.get(self.alias.get(name, name))
        return list(t.shape) if t is not None and t.shape is not None else None

    def dtype(self, name):
        if name in self.synth:
            name = name.rsplit("/untransposed", 1)[0]
        t = self.g.tensors.get(self.alias.get(name, name))
        return t.dtype if t is not None else "unknown"

    def f32(self, name) -> bool:
        """float32, or float16 where the runtime computes fp16 graphs in fp32"""
        dt = self.dtype(name)
        return dt == "float32" or (self.r.fp16_as_fp32 and dt == "float16")

    def const(self, name) -> bool:
        if not name:
            return True
        t = self.g.tensors.get(name)
        return bool(t is not None and t.const)

    def value(self, name):
        if not name or not self.const(name):
            return None
        return _value_of(self.g, name)

    def scalar(self, name):
        v = self.value(name)
        if v is None or v.size != 1 or v.dtype == object:
            return None
        return float(v.reshape(-1)[0])

    # ---- graph helpers -------------------------------------------------------------------
    def _index(self):
        self.live = sorted((w for w in self.nodes if not w.dead), key=lambda w: w.pos)
        self.prod: dict = {}
        self.cons: dict = {}
        for w in self.live:
            for o in w.outputs:
                if o:
                    self.prod[o] = w
            for i, t in enumerate(w.inputs):
                if t:
                    self.cons.setdefault(t, []).append((w, i))

    def producer(self, t):
        return self.prod.get(t)

    def consumers(self, t):
        return self.cons.get(t, [])

    def only_consumer(self, t):
        """The single consumer node of tensor t (t not a graph output), else None."""
        c = self.consumers(t)
        if len(c) != 1 or t in self.graph_outputs:
            return None
        return c[0][0]

    def out_single(self, w):
        """w's single consumer when w has one used output consumed once, else None."""
        used = [o for o in w.outputs[1:] if o and (self.consumers(o) or o in self.graph_outputs)]
        if used or not w.outputs:
            return None
        return self.only_consumer(w.outputs[0])

    def absorb(self, keep: _W, gone: _W, outputs=True):
        keep.members.extend(gone.members)
        if outputs:
            keep.outputs = list(gone.outputs)
        keep.pos = max(keep.pos, gone.pos)
        gone.dead = True

    def new_node(self, name, op, domain, rec, inputs, outputs, members, info=None):
        w = _W(max([float(m.index) for m in members] or [float(rec.index)]), name, op, domain, rec, list(inputs),
               list(outputs),
               list(members), dict(info or {}))
        self.nodes.append(w)
        return w

    def is_op(self, w, *types):
        return w is not None and not w.dead and w.op in types and w.domain in ("", "ai.onnx", "com.microsoft")

    def precision_of(self, w):
        if w.info.get("precision"):
            return w.info["precision"]
        for t in list(w.inputs) + list(w.outputs):
            dt = self.dtype(t) if t else ""
            if dt in ("float16", "bfloat16"):
                return "fp32" if self.r.fp16_as_fp32 else "fp16"
            if dt == "float32":
                return "fp32"
        return "fp32"

    def other_input(self, w, t):
        ins = [x for x in w.inputs if x]
        if len(ins) != 2:
            return None
        if ins[0] == t and ins[1] != t:
            return ins[1]
        if ins[1] == t and ins[0] != t:
            return ins[0]
        return None

    # ---- level 1 -------------------------------------------------------------------------
    def eliminate(self):
        """Identity / Dropout (mask unused) vanish; uses are rewired to the input."""
        for w in list(self.live):
            if not self.is_op(w, *_ELIMINATE) or not w.inputs or not w.inputs[0]:
                continue
            if w.op == "Dropout" and len(w.outputs) > 1 and w.outputs[1] and \
                    (self.consumers(w.outputs[1]) or w.outputs[1] in self.graph_outputs):
                continue
            out, src = w.outputs[0], w.inputs[0]
            if out in self.graph_outputs:
                continue  # a graph output keeps its node (it is a copy)
            for c, i in self.consumers(out):
                c.inputs[i] = src
            w.dead = True
            self.attach.setdefault(src, []).extend(w.members)
        self._index()

    def hardswish(self):
        """x * HardSigmoid(x, alpha=1/6) -> one HardSwish node (what ORT inlines HardSwish into)."""
        for h in list(self.live):
            if h.dead or not self.is_op(h, "HardSigmoid") or h.domain != "":
                continue
            if abs(float(h.attr("alpha", 0.2)) - 1 / 6) > 1e-4 or abs(float(h.attr("beta", 0.5)) - 0.5) > 1e-6:
                continue
            m = self.out_single(h)
            if not self.is_op(m, "Mul") or self.other_input(m, h.outputs[0]) != h.inputs[0]:
                continue
            self.new_node(m.name, "HardSwish", "", m.rec, [h.inputs[0]], m.outputs, h.members + m.members,
                          {"hs_parts": (list(h.members), list(m.members))})
            h.dead = m.dead = True
            self._index()

    def merge_transposes(self):
        if not self.r.transpose_merge:
            return
        changed = True
        while changed:
            changed = False
            for w in self.live:
                if not self.is_op(w, "Transpose") or w.dead:
                    continue
                p = self.producer(w.inputs[0])
                if not self.is_op(p, "Transpose") or "perm" not in p.info and p.attr("perm") is None:
                    continue
                p1 = p.info.get("perm", p.attr("perm"))
                p2 = w.info.get("perm", w.attr("perm"))
                if p1 is None or p2 is None or len(p1) != len(p2):
                    continue
                perm = [int(p1[i]) for i in p2]
                w.inputs[0] = p.inputs[0]
                w.info["perm"] = perm
                w.members = list(w.members)
                if len(self.consumers(p.outputs[0])) == 1 and p.outputs[0] not in self.graph_outputs:
                    w.members = list(p.members) + w.members
                    p.dead = True
                changed = True
                if perm == list(range(len(perm))) and w.outputs[0] not in self.graph_outputs:
                    for c, i in self.consumers(w.outputs[0]):
                        c.inputs[i] = w.inputs[0]
                    w.dead = True
                    self.attach.setdefault(w.inputs[0], []).extend(w.members)
                self._index()
                break

    _PUSHABLE = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Relu", "Sigmoid", "Tanh", "Erf", "Sqrt", "Exp", "Log",
                 "Abs", "Neg", "Clip", "LeakyRelu", "HardSigmoid", "Cast")

    def cancel_transposes(self):
        """TransposeOptimizer, simplified: T(p) -> elementwise ops (other inputs constant or T(p) too)
        -> T(inverse p) cancels; the elementwise ops then run in the untransposed layout."""
        if not self.r.transpose_merge:
            return
        for t2 in list(self.live):
            if t2.dead or not self.is_op(t2, "Transpose") or t2.domain != "":
                continue
            q = t2.info.get("perm", t2.attr("perm"))
            if q is None:
                continue
            q = [int(v) for v in q]
            inv = [q.index(i) for i in range(len(q))]
            chain, sources, ok = [], [], True
            stack = [t2.inputs[0]]
            while stack and ok:
                t = stack.pop()
                p = self.producer(t)
                if p is None:
                    ok = False
                elif self.is_op(p, "Transpose") and [int(v) for v in p.info.get("perm", p.attr("perm") or [])] == inv:
                    sources.append((p, t))
                elif self.is_op(p, *self._PUSHABLE) and p.domain == "" and len([o for o in p.outputs if o]) == 1 \
                        and self.out_single(p) is not None and p not in chain:
                    chain.append(p)
                    rank = len(q)
                    for i in p.inputs:
                        if not i:
                            continue
                        if self.const(i):
                            s = self.shape(i)
                            if s is None or len(s) > rank:
                                ok = False
                        else:
                            stack.append(i)
                else:
                    ok = False
            if not ok or not chain or not sources:
                continue
            last = self.producer(t2.inputs[0])
            if self.out_single(last) is not t2:
                continue
            # rewire: chain reads the sources' inputs; T2's consumers read the chain's output
            for p, t in sources:
                for c in chain:
                    if t in c.inputs:
                        c.info.setdefault("untransposed", set()).add(p.inputs[0])
                    c.inputs = [p.inputs[0] if x == t else x for x in c.inputs]
            for c in chain:
                c.info["layout_perm"] = q  # shapes of this node are its recorded shapes permuted by q
            out = t2.outputs[0]
            if out in self.graph_outputs:
                continue
            for c, i in self.consumers(out):
                c.inputs[i] = last.outputs[0]
            t2.dead = True
            self.alias_shape(last.outputs[0], out)
            self.attach.setdefault(last.outputs[0], []).extend(t2.members)
            self._index()
            for p, t in sources:
                if not self.consumers(t) and t not in self.graph_outputs:
                    p.dead = True
                    self.attach.setdefault(p.inputs[0], []).extend(p.members)
            self._index()

    def push_split(self):
        """TransposeOptimizer, simplified: Transpose(p) -> Split moves behind the Split (one Transpose per
        output); a pushed Transpose -> Squeeze -> Transpose pair merges into one Transpose."""
        if not self.r.transpose_merge:
            return
        for t in list(self.live):
            if t.dead or not self.is_op(t, "Transpose") or t.domain != "":
                continue
            sp = self.out_single(t)
            perm = t.info.get("perm", t.attr("perm"))
            xs = self.shape(t.inputs[0])
            if not self.is_op(sp, "Split") or sp.domain != "" or perm is None or xs is None or sp.inputs[0] != t.outputs[0]:
                continue
            perm = [int(v) for v in perm]
            n = len(perm)
            axis = _norm_axis(sp.attr("axis", 0), n)
            sp.info["split_src"] = (t.inputs[0], perm[axis])
            sp.inputs[0] = t.inputs[0]
            first = True
            for i, o in enumerate(list(sp.outputs)):
                if not o:
                    continue
                os_ = self.shape(o)
                if os_ is None:
                    continue
                inv = [perm.index(k) for k in range(n)]
                u = f"{o}/untransposed"
                self.synth[u] = [os_[inv[k]] for k in range(n)]
                sp.outputs[i] = u
                nt = self.new_node(t.name if first else f"{t.name}/{i}", "Transpose", "", t.rec, [u], [o],
                                   t.members if first else [], {"perm": perm})
                nt.pos = sp.pos + 0.01 * (i + 1)
                first = False
            t.dead = True
            self._index()
        # pushed Transpose -> Squeeze -> Transpose: one Transpose behind the Squeeze
        for ti in list(self.live):
            if ti.dead or not self.is_op(ti, "Transpose") or "perm" not in ti.info:
                continue
            sq = self.out_single(ti)
            if not self.is_op(sq, "Squeeze") or sq.inputs[0] != ti.outputs[0]:
                continue
            t3 = self.out_single(sq)
            if not self.is_op(t3, "Transpose") or t3.inputs[0] != sq.outputs[0]:
                continue
            axes = sq.attr("axes")
            if axes is None and len(sq.inputs) > 1 and sq.inputs[1]:
                v = self.value(sq.inputs[1])
                axes = None if v is None else [int(a) for a in v.reshape(-1)]
            p = ti.info["perm"]
            p3 = t3.info.get("perm", t3.attr("perm"))
            us = self.shape(ti.inputs[0])
            if axes is None or p3 is None or us is None:
                continue
            n = len(p)
            axes = [_norm_axis(a, n) for a in axes]
            keep = [j for j in range(n) if j not in axes]
            rem = sorted(set(range(n)) - {p[j] for j in axes})
            final = [rem.index(p[keep[int(m)]]) for m in p3]
            squeezed = f"{sq.outputs[0]}/untransposed"
            self.synth[squeezed] = [us[r] for r in rem]
            sq.inputs[0] = ti.inputs[0]
            sq.outputs = [squeezed]
            t3.inputs[0] = squeezed
            t3.info["perm"] = final
            t3.members = list(ti.members) + t3.members
            ti.dead = True
            self._index()

    def alias_shape(self, name, like):
        """``name`` now holds the layout of ``like`` (its shape is looked up there)."""
        self.alias[name] = like

    def _conv_ok_for_fold(self, w):
        return (self.is_op(w, "Conv") and "act" not in w.info and "sum" not in w.info and len(w.inputs) > 1
                and self.const(w.inputs[1]) and self.dtype(w.inputs[1]) in _FLOAT
                and self.shape(w.inputs[1]) is not None)

    def _per_channel(self, name, cout, rank):
        s = self.shape(name)
        if s is None or not self.const(name):
            return False
        if len(s) == 0 or all(d == 1 for d in s):
            return True
        if len(s) > rank:
            return False
        # aligned right on [N, C, spatial...]: every dim 1 but the channel one
        full = [1] * (rank - len(s)) + list(s)
        return full[1] == cout and all(d == 1 for i, d in enumerate(full) if i != 1)

    def fold_conv(self):
        if not self.r.fold_bn and not self.r.pad_fusion:
            return
        changed = True
        while changed:
            changed = False
            for w in self.live:
                if w.dead:
                    continue
                if self.r.pad_fusion and self.is_op(w, "Pad"):
                    changed |= self._pad_fusion(w)
                    continue
                if not self.r.fold_bn or not self._conv_ok_for_fold(w):
                    continue
                c = self.out_single(w)
                if c is None:
                    continue
                cout = self.shape(w.inputs[1])[0]
                rank = len(self.shape(w.inputs[1]))
                if self.is_op(c, "BatchNormalization") and len([o for o in c.outputs if o]) == 1 and \
                        all(self.const(t) for t in c.inputs[1:5]):
                    self.absorb(w, c)
                    w.info.setdefault("folded", []).append("BatchNormalization")
                    w.info["bias_folded"] = True  # ConvBNFusion always gives the conv a bias
                    changed = True
                elif self.is_op(c, "Mul", "Add") and c.domain == "":
                    other = self.other_input(c, w.outputs[0])
                    if other is not None and self._per_channel(other, cout, rank):
                        if c.op == "Add":
                            w.info["bias_folded"] = True
                        self.absorb(w, c)
                        changed = True
            if changed:
                self._index()

    def _pad_fusion(self, p):
        mode = p.attr("mode", "constant") or "constant"
        if mode != "constant" or not p.inputs or not p.inputs[0]:
            return False
        c = self.out_single(p)
        if c is None or not (self.is_op(c, "Conv", "MaxPool") or
                             (self.is_op(c, "AveragePool") and c.attr("count_include_pad", 0))):
            return False
        if c.inputs[0] != p.outputs[0] or (c.attr("auto_pad", "NOTSET") or "NOTSET") != "NOTSET":
            return False
        x = self.shape(p.inputs[0])
        if x is None:
            return False
        if len(p.inputs) > 1 and p.inputs[1]:
            pv = self.value(p.inputs[1])
            if pv is None:
                return False
            pads = [int(v) for v in pv.reshape(-1)]
        else:
            pads = [int(v) for v in (p.attr("pads") or [])]
        if len(p.inputs) > 2 and p.inputs[2]:
            cv = self.scalar(p.inputs[2])
            if cv is None or cv != 0.0:
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
        self._index()
        return True

    def matmul_add(self):
        if not self.r.matmul_add:
            return
        for w in list(self.live):
            if not self.is_op(w, "MatMul") or w.domain != "" or w.info.get("qdq") or len(w.inputs) < 2:
                continue
            c = self.out_single(w)
            if not self.is_op(c, "Add") or c.domain != "":
                continue
            a, b = self.shape(w.inputs[0]), self.shape(w.inputs[1])
            dt = self.dtype(w.inputs[0])
            bias = self.other_input(c, w.outputs[0])
            if a is None or b is None or len(b) != 2 or dt not in _FLOAT or bias is None:
                continue
            if self.dtype(bias) != dt:
                continue
            bs = self.shape(bias)
            n = b[1]
            if bs is None:
                continue
            ok = (len(bs) == 1 and bs[0] == n) or (len(a) == 2 and len(bs) == 2 and (
                (bs[0] == 1 and bs[1] == n) or (bs[0] == a[0] and bs[1] in (1, n))))
            if not ok:
                continue
            w.op = "Gemm"
            w.info["bias"] = bias
            w.inputs = list(w.inputs[:2]) + [bias]
            w.info["gemm_3d"] = len(a) != 2
            self.absorb(w, c)
        self._index()

    # -- GELU (erf) ------------------------------------------------------------------------
    def gelu(self):
        if not self.r.gelu:
            return
        for e in list(self.live):
            if not self.is_op(e, "Erf") or e.dead:
                continue
            d = self.producer(e.inputs[0])
            if not self.is_op(d, "Div", "Mul") or self.only_consumer(d.outputs[0]) is not e:
                continue
            k = self.scalar(d.inputs[1])
            if k is None:
                continue
            if d.op != "Div" or abs(k - math.sqrt(2)) > 1e-3:  # ORT does not take Mul(x, 1/sqrt2)
                continue
            x = d.inputs[0]
            a = self.out_single(e)
            if not self.is_op(a, "Add") or self.scalar(self.other_input(a, e.outputs[0]) or "") != 1.0:
                continue
            m1 = self.out_single(a)
            if not self.is_op(m1, "Mul"):
                continue
            other = self.other_input(m1, a.outputs[0])
            members = [d, e, a, m1]
            out_node = None
            m2 = self.out_single(m1)
            if other == x:
                # F1: Mul(Mul(x, 1 + erf), 0.5)
                if self.is_op(m2, "Mul") and self.scalar(self.other_input(m2, m1.outputs[0]) or "") == 0.5:
                    members.append(m2)
                    out_node = m2
            elif other is not None and self.scalar(other) is None:
                # F2: Mul(Mul(x, 0.5), 1 + erf)
                h = self.producer(other)
                if self.is_op(h, "Mul") and x in h.inputs and self.scalar(self.other_input(h, x) or "") == 0.5 \
                        and self.only_consumer(h.outputs[0]) is m1:
                    members.append(h)
                    out_node = m1
            if out_node is None:
                continue
            recs = [r for m in sorted(members, key=lambda m: m.pos) for r in m.members]
            self.new_node(e.name, "Gelu", "com.microsoft", e.rec, [x], out_node.outputs, recs)
            for m in members:
                m.dead = True
            self._index()

    # -- LayerNorm ---------------------------------------------------------------------------
    def _last_axis_reduce(self, w):
        x = self.shape(w.inputs[0])
        if x is None:
            return False
        axes = w.attr("axes")
        if axes is None and len(w.inputs) > 1 and w.inputs[1]:
            v = self.value(w.inputs[1])
            axes = None if v is None else [int(a) for a in v.reshape(-1)]
        return axes is not None and len(axes) == 1 and _norm_axis(axes[0], len(x)) == len(x) - 1

    def layernorm(self):
        if not self.r.layernorm:
            return
        for r1 in list(self.live):
            if r1.dead or not self.is_op(r1, "ReduceMean") or not self._last_axis_reduce(r1):
                continue
            x = r1.inputs[0]
            subs = [c for c, _ in self.consumers(r1.outputs[0]) if self.is_op(c, "Sub")]
            if len(subs) != 1 or len(self.consumers(r1.outputs[0])) != 1:
                continue
            s = subs[0]
            if s.inputs[:2] != [x, r1.outputs[0]]:
                continue
            cs = [c for c, _ in self.consumers(s.outputs[0])]
            p = next((c for c in cs if self.is_op(c, "Pow") and self.scalar(c.inputs[1]) == 2.0), None)
            dv = next((c for c in cs if self.is_op(c, "Div")), None)
            if p is None or dv is None or len(cs) != 2:
                continue
            r2 = self.out_single(p)
            if not self.is_op(r2, "ReduceMean") or not self._last_axis_reduce(r2):
                continue
            ae = self.out_single(r2)
            if not self.is_op(ae, "Add") or self.scalar(self.other_input(ae, r2.outputs[0]) or "") is None:
                continue
            q = self.out_single(ae)
            if not self.is_op(q, "Sqrt") or self.only_consumer(q.outputs[0]) is not dv or dv.inputs[:2] != [s.outputs[0], q.outputs[0]]:
                continue
            members = [r1, s, p, r2, ae, q, dv]
            last = dv
            mu = self.out_single(dv)
            ins = [x]
            if self.is_op(mu, "Mul") and self.const(self.other_input(mu, dv.outputs[0]) or ""):
                members.append(mu)
                last = mu
                ins.append(self.other_input(mu, dv.outputs[0]))
                ad = self.out_single(mu)
                if self.is_op(ad, "Add") and self.const(self.other_input(ad, mu.outputs[0]) or ""):
                    members.append(ad)
                    last = ad
                    ins.append(self.other_input(ad, mu.outputs[0]))
            recs = [rr for m in sorted(members, key=lambda m: m.pos) for rr in m.members]
            self.new_node(r1.name, "LayerNormalization", "", r1.rec, ins, last.outputs, recs)
            for m in members:
                m.dead = True
            self._index()

    def simplified_layernorm(self):
        if not self.r.simplified_layernorm:
            return
        for p in list(self.live):
            if p.dead or not self.is_op(p, "Pow") or self.scalar(p.inputs[1]) != 2.0:
                continue
            x = p.inputs[0]
            r = self.out_single(p)
            if not self.is_op(r, "ReduceMean") or not self._last_axis_reduce(r):
                continue
            ae = self.out_single(r)
            if not self.is_op(ae, "Add") or self.scalar(self.other_input(ae, r.outputs[0]) or "") is None:
                continue
            q = self.out_single(ae)
            if not self.is_op(q, "Sqrt"):
                continue
            members = [p, r, ae, q]
            nxt = self.out_single(q)
            if self.is_op(nxt, "Div") and nxt.inputs[:2] == [x, q.outputs[0]]:
                members.append(nxt)
                last = nxt
            elif self.is_op(nxt, "Reciprocal"):
                mm = self.out_single(nxt)
                if not self.is_op(mm, "Mul") or self.other_input(mm, nxt.outputs[0]) != x:
                    continue
                members += [nxt, mm]
                last = mm
            else:
                continue
            mu = self.out_single(last)
            ins = [x]
            if self.is_op(mu, "Mul") and self.const(self.other_input(mu, last.outputs[0]) or ""):
                members.append(mu)
                ins.append(self.other_input(mu, last.outputs[0]))
                last = mu
            else:
                continue  # ORT requires the scale Mul
            recs = [rr for m in sorted(members, key=lambda m: m.pos) for rr in m.members]
            self.new_node(p.name, "SimplifiedLayerNormalization", "com.microsoft", p.rec, ins, last.outputs, recs)
            for m in members:
                m.dead = True
            self._index()

    # ---- level 2 -------------------------------------------------------------------------
    def _act_ok(self, a, allowed):
        if a is None or a.op not in allowed or a.domain not in ("", "com.microsoft"):
            return False
        if a.op == "Clip":
            for t in a.inputs[1:3]:
                # min/max must be constant; fp16 ones become runtime Casts when fp16 runs as fp32
                if t and (not self.const(t) or (self.r.fp16_as_fp32 and self.dtype(t) == "float16")):
                    return False
        return True

    def qdq(self):
        if not self.r.qdq:
            return
        for w in list(self.live):
            if w.dead or w.domain != "" or w.op not in _QDQ_OPS or w.info.get("qdq"):
                continue
            pos = _QDQ_OPS[w.op]
            idx = [i for i, t in enumerate(w.inputs) if t] if pos is None else [i for i in pos if i < len(w.inputs)]
            if not idx or any(not w.inputs[i] for i in idx):
                continue
            dqs = [self.producer(w.inputs[i]) for i in idx]
            if any(not self.is_op(d, "DequantizeLinear") for d in dqs):
                continue
            if any(self.dtype(d.inputs[0]) not in _INT8 for d in dqs):
                continue
            # output side: [Relu/Clip ->] Q
            chain = []
            cur = w
            q = self.out_single(cur)
            if q is not None and q.op in ("Relu", "Clip") and w.op not in ("Relu", "Clip"):
                chain.append(q)
                cur = q
                q = self.out_single(q)
            has_q = self.is_op(q, "QuantizeLinear")
            if not has_q:
                if w.op not in ("MatMul", "Gemm") or chain:
                    continue
            members = list(w.members)
            new_inputs = list(w.inputs)
            for i, d in zip(idx, dqs):
                new_inputs[i] = d.inputs[0]
                if len(self.consumers(d.outputs[0])) == 1 and d.outputs[0] not in self.graph_outputs:
                    members = list(d.members) + members
                    d.dead = True
                else:
                    d.info.setdefault("shared_by", []).append(w)
            # bias / extra DQs of constants
            for i, t in enumerate(w.inputs):
                if i in idx or not t:
                    continue
                d = self.producer(t)
                if self.is_op(d, "DequantizeLinear") and self.const(d.inputs[0]):
                    new_inputs[i] = d.inputs[0]
                    if len(self.consumers(d.outputs[0])) == 1 and d.outputs[0] not in self.graph_outputs:
                        members = list(d.members) + members
                        d.dead = True
                    else:
                        d.info.setdefault("shared_by", []).append(w)
            for c in chain:
                members += c.members
                c.dead = True
            w.inputs = new_inputs
            w.members = members
            w.info["qdq"] = True
            w.info["precision"] = "int8"
            w.info["qdq_acts"] = [c.op for c in chain]
            if has_q:
                members += q.members
                w.outputs = list(q.outputs)
                w.pos = max(w.pos, q.pos, *[c.pos for c in chain]) if chain else max(w.pos, q.pos)
                q.dead = True
            self._index()
        # EnsureUniqueDQForNodeUnit: a DQ feeding several consumers is duplicated, one per consumer;
        # the copies inside int8 units vanish, every other consumer keeps a DQ kernel
        for d in list(self.live):
            if not self.is_op(d, "DequantizeLinear"):
                continue
            rest = [c for c, _ in self.consumers(d.outputs[0])]
            n = len(rest) + (d.outputs[0] in self.graph_outputs)
            if d.info.get("shared_by") and n == 0:
                owner = d.info["shared_by"][0]
                owner.members = list(d.members) + owner.members
                d.dead = True
            else:
                d.info["copies"] = max(1, n)
        self._index()

    def dynamic_quant(self):
        if not self.r.dynamic_quant:
            return
        for w in list(self.live):
            if w.dead or not self.is_op(w, "MatMulInteger", "ConvInteger"):
                continue
            d = self.producer(w.inputs[0])
            cast = self.out_single(w)
            if not self.is_op(d, "DynamicQuantizeLinear") or not self.is_op(cast, "Cast"):
                continue
            mu = self.out_single(cast)
            if not self.is_op(mu, "Mul"):
                continue
            sc = self.other_input(mu, cast.outputs[0])
            members = [w, cast, mu]
            ms = self.producer(sc) if sc else None
            if self.is_op(ms, "Mul") and self.only_consumer(ms.outputs[0]) is mu:
                members.append(ms)
            last = mu
            bias = None
            if w.op == "MatMulInteger":
                ad = self.out_single(mu)
                if self.is_op(ad, "Add") and self.const(self.other_input(ad, mu.outputs[0]) or ""):
                    bias = self.other_input(ad, mu.outputs[0])
                    members.append(ad)
                    last = ad
            inside = {id(m) for m in members}
            exclusive = all(o == "" or (o not in self.graph_outputs and
                                       all(id(c) in inside for c, _ in self.consumers(o)))
                            for o in d.outputs)
            if exclusive:
                members.append(d)
            recs = [r for m in sorted(members, key=lambda m: m.pos) for r in m.members]
            op = "MatMul" if w.op == "MatMulInteger" else "Conv"
            # a DynamicQuantizeLinear shared by several MatMulIntegers stays a kernel of its own
            ins = [d.inputs[0] if exclusive else w.inputs[0], w.inputs[1]] + ([bias] if bias else [])
            nw = self.new_node(w.name, op, "", w.rec, ins, last.outputs, recs,
                               {"precision": "int8_dynamic", "dyn": True})
            if bias:
                nw.info["bias"] = bias
            for m in members:
                m.dead = True
            self._index()

    def gemm_act(self):
        acts = self.r.gemm_act
        mm_acts = self.r.matmul_act
        if not acts and not mm_acts:
            return
        for w in list(self.live):
            if w.dead or w.info.get("precision") in ("int8", "int8_dynamic") or "act" in w.info:
                continue
            if self.is_op(w, "Gemm") and not w.info.get("gemm_3d"):
                allowed = acts
            elif self.is_op(w, "Gemm", "MatMul", "FusedMatMul"):
                allowed = mm_acts
            else:
                continue
            if not allowed:
                continue
            a = self.out_single(w)
            if not self._act_ok(a, allowed) or a.inputs[0] != w.outputs[0]:
                continue
            w.info["act"] = a.op
            self.absorb(w, a)
        self._index()

    def conv_act(self):
        acts = self.r.conv_act
        if not acts:
            return
        for w in list(self.live):
            if w.dead or not self.is_op(w, "Conv") or "act" in w.info or w.info.get("precision") in ("int8", "int8_dynamic"):
                continue
            if self.dtype(w.inputs[0]) not in _FLOAT:
                continue
            a = self.out_single(w)
            if not self._act_ok(a, acts) or a.inputs[0] != w.outputs[0]:
                continue
            w.info["act"] = a.op
            w.op = "FusedConv"
            self.absorb(w, a)
        self._index()

    def _float_matmuls(self):
        """Live float MatMul/FusedMatMul nodes (the candidates of the transpose and scale fusions)."""
        for w in list(self.live):
            if w.dead or not self.is_op(w, "MatMul", "FusedMatMul") or w.info.get("precision") in ("int8", "int8_dynamic"):
                continue
            if self.dtype(w.inputs[0]) in _FLOAT:
                yield w

    def matmul_transpose(self):
        if not self.r.matmul_trans:
            return
        for w in self._float_matmuls():
            for i in (0, 1):
                t = self.producer(w.inputs[i])
                if not self.is_op(t, "Transpose") or self.only_consumer(t.outputs[0]) is not w:
                    continue
                perm = t.info.get("perm", t.attr("perm"))
                xs = self.shape(t.inputs[0])
                if perm is None or xs is None or len(perm) < 2:
                    continue
                n = len(perm)
                if list(perm) != list(range(n - 2)) + [n - 1, n - 2]:
                    continue
                key = "trans_a" if i == 0 else "trans_b"
                if w.info.get(key):
                    continue
                w.info[key] = 1
                w.info["trans_src_" + key] = xs
                w.inputs[i] = t.inputs[0]
                w.op = "FusedMatMul"
                w.members = list(t.members) + w.members
                t.dead = True
            self._index()

    def bias_gelu(self):
        if not self.r.bias_gelu:
            return
        for g in list(self.live):
            if g.dead or not self.is_op(g, "Gelu"):
                continue
            a = self.producer(g.inputs[0])
            if not self.is_op(a, "Add") or self.only_consumer(a.outputs[0]) is not g:
                continue
            x = self.shape(g.inputs[0])
            for i in (0, 1):
                b = a.inputs[1 - i]
                bs = self.shape(b)
                if self.const(b) and bs is not None and len(bs) == 1 and x and bs[0] == x[-1] and not self.const(a.inputs[i]):
                    g.op = "BiasGelu"
                    g.inputs = [a.inputs[i], b]
                    g.members = list(a.members) + g.members
                    a.dead = True
                    break
        self._index()

    def skip_layernorm(self):
        if not self.r.skip_layernorm:
            return
        for ln in list(self.live):
            if ln.dead or not self.is_op(ln, "LayerNormalization", "SimplifiedLayerNormalization"):
                continue
            if ln.op == "LayerNormalization" and ln.rec.op_type == "LayerNormalization":
                xs = self.shape(ln.inputs[0])
                if xs is None or _norm_axis(ln.attr("axis", -1), len(xs)) != len(xs) - 1:
                    continue
            a = self.producer(ln.inputs[0])
            if not self.is_op(a, "Add") or a.domain != "" or self.only_consumer(a.outputs[0]) is not ln:
                continue
            s0, s1 = self.shape(a.inputs[0]), self.shape(a.inputs[1])
            if s0 is None or s1 is None or len(s0) != 3 or s0 != s1:
                continue
            if self.const(a.inputs[0]) and self.const(a.inputs[1]):
                continue
            ln.op = "SkipLayerNormalization" if ln.op == "LayerNormalization" else "SkipSimplifiedLayerNormalization"
            ln.domain = "com.microsoft"
            ln.info["skip"] = 1
            ln.inputs = [a.inputs[0], a.inputs[1]] + list(ln.inputs[1:])
            ln.members = list(a.members) + ln.members
            a.dead = True
        self._index()

    def _const_is(self, t, v, tol=1e-6):
        x = self.scalar(t) if t else None
        return x is not None and abs(x - v) <= tol * max(1.0, abs(v))

    def _mul_by(self, w, v):
        """other input of Mul w when one input is the constant v, else None"""
        for i in (0, 1):
            if len(w.inputs) > 1 and self._const_is(w.inputs[i], v):
                return w.inputs[1 - i]
        return None

    def fast_gelu(self):
        """tanh-GELU in onnxruntime's two spellings (FastGeluFusion):
        F1: Mul(x,0.044715) -> Mul(.,x) -> Add(.,1) -> Mul(., Mul(x,0.79788)) -> Tanh -> Add(1) -> Mul(., Mul(x,0.5))
        F2: Pow(x,3) -> Mul(.,0.044715) -> Add(.,x) -> Mul(.,0.79788) -> Tanh -> Add(1) -> Mul(., Mul(x,0.5))"""
        if not self.r.fast_gelu:
            return
        S2PI = 0.7978845834732056

        def single(w):
            return w is not None and self.out_single(w) is not None

        for t in list(self.live):
            if t.dead or not self.is_op(t, "Tanh") or not single(t):
                continue
            pre = self.producer(t.inputs[0])
            if not self.is_op(pre, "Mul") or not single(pre):
                continue
            members, x = None, None
            # F2: pre = Mul(add1, S2PI)
            add1_t = self._mul_by(pre, S2PI)
            add1 = self.producer(add1_t) if add1_t else None
            if self.is_op(add1, "Add") and single(add1):
                for i in (0, 1):
                    m1 = self.producer(add1.inputs[i])
                    if self.is_op(m1, "Mul") and single(m1):
                        pw_t = self._mul_by(m1, 0.044715)
                        pw = self.producer(pw_t) if pw_t else None
                        if self.is_op(pw, "Pow") and single(pw) and self._const_is(pw.inputs[1], 3.0) and \
                                add1.inputs[1 - i] == pw.inputs[0]:
                            x = pw.inputs[0]
                            members = [pw, m1, add1, pre]
                            break
            if members is None:
                # F1: pre = Mul(add1, Mul(x, S2PI))
                for i in (0, 1):
                    a1 = self.producer(pre.inputs[i])
                    m4 = self.producer(pre.inputs[1 - i])
                    if not (self.is_op(a1, "Add") and single(a1) and self.is_op(m4, "Mul") and single(m4)):
                        continue
                    xx = self._mul_by(m4, S2PI)
                    m2_t = self._mul_by(a1, 1.0)
                    m2 = self.producer(m2_t) if m2_t else None
                    if xx is None or not (self.is_op(m2, "Mul") and single(m2)):
                        continue
                    for j in (0, 1):
                        m1 = self.producer(m2.inputs[j])
                        if self.is_op(m1, "Mul") and single(m1) and m2.inputs[1 - j] == xx and \
                                self._mul_by(m1, 0.044715) == xx:
                            x = xx
                            members = [m1, m2, a1, m4, pre]
                            break
                    if members:
                        break
            if members is None:
                continue
            a2 = self.out_single(t)
            if not self.is_op(a2, "Add") or self._mul_by(a2, 1.0) is None and not \
                    any(self._const_is(i, 1.0) for i in a2.inputs if i != t.outputs[0]):
                continue
            m5 = self.out_single(a2)
            if not self.is_op(m5, "Mul") or any(o in self.graph_outputs for o in m5.outputs):
                continue
            m6 = self.producer(self.other_input(m5, a2.outputs[0]) or "")
            if not self.is_op(m6, "Mul") or self._mul_by(m6, 0.5) != x or self.only_consumer(m6.outputs[0]) is not m5:
                continue
            if self.dtype(x) not in ("float32", "float16"):
                continue
            members += [t, a2, m6, m5]
            recs = [r for m in sorted(members, key=lambda m: m.pos) for r in m.members]
            self.new_node(t.name, "FastGelu", "com.microsoft", t.rec, [x], m5.outputs, recs)
            for m in members:
                m.dead = True
            self._index()

    def quick_gelu(self):
        if not self.r.quick_gelu:
            return
        for s in list(self.live):
            if s.dead or not self.is_op(s, "Sigmoid") or s.domain != "":
                continue
            m = self.out_single(s)
            if not self.is_op(m, "Mul"):
                continue
            x = self.other_input(m, s.outputs[0])
            if x is None:
                continue
            members = [s, m]
            if s.inputs[0] != x:
                pre = self.producer(s.inputs[0])
                if not (self.is_op(pre, "Mul") and x in pre.inputs and self.scalar(self.other_input(pre, x) or "") is not None
                        and self.only_consumer(pre.outputs[0]) is s):
                    continue
                members.insert(0, pre)
            recs = [r for mm in sorted(members, key=lambda q: q.pos) for r in mm.members]
            self.new_node(m.name, "QuickGelu", "com.microsoft", m.rec, [x], m.outputs, recs)
            for mm in members:
                mm.dead = True
            self._index()

    def matmul_scale(self):
        if not self.r.matmul_scale:
            return
        for w in self._float_matmuls():
            # output side
            c = self.out_single(w)
            if self.is_op(c, "Mul", "Div") and c.domain == "":
                other = self.other_input(c, w.outputs[0])
                if other is not None and self.scalar(other) is not None and (c.op == "Mul" or c.inputs[0] == w.outputs[0]):
                    w.info["scale"] = 1
                    w.op = "FusedMatMul"
                    self.absorb(w, c)
                    self._index()
            for i in (0, 1):
                p = self.producer(w.inputs[i])
                if not (self.is_op(p, "Mul", "Div") and p.domain == "" and self.only_consumer(p.outputs[0]) is w):
                    continue
                src = p.inputs[0]
                other = p.inputs[1]
                if p.op == "Mul" and self.scalar(src) is not None:
                    src, other = other, src
                if self.scalar(other) is None or self.const(src):
                    continue
                w.inputs[i] = src
                w.info["scale"] = 1
                w.op = "FusedMatMul"
                w.members = list(p.members) + w.members
                p.dead = True
                self._index()

    # ---- level 3 -------------------------------------------------------------------------
    def _uses(self):
        u = Counter()
        for w in self.live:
            for t in w.inputs:
                if t:
                    u[t] += 1
        for t in self.graph_outputs:
            u[t] += 1
        return u

    def _nchwc_conv_ok(self, w):
        """(ok, reads NCHW directly)"""
        if w.info.get("precision") in ("int8", "int8_dynamic") or len(w.inputs) < 2:
            return False, False
        wt = w.inputs[1]
        ws = self.shape(wt)
        if not self.const(wt) or not self.f32(wt) or ws is None or len(ws) != 4:
            return False, False
        if not self.f32(w.inputs[0]):
            return False, False
        if len(w.inputs) > 2 and w.inputs[2]:
            bs = self.shape(w.inputs[2])
            if not self.const(w.inputs[2]) or bs is None or len(bs) != 1 or bs[0] != ws[0]:
                return False, False
        cout, cin_g = ws[0], ws[1]
        g = int(w.attr("group", 1) or 1)
        blk, al = self.r.nchwc_block, self.r.nchwc_align
        if g > 1:
            if cin_g == 1 and cout == g:
                return cout % al == 0, False
            return cin_g % blk == 0 and (cout // g) % blk == 0 and cout % g == 0, False
        if cin_g < blk:
            return True, True
        return cin_g % al == 0, False

    def _resize_nchwc_ok(self, w):
        mode = w.attr("mode", "nearest") or "nearest"
        opset = self.g.opset
        if w.op == "Upsample" or opset < 11:
            scales_t = w.inputs[1] if len(w.inputs) > 1 else ""
            if mode not in ("nearest", "linear", "bilinear"):
                return False
        else:
            if len(w.inputs) < 3 or not w.inputs[2] or (len(w.inputs) > 3 and w.inputs[3]):
                return False
            scales_t = w.inputs[2]
            ctm = w.attr("coordinate_transformation_mode", "half_pixel") or "half_pixel"
            if mode == "nearest":
                if ctm != "asymmetric" or (w.attr("nearest_mode", "round_prefer_floor") or "") != "floor":
                    return False
            elif mode == "linear":
                if ctm not in ("half_pixel", "align_corners", "asymmetric"):
                    return False
            else:
                return False
        v = self.value(scales_t)
        if v is None or v.size != 4:
            return False
        sc = [float(s) for s in v.reshape(-1)]
        if any(s < 1 or s != int(s) for s in sc):
            return False
        return sc[0] == 1 and sc[1] == 1

    def nchwc(self):
        if not self.r.nchwc:
            return
        blk = self.r.nchwc_block
        uses = self._uses()
        args: dict = {}        # tensor -> [producer _W, channels, starting uses, remaining]
        reordered: set = set()

        def chans(t):
            s = self.shape(t)
            return s[1] if s is not None and len(s) == 4 else None

        def take(t):
            args[t][3] -= 1

        def reorder_in(t, before: _W):
            if t in reordered:
                return
            reordered.add(t)
            self.extra.append([before.pos - 0.5, "ReorderInput", t, ()])

        def create(w, t, c, node=None):
            args[t] = [node or w, c, uses[t], uses[t]]

        def is_nchwc_conv(w):
            return w.info.get("nchwc") and (w.op in _CONVS or w.info.get("as_conv"))

        for w in list(self.live):
            if w.dead:
                continue
            op = w.op
            data = [t for t in w.inputs if t and not self.const(t)]
            if op in _CONVS and w.domain in ("", "com.microsoft") and not w.info.get("sum"):
                ok, direct = self._nchwc_conv_ok(w)
                if not ok:
                    continue
                x = w.inputs[0]
                if not direct:
                    if x in args:
                        take(x)
                    else:
                        reorder_in(x, w)
                w.info["nchwc"] = True
                create(w, w.outputs[0], self.shape(w.inputs[1])[0])
                continue
            if op in ("MaxPool", "AveragePool") and w.domain == "":
                if len([o for o in w.outputs if o]) > 1 or w.info.get("precision") in ("int8",):
                    continue
                c = chans(w.inputs[0])
                if c is None or not self.f32(w.inputs[0]) or c % blk:
                    continue
                x = w.inputs[0]
                if x in args:
                    take(x)
                else:
                    reorder_in(x, w)
                w.info["nchwc"] = True
                create(w, w.outputs[0], c)
                continue
            if op in ("GlobalAveragePool", "GlobalMaxPool") and w.domain == "" and data and \
                    (data[0] in args or self.producer(data[0]) is None):
                # converted when every producer was converted; a graph input has none (edge count 0)
                x = data[0]
                c = args[x][1] if x in args else chans(x)
                if c is None or c % blk or not self.f32(x) or w.info.get("precision") == "int8":
                    continue
                if x in args:
                    take(x)
                else:
                    reorder_in(x, w)
                w.info["nchwc"] = True
                create(w, w.outputs[0], c)
                continue
            if not data or any(t not in args for t in data) or w.domain not in ("", "com.microsoft"):
                continue
            present = [t for t in w.inputs if t]
            if op in ("Add", "Sum", "Mul") and len(present) == len(data) and len(data) >= 1:
                c = args[data[0]][1]
                if any(args[t][1] != c for t in data):
                    continue
                shapes = [self.shape(t) for t in data]
                same = all(s is not None and s == shapes[0] for s in shapes)
                if not same and op == "Mul":
                    continue
                for t in data:
                    take(t)
                if op in ("Add", "Sum") and len(data) == 2 and same and self.r.nchwc_sum:
                    fused = False
                    for n in (0, 1):
                        a = args[data[n]]
                        node = a[0]
                        if is_nchwc_conv(node) and not node.info.get("sum") and a[2] == 1 and \
                                not node.info.get("act"):
                            node.info["sum"] = data[1 - n]
                            node.inputs = list(node.inputs) + [data[1 - n]]
                            node.members = node.members + w.members
                            node.outputs = list(w.outputs)
                            node.pos = max(node.pos, w.pos)
                            w.dead = True
                            create(node, w.outputs[0], c, node)
                            fused = True
                            break
                    if fused:
                        continue
                w.info["nchwc"] = True
                create(w, w.outputs[0], c)
            elif op == "Mul" and len(present) == 2 and len(data) == 1:
                # per-channel constant scale -> depthwise 1x1 NCHWc conv
                x = data[0]
                other = self.other_input(w, x)
                c = args[x][1]
                s = self.shape(other) if other else None
                if s is None or list(s) not in ([c, 1, 1], [1, c, 1, 1]):
                    continue
                take(x)
                w.info.update(nchwc=True, as_conv=True)
                create(w, w.outputs[0], c)
            elif op == "Concat" and w.attr("axis") == 1 and len(present) == len(data):
                if any(args[t][1] % blk for t in data):
                    continue
                for t in data:
                    take(t)
                w.info["nchwc"] = True
                create(w, w.outputs[0], sum(args[t][1] for t in data))
            elif op in _NCHWC_ACTS and len(data) == 1:
                x = data[0]
                take(x)
                a = args[x]
                node = a[0]
                if is_nchwc_conv(node) and a[2] == 1 and not node.info.get("act"):
                    node.info["act"] = op
                    node.members = node.members + w.members
                    node.outputs = list(w.outputs)
                    node.pos = max(node.pos, w.pos)
                    w.dead = True
                    create(node, w.outputs[0], a[1], node)
                else:
                    w.info["nchwc"] = True
                    create(w, w.outputs[0], a[1])
            elif op == "HardSwish" and len(data) == 1:
                # inlined as HardSigmoid + Mul; NCHWc folds the pair into a single-use conv
                x = data[0]
                take(x)
                a = args[x]
                node = a[0]
                if is_nchwc_conv(node) and a[2] == 1 and not node.info.get("act") and \
                        w.outputs[0] not in self.graph_outputs:
                    node.info["act"] = "HardSwish"
                    node.members = node.members + w.members
                    node.outputs = list(w.outputs)
                    node.pos = max(node.pos, w.pos)
                    w.dead = True
                    create(node, w.outputs[0], a[1], node)
                else:
                    w.info["nchwc"] = True
                    create(w, w.outputs[0], a[1])
            elif op in _NCHWC_UNARY and len(data) == 1:
                x = data[0]
                take(x)
                w.info["nchwc"] = True
                create(w, w.outputs[0], args[x][1])
            elif op == "BatchNormalization" and len([o for o in w.outputs if o]) == 1:
                x = data[0] if len(data) == 1 and w.inputs[0] == data[0] else None
                if x is None:
                    continue
                c = args[x][1]
                if any(self.shape(t) != [c] or not self.f32(t) for t in w.inputs[1:5]):
                    continue
                take(x)
                w.info.update(nchwc=True, as_conv=True)
                create(w, w.outputs[0], c)
            elif op == "Transpose" and len(data) == 1:
                perm = w.info.get("perm", w.attr("perm"))
                if perm is None or list(perm) != [0, 2, 3, 1]:
                    continue
                take(data[0])
                w.info["reorder_nhwc"] = True
            elif op in ("Resize", "Upsample") and w.inputs[0] in args and data == [w.inputs[0]]:
                if not self._resize_nchwc_ok(w):
                    continue
                take(w.inputs[0])
                w.info["nchwc"] = True
                create(w, w.outputs[0], args[w.inputs[0]][1])
        # ReorderInput of a Transpose(0,3,1,2) output reads the NHWC tensor directly (channels_last);
        # the Transpose goes away when every consumer of its output reads the reordered tensor
        for e in self.extra:
            if e[1] != "ReorderInput":
                continue
            tp = self.producer(e[2])
            if not self.is_op(tp, "Transpose") or tp.domain != "":
                continue
            perm = tp.info.get("perm", tp.attr("perm"))
            if perm is None or [int(v) for v in perm] != [0, 3, 1, 2]:
                continue
            if e[2] in self.graph_outputs or not all(c.info.get("nchwc") and c.op in _CONVS + _POOLS
                                                     for c, _ in self.consumers(e[2])):
                continue
            tp.dead = True
            e[3] = tuple(tp.members)
        # finalize: ReorderOutput for every blocked tensor still used in NCHW form
        for t, (node, c, start, remaining) in args.items():
            if remaining > 0:
                self.extra.append([node.pos + 0.5, "ReorderOutput", t, ()])
        self._index()

    def conv_add(self):
        if not self.r.conv_add:
            return
        for a in list(self.live):
            if a.dead or not self.is_op(a, "Add") or a.domain != "" or a.info.get("nchwc"):
                continue
            ins = [t for t in a.inputs if t]
            if len(ins) != 2:
                continue
            s0, s1 = self.shape(ins[0]), self.shape(ins[1])
            if s0 is None or s1 is None or len(s0) != 4 or s0 != s1 or self.dtype(ins[0]) not in _FLOAT:
                continue
            prods = sorted({id(p): p for p in (self.producer(t) for t in ins) if p is not None}.values(),
                           key=lambda p: p.rec.index)
            conv = None
            for p in prods:
                if not self.is_op(p, "Conv") or p.info.get("nchwc") or p.info.get("sum") or "act" in p.info:
                    continue
                if p.info.get("precision") in ("int8", "int8_dynamic") or self.out_single(p) is not a:
                    continue
                if self.r.conv_add_needs_bias and not ((len(p.inputs) > 2 and p.inputs[2]) or p.info.get("bias_folded")):
                    continue
                conv = p
                break
            if conv is None:
                continue
            other = ins[1] if self.producer(ins[0]) is conv else ins[0]
            if ins[0] == ins[1]:
                continue
            conv.info["sum"] = other
            conv.inputs = list(conv.inputs) + [other]
            conv.op = "FusedConv"
            self.absorb(conv, a)
            act = self.out_single(a)
            if self._act_ok(act, self.r.conv_add_acts) and act.inputs[0] == conv.outputs[0]:
                conv.info["act"] = act.op
                self.absorb(conv, act)
            self._index()

    def nhwc_int8(self):
        """Transposes around NHWC int8 regions (QLinearConv & int8 pools run NHWC)."""
        if not self.r.qdq_nhwc:
            return
        nhwc_ops = ("Conv", "FusedConv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
                    "QLinearConv", "QLinearAveragePool", "QLinearGlobalAveragePool")
        transparent = ("Add", "Mul", "Relu", "Clip", "Sigmoid", "LeakyRelu", "QuantizeLinear", "DequantizeLinear",
                       "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu")
        layout: dict = {}
        to_nhwc: set = set()
        to_nchw: set = set()

        def need_nchw(t, w):
            if layout.get(t) == "NHWC" and t not in to_nchw:
                to_nchw.add(t)
                p = self.producer(t)
                self.extra.append([(p.pos if p else w.pos) + 0.25, "ToNCHW", t, ()])

        for w in self.live:
            int8 = w.info.get("precision") == "int8" or w.op.startswith("QLinear") or \
                (w.op == "MaxPool" and self.dtype(w.inputs[0]) in _INT8)
            data = [t for t in w.inputs if t and not self.const(t)]
            if int8 and w.op in nhwc_ops and w.inputs and w.inputs[0] and (len(self.shape(w.inputs[0]) or []) == 4):
                x = w.inputs[0]
                if layout.get(x) != "NHWC" and x not in to_nhwc:
                    to_nhwc.add(x)
                    self.extra.append([w.pos - 0.25, "ToNHWC", x, ()])
                for t in data[1:]:
                    need_nchw(t, w)
                for o in w.outputs:
                    if o:
                        layout[o] = "NHWC"
                w.info["nhwc"] = True
                continue
            if w.op in transparent and data and all(layout.get(t) == "NHWC" for t in data) and \
                    all(len(self.shape(t) or []) == 4 for t in data):
                for o in w.outputs:
                    if o:
                        layout[o] = "NHWC"
                continue
            for t in data:
                need_nchw(t, w)
        for t in self.graph_outputs:
            need_nchw(t, self.live[-1] if self.live else None)
        self._index()

    # ---- kernels -------------------------------------------------------------------------
    def run(self):
        self.eliminate()
        self.hardswish()
        self.push_split()
        self.merge_transposes()
        self.cancel_transposes()
        self.fold_conv()
        self.matmul_add()
        self.gelu()
        self.layernorm()
        self.qdq()
        self.gemm_act()
        self.dynamic_quant()
        self.conv_act()
        self.simplified_layernorm()
        self.matmul_transpose()
        self.bias_gelu()
        self.skip_layernorm()
        self.fast_gelu()
        self.quick_gelu()
        self.matmul_scale()
        self.nchwc()
        self.conv_add()
        self.nhwc_int8()
        return self.emit()

    def emit(self):
        out: list[tuple] = []
        for w in self.live:
            try:
                ks = self.kernels_of(w)
            except _Unc as e:
                for r in w.members:
                    self.unc.append(Uncovered(r.name, r.op_type, e.reason))
                continue
            for j, k in enumerate(ks):
                out.append((w.pos + j * 1e-3, k))
        for pos, what, t, recs in self.extra:
            s = self.shape(t)
            if s is None:
                self.unc.extend(Uncovered(r.name, r.op_type, f"shape unknown for {t!r}") for r in recs)
                continue
            if what in ("ReorderInput", "ReorderOutput"):
                k = Kernel(f"{what}({t})", "Reorder", {"op": what, "x": s}, "fp32", "0",
                           tuple(r.name for r in recs), (what,) + tuple(r.op_type for r in recs))
            else:
                perm = [0, 2, 3, 1] if what == "ToNHWC" else [0, 3, 1, 2]
                x = s if what == "ToNHWC" else [s[0], s[2], s[3], s[1]]
                prec = "int8" if self.dtype(t) in _INT8 else "fp32"
                k = Kernel(f"Transpose({t},{'NHWC' if what == 'ToNHWC' else 'NCHW'})", "Transpose",
                           {"x": x, "perm": perm}, prec, "0", (), ("Transpose",))
            out.append((pos, k))
        if self.r.fp16_as_fp32:
            # the fp32 graph is entered and left through Casts
            for t in self.g.inputs:
                if t.dtype == "float16" and t.shape is not None and self.consumers(t.name):
                    out.append((-1.0, Kernel(f"Cast({t.name})", "Activation", {"op": "Cast", "x": list(t.shape)},
                                             "fp32", "0", (), ("Cast",))))
            # fp16 constants read by elementwise kernels are cast at run time (once per constant)
            seen = set()
            for w in self.live:
                kind = _KIND_OVERRIDE.get(w.op) or ops.kind_of_op(w.op)
                if kind not in ("Elementwise", "Activation") or w.info.get("layout_perm"):
                    continue
                for t in w.inputs:
                    if not (t and self.const(t) and self.dtype(t) == "float16" and self.shape(t) is not None):
                        continue
                    v = self.value(t)  # ConstantSharing: equal constants are one initializer
                    key = (tuple(self.shape(t)), v.tobytes()) if v is not None and v.size <= 4096 else t
                    if key not in seen:
                        seen.add(key)
                        out.append((w.pos - 0.1, Kernel(f"Cast({t})", "Activation", {"op": "Cast", "x": self.shape(t)},
                                                        "fp32", "0", (), ("Cast",))))
            for t in self.g.outputs:
                p = self.producer(t.name)
                if t.dtype == "float16" and t.shape is not None and p is not None:
                    out.append((p.pos + 0.75, Kernel(f"Cast({t.name})", "Activation", {"op": "Cast", "x": list(t.shape)},
                                                     "fp16", "0", (), ("Cast",))))
        out.sort(key=lambda pk: pk[0])
        kernels = [k for _, k in out]
        # Identity / Dropout eliminated by the runtime: attach them to the kernel that produces
        # their input (they cost nothing), or give them a Free kernel when no kernel does
        if self.attach:
            where = {n: i for i, k in enumerate(kernels) for n in k.nodes}
            for t, recs in self.attach.items():
                prod = self.g.producer(t)
                i = where.get(prod.name) if prod is not None else None
                if i is not None:
                    k = kernels[i]
                    kernels[i] = replace(k, nodes=k.nodes + tuple(r.name for r in recs),
                                         op_types=k.op_types + tuple(r.op_type for r in recs))
                    for r in recs:
                        where[r.name] = i
                else:
                    for r in recs:
                        kernels.append(Kernel(r.name, "Free", {"op": r.op_type}, "fp32", "0", (r.name,),
                                              (r.op_type,)))
        return kernels, self.unc

    def _need(self, t):
        s = self.shape(t) if t else None
        if s is None:
            raise _Unc(f"shape unknown for {t!r}")
        return s

    def kernels_of(self, w: _W) -> list:
        op = w.op
        nodes = tuple(r.name for r in w.members)
        op_types = tuple(r.op_type for r in w.members)
        prec = self.precision_of(w)

        def K(kind, params, sparsity="0", name=None, precision=None, nd=nodes, ot=op_types):
            p = precision or prec
            allowed = ops.get_kind(kind).precisions
            if p not in allowed:
                p = allowed[0]
            return Kernel(name or w.name, kind, ops.canonical_params(kind, params), p, sparsity, nd, ot)

        if op in _QOPS and w.domain in ("", "com.microsoft") and not w.info.get("dyn"):
            return self._qop_kernels(w, K)
        if w.info.get("as_conv"):
            x = self._need(w.inputs[0])
            c = x[1]
            p = {"x": x, "cout": c, "kernel": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0],
                 "dilations": [1, 1], "group": c, "act": w.info.get("act", "none"),
                 "sum": 1 if w.info.get("sum") else 0}
            return [K("Conv", p)]
        if w.info.get("reorder_nhwc"):
            return [K("Reorder", {"op": "ReorderOutput", "x": self._need(w.inputs[0])}, precision="fp32")]
        if op == "HardSwish" and self.r.hardswish_inline:
            x = self._need(w.inputs[0])
            hs, mul = w.info.get("hs_parts", (w.members, []))
            return [K("Activation", {"op": "HardSigmoid", "x": x}, name=hs[0].name,
                      nd=tuple(r.name for r in hs), ot=tuple(r.op_type for r in hs)),
                    K("Elementwise", {"op": "Mul", "inputs": [x, x], "const_b": 0},
                      name=mul[0].name if mul else w.name + "/Mul",
                      nd=tuple(r.name for r in mul), ot=tuple(r.op_type for r in mul) or ("Mul",))]
        if op in _CONVS or (op == "Conv" and w.info.get("dyn")):
            return [self._conv(w, K)]
        if op in _MATMULS or w.info.get("dyn"):
            k = self._matmul(w, K)
            if not w.info.get("gemm_3d"):
                return [k]
            # MatMulAddFusion on N-D A: Reshape -> Gemm -> Reshape; a neighbouring Reshape absorbs
            # the new one (ReshapeFusion)
            ks = []
            p = self.producer(w.inputs[0])
            if not (self.is_op(p, "Reshape", "Flatten") and self.only_consumer(p.outputs[0]) is w):
                ks.append(K("Free", {"op": "Reshape"}, name=w.name + "/gemm_input_reshape", nd=(), ot=("Reshape",)))
            ks.append(k)
            c = self.out_single(w)
            if not (self.is_op(c, "Reshape", "Flatten") and c.inputs[0] == w.outputs[0]):
                ks.append(K("Free", {"op": "Reshape"}, name=w.name + "/gemm_output_reshape", nd=(), ot=("Reshape",)))
            return ks
        if op in ("DequantizeLinear",) and w.info.get("copies", 1) > 1:
            x = self._need(w.inputs[0])
            ks = [K("Quant", {"op": op, "x": x}, precision="int8")]
            for j in range(1, w.info["copies"]):
                ks.append(K("Quant", {"op": op, "x": x}, precision="int8", name=f"{w.name}/dup{j}", nd=(), ot=(op,)))
            return ks
        kind = _KIND_OVERRIDE.get(op) or ops.kind_of_op(op)
        if kind is None:
            dom = w.domain or "ai.onnx"
            raise _Unc(f"no op kind prices {dom}:{op}")
        return [self._generic(w, kind, K)]

    def _conv(self, w, K):
        x = list(self._need(w.inputs[0]))
        ws = self._need(w.inputs[1])
        nsp = len(ws) - 2
        if len(x) != nsp + 2:
            raise _Unc(f"shape unknown for {w.inputs[0]!r}")
        k = list(ws[2:])
        s = [int(v) for v in (w.attr("strides") or [1] * nsp)]
        d = [int(v) for v in (w.attr("dilations") or [1] * nsp)]
        pads = _explicit_pads(w.rec.attrs, x[2:], k, s, d)
        extra = w.info.get("pad_extra")
        if extra:
            pads = [a + b for a, b in zip(pads, extra)]
        act = w.info.get("act")
        if act is None and w.rec.op_type == "FusedConv":
            act = w.attr("activation")
        g = int(w.attr("group", 1) or 1)
        p = {"x": x, "cout": ws[0], "kernel": k, "strides": s, "pads": pads, "dilations": d, "group": g,
             "act": act or "none", "sum": 1 if w.info.get("sum") else 0}
        sp = weight_sparsity(self.g, w.inputs[1]) if self.const(w.inputs[1]) or self.producer(w.inputs[1]) is None else "0"
        return K("Conv", p, sp)

    def _matmul(self, w, K):
        a = list(self._need(w.inputs[0]))
        b = list(self._need(w.inputs[1]))
        bias = 1 if (w.info.get("bias") or (w.rec.op_type in ("Gemm", "FusedGemm") and len(w.inputs) > 2
                                                   and w.inputs[2])) else 0
        trans_b = int(w.info.get("trans_b", 0) or 0)
        scale = int(bool(w.info.get("scale")))
        if w.rec.op_type in ("Gemm", "FusedGemm", "FusedMatMul") and not w.info.get("dyn"):
            if w.attr("transA", 0):
                a = a[:-2] + [a[-1], a[-2]]
            trans_b = int(w.attr("transB", 0) or 0) or trans_b
            if float(w.attr("alpha", 1.0)) != 1.0:
                scale = 1
        if w.info.get("trans_a"):
            a = a[:-2] + [a[-1], a[-2]]
        if w.info.get("trans_b") and w.info.get("trans_src_trans_b") is not None:
            b = list(w.info["trans_src_trans_b"])
        if w.info.get("gemm_3d") and len(a) != 2:
            m = 1
            for v in a[:-1]:
                m *= v
            a = [m, a[-1]]
        act = w.info.get("act")
        if act is None and w.rec.op_type == "FusedGemm":
            act = w.attr("activation")
        p = {"a": a, "b": b, "const_b": 1 if self.const(w.inputs[1]) else 0, "bias": bias, "scale": scale,
             "trans_b": trans_b, "act": act or "none"}
        sp = weight_sparsity(self.g, w.inputs[1]) if p["const_b"] else "0"
        return K("MatMul", p, sp)

    def _qop_kernels(self, w, K):
        base, xi, wi, bi = _QOPS[w.op]
        prec = "int8_dynamic" if w.op in ("MatMulIntegerToFloat", "DynamicQuantizeMatMul") else "int8"
        if base == "Conv":
            x = self._need(w.inputs[xi])
            ws = self._need(w.inputs[wi])
            nsp = len(ws) - 2
            k = list(ws[2:])
            s = [int(v) for v in (w.attr("strides") or [1] * nsp)]
            d = [int(v) for v in (w.attr("dilations") or [1] * nsp)]
            p = {"x": x, "cout": ws[0], "kernel": k, "strides": s, "pads": _explicit_pads(w.rec.attrs, x[2:], k, s, d),
                 "dilations": d, "group": int(w.attr("group", 1) or 1), "act": "none", "sum": 0}
            return [K("Conv", p, weight_sparsity(self.g, w.inputs[wi]), precision=prec)]
        if base in ("MatMul", "Gemm"):
            a = list(self._need(w.inputs[xi]))
            b = list(self._need(w.inputs[wi]))
            if base == "Gemm" and w.attr("transA", 0):
                a = a[::-1]
            p = {"a": a, "b": b, "const_b": 1 if self.const(w.inputs[wi]) else 0,
                 "bias": 1 if bi is not None and len(w.inputs) > bi and w.inputs[bi] else 0,
                 "scale": 0, "trans_b": int(w.attr("transB", 0) or 0), "act": "none"}
            return [K("MatMul", p, weight_sparsity(self.g, w.inputs[wi]) if p["const_b"] else "0", precision=prec)]
        if base in ("Add", "Mul"):
            ins = [self._need(w.inputs[0]), self._need(w.inputs[3])]
            return [K("Elementwise", {"op": base, "inputs": ins,
                                      "const_b": int(self.const(w.inputs[0]) or self.const(w.inputs[3]))}, precision=prec)]
        if base in ("Sigmoid", "LeakyRelu"):
            return [K("Activation", {"op": base, "x": self._need(w.inputs[0])}, precision=prec)]
        if base in ("AveragePool", "GlobalAveragePool"):
            fake = replace(w, op=base)
            return [self._generic(fake, "Pool", K, precision=prec)]
        if base == "Softmax":
            x = self._need(w.inputs[0])
            return [K("Softmax", {"op": "Softmax", "x": x, "axis": _norm_axis(w.attr("axis", -1), len(x))},
                      precision=prec)]
        if base == "Concat":
            ins = [self._need(t) for t in w.inputs[2::3]]
            return [K("Concat", {"inputs": ins, "axis": _norm_axis(w.attr("axis", 0), len(ins[0]))}, precision=prec)]
        raise _Unc(f"no op kind prices {w.domain or 'ai.onnx'}:{w.op}")

    def _in_shape(self, w, t):
        """shape of input t of w as w really sees it (after a cancelled transpose chain)"""
        s = self._need(t)
        q = w.info.get("layout_perm")
        if q is None or t in w.info.get("untransposed", ()):
            return s
        if len(s) < len(q):
            s = [1] * (len(q) - len(s)) + list(s)
        return [s[i] for i in q]

    def _generic(self, w, kind, K, precision=None):
        if w.info.get("layout_perm") and kind in ("Elementwise", "Activation"):
            if kind == "Elementwise":
                ins = [t for t in w.inputs if t]
                return K("Elementwise", {"op": w.op, "inputs": [self._in_shape(w, t) if not self.const(t) or
                                                                len(self._need(t)) else [] for t in ins],
                                         "const_b": int(any(self.const(t) for t in ins))}, precision=precision)
            return K("Activation", {"op": w.op, "x": self._in_shape(w, w.inputs[0])}, precision=precision)
        op = w.op
        ins = w.inputs
        outs = w.outputs
        a = w.rec.attrs
        pr = precision
        if kind == "Free":
            return K("Free", {"op": op}, precision=pr)
        if kind == "Elementwise":
            shapes = [self._need(t) for t in ins if t]
            cb = int(any(self.const(t) for t in ins if t))
            return K("Elementwise", {"op": op, "inputs": shapes, "const_b": cb}, precision=pr)
        if kind == "Activation":
            return K("Activation", {"op": op, "x": self._need(ins[0])}, precision=pr)
        if kind == "Softmax":
            x = self._need(ins[0])
            default = -1 if self.g.opset >= 13 else 1
            return K("Softmax", {"op": op, "x": x, "axis": _norm_axis(a.get("axis", default), max(1, len(x)))},
                     precision=pr)
        if kind == "LayerNorm":
            return K("LayerNorm", {"x": self._need(ins[0]), "skip": int(bool(w.info.get("skip")) or
                                                                         op.startswith("Skip"))}, precision=pr)
        if kind == "Norm":
            return K("Norm", {"op": op, "x": self._need(ins[0])}, precision=pr)
        if kind == "Pool":
            x = self._need(ins[0])
            nsp = len(x) - 2
            if op.startswith("Global"):
                p = {"op": op, "x": x, "kernel": list(x[2:]), "strides": [1] * nsp, "pads": [0] * (2 * nsp), "ceil": 0}
            else:
                k = [int(v) for v in (a.get("kernel_shape") or [1] * nsp)]
                s = [int(v) for v in (a.get("strides") or [1] * nsp)]
                d = [int(v) for v in (a.get("dilations") or [1] * nsp)]
                pads = _explicit_pads(a, x[2:], k, s, d)
                extra = w.info.get("pad_extra")
                if extra:
                    pads = [u + v for u, v in zip(pads, extra)]
                p = {"op": op, "x": x, "kernel": k, "strides": s, "pads": pads, "ceil": int(a.get("ceil_mode", 0) or 0)}
            return K("Pool", p, precision=pr)
        if kind == "Concat":
            shapes = [self._need(t) for t in ins if t]
            return K("Concat", {"inputs": shapes, "axis": _norm_axis(a.get("axis", 0), len(shapes[0]))}, precision=pr)
        if kind == "Split":
            x = self._need(ins[0])
            ax = _norm_axis(a.get("axis", 0), len(x))
            if w.info.get("split_src"):
                ax = w.info["split_src"][1]
            splits = [self._need(o)[ax] for o in outs if o]
            return K("Split", {"x": x, "axis": ax, "splits": splits}, precision=pr)
        if kind in ("Slice", "Copy"):
            return K(kind, {"op": op, "x": self._need(ins[0]), "y": self._need(outs[0])}, precision=pr)
        if kind == "Resize":
            mode = a.get("mode", "nearest") or "nearest"
            mode = {"bilinear": "linear", "trilinear": "linear", "bicubic": "cubic"}.get(mode, mode)
            return K("Resize", {"op": op, "x": self._need(ins[0]), "y": self._need(outs[0]), "mode": mode},
                     precision=pr)
        if kind == "Pad":
            return K("Pad", {"op": op, "x": self._need(ins[0]), "y": self._need(outs[0]),
                             "mode": a.get("mode", "constant") or "constant"}, precision=pr)
        if kind == "Transpose":
            x = self._need(ins[0])
            perm = w.info.get("perm", a.get("perm"))
            perm = [int(v) for v in perm] if perm is not None else list(range(len(x)))[::-1]
            return K("Transpose", {"x": x, "perm": perm}, precision=pr)
        if kind == "Reduce":
            x = self._need(ins[0])
            if op in ("ArgMax", "ArgMin"):
                axes = [_norm_axis(a.get("axis", 0), len(x))]
            else:
                axes = a.get("axes")
                if axes is None and len(ins) > 1 and ins[1]:
                    v = self.value(ins[1])
                    if v is None:
                        raise _Unc(f"reduction axes of {w.name!r} are not constant")
                    axes = [int(t) for t in v.reshape(-1)]
                if not axes:
                    axes = list(range(len(x)))
                axes = sorted({_norm_axis(t, len(x)) for t in axes})
            return K("Reduce", {"op": op, "x": x, "axes": axes, "keepdims": int(a.get("keepdims", 1))}, precision=pr)
        if kind == "Gather":
            d = self._need(ins[0])
            return K("Gather", {"data": d, "indices": self._need(ins[1]),
                                "axis": _norm_axis(a.get("axis", 0), len(d))}, precision=pr)
        if kind == "Quant":
            return K("Quant", {"op": op, "x": self._need(ins[0])}, precision="int8")
        if kind == "ConvTranspose":
            x = self._need(ins[0])
            ws = self._need(ins[1])
            nsp = len(ws) - 2
            g = int(a.get("group", 1) or 1)
            k = list(ws[2:])
            s = [int(v) for v in (a.get("strides") or [1] * nsp)]
            d = [int(v) for v in (a.get("dilations") or [1] * nsp)]
            op_ = [int(v) for v in (a.get("output_padding") or [0] * nsp)]
            y = self._need(outs[0])
            ap = a.get("auto_pad", "NOTSET") or "NOTSET"
            if a.get("output_shape") is not None or ap in ("SAME_UPPER", "SAME_LOWER"):
                pads = [0] * (2 * nsp)
                for i in range(nsp):
                    total = s[i] * (x[2 + i] - 1) + op_[i] + (k[i] - 1) * d[i] + 1 - y[2 + i]
                    if ap == "SAME_LOWER":
                        pads[i], pads[i + nsp] = total - total // 2, total // 2
                    else:
                        pads[i], pads[i + nsp] = total // 2, total - total // 2
            elif ap == "VALID":
                pads = [0] * (2 * nsp)
            else:
                pads = [int(v) for v in (a.get("pads") or [0] * (2 * nsp))]
            p = {"x": x, "cout": ws[1] * g, "kernel": k, "strides": s, "pads": pads, "dilations": d, "group": g,
                 "output_padding": op_}
            return K("ConvTranspose", p, weight_sparsity(self.g, ins[1]) if self.const(ins[1]) else "0", precision=pr)
        if kind == "Reorder":
            return K("Reorder", {"op": op, "x": self._need(ins[0])}, precision="fp32")
        if kind == "Conv":
            return self._conv(w, K)
        if kind == "MatMul":
            return self._matmul(w, K)
        raise _Unc(f"no op kind prices {w.domain or 'ai.onnx'}:{op}")


def fuse(graph: Graph, rules: FusionRules) -> tuple:
    """The kernels a runtime with ``rules`` executes for ``graph``, and the nodes no kernel prices.

    Every non-foldable op record ends up in exactly one kernel's ``nodes`` or in the uncovered
    list; kernels the runtime inserts itself (reorders, layout transposes, duplicated DQs) have
    empty ``nodes``.
    """
    return _Fuser(graph, rules).run()


# --------------------------------------------------------------------------------------------
# summaries (conformance against onnxruntime's optimized graph)


def _matmul_label(k: Kernel) -> str:
    ot = set(k.op_types)
    if k.precision == "int8_dynamic":
        return "matmul_int8_dynamic"
    if "Gemm" in ot or "FusedGemm" in ot or "QGemm" in ot or k.params.get("bias"):
        return "gemm"
    if k.params.get("scale") or k.params.get("trans_b") or "FusedMatMul" in ot or "Transpose" in ot:
        return "fused_matmul"
    return "matmul"


def kernel_summary(kernels) -> Counter:
    """Counts comparable with :func:`runtime_kernel_summary`."""
    c = Counter()
    for k in kernels:
        c["kernels"] += 1
        if k.kind == "Conv":
            p = k.params
            c["conv"] += 1
            if p["act"] != "none":
                c["conv_act"] += 1
            if p["sum"]:
                c["conv_sum"] += 1
            c[("conv", p["cout"], tuple(p["kernel"]), tuple(p["strides"]), p["act"])] += 1
        elif k.kind == "Reorder":
            c["reorder"] += 1
            c["reorder_" + ("input" if k.params["op"] == "ReorderInput" else "output")] += 1
        elif k.kind == "MatMul":
            lab = _matmul_label(k)
            c[lab] += 1
            if k.params.get("act", "none") != "none":
                c[lab + "_act"] += 1
        elif k.kind == "Activation" and k.params["op"] in ("Gelu", "BiasGelu", "FastGelu", "QuickGelu"):
            c[k.params["op"].lower()] += 1
        elif k.kind == "LayerNorm":
            c["skip_layernorm" if k.params.get("skip") else "layernorm"] += 1
        elif k.kind == "Quant":
            c["quant"] += 1
        elif k.kind == "Transpose":
            c["transpose"] += 1
        elif k.kind == "Pool":
            c["pool"] += 1
        elif k.kind == "Elementwise":
            c["elementwise"] += 1
        elif k.kind == "Softmax":
            c["softmax"] += 1
        elif k.kind == "Free":
            c["free"] += 1
    return c


_NCHWC_NAME = re.compile(r"(_bn|_mul)?_nchwc(_token_\d+)?$")


def runtime_kernel_summary(model, level: str = "ALL", threads: int = 1, shapes: dict | None = None,
                           batch: int | None = None, optimized_path: str | None = None) -> Counter:
    """Counts derived from onnxruntime's own optimized graph of ``model`` (path/bytes/ModelProto).

    Same keys as :func:`kernel_summary`: conv, conv_act, conv_sum, ("conv", cout, kernel,
    strides, act), reorder(_input/_output), gemm(_act), fused_matmul, matmul, gelu/quickgelu/...,
    layernorm, skip_layernorm, quant, transpose, pool, elementwise, softmax, free, kernels.
    Input dims are fixed like :func:`latency.graph.load_graph` does (``shapes`` / ``batch``).
    """
    import os
    import tempfile

    import onnx
    import onnxruntime as ort
    from onnx import helper

    from .graph import _fix_inputs, _light_copy, _read_model

    m, path, base, label = _read_model(model)
    if m is model:  # a caller's ModelProto: never mutate it
        m = onnx.ModelProto()
        m.CopyFrom(model)
    _fix_inputs(m, shapes, batch, label)
    light, _ = _light_copy(m, base)
    inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
    tshape = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input):
        tt = vi.type.tensor_type
        if tt.HasField("shape"):
            tshape[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    so = ort.SessionOptions()
    so.graph_optimization_level = {"ALL": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                   "EXTENDED": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                                   "BASIC": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}[level]
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    if base:
        so.add_session_config_entry("session.model_external_initializers_file_folder_path", base)
    with tempfile.TemporaryDirectory() as td:
        out = optimized_path or os.path.join(td, "optimized.onnx")
        so.optimized_model_filepath = out
        ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
        opt = onnx.load(out)
    inits = {t.name: list(t.dims) for t in opt.graph.initializer}
    c = Counter()
    for n in opt.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        act = attrs.get("activation", b"none")
        act = act.decode() if isinstance(act, bytes) else str(act)
        op = n.op_type
        c["kernels"] += 1
        if op in ("Conv", "FusedConv", "QLinearConv", "ConvInteger", "NhwcFusedConv"):
            wi = 3 if op == "QLinearConv" else 1
            ws = inits.get(n.input[wi]) if len(n.input) > wi else None
            cout = ws[0] if ws else None
            if n.domain == "com.microsoft.nchwc":
                base_t = _NCHWC_NAME.sub("", n.name)
                s = tshape.get(base_t)
                if s is not None and len(s) == 4 and s[1]:
                    cout = s[1]
            group = attrs.get("group", 1)
            kernel = tuple(attrs.get("kernel_shape") or (ws[2:] if ws else ()))
            if not kernel and n.domain == "com.microsoft.nchwc" and ws is None:
                kernel = (1, 1)
            strides = tuple(attrs.get("strides") or [1] * len(kernel))
            if op == "QLinearConv" or op == "ConvInteger":
                act = "none"
            c["conv"] += 1
            if act != "none":
                c["conv_act"] += 1
            has_sum = (n.domain == "com.microsoft.nchwc" and len(n.input) > 3 and n.input[3]) or \
                      (op in ("FusedConv", "NhwcFusedConv") and len(n.input) > 3 and n.input[3])
            if has_sum:
                c["conv_sum"] += 1
            c[("conv", cout, kernel, strides, act)] += 1
            _ = group
        elif op in ("ReorderInput", "ReorderOutput"):
            c["reorder"] += 1
            c["reorder_" + ("input" if op == "ReorderInput" else "output")] += 1
        elif op in ("Gemm", "FusedGemm", "QGemm"):
            c["gemm"] += 1
            if op == "FusedGemm":
                c["gemm_act"] += 1
        elif op in ("MatMulIntegerToFloat", "DynamicQuantizeMatMul"):
            c["matmul_int8_dynamic"] += 1
        elif op == "FusedMatMul":
            c["fused_matmul"] += 1
        elif op in ("MatMul", "QLinearMatMul", "MatMulInteger"):
            c["matmul"] += 1
        elif op in ("Gelu", "BiasGelu", "FastGelu", "QuickGelu"):
            c[op.lower()] += 1
        elif op in ("LayerNormalization", "SimplifiedLayerNormalization"):
            c["layernorm"] += 1
        elif op in ("SkipLayerNormalization", "SkipSimplifiedLayerNormalization"):
            c["skip_layernorm"] += 1
        elif op in ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"):
            c["quant"] += 1
        elif op == "Transpose":
            c["transpose"] += 1
        elif op in ops.POOLS or op in ("QLinearAveragePool", "QLinearGlobalAveragePool", "NhwcMaxPool"):
            c["pool"] += 1
        elif op in ops.ELEMENTWISE or op in ("QLinearAdd", "QLinearMul"):
            c["elementwise"] += 1
        elif op in ("Softmax", "QLinearSoftmax"):
            c["softmax"] += 1
        elif op in ops.FREE_OPS:
            c["free"] += 1
    return c


def compare_summaries(ours: Counter, runtime: Counter, keys=None) -> dict:
    """{key: (ours, runtime)} for every key (or the given ones) where the counts differ."""
    keys = keys if keys is not None else sorted(set(ours) | set(runtime), key=str)
    return {k: (ours.get(k, 0), runtime.get(k, 0)) for k in keys if ours.get(k, 0) != runtime.get(k, 0)}
