"""Op records + a target's fusion passes -> the kernels the runtime will execute.

:func:`fuse` mimics what a runtime's graph optimizer does to a model before running it, so that
the estimator can sum one table lookup per *executed kernel*. It is pure (no onnxruntime): the
target's passes rewrite a small work graph in the order the runtime applies its transformers, then
the lowering turns each fused node into a kernel of a registry op kind.

    records.py      Kernel, Uncovered: what fusion hands out
    rules.py        FusionRules: a target's ordered pass list + the switches and parameters it reads
    workgraph.py    the work graph the passes rewrite (FusionState, WorkNode) and the Pass record
    passes/         the passes by family (cleanup, transpose, conv, matmul, transformer, quant, layout)
    ort_cpu.py      onnxruntime CPU: the x86-64 list (NCHWc block 8 or 16) and the arm64 list
    generic_gpu.py  a generic GPU runtime's list (onnxruntime's order without the CPU layout passes)
    tensorrt.py     TensorRT's list (the GPU targets) and its builder precisions
    driver.py       fuse(graph, rules): the passes in order (fused_graph), then the lowering
    lower.py        fused work nodes -> kernels
    summary.py      kernel counts to compare with a runtime's own optimized graph

The onnxruntime CPU passes, in order (see :data:`passes.ORT_ORDER`):

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
  Add [+ act] for the convs that stay NCHW; NHWC Transposes around int8 conv/pool regions, and (arm64)
  around fp16 conv/pool regions.

The per-target rule sets are :func:`ORT_CPU_X86_RULES`, :data:`ORT_CPU_ARM64_RULES` and
:data:`GENERIC_GPU_RULES`; a new target brings its own :class:`FusionRules` (its own pass list).
:func:`kernel_summary` derives counts comparable with the runtime's own optimized graph, which
``profilers.runtime_graph.runtime_kernel_summary`` reads (the conformance check).
"""

from __future__ import annotations

from .driver import fuse, fused_graph
from .generic_gpu import GENERIC_GPU_PASSES, GENERIC_GPU_RULES
from .ort_cpu import (ARM64_PASSES, ORT_CPU_ARM64_RULES, ORT_CPU_ARM64_SME_RULES, ORT_CPU_X86_RULES, X86_PASSES,
                      ort_cpu_arm64_rules)
from .passes import ORT_ORDER
from .records import Kernel, Uncovered
from .rules import FusionRules
from .summary import compare_summaries, kernel_summary
from .tensorrt import TENSORRT_PASSES, TensorRTRules, tensorrt_rules
from .workgraph import Pass

#: the pass lists shipped here, by the name of the runtime they describe
SHIPPED_PASS_LISTS = {"ort-cpu-x86": X86_PASSES, "ort-cpu-arm64": ARM64_PASSES, "generic-gpu": GENERIC_GPU_PASSES,
                      "tensorrt": TENSORRT_PASSES}


def used_by(fusion_pass: Pass) -> tuple:
    """The names of the shipped pass lists that run ``fusion_pass``."""
    return tuple(name for name, passes in SHIPPED_PASS_LISTS.items() if fusion_pass in passes)


__all__ = ["Kernel", "Uncovered", "FusionRules", "Pass", "ORT_CPU_X86_RULES", "ORT_CPU_ARM64_RULES",
           "ORT_CPU_ARM64_SME_RULES", "ort_cpu_arm64_rules",
           "GENERIC_GPU_RULES", "X86_PASSES", "ARM64_PASSES", "GENERIC_GPU_PASSES", "ORT_ORDER",
           "TENSORRT_PASSES", "TensorRTRules", "tensorrt_rules",
           "SHIPPED_PASS_LISTS", "used_by", "fuse", "fused_graph", "kernel_summary", "compare_summaries"]
