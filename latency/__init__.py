"""latency: hardware latency predictor and profiling database for ONNX models.

Public API (imported lazily: importing ``latency`` loads nothing heavy and does nothing)::

    from latency import Estimator, estimate
    est = Estimator("x86-avx2-ort").estimate("model.onnx")
    est.total_ms, est.kernels, est.uncovered
"""

__all__ = ["Estimator", "Estimate", "KernelEstimate", "estimate", "targets", "get_target", "host_target",
           "LatencyError"]


def __getattr__(name):
    if name in ("Estimator", "Estimate", "KernelEstimate", "estimate"):
        from . import estimator

        return getattr(estimator, name)
    if name in ("targets", "get_target", "host_target"):
        from . import targets

        return getattr(targets, name)
    if name == "LatencyError":
        from .errors import LatencyError

        return LatencyError
    raise AttributeError(f"module 'latency' has no attribute {name!r}")
