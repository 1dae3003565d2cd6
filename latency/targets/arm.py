"""64-bit ARM CPU targets on onnxruntime's CPU execution provider (no profile shipped yet)."""

from __future__ import annotations

from .base import Target


def _is_arm64(host) -> bool:
    return host.get("arch") in ("aarch64", "arm64")


def _arm64_passes():
    from .. import fusion

    return fusion.ORT_CPU_ARM64_RULES


TARGETS = (
    Target("arm64-ort", "64-bit ARM CPU (Neoverse-class), onnxruntime CPU EP, 1 thread", "cpu", "onnxruntime",
           "CPUExecutionProvider", "arm64", 1, None, None, fusion=_arm64_passes, host_kind=_is_arm64),
)
