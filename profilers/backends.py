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
    else:
        raise LatencyError(f"target {target.name}: no measuring backend named {target.backend!r} "
                           f"(known: ort-cpu, fake)")
    return measure_chunk(configs, protocol) if protocol else measure_chunk(configs)
