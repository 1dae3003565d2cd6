"""Target registry: name -> device facts, runtime, fusion rules, shipped profile, measuring backend.

A target is a plugin: a :class:`Target` record registered by name. ``fake`` prices kernels with a
closed formula so the whole sweep -> store -> train -> estimate loop runs in tests in a second.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingTable, UnknownTarget

#: the CPU flags that change which kernels onnxruntime's MLAS picks
ISA_FLAGS = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp",
             "fphp", "sve", "sve2", "i8mm", "bf16")

TABLES_DIR = Path(__file__).resolve().parent.parent.parent / "tables"


def tables_dir() -> Path:
    """Where shipped profiles live (``LATENCY_TABLES`` overrides)."""
    return Path(os.environ.get("LATENCY_TABLES", TABLES_DIR))


def read_cpu() -> dict:
    """CPU model name, ISA flags that matter, core count and clock (MHz) of this host."""
    model, flags, mhz = platform.processor() or platform.machine(), set(), None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("model name", "Model", "CPU part") and model in ("", platform.machine(), platform.processor()):
                    model = v.strip()
                elif k in ("flags", "Features") and not flags:
                    flags = set(v.split())
                elif k == "cpu MHz" and mhz is None:
                    mhz = float(v)
    except OSError:
        pass
    return {"cpu_model": model, "cpu_flags": sorted(f for f in flags if f in ISA_FLAGS),
            "arch": platform.machine(), "cores": os.cpu_count(), "cpu_mhz": mhz}


@dataclass(frozen=True)
class Target:
    """A device + runtime + execution provider + thread count that latencies belong to."""

    name: str
    description: str
    device: str                      # "cpu" | "gpu" | "fake"
    runtime: str                     # "onnxruntime" | "formula"
    provider: str
    isa: str                         # "x86-avx2", "x86-avx512", "arm64", "cuda-sm75", "fake"
    threads: int = 1
    profile: str | None = None       # file name of the shipped profile under tables/
    backend: str | None = None       # measuring backend usable on a host: "ort-cpu", "fake", or None
    required_flags: tuple = ()       # host CPU flags the measuring backend needs
    spec: dict = field(default_factory=dict, hash=False, compare=False)  # spec-sheet figures

    def fusion_rules(self):
        from .. import fusion

        if self.isa.startswith("x86"):
            return fusion.ORT_CPU_X86_RULES(16 if self.isa == "x86-avx512" else 8)
        if self.isa == "arm64":
            return fusion.ORT_CPU_ARM64_RULES
        if self.isa == "fake":
            return fusion.ORT_CPU_X86_RULES(8)
        return fusion.GENERIC_GPU_RULES

    def fingerprint(self) -> dict:
        """What identifies the measuring host: CPU model and flags or GPU, runtime, version, threads."""
        if self.backend == "fake":
            return {"cpu_model": "fake", "cpu_flags": [], "runtime": "formula", "runtime_version": "1",
                    "provider": "fake", "threads": 1}
        import onnxruntime as ort

        cpu = read_cpu()
        return {"cpu_model": cpu["cpu_model"], "cpu_flags": cpu["cpu_flags"], "arch": cpu["arch"],
                "runtime": self.runtime, "runtime_version": ort.__version__, "provider": self.provider,
                "threads": self.threads, "isa": self.isa}

    def host_supported(self) -> tuple[bool, str]:
        """Whether this host can measure the target, and why not."""
        if self.backend is None:
            return False, f"target {self.name} has no measuring backend on this host ({self.description})"
        if self.backend == "fake":
            return True, ""
        flags = set(read_cpu()["cpu_flags"])
        missing = [f for f in self.required_flags if f not in flags]
        if missing:
            return False, f"this CPU lacks {', '.join(missing)} needed by target {self.name}"
        if self.isa.startswith("x86") and platform.machine() not in ("x86_64", "AMD64"):
            return False, f"target {self.name} needs an x86-64 host"
        if self.isa == "x86-avx2" and "avx512f" in flags:
            return False, ("this CPU has AVX-512, so onnxruntime would use AVX-512 kernels; measure "
                           "x86-avx512-ort here, or hide AVX-512 from the runtime first")
        return True, ""

    def profile_path(self) -> Path:
        if not self.profile:
            raise MissingTable(f"target {self.name} has no shipped profile; build one with "
                               f"'latency profile --target {self.name} --db FILE' on that device")
        p = tables_dir() / self.profile
        if not p.exists():
            raise MissingTable(f"profile {p} for target {self.name} is missing")
        return p

    def measure(self, configs, protocol=None) -> list[dict]:
        """Measure configs with this target's backend (rows without target/run ids)."""
        ok, why = self.host_supported()
        if not ok:
            from ..errors import LatencyError

            raise LatencyError(why)
        if self.backend == "fake":
            from profilers.fake import measure_chunk
        else:
            from profilers.measure import measure_chunk
        return measure_chunk(configs, protocol) if protocol else measure_chunk(configs)


_T4_SPEC = {"source": "NVIDIA T4 datasheet", "peak_gflops": {"fp32": 8100, "fp16": 65000, "int8": 130000},
            "mem_gbs": 320, "launch_us": 5.0}

_TARGETS = {t.name: t for t in (
    Target("x86-avx2-ort", "x86-64 CPU with AVX2/FMA (no AVX-512), onnxruntime CPU EP, 1 thread", "cpu",
           "onnxruntime", "CPUExecutionProvider", "x86-avx2", 1, "x86-avx2-ort.db", "ort-cpu", ("avx2", "fma")),
    Target("x86-avx512-ort", "x86-64 CPU with AVX-512 (and VNNI/AMX when present), onnxruntime CPU EP, 1 thread",
           "cpu", "onnxruntime", "CPUExecutionProvider", "x86-avx512", 1, "x86-avx512-ort.db", "ort-cpu", ("avx512f",)),
    Target("arm64-ort", "64-bit ARM CPU (Neoverse-class), onnxruntime CPU EP, 1 thread", "cpu", "onnxruntime",
           "CPUExecutionProvider", "arm64", 1, None, None),
    Target("t4", "NVIDIA T4 GPU (Turing, sm_75), onnxruntime CUDA/TensorRT EP", "gpu", "onnxruntime",
           "CUDAExecutionProvider", "cuda-sm75", 1, None, None, spec=_T4_SPEC),
    Target("fake", "formula-priced stand-in for tests (no device)", "fake", "formula", "fake", "fake", 1, None,
           "fake"),
)}


def targets() -> dict[str, Target]:
    return dict(_TARGETS)


def get_target(name: str) -> Target:
    try:
        return _TARGETS[name]
    except KeyError:
        raise UnknownTarget(name, _TARGETS) from None


def host_target() -> Target:
    """The CPU target whose kernels onnxruntime picks on this host."""
    flags = set(read_cpu()["cpu_flags"])
    if platform.machine() in ("aarch64", "arm64"):
        return _TARGETS["arm64-ort"]
    return _TARGETS["x86-avx512-ort" if "avx512f" in flags else "x86-avx2-ort"]


def default_target() -> tuple[Target, str]:
    """The target an estimate uses when none is named, and a note when it is not this host's own.

    This host's target when its profile is shipped; otherwise a shipped profile of the same
    architecture (an x86 profile for another x86 ISA level), with a warning that says so.
    """
    host = host_target()
    if host.profile and (tables_dir() / host.profile).exists():
        return host, ""
    arch = host.isa.split("-")[0]
    for t in _TARGETS.values():
        if t is not host and t.isa.split("-")[0] == arch and t.profile and (tables_dir() / t.profile).exists():
            return t, (f"no shipped profile for this host's target {host.name}; using {t.name}, measured on a "
                       f"different {arch} ISA level: expect this host to differ (AVX-512 vs AVX2 kernels differ by "
                       f"up to ~1.6x); name --target/--profile to choose")
    return host, ""
