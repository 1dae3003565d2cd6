"""What one target's runtime fuses: :class:`FusionRules`, its ordered pass list and the switches and
parameters those passes read (which activations a conv absorbs, the NCHWc block, ...)."""

from __future__ import annotations

from dataclasses import dataclass

from .. import ops
from .passes import ORT_ORDER

#: activations a 2-D Gemm absorbs on onnxruntime CPU (GemmActivationFusion)
GEMM_ACTS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "HardSigmoid", "Softplus", "Selu", "Softsign",
             "ThresholdedRelu")
#: activations ConvAddActivationFusion takes along after the residual Add
CONV_ADD_ACTS = ("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid")


@dataclass(frozen=True)
class FusionRules:
    """A target's fusion: ``passes`` applied in order (each when one of its switches is on), and the
    switches and parameters they read. Tuples of activations double as on/off switches.

    The default is every pass in onnxruntime's order with the CPU switches, NCHWc off.
    """

    name: str = "custom"
    #: the passes, in the order they run (see :mod:`latency.fusion.passes`)
    passes: tuple = ORT_ORDER
    #: equal ops on equal inputs are one node (CommonSubexpressionElimination)
    cse: bool = True
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
    conv_add_acts: tuple = CONV_ADD_ACTS
    #: MatMul + bias Add -> Gemm (3-D A flattened to 2-D)
    matmul_add: bool = True
    #: MatMul + scalar Mul/Div on an input or the output -> FusedMatMul(alpha)
    matmul_scale: bool = True
    #: Transpose of the last two dims + MatMul -> FusedMatMul(transA/transB)
    matmul_trans: bool = True
    #: activations a 2-D Gemm absorbs (FusedGemm); () disables
    gemm_act: tuple = GEMM_ACTS
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
    #: int8 (signed) activations may run int8 convs and MatMuls (QDQIsInt8Allowed: true on arm64 only).
    #: False (x86-64): a Q -> DQ pair whose Q feeds that one DQ becomes uint8 (QDQS8ToU8Transformer, and int8
    #: constant weights become uint8); a unit whose activations stay int8 (a Q read by several DQs) is not
    #: fused and runs in float between its Q/DQ kernels
    qdq_int8_allowed: bool = True
    #: int8 convs / pools run NHWC: Transpose kernels where int8 regions start and end
    qdq_nhwc: bool = False
    #: fp16 convs with group 1 run as NHWC kernels (onnxruntime's NhwcFusedConv on arm64, where the CPU EP
    #: has fp16 conv kernels); fp16 pools on NHWC data and the elementwise ops and Concats between stay
    #: NHWC, grouped and depthwise convs stay NCHW; Transpose kernels where NHWC regions start and end. The residual
    #: Add goes to the conv the NhwcTransformer re-created first (a downsampling block's shortcut conv)
    fp16_nhwc: bool = False
    #: fp32 convs run as NHWC kernels too (onnxruntime's NhwcFusedConv through KleidiAI's SME kernels on arm64
    #: cores with SME: NhwcTransformer for float Conv / FusedConv, MLAS CheckCapabilitiesSme): group 1, batch 1,
    #: a kernel of at least 3x3, the four pads equal, more than one filter; 1x1, depthwise and grouped convs
    #: stay NCHW, and so do fp32 pools (no NHWC fp32 pool kernel), with Transpose kernels between. A residual
    #: Add joins an NHWC conv only where its other input comes NHWC from a conv too (else a Transpose sits
    #: between the conv and the Add, which then runs alone, and so does its activation)
    fp32_nhwc: bool = False
    #: activations an fp16 Conv absorbs where they differ from ``conv_act`` (None: the same): on arm64
    #: onnxruntime fuses Relu and Clip into fp16 convs, not Sigmoid (EfficientNet's squeeze-excitation)
    #: or HardSigmoid (MobileNetV3's)
    fp16_conv_act: tuple | None = None
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
    #: the passes that also rewrite fp16 nodes (None: all). onnxruntime fuses an fp16 node only where the
    #: fused kernel has an fp16 implementation on the EP; on x86 its CPU EP has none for Gelu, FusedMatMul,
    #: SkipLayerNormalization, FusedGemm/FusedConv activations, so those stay the separate fp32 kernels
    #: InsertCastTransformer later runs them as; on arm64 none for Gelu, QuickGelu, FusedMatMul, FusedGemm
    fp16_passes: tuple | None = None
    #: with ``fp16_as_fp32``: ops the EP runs in fp16 itself (data movement and LayerNormalization on
    #: x86); a Cast kernel sits on every tensor between one of them and an op run in fp32
    fp16_native: tuple = ()
    #: Softmax has no fp16 kernel and its function body is inlined (ReduceMax, Sub, Exp, ReduceSum, Div:
    #: five fp32 kernels); x86 and arm64
    fp16_softmax_inline: bool = False
    #: without ``fp16_as_fp32`` (fp16 kernels): ops the EP has no fp16 kernel for; their fp16 nodes run as
    #: fp32 kernels, a Cast kernel on every fp16 tensor between one of them and an op run in fp16
    #: (InsertCastTransformer; an isolated fp16 node between them runs in fp32 too)
    fp16_no_kernel: tuple = ()

    def __post_init__(self):
        # activation lists also accept True (the default list), False/None (none) or one name
        defaults = {"conv_act": ops.FUSABLE_ACTS, "gemm_act": GEMM_ACTS, "matmul_act": ("Relu", "Gelu"),
                    "conv_add_acts": CONV_ADD_ACTS}
        for name, default in defaults.items():
            value = getattr(self, name)
            if value is True:
                value = default
            elif not value:
                value = ()
            elif isinstance(value, str):
                value = (value,)
            object.__setattr__(self, name, tuple(value))
        if isinstance(self.fp16_conv_act, str):
            object.__setattr__(self, "fp16_conv_act", (self.fp16_conv_act,))
        elif self.fp16_conv_act is not None:
            object.__setattr__(self, "fp16_conv_act", tuple(self.fp16_conv_act))
        object.__setattr__(self, "passes", tuple(self.passes))
        object.__setattr__(self, "fp16_no_kernel", (self.fp16_no_kernel,) if isinstance(self.fp16_no_kernel, str)
                           else tuple(self.fp16_no_kernel or ()))

    @property
    def pass_names(self) -> tuple:
        """The names of the passes, in order."""
        return tuple(p.name for p in self.passes)
