"""onnxruntime's CPU execution provider at ORT_ENABLE_ALL: the x86-64 pass list (with the NCHWc
blocked layout, parameterised by its block: 8 channels with AVX2, 16 with AVX-512) and the arm64 one
(no blocked layout).

The x86 list was checked against onnxruntime 1.31's optimized graphs (ORT_ENABLE_ALL, AVX2) on
hand-built patterns, the onnx "light" model zoo and profilers/zoo: same kernels, same reorders.
"""

from __future__ import annotations

import dataclasses

from .passes import (BIAS_GELU, CANCEL_TRANSPOSES, CONV_ACTIVATION, CONV_ADD, CSE, DYNAMIC_QUANT, ELIMINATE, FAST_GELU,
                     FOLD_CONV, GELU, GEMM_ACTIVATION, HARDSWISH, LAYERNORM, MATMUL_ADD, MATMUL_NBITS_BIAS, MATMUL_SCALE,
                     MATMUL_TRANSPOSE, MERGE_TRANSPOSES, NCHWC, NHWC_FP16, NHWC_INT8, PUSH_SPLIT, QDQ, QUICK_GELU,
                     SIMPLIFIED_LAYERNORM, SKIP_LAYERNORM)
from .rules import FusionRules

#: level 1, then level 2, then level 3, as onnxruntime's CPU EP applies them on x86-64
X86_PASSES = (ELIMINATE, CSE, HARDSWISH, PUSH_SPLIT, MERGE_TRANSPOSES, CANCEL_TRANSPOSES, FOLD_CONV, MATMUL_ADD, GELU,
              LAYERNORM, QDQ, GEMM_ACTIVATION, DYNAMIC_QUANT, CONV_ACTIVATION, SIMPLIFIED_LAYERNORM, MATMUL_TRANSPOSE,
              BIAS_GELU, MATMUL_NBITS_BIAS, SKIP_LAYERNORM, FAST_GELU, QUICK_GELU, MATMUL_SCALE, NCHWC, CONV_ADD,
              NHWC_INT8)

#: the same without the NCHWc blocked layout, which onnxruntime has on x86-64 only, and with the NHWC
#: layout of fp16 convs, which run as fp16 kernels on arm64 only
ARM64_PASSES = tuple(p for p in X86_PASSES if p is not NCHWC) + (NHWC_FP16,)


#: the passes that still rewrite fp16 nodes on x86 (the level-1 clean-ups, folds and MatMul + bias, which
#: need no fp16 kernel, the level-3 layout passes, which run after the Casts are in, and QuickGelu, which
#: has an fp16 kernel: EfficientNet's x * Sigmoid(x) fuses); the others leave fp16 nodes alone. Checked on
#: onnxconverter-common fp16 files (keep_io_types, no block list) of ViT-tiny, DistilGPT-2 and six CNNs
#: against onnxruntime 1.32's optimized graph: no Gelu, FusedMatMul or SkipLayerNormalization, an
#: inlined Softmax, LayerNormalization / Transpose / Reshape / Squeeze / Split / Gather left in fp16 with
#: Casts around them (ViT-tiny: 584 kernels against the runtime's 582, 131 Casts against 129; SqueezeNet 50 kernels as
#: the runtime's, one Cast more and one reorder fewer;
#: ShuffleNetV2 213 against 212)
X86_FP16_PASSES = tuple(p.name for p in (ELIMINATE, CSE, HARDSWISH, PUSH_SPLIT, MERGE_TRANSPOSES, CANCEL_TRANSPOSES,
                                         FOLD_CONV, MATMUL_ADD, LAYERNORM, QDQ, DYNAMIC_QUANT, NCHWC, CONV_ADD,
                                         NHWC_INT8, CONV_ACTIVATION, QUICK_GELU))
#: ops onnxruntime's x86 CPU EP has fp16 kernels for in those graphs (an isolated one, between ops run in
#: fp32, runs in fp32 too: lower._fp16_boundary_casts)
X86_FP16_NATIVE = ("LayerNormalization", "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Split", "Gather", "Concat",
                   "Cast")


def ORT_CPU_X86_RULES(block: int = 8) -> FusionRules:
    """onnxruntime CPU EP on x86-64 at ORT_ENABLE_ALL. ``block``: 8 (AVX2) or 16 (AVX-512)."""
    return FusionRules(name=f"ort-cpu-x86-nchwc{block}", passes=X86_PASSES, nchwc=True, nchwc_block=int(block),
                       conv_add=True, qdq_nhwc=True, fp16_as_fp32=True, fp16_passes=X86_FP16_PASSES,
                       fp16_native=X86_FP16_NATIVE, fp16_softmax_inline=True,
                       qdq_int8_allowed=False)


#: the passes that still rewrite fp16 nodes on arm64: the x86 ones less QuickGelu (EfficientNet's x * Sigmoid(x)
#: stays two kernels), plus the fp16 NHWC layout; no Gelu, FusedMatMul or FusedGemm either (ViT-tiny, LeNet-5)
ARM64_FP16_PASSES = tuple(n for n in X86_FP16_PASSES if n not in (QUICK_GELU.name, NCHWC.name)) + (NHWC_FP16.name,)

#: ops onnxruntime's arm64 CPU EP has no fp16 kernel for: they run in fp32 between Cast kernels in its
#: optimized graphs of MobileNetV3-small (HardSigmoid), EfficientNet-B0 (Sigmoid), DenseNet-121
#: (BatchNormalization), ShuffleNetV2 (ReduceMean), ViT-tiny (Softmax's inlined ReduceMax, Exp, ReduceSum;
#: its Sub and Div stay fp16) and a small U-Net (Resize, ConvTranspose), onnxruntime 1.31 under qemu-user
#: (Neoverse-N1)
ARM64_FP16_NO_KERNEL = ("BatchNormalization", "Sigmoid", "HardSigmoid", "ReduceMean", "ReduceMax", "ReduceSum", "Exp",
                        "Resize", "ConvTranspose")

#: onnxruntime CPU EP on arm64 (Neoverse-N1 class): no NCHWc; Conv(+bias)+Add(+act) -> FusedConv; fp16 kernels,
#: fp16 convs with group 1 NHWC (NhwcFusedConv), ops with no fp16 kernel in fp32 between Casts. Checked under
#: qemu-user (Neoverse-N1, onnxruntime 1.31) on onnxconverter-common fp16 files (keep_io_types) of
#: resnet20_cifar, resnet18 / resnet50 at 64 px, mobilenet_v2_050 at 96 px, mobilenet_v3_small at 64 px and
#: efficientnet_b0_64: same kernel counts as the runtime's optimized graph (benchmarks/arm_fp16_fusion.py)
ORT_CPU_ARM64_RULES = FusionRules(name="ort-cpu-arm64", passes=ARM64_PASSES, nchwc=False, conv_add=True,
                                  qdq_nhwc=True, fp16_nhwc=True, fp16_conv_act=("Relu", "Clip"),
                                  fp16_passes=ARM64_FP16_PASSES, fp16_softmax_inline=True,
                                  fp16_no_kernel=ARM64_FP16_NO_KERNEL)

#: the same on an arm64 core with SME (Scalable Matrix Extension): fp32 convs that KleidiAI's SME kernels take
#: (group 1, kernel >= 3x3, equal pads, more than one filter) run NHWC (NhwcFusedConv) between Transposes, their
#: residual Add joins them only from NHWC convs (:attr:`FusionRules.fp32_nhwc`). Checked under qemu-user
#: (QEMU_CPU=max, onnxruntime 1.31) on fp32 resnet20_cifar, resnet18 / resnet50 / squeezenet1_1 / googlenet /
#: mobilenet_v3_small at 64 px, mobilenet_v2_050 at 96 px, unet_small_48, efficientnet_b0_64: the runtime's
#: kernel counts (benchmarks/arm_fp16_fusion.py --sme); ConvNeXt has 2 Transposes more (a model Transpose next to
#: an NHWC region merges with the layout one, as in fp16)
ORT_CPU_ARM64_SME_RULES = dataclasses.replace(ORT_CPU_ARM64_RULES, name="ort-cpu-arm64-sme", fp32_nhwc=True)


def ort_cpu_arm64_rules(fingerprint: dict | None = None) -> FusionRules:
    """The arm64 rules for a device: with SME among its CPU flags (``sme``, ``sme2``) the KleidiAI NHWC fp32 convs."""
    flags = set((fingerprint or {}).get("cpu_flags") or ())
    return ORT_CPU_ARM64_SME_RULES if flags & {"sme", "sme2"} else ORT_CPU_ARM64_RULES
