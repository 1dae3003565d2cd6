"""latency: hardware latency predictor and profiling database for ONNX models.

Public API (imported lazily: importing ``latency`` loads nothing heavy and does nothing)::

    from latency import Estimator, estimate
    est = Estimator("x86-avx512-ort").estimate("model.onnx")
    est.total_ms, est.kernels, est.uncovered
"""

__all__ = ["Estimator", "Estimate", "KernelEstimate", "estimate", "targets", "get_target", "host_target",
           "LatencyError"]


def __getattr__(name):
    import importlib

    if name in ("Estimator", "Estimate", "KernelEstimate", "estimate"):
        return getattr(importlib.import_module(".estimator", __name__), name)
    if name in ("targets", "get_target", "host_target"):
        mod = importlib.import_module(".targets", __name__)  # not `from . import`: it would land back here
        return mod if name == "targets" else getattr(mod, name)
    if name == "LatencyError":
        return importlib.import_module(".errors", __name__).LatencyError
    raise AttributeError(f"module 'latency' has no attribute {name!r}")
