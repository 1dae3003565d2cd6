"""x86-64 CPU targets on onnxruntime's CPU execution provider: AVX2/FMA and AVX-512.

The ISA level decides which MLAS kernels run (FACTS section 8: AVX2 kernels take ~1.6x the
AVX-512 time on the same core) and the NCHWc block of the blocked-layout convolutions (8 floats
for AVX2, 16 for AVX-512), so each level is its own target with its own profile.
"""

from __future__ import annotations

from .base import Target

X86 = ("x86_64", "AMD64")


def _flags(host) -> set:
    return set(host.get("cpu_flags") or [])


def _is_avx512(host) -> bool:
    return host.get("arch") in X86 and "avx512f" in _flags(host)


def _is_avx2_only(host) -> bool:
    return host.get("arch") in X86 and {"avx2", "fma"} <= _flags(host) and "avx512f" not in _flags(host)


def _can_measure_avx512(host) -> str:
    if host.get("arch") not in X86:
        return "target x86-avx512-ort needs an x86-64 host"
    return "" if "avx512f" in _flags(host) else "this CPU lacks avx512f needed by target x86-avx512-ort"


def _can_measure_avx2(host) -> str:
    if host.get("arch") not in X86:
        return "target x86-avx2-ort needs an x86-64 host"
    missing = [f for f in ("avx2", "fma") if f not in _flags(host)]
    if missing:
        return f"this CPU lacks {', '.join(missing)} needed by target x86-avx2-ort"
    if "avx512f" in _flags(host):
        return ("this CPU has AVX-512, so onnxruntime would use AVX-512 kernels; measure x86-avx512-ort here, "
                "or emulate x86-avx2-ort with AVX-512 hidden from the runtime (latency profile --emulate)")
    return ""


def _ort_cpu_x86(block: int):
    def passes():
        from .. import fusion

        return fusion.ORT_CPU_X86_RULES(block)
    return passes


TARGETS = (
    Target("x86-avx2-ort", "x86-64 CPU with AVX2/FMA (no AVX-512), onnxruntime CPU EP, 1 thread", "cpu",
           "onnxruntime", "CPUExecutionProvider", "x86-avx2", 1, "x86-avx2-ort.db", "ort-cpu", ("avx2", "fma"),
           fusion=_ort_cpu_x86(8), host_kind=_is_avx2_only, host_check=_can_measure_avx2),
    Target("x86-avx512-ort", "x86-64 CPU with AVX-512 (and VNNI/AMX when present), onnxruntime CPU EP, 1 thread",
           "cpu", "onnxruntime", "CPUExecutionProvider", "x86-avx512", 1, "x86-avx512-ort.db", "ort-cpu",
           ("avx512f",), fusion=_ort_cpu_x86(16), host_kind=_is_avx512, host_check=_can_measure_avx512),
)
