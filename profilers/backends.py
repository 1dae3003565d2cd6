"""Measuring backends by name: a target's ``backend`` field says which one times its kernels.

The library declares targets; only this side runs them (``ort-cpu``: onnxruntime sessions on this
host's CPU, :mod:`profilers.measure`; ``fake``: the closed formula of :mod:`profilers.fake`).
"""

from __future__ import annotations

from latency.errors import LatencyError


def measure(target, configs, protocol=None) -> list[dict]:
    """Measure ``configs`` on ``target`` with its backend (rows without target/run ids)."""
    ok, why = target.host_supported()
    if not ok:
        raise LatencyError(why)
    if target.backend == "fake":
        from profilers.fake import measure_chunk
    elif target.backend == "ort-cpu":
        from profilers.measure import measure_chunk
    elif target.backend == "gpu":  # onnxruntime-gpu's CUDA / TensorRT execution providers (profilers/gpu.py)
        from profilers.gpu import available, measure_chunk_for

        backend, why = available()
        if backend != "ort-gpu":
            raise LatencyError(why or f"target {target.name}: the operator sweep needs onnxruntime-gpu "
                                      f"(pip install 'latency[gpu]'); with {backend} only the micro-benchmark mode runs")
        measure_chunk = measure_chunk_for(target)
        return measure_chunk(configs)
    else:
        raise LatencyError(f"target {target.name}: no measuring backend named {target.backend!r} "
                           f"(known: ort-cpu, fake, gpu)")
    return measure_chunk(configs, protocol) if protocol else measure_chunk(configs)
