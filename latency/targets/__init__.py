"""Target registry: name -> device facts, runtime, fusion rules, shipped profile, measuring backend.

A target is a plugin: a :class:`Target` record registered by name. ``fake`` prices kernels with a
closed formula so the whole sweep -> store -> train -> estimate loop runs in tests in a second.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MissingTable, UnknownTarget
from ..profiles import ISA_FLAGS, read_cpu  # noqa: F401  (re-exported: profilers read the host through here)


def tables_dir() -> Path:
    """Where shipped profiles live (package data; ``LATENCY_TABLES`` overrides)."""
    from ..profiles import shipped_dir

    return shipped_dir()


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

    def describes_host(self, host: dict | None = None) -> bool:
        """Whether this host is a device of this target's kind (then its profile should match it)."""
        from ..profiles import host_device

        host = host or host_device()
        flags, arch = set(host.get("cpu_flags") or []), host.get("arch")
        if self.isa == "x86-avx512":
            return arch in ("x86_64", "AMD64") and "avx512f" in flags
        if self.isa == "x86-avx2":
            return arch in ("x86_64", "AMD64") and "avx2" in flags and "avx512f" not in flags
        if self.isa == "arm64":
            return arch in ("aarch64", "arm64")
        return False

    def profiles(self) -> list:
        """Every profile (shipped or user-built) holding rows of this target, as ProfileInfo records."""
        from ..profiles import discover

        return [p for p in discover() if p.target == self.name]

    def choose_profile(self, host: dict | None = None):
        """(ProfileInfo, differences) of the profile to use: on a host of this target's kind the closest
        to it; elsewhere the shipped one, else the newest user-built one. (None, []) when there is none."""
        from ..profiles import closest, host_device

        cands = self.profiles()
        if not cands:
            return None, []
        host = host or host_device()
        if self.describes_host(host):
            best, diffs = closest(cands, host)
            if best is not None:
                return best, diffs
        shipped = [c for c in cands if c.origin == "shipped"]
        return (shipped or sorted(cands, key=lambda c: c.measured_to or "", reverse=True))[0], []

    def profile_path(self) -> Path:
        info, _ = self.choose_profile()
        if info is None:
            if self.profile:
                raise MissingTable(f"profile {self.profile} for target {self.name} is missing from "
                                   f"{tables_dir()} and no user profile holds it; build one with "
                                   f"'latency profile --target {self.name} --db FILE'")
            raise MissingTable(f"target {self.name} has no shipped profile; build one with "
                               f"'latency profile --target {self.name} --db FILE' on that device")
        return Path(info.path)

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
    from ..profiles import host_device

    host = host_device()
    for t in _TARGETS.values():
        if t.describes_host(host):
            return t
    return _TARGETS["arm64-ort" if platform.machine() in ("aarch64", "arm64") else "x86-avx2-ort"]


def choose_default():
    """(target, ProfileInfo or None, note): what an estimate uses when no target is named.

    The profile closest to this host by its device record (architecture, ISA flags, vendor, CPU
    model, cache sizes, runtime version), among every shipped and user-built profile; the note
    names the device the profile was measured on and what differs from this host ("" when nothing).
    """
    from ..profiles import closest, device_distance, discover, host_device

    host = host_device()
    cands = [p for p in discover() if p.target in _TARGETS and _TARGETS[p.target].device == "cpu"]
    best, diffs = closest(cands, host)
    if best is None:
        return host_target(), None, ""
    note = "" if not diffs or device_distance(best.device, host)[0] < 1.0 else (f"using {best.target} ({best.origin} profile, {best.describe()}); "
                                 f"this host differs: {'; '.join(diffs)}")
    return _TARGETS[best.target], best, note


def default_target():
    """(target, note) of :func:`choose_default`."""
    t, _, note = choose_default()
    return t, note
