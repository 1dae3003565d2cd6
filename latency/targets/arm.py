"""64-bit ARM CPU targets on onnxruntime's CPU execution provider.

The shipped profiles of ``arm64-ort`` are *derived* (tables/arm64-ort.neoverse-n1.db and
tables/arm64-ort.cortex-a76.db, written by profilers/derive_arm.py from each core's spec sheet and the
cost structure measured on x86): no row in them is a measurement. A device measures its own with
``python -m profilers.standalone --db FILE`` (onnxruntime, onnx and numpy only); on an ARM host the
profile closest to it by fingerprint (CPU part, features such as asimddp/i8mm/sve) is chosen. A profile
of a core with SME gets the KleidiAI NHWC fp32 convs in its fusion (``fusion.ort_cpu_arm64_rules``).
"""

from __future__ import annotations

from .base import Target


def _is_arm64(host) -> bool:
    return host.get("arch") in ("aarch64", "arm64")


def _can_measure_arm64(host) -> str:
    return "" if _is_arm64(host) else f"target arm64-ort needs an aarch64 host (this one is {host.get('arch')})"


def _arm64_passes():
    from .. import fusion

    return fusion.ORT_CPU_ARM64_RULES


def _arm64_passes_on(fingerprint):
    from .. import fusion

    return fusion.ort_cpu_arm64_rules(fingerprint)


TARGETS = (
    Target("arm64-ort", "64-bit ARM CPU (Neoverse-class), onnxruntime CPU EP, 1 thread", "cpu", "onnxruntime",
           "CPUExecutionProvider", "arm64", 1, "arm64-ort.neoverse-n1.db", "ort-cpu", ("asimd",),
           fusion=_arm64_passes, fusion_for_device=_arm64_passes_on, host_kind=_is_arm64,
           host_check=_can_measure_arm64),
)
