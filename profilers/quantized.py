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


def qdq_int8(model: onnx.ModelProto, exclude=()) -> onnx.ModelProto:
    """``model`` quantized to static int8 QDQ by onnxruntime's own tools; ``exclude``: ``nodes_to_exclude``."""
    from onnxruntime.quantization import QuantFormat, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="latency-qdq-") as d:
        src, pre, out = (os.path.join(d, f) for f in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(model, src)
        quant_pre_process(src, pre, skip_symbolic_shape=False)
        quantize_static(pre, out, _Feeds(pre, CALIBRATION_FEEDS), quant_format=QuantFormat.QDQ,
                        nodes_to_exclude=list(exclude))
        return onnx.load(out)
