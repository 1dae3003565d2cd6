"""A generic GPU runtime (TensorRT-like): conv + BN + activation + residual epilogues, GEMM epilogues,
LayerNorm and GELU kernels, fp16 kernels, no layout reorders and no NHWC int8 transposes."""

from __future__ import annotations

from .. import ops
from .passes import (BIAS_GELU, CANCEL_TRANSPOSES, CONV_ACTIVATION, CONV_ADD, DYNAMIC_QUANT, ELIMINATE, FAST_GELU,
                     FOLD_CONV, GELU, GEMM_ACTIVATION, HARDSWISH, LAYERNORM, MATMUL_ADD, MATMUL_SCALE, MATMUL_TRANSPOSE,
                     MERGE_TRANSPOSES, PUSH_SPLIT, QDQ, QUICK_GELU, SIMPLIFIED_LAYERNORM, SKIP_LAYERNORM)
from .rules import FusionRules

#: onnxruntime's CPU order without its CPU-only layout passes (NCHWc, NHWC int8)
GENERIC_GPU_PASSES = (ELIMINATE, HARDSWISH, PUSH_SPLIT, MERGE_TRANSPOSES, CANCEL_TRANSPOSES, FOLD_CONV, MATMUL_ADD,
                      GELU, LAYERNORM, QDQ, GEMM_ACTIVATION, DYNAMIC_QUANT, CONV_ACTIVATION, SIMPLIFIED_LAYERNORM,
                      MATMUL_TRANSPOSE, BIAS_GELU, SKIP_LAYERNORM, FAST_GELU, QUICK_GELU, MATMUL_SCALE, CONV_ADD)

#: a generic GPU runtime (TensorRT-like): conv+BN+act+residual, GEMM epilogues, LN, GELU, no reorders
GENERIC_GPU_RULES = FusionRules(
    name="generic-gpu", passes=GENERIC_GPU_PASSES, nchwc=False, conv_add=True, conv_add_needs_bias=False,
    conv_act=ops.CONV_ACTS,
    conv_add_acts=("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish"),
    gemm_act=("Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "HardSigmoid", "Softplus", "Gelu", "Clip"),
    matmul_act=("Relu", "Gelu", "FastGelu", "QuickGelu", "Sigmoid", "Tanh"), qdq_nhwc=False,
    hardswish_inline=False)
