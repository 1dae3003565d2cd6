"""TensorRT's graph: the ordered pass list of the GPU targets (``t4``, ``a10``, ``l4``, ``a100``,
``h100``) and the builder precision a model is built in.

TensorRT imports an ONNX model layer by layer (onnx-tensorrt), fuses layers in its build phase and
picks a kernel ("tactic") per fused layer in the precisions its builder flags allow. The passes
below reproduce those fusions on the work graph, each with its source in the TensorRT
documentation or source code (in the docstring of the function that applies it):

    trt_parse            ops TensorRT's ONNX parser cannot import -> uncovered
    trt_eliminate        Identity / Dropout removed
    trt_shuffle          Transpose -> Transpose merged into one shuffle
    trt_conv_scale       BatchNormalization / per-channel scale folded into the conv; Pad into the conv
    trt_qdq              explicit quantization: Q/DQ propagated through commuting layers and fused into
                         int8 convolutions / GEMMs / pointwise layers with their epilogues
    trt_gemm_bias        MatMul + bias Add -> one GEMM (bias epilogue)
    trt_gelu             erf and tanh GELU patterns -> one GELU activation
    trt_layernorm        decomposed LayerNorm -> one normalization layer
    trt_skip_layernorm   residual Add + LayerNorm -> one kernel
    trt_mha              MatMul -> [scale] -> [mask Add] -> Softmax -> MatMul -> one fused attention
                         kernel (fp16/int8 builds), the Q/K/V/output transposes read/written strided
    trt_gemm_transpose   Transpose of the last two dims into the GEMM's operand
    trt_gemm_epilogue    GEMM + activation (incl. GELU) epilogue
    trt_conv_activation  Convolution + activation
    trt_conv_add         Convolution + residual Add [+ activation]
    trt_conv_pointwise   Convolution + SiLU / HardSwish written as x * gate(x) (Conv + PWN) [+ the
                         residual Add that reads only its output]
    trt_pointwise        adjacent pointwise layers -> one pointwise kernel; a Q after a conv / GEMM fused
                         into its output
    trt_concat           concatenation elimination (producers write in place; a copy per input that
                         cannot move) and slice removal (a Split into contiguous blocks is a view)
    trt_precision        every layer's precision from the builder precision (--precision), reformat
                         kernels where fp32 network inputs / outputs meet lower-precision layers

Builder precisions (``TensorRTRules.builder_precision``, what ``--precision`` asks for):

* ``fp32``: every layer fp32 (on Ampere and later, convolutions and GEMMs on TF32 tensor cores,
  TensorRT's default ``BuilderFlag::kTF32``); TensorRT's default build;
* ``fp16``: every layer fp16 (``--fp16``);
* ``int8``: every layer with an int8 implementation in int8 (convolutions, GEMMs, pooling,
  pointwise, data movement; the fused attention stays fp16 until the registry has an int8 attention
  kind), the rest in fp16, as
  NVIDIA builds its published INT8 engines (``--int8 --fp16``: calibrated implicit quantization);
* ``best``: each layer in the fastest of fp32, fp16 and int8 by the target's cost model, as the
  builder times its tactics (``trtexec --best``).

A model that carries Q/DQ nodes is explicitly quantized: int8 exactly where its Q/DQ nodes say,
every other layer in the builder precision (fp32 unless fp16, int8 or best asks for fp16).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from .. import ops
from ..graph import OpRecord
from .passes.cleanup import eliminate
from .passes.conv import conv_act, conv_add, fold_conv
from .passes.matmul import gemm_act, matmul_add, matmul_transpose
from .passes.transformer import fast_gelu, gelu, layernorm, skip_layernorm
from .passes.transpose import merge_transposes
from .records import Uncovered
from .rules import FusionRules
from .workgraph import CONV_OPS, MATMUL_OPS, FusionState, Pass, Unpriceable

TRT_DEV_GUIDE = "TensorRT developer guide"
#: the layer fusion catalog of the TensorRT documentation (formerly "Types of Fusions" of the developer guide)
FUSION_CATALOG = "https://docs.nvidia.com/deeplearning/tensorrt/latest/performance/fusion-catalog.html"
EXPLICIT_QUANT = ("https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/"
                  "quantized-types-explicit-quantization.html")
FUSED_ATTENTION = ("https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/"
                   "transformers-fused-attention.html")
ONNX_OPERATORS = "onnx-tensorrt docs/operators.md (TensorRT 10.1, https://github.com/onnx/onnx-tensorrt)"

#: builder precisions a TensorRT target can build a model in
BUILDER_PRECISIONS = ("fp32", "fp16", "int8", "best")

#: ONNX ops TensorRT's ONNX parser does not import (onnx-tensorrt docs/operators.md, TensorRT 10.1: "N")
UNSUPPORTED_OPS = frozenset((
    "AffineGrid", "Bernoulli", "BitShift", "BitwiseAnd", "BitwiseNot", "BitwiseOr", "BitwiseXor", "BlackmanWindow",
    "Col2Im", "CenterCropPad", "Compress", "ConcatFromSequence", "ConvInteger", "DFT", "Det", "DynamicQuantizeLinear",
    "HammingWindow", "HannWindow", "ImageDecoder", "MatMulInteger", "MaxRoiPool", "MaxUnpool", "MelWeightMatrix",
    "Multinomial", "NegativeLogLikelihoodLoss", "Optional", "OptionalGetElement", "OptionalHasElement", "QLinearConv",
    "QLinearMatMul", "RegexFullMatch", "STFT", "SequenceAt", "SequenceConstruct", "SequenceEmpty", "SequenceErase",
    "SequenceInsert", "SequenceLength", "SequenceMap", "SoftmaxCrossEntropyLoss", "SplitToSequence", "StringConcat",
    "StringNormalizer", "StringSplit", "TfIdfVectorizer", "Unique"))

#: activations a TensorRT convolution kernel computes on its output ("Convolution and ReLU / GELU / Clip
#: Activation", "Generic Activation" fusions of the catalog)
TRT_CONV_ACTS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "Tanh", "Gelu", "HardSigmoid", "Elu", "Selu", "Softplus",
                 "HardSwish")
#: a TensorRT engine's layer names when a convolution absorbs the SiLU that follows it: "Conv_41 +
#: PWN(PWN(Sigmoid_42), Mul_43)" (one kernel, 0.029 ms, against 0.045 ms + 0.036 ms unfused), as recorded in
#: openppl-public/ppq ppq/samples/Yolo/03_Profile.py at commit bcf3d1d0 (Nsight profile of a TensorRT engine)
CONV_PWN_EVIDENCE = ("openppl-public/ppq ppq/samples/Yolo/03_Profile.py at commit bcf3d1d0: 'Conv_41 + "
                     "PWN(PWN(Sigmoid_42), Mul_43)'")
#: a residual Add in the same epilogue: a TensorRT 10.0.1.6 engine's layer list (RT-DETR on a GTX 1650 Ti, sm_75)
CONV_PWN_ADD_EVIDENCE = ("NVIDIA/TensorRT issue #4048 (TensorRT 10.0.1.6): '.../bottlenecks.2/conv/Conv + "
                         "PWN(PWN(PWN(.../act/Sigmoid), PWN(.../act/Mul)), PWN(..., PWN(.../fpn_blocks.0/Add)))'")
#: concatenation elimination and slice removal, as TensorRT's builder logs them
CONCAT_EVIDENCE = ("NVIDIA/TensorRT issue #3254 (a YOLOv8 build's verbose log: 'After slice removal', 'Eliminating "
                   "concatenation /model.21/Concat', 'Generating copy for /model.21/cv1/act/Mul_output_0 to "
                   "/model.21/Concat_output_0 because input is not movable', 'Retargeting /model.21/m.0/cv2/act/"
                   "Mul_output_0 to /model.21/Concat_output_0'); ultralytics/ultralytics issue #6471 (the engine's "
                   "layers: 'COPY: /model.21/Split_output_0 copy', no Split or Concat layer); dusty-nv/jetson-inference "
                   "issue #1630 (GoogLeNet: 'Eliminating concatenation inception_5b/output')")
#: activations a GEMM computes in its epilogue (cuBLASLt epilogues RELU_BIAS and GELU_BIAS, and the
#: activation fusions of the catalog)
TRT_GEMM_ACTS = ("Relu", "Gelu", "FastGelu", "Sigmoid", "Tanh", "Clip", "LeakyRelu")
#: layers that commute with (de)quantization: a DQ moves forward through them and they run on int8 data
#: (explicit quantization: "Q/DQ propagation")
QDQ_COMMUTING = ("MaxPool", "GlobalMaxPool", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice",
                 "Concat", "Split", "Pad", "Resize")
#: pointwise-and-pooling layers that fuse with their input DQs and output Q into one int8 layer
QDQ_POINTWISE = ("Add", "Sub", "Mul", "AveragePool", "GlobalAveragePool", "Relu", "Sigmoid", "Clip", "LeakyRelu",
                 "Tanh", "BatchNormalization")
#: ops a pointwise kernel is built from (the catalog's PointWise fusion: Activation, ElementWise, Unary, Scale)
#: (BatchNormalization: TensorRT imports it as a Scale layer; "Scale and Activation" fuse)
POINTWISE_OPS = frozenset(ops.ELEMENTWISE) | frozenset(ops.ACTIVATIONS) | {"QuantizeLinear", "DequantizeLinear",
                                                                          "BatchNormalization"}
#: the most op records one fused pointwise kernel takes ("the size of the fused PointWise layer is not unlimited")
MAX_POINTWISE = 24
#: op kinds with an int8 implementation in TensorRT ("Layers and Precision" of the operators reference)
INT8_KINDS = ("Conv", "ConvTranspose", "MatMul", "Pool", "Elementwise", "Activation", "Concat", "Transpose", "Slice",
              "Resize", "Pad", "Gather", "Copy", "Split")


@dataclass(frozen=True)
class TensorRTRules(FusionRules):
    """TensorRT's fusion rules for one GPU: the pass list, the compute capability ``sm`` (which fused
    attention kernels exist), whether fp32 layers use TF32 tensor cores, the builder precision the model
    is built in, and ``pricer`` (``Config -> (us, source, detail)``, the target's cost model) that the
    ``best`` precision picks each layer's precision with."""

    name: str = "tensorrt"
    passes: tuple = ()
    sm: int = 75
    tf32: bool = False
    builder_precision: str = "fp32"
    precisions: tuple = BUILDER_PRECISIONS
    pricer: Callable | None = field(default=None, compare=False, hash=False, repr=False)

    def with_precision(self, precision: str) -> "TensorRTRules":
        """These rules with the model built in ``precision`` (one of :data:`BUILDER_PRECISIONS`)."""
        if precision not in self.precisions:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(self.precisions)}")
        return replace(self, name=f"{self.name.split('@')[0]}@{precision}", builder_precision=precision)


# ---- the passes -----------------------------------------------------------------------------------


def _drop(state: FusionState, w, reason: str) -> None:
    w.dead = True
    state.uncovered.extend(Uncovered(r.name, r.op_type, reason) for r in w.members)


def trt_parse(state: FusionState) -> None:
    """Nodes TensorRT's ONNX parser cannot import become uncovered: ops outside the standard ONNX
    domain (a com.microsoft op needs a TensorRT plugin), the ops onnx-tensorrt lists as unsupported,
    and Q/DQ nodes with a non-zero zero point or a uint8 type (TensorRT quantizes symmetrically to
    int8: "``x_zero_point`` must be zero").

    Mirrors TensorRT's ONNX parser (onnx-tensorrt's op importers). Source: onnx-tensorrt
    docs/operators.md, TensorRT 10.1 (the "Supported" column and the Q/DQ restrictions).
    """
    for w in list(state.live):
        reason = None
        if w.domain not in ("", "ai.onnx"):
            reason = (f"TensorRT's ONNX parser imports the standard ONNX domain only; {w.domain}:{w.op} would need a "
                      f"TensorRT plugin ({ONNX_OPERATORS})")
        elif w.op in UNSUPPORTED_OPS:
            reason = f"TensorRT cannot run {w.op}: its ONNX parser does not support it ({ONNX_OPERATORS})"
        elif w.op in ("QuantizeLinear", "DequantizeLinear"):
            zp = w.inputs[2] if len(w.inputs) > 2 else ""
            v = state.value(zp) if zp else None
            quantized = w.inputs[0] if w.op == "DequantizeLinear" else (w.outputs[0] if w.outputs else "")
            if zp and (v is None or (v != 0).any()):
                reason = f"TensorRT quantizes symmetrically: {w.op} needs a zero point of 0 ({ONNX_OPERATORS})"
            elif state.dtype(quantized) == "uint8" or (zp and state.dtype(zp) == "uint8"):
                reason = f"TensorRT quantizes to int8, not uint8 ({ONNX_OPERATORS})"
        if reason:
            _drop(state, w, reason)
    state.reindex()


def trt_eliminate(state: FusionState) -> None:
    """Identity and Dropout (inference) layers vanish; their consumers read the input.

    Mirrors TensorRT's removal of no-op layers: onnx-tensorrt imports Dropout as an identity at
    inference and the builder erases identity layers that change no type. Source: onnx-tensorrt
    onnxOpImporters.cpp (Dropout, Identity importers); TensorRT layer fusion catalog (no-op
    elimination), ``FUSION_CATALOG``. The rewrite is :func:`latency.fusion.passes.cleanup.eliminate`.
    """
    eliminate(state)


def trt_shuffle(state: FusionState) -> None:
    """Transpose -> Transpose merge into one Transpose, which vanishes when it is the identity.
    (Reshape, Flatten, Squeeze and Unsqueeze stay free: a shuffle without a transpose is no copy.)

    Mirrors TensorRT's "Shuffle and Shuffle" fusion ("a Shuffle layer followed by another Shuffle
    layer can be replaced by a single Shuffle, or nothing") and "Shuffle Erase". Source: TensorRT
    layer fusion catalog, ``FUSION_CATALOG``. The rewrite is
    :func:`latency.fusion.passes.transpose.merge_transposes`.
    """
    merge_transposes(state)


def trt_conv_scale(state: FusionState) -> None:
    """Convolution -> BatchNormalization (which TensorRT imports as a Scale layer), or a per-channel
    constant Mul / Add, folds into the convolution's weights and bias; a constant-zero Pad before a
    convolution folds into its padding.

    Mirrors TensorRT's "Convolution and Scale" and "PaddingNd and Convolution/Deconvolution"
    fusions. Source: TensorRT layer fusion catalog, ``FUSION_CATALOG``; onnx-tensorrt imports
    BatchNormalization as IScaleLayer. The rewrite is :func:`latency.fusion.passes.conv.fold_conv`.
    """
    fold_conv(state)


def _dq_view(state: FusionState) -> dict:
    """float tensor -> the node it is the dequantized value of: a DequantizeLinear (of an activation) or a
    layer that commutes with quantization and already runs on int8 data."""
    return {d.outputs[0]: d for d in state.live
            if state.is_op(d, "DequantizeLinear") and d.outputs and not state.const(d.inputs[0])}


def _const_like(state: FusionState, t) -> bool:
    """A constant, or a DQ of one (a quantized constant TensorRT folds at build time)."""
    if state.const(t):
        return True
    d = state.producer(t)
    return state.is_op(d, "DequantizeLinear") and state.const(d.inputs[0])


def _take_dq(state: FusionState, consumer, i: int, view: dict) -> None:
    """``consumer`` reads input ``i`` as int8: the DQ feeding it fuses into it (TensorRT duplicates a
    shared DQ per consumer, so each copy fuses)."""
    src = view.get(consumer.inputs[i])
    if src is not None and state.is_op(src, "DequantizeLinear") and src.outputs[0] == consumer.inputs[i]:
        consumer.inputs[i] = src.inputs[0]
        src.info.setdefault("fused_into", []).append(consumer)


def _take_weight_dq(state: FusionState, w, i: int) -> bool:
    """Whether input ``i`` of ``w`` is a quantized constant (DQ of a constant), fusing that DQ into ``w``."""
    d = state.producer(w.inputs[i]) if i < len(w.inputs) and w.inputs[i] else None
    if not state.is_op(d, "DequantizeLinear") or not state.const(d.inputs[0]):
        return False
    w.inputs[i] = d.inputs[0]
    d.info.setdefault("fused_into", []).append(w)
    return True


def _epilogue(state: FusionState, w, view: dict) -> None:
    """Fuse into int8 layer ``w`` what follows it: a bias Add (GEMMs), a residual Add (convolutions, the
    other input float or int8), an activation, and the Q that quantizes the result."""
    nxt = state.out_single(w)
    if w.op in ("MatMul", "Gemm") and state.is_op(nxt, "Add") and nxt.domain == "":
        bias = state.other_input(nxt, w.outputs[0])
        if bias is not None and state.const(bias):
            w.info["bias"] = bias
            w.inputs = list(w.inputs[:2]) + [bias]
            state.absorb(w, nxt)
            nxt = state.out_single(w)
    if w.op in CONV_OPS and state.is_op(nxt, "Add") and nxt.domain == "":
        other = state.other_input(nxt, w.outputs[0])
        if other is not None and state.shape(other) == state.shape(w.outputs[0]):
            w.info["sum"] = other
            w.inputs = list(w.inputs) + [other]
            _take_dq(state, w, len(w.inputs) - 1, view)
            state.absorb(w, nxt)
            nxt = state.out_single(w)
    if nxt is not None and state.act_ok(nxt, TRT_CONV_ACTS) and nxt.inputs[0] == w.outputs[0]:
        w.info["act"] = nxt.op
        state.absorb(w, nxt)
        nxt = state.out_single(w)
    if state.is_op(nxt, "QuantizeLinear"):
        state.absorb(w, nxt)


def trt_qdq(state: FusionState) -> None:
    """Explicit quantization. DQ nodes move forward through the layers that commute with quantization
    (max pooling, shuffles, slicing, concatenation: they then run on int8 data); a convolution or GEMM
    whose data input is dequantized and whose weights are a quantized constant (or both operands
    dequantized) runs in int8 with its weight DQ folded, its input DQ fused, and its epilogue (bias,
    residual Add, activation) and the Q of its output fused in: a quantized region keeps no separate
    quantize kernels inside it. An Add / Mul / average pooling / activation between input DQs and an
    output Q becomes one int8 layer. What is left (a DQ feeding a layer with no int8 implementation, a
    Q after the network input) stays a (de)quantize kernel, or fuses into a pointwise kernel later.

    Mirrors TensorRT's explicit-quantization processing: Q/DQ propagation ("DQ forward-propagation and
    Q backward-propagation" through commuting layers), Q/DQ fusion into quantizable layers, weight
    quantization at build time, and the fusion of the residual Add with the convolution ("when xf1 is
    quantized ... the trailing Q-layer is fused with the convolution"). Source: TensorRT developer
    guide, "Explicit Quantization" (Q/DQ fusion, propagation, layer-placement recommendations),
    ``EXPLICIT_QUANT``.
    """
    if not any(state.is_op(w, "DequantizeLinear") for w in state.live):
        return
    view = _dq_view(state)
    for w in list(state.live):
        if w.dead or w.domain != "":
            continue
        if w.op in QDQ_COMMUTING:
            data = [i for i, t in enumerate(w.inputs) if t and (w.op == "Concat" or i == 0)]
            if data and all(w.inputs[i] in view for i in data):
                for i in data:
                    _take_dq(state, w, i, view)
                w.info.update(precision="int8", qdq=True)
                for o in w.outputs:
                    if o:
                        view[o] = w
            continue
        if w.op in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            if not w.inputs or w.inputs[0] not in view or len(w.inputs) < 2:
                continue
            if not (_take_weight_dq(state, w, 1) or w.inputs[1] in view):
                continue
            _take_dq(state, w, 0, view)
            _take_dq(state, w, 1, view)
            if len(w.inputs) > 2 and w.inputs[2]:
                _take_weight_dq(state, w, 2)
            w.info.update(precision="int8", qdq=True)
            _epilogue(state, w, view)
            state.reindex()
            continue
        if w.op in QDQ_POINTWISE:
            data = [i for i, t in enumerate(w.inputs) if t and not _const_like(state, t)
                    and (w.op != "BatchNormalization" or i == 0)]
            q = state.out_single(w)
            if data and all(w.inputs[i] in view for i in data) and state.is_op(q, "QuantizeLinear"):
                for i in data:
                    _take_dq(state, w, i, view)
                w.info.update(precision="int8", qdq=True)
                state.absorb(w, q)
                state.reindex()
    state.reindex()
    # a DQ every consumer of which fused it is gone (its records join the first of them); a DQ of a
    # constant that no quantized layer took is folded into a constant at build time
    for d in list(state.live):
        if state.is_op(d, "DequantizeLinear") and state.const(d.inputs[0]) and state.consumers(d.outputs[0]):
            owner = state.consumers(d.outputs[0])[0][0]
            owner.members = list(d.members) + owner.members
            d.dead = True
    state.reindex()
    for d in list(state.live):
        if state.is_op(d, "DequantizeLinear") and d.info.get("fused_into") and not state.consumers(d.outputs[0]) \
                and d.outputs[0] not in state.graph_outputs:
            owner = d.info["fused_into"][0]
            owner.members = list(d.members) + owner.members
            d.dead = True
    state.reindex()


def trt_gemm_bias(state: FusionState) -> None:
    """A float MatMul with a 2-D constant B followed by a bias Add becomes one GEMM that adds the bias in
    its epilogue (an N-D A is read as a 2-D matrix: no reshape kernels).

    Mirrors TensorRT's MatrixMultiply + bias fusion (the GEMM kernels' bias epilogue). Source:
    cuBLASLt ``CUBLASLT_EPILOGUE_BIAS`` (https://docs.nvidia.com/cuda/cublas/#cublasltepilogue-t),
    the GEMM library TensorRT's MatrixMultiply tactics call; TensorRT layer fusion catalog,
    ``FUSION_CATALOG``. The rewrite is :func:`latency.fusion.passes.matmul.matmul_add`.
    """
    matmul_add(state)
    for w in state.live:
        w.info.pop("gemm_3d", None)  # TensorRT reads the N-D activation as rows; no Reshape kernels


def trt_gelu(state: FusionState) -> None:
    """The GELU patterns, 0.5 x (1 + erf(x / sqrt 2)) and 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
    become one GELU activation.

    Mirrors TensorRT's "GELU" fusion ("a group of Unary and ElementWise layers that represent the
    following equations can be fused into a single GELU activation"). Source: TensorRT layer fusion
    catalog, ``FUSION_CATALOG``. The rewrites are :func:`latency.fusion.passes.transformer.gelu` and
    :func:`latency.fusion.passes.transformer.fast_gelu`.
    """
    gelu(state)
    fast_gelu(state)


def trt_layernorm(state: FusionState) -> None:
    """Decomposed LayerNorm (ReduceMean -> Sub -> Pow -> ReduceMean -> Add -> Sqrt -> Div [-> Mul ->
    Add]) over the last axis becomes one normalization kernel.

    Mirrors TensorRT's normalization fusion (the decomposed pattern is recognised as an
    INormalizationLayer, TensorRT 8.6 and later). Source: TensorRT layer fusion catalog
    ("Normalization"), ``FUSION_CATALOG``; INormalizationLayer in the TensorRT operators reference.
    The rewrite is :func:`latency.fusion.passes.transformer.layernorm`.
    """
    layernorm(state)


def trt_skip_layernorm(state: FusionState) -> None:
    """The residual Add feeding a LayerNorm fuses into the normalization kernel.

    Mirrors TensorRT's skip-LayerNorm fusion (the pointwise Add fused into the normalization, as the
    skipLayerNorm kernel of TensorRT's BERT engines does). Source: TensorRT OSS
    plugin/skipLayerNormPlugin (https://github.com/NVIDIA/TensorRT); TensorRT layer fusion catalog
    (PointWise fusion), ``FUSION_CATALOG``. The rewrite is
    :func:`latency.fusion.passes.transformer.skip_layernorm`.
    """
    skip_layernorm(state)


def _mha_supported(rules, head: int, kv: int) -> bool:
    """Whether TensorRT has a fused attention kernel for this head size on this GPU (fp16/int8 builds)."""
    if rules.sm >= 80:
        return 16 <= head <= 256 and head % 8 == 0
    # Turing: the fused MHA kernels TensorRT ships for sm_75 take head size 64 (fp16 also 32) up to 384 keys
    return head in (32, 64) and kv <= 384


def _scores(state: FusionState, t, stop):
    """(scale nodes, the MatMul) when tensor ``t``, read only by ``stop``, is MatMul(Q, K) of two activations,
    optionally scaled by a scalar Mul / Div; None otherwise."""
    p, chain = state.producer(t), []
    if state.is_op(p, "Mul", "Div") and p.domain == "" and state.only_consumer(p.outputs[0]) is stop:
        src = p.inputs[0] if p.op == "Div" else next((x for x in p.inputs if x and state.scalar(x) is None), None)
        other = state.other_input(p, src) if src else None
        if other is None or state.scalar(other) is None:
            return None
        chain, stop, p = [p], p, state.producer(src)
    if state.is_op(p, "MatMul") and p.domain == "" and state.only_consumer(p.outputs[0]) is stop \
            and not any(state.const(x) for x in p.inputs[:2]):
        return chain, p
    return None


def trt_mha(state: FusionState) -> None:
    """Attention, MatMul(Q, K^T) -> [scalar Mul / Div] -> [mask Add] -> Softmax(last axis) ->
    MatMul(., V), becomes one fused attention kernel when the model is built in fp16, int8 or best and
    the GPU has a fused kernel for the head size; the Transposes that split Q, K and V into heads and
    merge the heads of the result fuse into it too (it reads and writes them strided).

    Mirrors TensorRT's multi-head attention fusion ("constructing an attention graph using primitive
    layers like IMatrixMultiplyLayer and ISoftMaxLayer" triggers the fused attention; MHA, GQA and MQA).
    Source: TensorRT developer guide, "Fused Attention", ``FUSED_ATTENTION``; the fused MHA kernels of
    TensorRT OSS plugin/bertQKVToContextPlugin/fused_multihead_attention (sm_75: fp16 head size 64,
    int8 head size 64, up to 384 keys; sm_80 and later more), which read the packed Q/K/V and write the
    merged heads directly.
    """
    rules = state.rules
    if getattr(rules, "builder_precision", "fp32") not in ("fp16", "int8", "best"):
        return
    for sm in list(state.live):
        if sm.dead or not state.is_op(sm, "Softmax") or sm.domain != "":
            continue
        xs = state.shape(sm.inputs[0])
        if xs is None or len(xs) != 4 or (int(sm.attr("axis", -1)) % 4) != 3:
            continue
        m2 = state.out_single(sm)
        if not state.is_op(m2, "MatMul") or m2.inputs[0] != sm.outputs[0] or state.const(m2.inputs[1]):
            continue
        found, mask, adds = _scores(state, sm.inputs[0], sm), None, []
        pre = state.producer(sm.inputs[0])
        if found is None and state.is_op(pre, "Add") and pre.domain == "" and state.only_consumer(pre.outputs[0]) is sm:
            for t in pre.inputs:
                found = _scores(state, t, pre) if t else None
                if found is not None:
                    mask, adds = state.other_input(pre, t), [pre]
                    break
        if found is None:
            continue
        chain, m1 = found
        q, k, v = (state.shape(t) for t in (m1.inputs[0], m1.inputs[1], m2.inputs[1]))
        if q is None or k is None or v is None or len(q) != 4 or len(k) != 4 or len(v) != 4:
            continue
        b, h, s, d = q
        kv = k[-1]
        if v[-2] != kv or not _mha_supported(rules, d, kv):
            continue
        members = [m1] + chain + adds + [sm, m2]
        ins = [m1.inputs[0], m1.inputs[1], m2.inputs[1]]
        for i, t in enumerate(list(ins)):  # the heads' Transposes: read strided by the fused kernel
            tr = state.producer(t)
            if state.is_op(tr, "Transpose") and state.only_consumer(t) in (m1, m2):
                members.insert(0, tr)
                ins[i] = tr.inputs[0]
        last = m2
        tr = state.out_single(m2)
        if state.is_op(tr, "Transpose") and tr.inputs[0] == m2.outputs[0]:
            members.append(tr)
            last = tr
        if mask:
            ins.append(mask)
        params = {"op": "MultiHeadAttention", "batch": b, "seq_len": s, "past_len": 0, "kv_len": kv, "num_heads": h,
                  "kv_heads": k[1] if k[1] and h % k[1] == 0 else h, "head_size": d, "qkv_hidden": 0,
                  "mask": int(bool(mask)), "causal": 0, "rotary": 0}
        state.new_node(m1.name, "MultiHeadAttention", "com.microsoft", m1.rec, ins, last.outputs,
                       state.members_in_order(members), {"attention_params": params, "fused_attention": True})
        for m in members:
            m.dead = True
        state.reindex()


def trt_gemm_transpose(state: FusionState) -> None:
    """A Transpose that swaps the last two dims of a MatMul operand becomes the GEMM's transpose flag.

    Mirrors TensorRT's MatrixMultiply operand operations (``MatrixOperation::kTRANSPOSE``: the GEMM
    reads the operand transposed; the Shuffle vanishes). Source: TensorRT operators reference,
    IMatrixMultiplyLayer (https://docs.nvidia.com/deeplearning/tensorrt/operators/docs/MatrixMultiply.html).
    The rewrite is :func:`latency.fusion.passes.matmul.matmul_transpose`.
    """
    matmul_transpose(state)


def trt_gemm_epilogue(state: FusionState) -> None:
    """A GEMM (with or without its bias) absorbs the activation that follows it, GELU included.

    Mirrors TensorRT's GEMM + activation fusion (the GEMM epilogue computes the activation). Source:
    cuBLASLt epilogues ``CUBLASLT_EPILOGUE_RELU_BIAS`` and ``CUBLASLT_EPILOGUE_GELU_BIAS``
    (https://docs.nvidia.com/cuda/cublas/#cublasltepilogue-t); TensorRT layer fusion catalog
    (activation fusions), ``FUSION_CATALOG``. The rewrite is
    :func:`latency.fusion.passes.matmul.gemm_act`.
    """
    gemm_act(state)


def trt_conv_activation(state: FusionState) -> None:
    """A float convolution absorbs the activation that follows it (ReLU, Clip, GELU, sigmoid, ...).

    Mirrors TensorRT's "Convolution and ReLU Activation", "Convolution and GELU Activation",
    "Convolution and Clip Activation" and "Generic Activation" fusions. Source: TensorRT layer fusion
    catalog, ``FUSION_CATALOG``. The rewrite is :func:`latency.fusion.passes.conv.conv_act`.
    """
    conv_act(state)


def trt_conv_add(state: FusionState) -> None:
    """Convolution + a residual Add of the same shape (no broadcast) [+ activation] becomes one
    convolution with the sum in its epilogue.

    Mirrors TensorRT's "Convolution and ElementWise Operation" fusion ("a Convolution layer followed by
    a simple sum ... in an ElementWise layer can be fused into the Convolution layer; the sum must not
    use broadcasting"). Source: TensorRT layer fusion catalog, ``FUSION_CATALOG``. The rewrite is
    :func:`latency.fusion.passes.conv.conv_add`.
    """
    conv_add(state)


def trt_conv_pointwise(state: FusionState) -> None:
    """A float convolution absorbs the pointwise chain x * gate(x) that reads only its output: SiLU / Swish
    (x * Sigmoid(x)) and the decomposed HardSwish (x * HardSigmoid(x)); its epilogue computes it.

    Mirrors TensorRT's fusion of a convolution with the PointWise layer that follows it (engine layers
    named "Conv + PWN(PWN(Sigmoid), Mul)"). Source: the PointWise fusion of the layer fusion catalog
    (``FUSION_CATALOG``) and the engine profile in ``CONV_PWN_EVIDENCE``. The single-op HardSwish is
    absorbed by ``trt_conv_activation`` (``TRT_CONV_ACTS``).
    """
    gates = {"Sigmoid": "Swish", "HardSigmoid": "HardSwish"}
    for w in list(state.live):
        if w.dead or not state.is_op(w, "Conv", "FusedConv") or w.info.get("act") or w.info.get("qdq"):
            continue
        out = w.outputs[0] if w.outputs else None
        if not out or out in state.graph_outputs or state.dtype(w.inputs[0]) not in ("float32", "float16"):
            continue
        users = [c for c, _ in state.consumers(out)]
        if len(users) != 2:
            continue
        gate = next((u for u in users if state.is_op(u, *gates) and u.inputs[0] == out), None)
        mul = next((u for u in users if state.is_op(u, "Mul")), None)
        if gate is None or mul is None or gate.outputs[0] in state.graph_outputs:
            continue
        if gate.op == "HardSigmoid" and abs(float(gate.attr("alpha", 0.2) or 0.2) - 1.0 / 6) > 1e-3:
            continue
        if sorted(t for t in mul.inputs if t) != sorted((out, gate.outputs[0])):
            continue
        if [c for c, _ in state.consumers(gate.outputs[0])] != [mul]:
            continue
        w.info["act"] = gates[gate.op]
        w.op = "FusedConv"
        state.absorb(w, gate, outputs=False)
        state.absorb(w, mul)
        _residual_after_act(state, w)
    state.reindex()


def _residual_after_act(state: FusionState, w) -> None:
    """A convolution whose epilogue computes x * gate(x) also takes a residual Add that reads only its
    output (a bottleneck's shortcut after the SiLU): TensorRT 10 builds "Conv + PWN(PWN(Sigmoid, Mul), Add)"
    as one layer (``CONV_PWN_ADD_EVIDENCE``)."""
    a = state.out_single(w)
    if not state.is_op(a, "Add") or a.domain != "" or w.info.get("sum") or a.outputs[0] in state.graph_outputs:
        return
    ins = [t for t in a.inputs if t]
    if len(ins) != 2 or ins[0] == ins[1] or w.outputs[0] not in ins:
        return
    other = ins[1] if ins[0] == w.outputs[0] else ins[0]
    if state.shape(other) is None or state.shape(other) != state.shape(w.outputs[0]):
        return
    w.info["sum"] = other
    w.inputs = list(w.inputs) + [other]
    state.absorb(w, a)


#: layers whose output is their input's data under another shape (a Shape's output is not)
_RESHAPES = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity")


def _views_through(state: FusionState, t):
    """The node whose kernel writes tensor ``t`` when the metadata-only layers (Reshape & co) between are
    followed back, each tensor on the way read by one layer only; None where something else reads it."""
    while True:
        if not t or t in state.graph_outputs or state.const(t):
            return None
        p = state.producer(t)
        if p is None or p.dead:
            return None
        if p.op in _RESHAPES and p.domain in ("", "ai.onnx") and p.inputs and p.inputs[0]:
            if len(state.consumers(p.inputs[0])) != 1:
                return None
            t = p.inputs[0]
            continue
        return p


def trt_concat(state: FusionState) -> None:
    """Concatenations are eliminated: each input's producer writes its output straight into its place in
    the concatenation's buffer ("retargeting"), and a copy kernel is generated only for the inputs that
    cannot move, those another layer reads too, a network input or constant, a removed slice. Split layers
    along an axis with nothing but ones before it (each part a contiguous block) are removed: their
    readers read the parts in place.

    Mirrors TensorRT's concatenation elimination and slice removal (the builder's log: "Eliminating
    concatenation X", "Retargeting Y to X", "Generating copy for Z to X because input is not movable",
    "After slice removal"; engine layers "COPY: .../Split_output_0 copy"). Source: ``CONCAT_EVIDENCE``.
    """
    for w in list(state.live):
        if w.dead or not state.is_op(w, "Split") or w.domain != "" or not w.inputs or not w.inputs[0]:
            continue
        x = state.shape(w.inputs[0])
        if x is None or w.info.get("qdq"):
            continue
        ax = int(w.attr("axis", 0)) % len(x)
        if all(d == 1 for d in x[:ax]):
            w.info["view"] = True
    for w in list(state.live):
        if w.dead or not state.is_op(w, "Concat") or w.domain != "" or w.info.get("qdq"):
            continue
        ins = list(w.inputs)
        if not ins or any(not t or state.shape(t) is None for t in ins) or len(set(ins)) != len(ins):
            continue
        copy = []
        for i, t in enumerate(ins):
            p = _views_through(state, t)
            if p is None or p.info.get("view") or p.op == "Concat" or len(state.consumers(t)) != 1:
                copy.append(i)
        if len(copy) == len(ins):
            continue  # nothing moves: the concatenation runs as it is
        if copy:
            w.info["concat_copy"] = copy
        else:
            w.info["view"] = True


def _pointwise(state: FusionState, w) -> bool:
    return (not w.dead and w.op in POINTWISE_OPS and w.domain in ("", "com.microsoft")
            and len([o for o in w.outputs if o]) == 1)


def _fits(shape, out) -> bool:
    """Whether a tensor of ``shape`` broadcasts to ``out`` (numpy rules)."""
    if shape is None or out is None or len(shape) > len(out):
        return False
    return all(a in (1, b) for a, b in zip(shape[::-1], out[::-1]))


def trt_pointwise(state: FusionState) -> None:
    """Adjacent pointwise layers (elementwise, activations, unary math, casts, leftover Q/DQ) fuse into
    one pointwise kernel, at most :data:`MAX_POINTWISE` layers; a Q that follows a convolution or GEMM
    fuses into that layer's output.

    Mirrors TensorRT's "PointWise" fusion ("multiple adjacent PointWise layers can be fused into a
    single PointWise layer": Activation, Constant, ElementWise, PointWise, Scale, Unary) and the
    quantization of a layer's output in explicit quantization. Source: TensorRT layer fusion catalog,
    ``FUSION_CATALOG``; ``EXPLICIT_QUANT``.
    """
    changed = True
    while changed:
        changed = False
        for p in list(state.live):
            if not _pointwise(state, p):
                continue
            c = state.out_single(p)
            if c is None or not _pointwise(state, c) or len(p.members) + len(c.members) > MAX_POINTWISE:
                continue
            if bool(p.info.get("qdq")) != bool(c.info.get("qdq")):  # an int8 layer's Q/DQ bound its region
                continue
            out = p.outputs[0]
            ins = []
            for t in c.inputs:
                for x in (p.inputs if t == out else [t]):
                    if x and x not in ins:
                        ins.append(x)
            c.members = state.members_in_order([p, c])
            c.inputs = ins
            c.info["pointwise"] = p.info.get("pointwise", [p.op]) + c.info.get("pointwise", [c.op])
            p.dead = True
            state.reindex()
            changed = True
    for w in state.live:
        if not w.info.get("pointwise"):
            continue
        # the fused kernel is priced as one elementwise pass over its inputs (or one unary pass)
        members = w.info["pointwise"]
        out = state.shape(w.outputs[0])
        # per-channel constants (a Scale layer's) do not broadcast numpy-wise: they are small, leave them out
        w.inputs = [t for t in w.inputs if t and (not _const_like(state, t) or _fits(state.shape(t), out))]
        variable = [t for t in w.inputs if t and not state.const(t)]
        if len([t for t in w.inputs if t]) >= 2:
            w.op = next((m for m in members if m in ops.ELEMENTWISE), "Add")
        elif variable:
            w.op = next((m for m in members if m in ops.ACTIVATIONS), members[0])
        w.domain = ""
    for q in list(state.live):
        if not state.is_op(q, "QuantizeLinear") or q.info.get("pointwise"):
            continue
        p = state.producer(q.inputs[0])
        if p is not None and p.op in CONV_OPS + MATMUL_OPS and state.out_single(p) is q:
            state.absorb(p, q)
    state.reindex()


def _kind(w) -> str | None:
    if w.info.get("fused_attention"):
        return "Attention"
    if w.op in CONV_OPS:
        return "Conv"
    if w.op in MATMUL_OPS:
        return "MatMul"
    return ops.kind_of_op(w.op)


def _candidates(state: FusionState, w, kind: str, mode: str, explicit: bool) -> tuple:
    """The precisions layer ``w`` may run in under builder precision ``mode``."""
    rules = state.rules
    if w.info.get("fused_attention"):
        # TensorRT has int8 fused attention kernels (sm_75: head size 64, up to 384 keys), but the op registry has
        # no int8 Attention kind yet (a CPU profile could not measure one): int8 builds run it in fp16 here
        int8 = "int8" in ops.get_kind("Attention").precisions and (
            rules.sm >= 80 or (w.info["attention_params"]["head_size"] == 64
                               and w.info["attention_params"]["kv_len"] <= 384))
        if mode == "int8" and int8 and not explicit:
            return ("int8",)
        return ("fp16", "int8") if mode == "best" and int8 and not explicit else ("fp16",)
    lower = "fp32" if mode in ("fp32", None) else "fp16"
    if explicit:  # Q/DQ decide int8; every other layer runs in the builder precision
        return ("fp32", "fp16") if mode == "best" else (lower,)
    eligible = kind in INT8_KINDS
    if mode == "int8":
        return ("int8",) if eligible else ("fp16",)
    if mode == "best":
        return ("fp32", "fp16") + (("int8",) if eligible else ())
    return (lower,)


def _price(state: FusionState, w, precision: str) -> float:
    from .lower import lower_node

    w.info["precision"] = precision
    try:
        ks = lower_node(state, w)
    except Unpriceable:
        return float("inf")
    return sum(state.rules.pricer(k.config)[0] for k in ks if not ops.get_kind(k.kind).free)


def trt_precision(state: FusionState) -> None:
    """Every layer's precision from the builder precision (see the module docstring): int8 where Q/DQ
    say (explicit quantization), else fp32 / fp16 / int8 where it has an int8 implementation / the
    fastest of the three by the target's cost model (best). Where an fp32 network input feeds a layer
    of another precision, or such a layer writes an fp32 network output, a reformat kernel converts it.

    Mirrors TensorRT's builder precision flags (``BuilderFlag::kFP16``, ``kINT8``, ``kTF32`` on by
    default; ``trtexec --fp16 / --int8 / --best``) and its reformat layers at the network's I/O.
    Source: TensorRT developer guide, "Reduced Precision" and "Explicit Quantization"
    (``EXPLICIT_QUANT``); the operators reference's "Layers and Precision" table for which layers have
    int8 implementations.
    """
    rules = state.rules
    mode = getattr(rules, "builder_precision", "fp32")
    explicit = any(w.info.get("qdq") or state.is_op(w, "QuantizeLinear", "DequantizeLinear") for w in state.live)
    for w in state.live:
        if w.info.get("qdq") and w.info.get("precision") == "int8":
            continue
        kind = _kind(w)
        if kind is None or ops.get_kind(kind).free or kind in ("Quant", "Reorder"):
            continue
        cands = _candidates(state, w, kind, mode, explicit)
        if mode is None and w.inputs and state.dtype(w.inputs[0]) == "float16":
            cands = ("fp16",)  # as stored (the CUDA EP's default): an fp16 op runs its fp16 kernel
        if len(cands) > 1 and getattr(rules, "pricer", None) is not None:
            prices = {p: _price(state, w, p) for p in cands}
            w.info["precision"] = min(cands, key=lambda p: (prices[p], cands.index(p)))
        else:
            w.info["precision"] = cands[-1] if mode == "best" else cands[0]
    if mode in ("fp32", None):
        return
    reformat = []
    for t in state.graph.inputs:
        if t.dtype != "float32":
            continue
        users = [c for c, _ in state.consumers(t.name) if c.info.get("precision") not in (None, "fp32")
                 and _kind(c) not in ("Quant", None)]
        if users:
            reformat.append((t.name, users[0], users[0].info["precision"], users[0].pos - 0.5))
    for t in state.graph.outputs:
        p = state.producer(t.name)
        if t.dtype == "float32" and p is not None and p.info.get("precision") not in (None, "fp32") \
                and _kind(p) not in ("Quant", None):
            reformat.append((t.name, p, p.info["precision"], p.pos + 0.5))
    for name, near, prec, pos in reformat:
        if state.shape(name) is None:
            continue
        rec = OpRecord(f"Reformat({name})", "Cast", "", (), (), {}, False, near.rec.index)
        w = state.new_node(rec.name, "Cast", "", rec, [name], [f"{name}/reformatted"], [],
                           {"precision": "fp16" if prec == "int8" else prec, "reformat": True})
        w.pos = pos
    state.reindex()


def _trt_pass(name, matches, produces, mirrors, apply, switches=()):
    return Pass(name, matches=matches, produces=produces, mirrors=mirrors, apply=apply, switches=switches)


TRT_PARSE = _trt_pass("trt_parse", "ops outside the standard ONNX domain or unsupported by onnx-tensorrt; Q/DQ with "
                      "non-zero zero points", (), "TensorRT ONNX parser (onnx-tensorrt importers)", trt_parse)
TRT_ELIMINATE = _trt_pass("trt_eliminate", "Identity; Dropout", (), "TensorRT no-op layer elimination", trt_eliminate)
TRT_SHUFFLE = _trt_pass("trt_shuffle", "Transpose -> Transpose", ("Transpose",),
                        "TensorRT Shuffle and Shuffle, Shuffle Erase", trt_shuffle, ("transpose_merge",))
TRT_CONV_SCALE = _trt_pass("trt_conv_scale", "Conv -> BatchNormalization | per-channel Mul / Add; zero Pad -> Conv",
                           ("Conv",), "TensorRT Convolution and Scale, PaddingNd and Convolution", trt_conv_scale,
                           ("fold_bn", "pad_fusion"))
TRT_QDQ = _trt_pass("trt_qdq", "DQ -> commuting layers; DQ -> Conv / ConvTranspose / MatMul / Gemm (DQ weights) -> "
                    "[bias / residual Add] [-> act] [-> Q]; DQ -> Add / Mul / AveragePool / act -> Q",
                    ("Conv", "MatMul", "Gemm", "Add", "Mul", "AveragePool", "MaxPool"),
                    "TensorRT explicit quantization: Q/DQ propagation and fusion", trt_qdq, ("qdq",))
TRT_GEMM_BIAS = _trt_pass("trt_gemm_bias", "float MatMul(A, B 2-D constant) -> bias Add", ("Gemm",),
                          "TensorRT MatrixMultiply + bias (GEMM bias epilogue)", trt_gemm_bias, ("matmul_add",))
TRT_GELU = _trt_pass("trt_gelu", "erf GELU; tanh GELU", ("Gelu", "FastGelu"), "TensorRT GELU fusion", trt_gelu,
                     ("gelu", "fast_gelu"))
TRT_LAYERNORM = _trt_pass("trt_layernorm", "ReduceMean -> Sub -> Pow(2) -> ReduceMean -> Add(eps) -> Sqrt -> Div "
                          "[-> Mul [-> Add]] over the last axis", ("LayerNormalization",),
                          "TensorRT normalization fusion (INormalizationLayer)", trt_layernorm, ("layernorm",))
TRT_SKIP_LAYERNORM = _trt_pass("trt_skip_layernorm", "Add(a, b; equal 3-D shapes) -> LayerNormalization",
                               ("SkipLayerNormalization",), "TensorRT skip-LayerNorm (skipLayerNorm kernel)",
                               trt_skip_layernorm, ("skip_layernorm",))
TRT_MHA = _trt_pass("trt_mha", "[Transpose ->] MatMul(Q, K) -> [scalar Mul / Div] -> [mask Add] -> Softmax -> "
                    "MatMul(., V) [-> Transpose], fp16 / int8 / best builds", ("MultiHeadAttention",),
                    "TensorRT multi-head attention fusion", trt_mha)
TRT_GEMM_TRANSPOSE = _trt_pass("trt_gemm_transpose", "Transpose(last two dims) -> MatMul operand", ("FusedMatMul",),
                               "TensorRT MatrixMultiply MatrixOperation::kTRANSPOSE", trt_gemm_transpose,
                               ("matmul_trans",))
TRT_GEMM_EPILOGUE = _trt_pass("trt_gemm_epilogue", "GEMM -> activation in rules.gemm_act / rules.matmul_act",
                              ("FusedGemm",), "TensorRT GEMM + activation (GEMM epilogue)", trt_gemm_epilogue,
                              ("gemm_act", "matmul_act"))
TRT_CONV_ACTIVATION = _trt_pass("trt_conv_activation", "float Conv -> activation in rules.conv_act", ("FusedConv",),
                                "TensorRT Convolution and Activation", trt_conv_activation, ("conv_act",))
TRT_CONV_ADD = _trt_pass("trt_conv_add", "Conv -> residual Add (same shapes) [-> activation]", ("FusedConv",),
                         "TensorRT Convolution and ElementWise Operation", trt_conv_add, ("conv_add",))
TRT_CONV_POINTWISE = _trt_pass("trt_conv_pointwise", "float Conv -> x * Sigmoid(x) | x * HardSigmoid(x) reading only "
                               "the conv's output [-> residual Add reading only that]", ("FusedConv",), "TensorRT Convolution and PointWise (Conv + PWN)",
                               trt_conv_pointwise)
TRT_POINTWISE = _trt_pass("trt_pointwise", "pointwise -> pointwise (single consumer); Conv / GEMM -> Q",
                          ("PointWise",), "TensorRT PointWise fusion", trt_pointwise)
TRT_CONCAT = _trt_pass("trt_concat", "Concat (inputs written in place; copies of the inputs that cannot move); "
                      "Split along an axis with only ones before it", ("Concat", "Split"),
                      "TensorRT concatenation elimination and slice removal", trt_concat)
TRT_PRECISION = _trt_pass("trt_precision", "every layer (builder precision); fp32 network I/O next to fp16 / int8 "
                          "layers", ("Reformat",), "TensorRT builder precision flags and I/O reformats",
                          trt_precision)

#: TensorRT's build, in order: parse, clean up, fold, quantize, fuse GEMMs / normalizations / attention,
#: epilogues, pointwise fusion, then the precision of every layer
TENSORRT_PASSES = (TRT_PARSE, TRT_ELIMINATE, TRT_SHUFFLE, TRT_CONV_SCALE, TRT_QDQ, TRT_GEMM_BIAS, TRT_GELU,
                   TRT_LAYERNORM, TRT_SKIP_LAYERNORM, TRT_MHA, TRT_GEMM_TRANSPOSE, TRT_GEMM_EPILOGUE,
                   TRT_CONV_ACTIVATION, TRT_CONV_ADD, TRT_CONV_POINTWISE, TRT_POINTWISE, TRT_CONCAT, TRT_PRECISION)


def tensorrt_rules(sm: int = 75, tf32: bool = False, pricer: Callable | None = None,
                   builder_precision: str = "fp32") -> TensorRTRules:
    """TensorRT's rules on a GPU of compute capability ``sm`` (75 for sm_75), ``tf32`` when its fp32
    layers run on TF32 tensor cores, ``pricer`` the target's cost model (for the ``best`` precision)."""
    return TensorRTRules(
        name=f"tensorrt-sm{sm}", passes=TENSORRT_PASSES, sm=sm, tf32=tf32, pricer=pricer,
        builder_precision=builder_precision, nchwc=False, fold_bn=True, pad_fusion=True, conv_act=TRT_CONV_ACTS,
        conv_add=True, conv_add_needs_bias=False, conv_add_acts=TRT_CONV_ACTS, matmul_add=True, matmul_scale=False,
        matmul_trans=True, gemm_act=TRT_GEMM_ACTS, matmul_act=TRT_GEMM_ACTS, gelu=True, bias_gelu=False,
        fast_gelu=True, quick_gelu=False, layernorm=True, simplified_layernorm=False, skip_layernorm=True, qdq=True,
        qdq_nhwc=False, dynamic_quant=False, transpose_merge=True, hardswish_inline=False, fp16_as_fp32=False)


__all__ = ["TensorRTRules", "tensorrt_rules", "TENSORRT_PASSES", "BUILDER_PRECISIONS", "UNSUPPORTED_OPS",
           "TRT_PARSE", "TRT_ELIMINATE", "TRT_SHUFFLE", "TRT_CONV_SCALE", "TRT_QDQ", "TRT_GEMM_BIAS", "TRT_GELU",
           "TRT_LAYERNORM", "TRT_SKIP_LAYERNORM", "TRT_MHA", "TRT_GEMM_TRANSPOSE", "TRT_GEMM_EPILOGUE",
           "TRT_CONV_ACTIVATION", "TRT_CONV_ADD", "TRT_POINTWISE", "TRT_PRECISION"]
