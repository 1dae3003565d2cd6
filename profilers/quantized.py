"""Static int8 (QDQ) files of zoo models, as users make them: ``quant_pre_process`` then
``onnxruntime.quantization.quantize_static`` (QDQ format, its defaults) with random calibration feeds."""

from __future__ import annotations

import os
import tempfile

import onnx

#: calibration feeds per model (random inputs, :func:`profilers.e2e.make_inputs`)
CALIBRATION_FEEDS = 4


class _Feeds:
    def __init__(self, path: str, n: int):
        import onnxruntime as ort

        from .e2e import make_inputs

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        m = onnx.load(path)
        self._it = iter([make_inputs(sess, m, seed=i) for i in range(n)])

    def get_next(self):
        return next(self._it, None)


def pre_process(model: onnx.ModelProto, directory: str) -> str:
    """``quant_pre_process`` of ``model``, as users run it before ``quantize_static``: the path of the result
    (``fp32.pre.onnx`` in ``directory``)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = os.path.join(directory, "fp32.onnx"), os.path.join(directory, "fp32.pre.onnx")
    onnx.save(model, src)
    quant_pre_process(src, dst, skip_symbolic_shape=False)
    return dst


def quantize_qdq(pre_path: str, out_path: str, exclude=()) -> str:
    """``quantize_static`` (QDQ, its defaults, random calibration feeds) of the pre-processed file ``pre_path``
    into ``out_path``; ``exclude``: ``nodes_to_exclude``."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    quantize_static(pre_path, out_path, _Feeds(pre_path, CALIBRATION_FEEDS), quant_format=QuantFormat.QDQ,
                    nodes_to_exclude=list(exclude))
    return out_path


def qdq_int8(model: onnx.ModelProto, exclude=()) -> onnx.ModelProto:
    """``model`` quantized to static int8 QDQ by onnxruntime's own tools; ``exclude``: ``nodes_to_exclude``."""
    with tempfile.TemporaryDirectory(prefix="latency-qdq-") as d:
        return onnx.load(quantize_qdq(pre_process(model, d), os.path.join(d, "int8.onnx"), exclude))
