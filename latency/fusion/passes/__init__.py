"""Every fusion pass, grouped by family, and :data:`ORT_ORDER`: all of them in the order onnxruntime
applies the transformers they mirror.

A pass is a :class:`~latency.fusion.workgraph.Pass`: a name, the pattern it matches, the op types it
produces, the onnxruntime transformer it mirrors, the rule switches that turn it on and the function
that rewrites the work graph. A target's fusion is an ordered list of them (``fusion/ort_cpu.py``,
``fusion/generic_gpu.py``); a new runtime brings its own list, reusing these passes or adding some.

    cleanup      Identity/Dropout elimination, common subexpressions, HardSwish
    transpose    Transpose push/merge/cancel (TransposeOptimizer)
    conv         BN / Mul / Add / Pad folding, Conv + activation, Conv + residual Add
    matmul       MatMul + bias -> Gemm, Gemm + activation, FusedMatMul (transpose, scale), MatMulNBits + bias
    transformer  GELU family, LayerNorm, RMSNorm, SkipLayerNorm
    quant        QDQ node units, dynamic quantization
    layout       NCHWc blocked layout and reorders, NHWC int8 regions, NHWC fp16 regions
"""

from __future__ import annotations

from .cleanup import CSE, ELIMINATE, HARDSWISH
from .conv import CONV_ACTIVATION, CONV_ADD, FOLD_CONV
from .layout import NCHWC, NHWC_FP16, NHWC_INT8
from .matmul import GEMM_ACTIVATION, MATMUL_ADD, MATMUL_NBITS_BIAS, MATMUL_SCALE, MATMUL_TRANSPOSE
from .quant import DYNAMIC_QUANT, QDQ
from .transformer import (BIAS_GELU, FAST_GELU, GELU, LAYERNORM, QUICK_GELU, SIMPLIFIED_LAYERNORM,
                          SKIP_LAYERNORM)
from .transpose import CANCEL_TRANSPOSES, MERGE_TRANSPOSES, PUSH_SPLIT

#: every pass, in the order onnxruntime applies the transformers they mirror: level 1 (clean-up,
#: transposes, conv folding, MatMul + bias, GELU, LayerNorm), level 2 (QDQ, activations, dynamic
#: quantization, RMSNorm, FusedMatMul, BiasGelu, MatMulNBits + bias, SkipLayerNorm, FastGelu, QuickGelu),
#: level 3 (NCHWc, Conv + residual Add, NHWC int8, NHWC fp16)
ORT_ORDER = (ELIMINATE, CSE, HARDSWISH, PUSH_SPLIT, MERGE_TRANSPOSES, CANCEL_TRANSPOSES, FOLD_CONV, MATMUL_ADD, GELU,
             LAYERNORM, QDQ, GEMM_ACTIVATION, DYNAMIC_QUANT, CONV_ACTIVATION, SIMPLIFIED_LAYERNORM, MATMUL_TRANSPOSE,
             BIAS_GELU, MATMUL_NBITS_BIAS, SKIP_LAYERNORM, FAST_GELU, QUICK_GELU, MATMUL_SCALE, NCHWC, CONV_ADD,
             NHWC_INT8, NHWC_FP16)

#: every pass by name
BY_NAME = {p.name: p for p in ORT_ORDER}

__all__ = ["ORT_ORDER", "BY_NAME", "ELIMINATE", "CSE", "HARDSWISH", "PUSH_SPLIT", "MERGE_TRANSPOSES", "CANCEL_TRANSPOSES",
           "FOLD_CONV", "MATMUL_ADD", "GELU", "LAYERNORM", "QDQ", "GEMM_ACTIVATION", "DYNAMIC_QUANT", "CONV_ACTIVATION",
           "SIMPLIFIED_LAYERNORM", "MATMUL_TRANSPOSE", "BIAS_GELU", "MATMUL_NBITS_BIAS", "SKIP_LAYERNORM", "FAST_GELU",
           "QUICK_GELU", "MATMUL_SCALE", "NCHWC", "CONV_ADD", "NHWC_INT8", "NHWC_FP16"]
