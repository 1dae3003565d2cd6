"""GPU targets. Priced from the spec sheet (a roofline) until a GPU profile is measured."""

from __future__ import annotations

from .base import Target

#: NVIDIA T4 datasheet figures (dense peaks; the tensor-core figures for fp16 and int8)
T4_SPEC = {"source": "NVIDIA T4 datasheet", "peak_gflops": {"fp32": 8100, "fp16": 65000, "int8": 130000},
           "mem_gbs": 320, "launch_us": 5.0}


def _generic_gpu_passes():
    from .. import fusion

    return fusion.GENERIC_GPU_RULES


TARGETS = (
    Target("t4", "NVIDIA T4 GPU (Turing, sm_75), onnxruntime CUDA/TensorRT EP", "gpu", "onnxruntime",
           "CUDAExecutionProvider", "cuda-sm75", 1, None, None, spec=T4_SPEC, fusion=_generic_gpu_passes),
)
