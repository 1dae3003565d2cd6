"""onnxruntime's CUDA execution provider: the pass list of the ``*-ort-cuda`` GPU targets.

Which graph transformers run on nodes assigned to the CUDA EP is decided by the execution-provider
sets they are registered with in ``GenerateTransformers`` of
onnxruntime/core/optimizer/graph_transformer_utils.cc (:data:`ORT_SOURCE`, read at commit
001290de2e0ce8429d461156843f7ce9b19e7a5d of microsoft/onnxruntime). Each pass below names its line
there:

    eliminate          Level 1, the rule-based transformer (EliminateIdentity, EliminateDropout):
                       registered with no EP filter ("no filtering on execution provider for L1")
    fold_conv          Level 1 rules ConvBNFusion / ConvMulFusion / ConvAddFusion / PadFusion: no EP filter
    merge_transposes,  Level 1 TransposeOptimizer: no EP filter
    cancel_transposes
    push_split
    matmul_add         Level 1 MatMulAddFusion: no EP filter (MatMul + bias Add -> Gemm)
    gelu, layernorm    Level 1 GeluFusion / LayerNormFusion, and Level 2 with cpu_acl_cuda_dml_rocm_eps
    simplified_layernorm  Level 2 SimplifiedLayerNormFusion(cpu_cuda_rocm_eps)
    matmul_transpose   Level 2 MatmulTransposeFusion(cpu_cuda_dml_rocm_eps) -> FusedMatMul
    bias_gelu          Level 2 BiasGeluFusion(cpu_acl_cuda_dml_rocm_eps)
    skip_layernorm     Level 2 SkipLayerNormFusion(cpu_acl_cuda_dml_rocm_eps)
    fast_gelu          Level 2 FastGeluFusion(cpu_cuda_dml_rocm_eps)
    quick_gelu         Level 2 QuickGeluFusion(cpu_acl_cuda_dml_rocm_eps)
    matmul_scale       Level 2 MatMulScaleFusion(cpu_acl_cuda_dml_rocm_eps) -> FusedMatMul(alpha)
    trt_precision      the model's precision: fp32 as stored (TF32 tensor cores where the card has them:
                       the CUDA EP's ``use_tf32`` provider option is on by default), fp16 as
                       onnxconverter-common's ``convert_float_to_float16(keep_io_types=True)`` leaves it
                       (fp16 kernels, a Cast at each fp32 network input / output)

What the CUDA EP does **not** get, from the same function:

* ``GemmActivationFusion(cpu_ep)``: CPU only, so Gemm + Relu stays two kernels;
* ``ConvActivationFusion(cpu_rocm_acl_armnn_js_webgpu_eps)``: CUDA is not in the set, so Conv + Relu
  stays two kernels (older releases listed CUDA there and had a CUDA ``FusedConv``);
* ``ConvAddActivationFusion``, ``NchwcTransformer``, ``NhwcTransformer`` (Level 3): CPU only;
* ``QDQSelectorActionTransformer``: its selectors are registered for the CPU EP
  (onnxruntime/core/optimizer/qdq_transformer/selectors_actions/qdq_selector_action_transformer.cc),
  so on the CUDA EP a Q/DQ model keeps its QuantizeLinear / DequantizeLinear nodes as separate
  kernels around float convolutions and GEMMs: there is no int8 convolution, and ``--precision int8``
  has no rule on these targets (a model that already carries Q/DQ nodes is estimated as stored);
* ``DynamicQuantizeMatMulFusion(cpu_acl_eps)``, ``MatMulIntegerToFloatFusion(cpu_dml_acl_eps)``.

Registered for the CUDA EP but not modelled here (listed, not priced as fused):
``AttentionFusion`` / ``EmbedLayerNormFusion`` (they match only the attention / embedding subgraphs
of exported BERT models), ``GroupQueryAttentionFusion(cuda_eps)``, ``BiasSoftmaxFusion``,
``GatherSliceToSplitFusion`` / ``GatherToSliceFusion``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .passes import (BIAS_GELU, CANCEL_TRANSPOSES, ELIMINATE, FAST_GELU, FOLD_CONV, GELU, HARDSWISH, LAYERNORM,
                     MATMUL_ADD, MATMUL_SCALE, MATMUL_TRANSPOSE, MERGE_TRANSPOSES, PUSH_SPLIT, QUICK_GELU,
                     SIMPLIFIED_LAYERNORM, SKIP_LAYERNORM)
from .tensorrt import TRT_PRECISION, TensorRTRules

ORT_SOURCE = ("onnxruntime/core/optimizer/graph_transformer_utils.cc, GenerateTransformers "
              "(microsoft/onnxruntime@001290de2e0ce8429d461156843f7ce9b19e7a5d)")

#: the precisions the CUDA EP runs a float model in (no int8: see the module docstring)
ORT_CUDA_PRECISIONS = ("fp32", "fp16")

#: Level 1 then Level 2 transformers that apply to CUDA-EP nodes, in GenerateTransformers' order;
#: TRT_PRECISION (shared with TensorRT's list) sets every kernel's precision last
ORT_CUDA_PASSES = (ELIMINATE, HARDSWISH, PUSH_SPLIT, MERGE_TRANSPOSES, CANCEL_TRANSPOSES, FOLD_CONV, MATMUL_ADD, GELU,
                   LAYERNORM, SIMPLIFIED_LAYERNORM, MATMUL_TRANSPOSE, BIAS_GELU, SKIP_LAYERNORM, FAST_GELU, QUICK_GELU,
                   MATMUL_SCALE, TRT_PRECISION)

#: what each pass of the list mirrors on the CUDA EP (pass name -> the registration it follows)
ORT_CUDA_SOURCES = {
    "eliminate": "Level 1 rule-based transformer, no EP filter",
    "hardswish": "function inlining (no EP filter), as on the CPU EP",
    "push_split": "Level 1 TransposeOptimizer, no EP filter",
    "merge_transposes": "Level 1 TransposeOptimizer, no EP filter",
    "cancel_transposes": "Level 1 TransposeOptimizer, no EP filter",
    "fold_conv": "Level 1 rules ConvBNFusion / ConvMulFusion / ConvAddFusion / PadFusion, no EP filter",
    "matmul_add": "Level 1 MatMulAddFusion(), no EP filter",
    "gelu": "GeluFusion (Level 1; Level 2 with cpu_acl_cuda_dml_rocm_eps)",
    "layernorm": "LayerNormFusion (Level 1; Level 2 with cpu_acl_cuda_dml_rocm_eps)",
    "simplified_layernorm": "Level 2 SimplifiedLayerNormFusion(cpu_cuda_rocm_eps)",
    "matmul_transpose": "Level 2 MatmulTransposeFusion(cpu_cuda_dml_rocm_eps)",
    "bias_gelu": "Level 2 BiasGeluFusion(cpu_acl_cuda_dml_rocm_eps)",
    "skip_layernorm": "Level 2 SkipLayerNormFusion(cpu_acl_cuda_dml_rocm_eps)",
    "fast_gelu": "Level 2 FastGeluFusion(cpu_cuda_dml_rocm_eps)",
    "quick_gelu": "Level 2 QuickGeluFusion(cpu_acl_cuda_dml_rocm_eps)",
    "matmul_scale": "Level 2 MatMulScaleFusion(cpu_acl_cuda_dml_rocm_eps)",
    "trt_precision": "the model's precision as stored (fp32, TF32 where use_tf32) or converted to fp16",
}


@dataclass(frozen=True)
class OrtCudaRules(TensorRTRules):
    """onnxruntime CUDA EP rules on a GPU of compute capability ``sm``: the pass list above, the
    model's precision (``fp32`` or ``fp16``) and the switches its passes read. Shares TensorRT's
    rules record for the precision pass (``builder_precision``, ``tf32``) but not its fusions."""

    name: str = "ort-cuda"
    precisions: tuple = ORT_CUDA_PRECISIONS

    def with_precision(self, precision: str) -> "OrtCudaRules":
        if precision not in self.precisions:
            raise ValueError(f"precision {precision!r} is not one of {', '.join(self.precisions)}")
        return replace(self, name=f"{self.name.split('@')[0]}@{precision}", builder_precision=precision)


def ort_cuda_rules(sm: int = 75, tf32: bool = False, precision: str | None = None) -> OrtCudaRules:
    """onnxruntime CUDA EP rules on a GPU of compute capability ``sm``; ``tf32`` when fp32 GEMMs and
    convolutions run on TF32 tensor cores (sm >= 80 with the default ``use_tf32``). ``precision`` None:
    each op in the element type the model stores it in (the CUDA EP runs an fp16 model's ops in fp16)."""
    return OrtCudaRules(
        name=f"ort-cuda-sm{sm}", passes=ORT_CUDA_PASSES, sm=sm, tf32=tf32, pricer=None, builder_precision=precision,
        nchwc=False, fold_bn=True, pad_fusion=True, conv_act=(), conv_add=False, matmul_add=True, matmul_scale=True,
        matmul_trans=True, gemm_act=(), matmul_act=(), gelu=True, bias_gelu=True, fast_gelu=True, quick_gelu=True,
        layernorm=True, simplified_layernorm=True, skip_layernorm=True, qdq=False, qdq_nhwc=False,
        dynamic_quant=False, transpose_merge=True, hardswish_inline=True, fp16_as_fp32=False)


__all__ = ["OrtCudaRules", "ort_cuda_rules", "ORT_CUDA_PASSES", "ORT_CUDA_PRECISIONS", "ORT_CUDA_SOURCES",
           "ORT_SOURCE"]
