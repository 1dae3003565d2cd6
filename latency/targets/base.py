"""The :class:`Target` record: what a latency belongs to (device, runtime, provider, threads).

A target is declared in one module of this package (``x86.py``, ``arm.py``, ``gpu.py``,
``fake.py``) or in another package through the ``latency.targets`` entry-point group; everything
that differs between targets (which host is such a device, whether this host can measure it, its
runtime's fusion passes, its spec sheet) is a field of the declaration, not an if-chain here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import MissingTable
from ..profiles import read_cpu


def _shipped_dir() -> Path:
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
    #: () -> the runtime's fusion passes for this target (a declaration names them)
    fusion: Callable | None = field(default=None, hash=False, compare=False, repr=False)
    #: (device fingerprint) -> the passes on that device, where its CPU features change them (arm64 with SME);
    #: None: ``fusion`` for every device
    fusion_for_device: Callable | None = field(default=None, hash=False, compare=False, repr=False)
    #: (host device record) -> whether this host is a device of this target's kind
    host_kind: Callable | None = field(default=None, hash=False, compare=False, repr=False)
    #: (host device record) -> "" when this host can measure the target, else why not
    host_check: Callable | None = field(default=None, hash=False, compare=False, repr=False)
    #: () -> the derived cost model (:mod:`latency.cost`) that prices a kernel no profile row prices:
    #: ``.price(Config) -> (us, source, detail)`` and ``.overhead()`` (GPU targets), or None
    cost: Callable | None = field(default=None, hash=False, compare=False, repr=False)
    #: (target) -> the measuring device's fingerprint, where it is not this host's CPU and onnxruntime
    #: (a GPU target: the card, its driver and clocks, the runtime; :func:`latency.targets.gpu.gpu_fingerprint`)
    fingerprinter: Callable | None = field(default=None, hash=False, compare=False, repr=False)
    #: a device-named profile this target was asked by (``--target mine``: FAMILY.mine.db): its path,
    #: which :meth:`choose_profile` then always returns (see :func:`latency.targets.get_target`)
    pinned_profile: str | None = field(default=None, compare=False)
    #: the rows a profile keeps under another name for this target: ``NAME@<id8>``, a second device that
    #: ``latency db merge --keep-both`` kept beside the first (see :func:`latency.targets.get_target`)
    rows_name: str | None = field(default=None, compare=False)

    @property
    def table_name(self) -> str:
        """The target name a profile's rows for it are stored under."""
        return self.rows_name or self.name

    def fusion_rules(self, fingerprint: dict | None = None):
        """The ordered fusion passes the target's runtime applies (from its declaration); on the device
        ``fingerprint`` names (a profile's), where its features change them."""
        if fingerprint is not None and self.fusion_for_device is not None:
            return self.fusion_for_device(fingerprint)
        if self.fusion is None:
            raise MissingTable(f"target {self.name} declares no fusion rules")
        return self.fusion()

    def fingerprint(self) -> dict:
        """What identifies the measuring host: CPU model and flags or GPU, runtime, version, threads."""
        if self.fingerprinter is not None:
            return self.fingerprinter(self)
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
        if self.host_check is None:
            return True, ""
        from ..profiles import host_device

        why = self.host_check(host_device())
        return (not why), why

    def describes_host(self, host: dict | None = None) -> bool:
        """Whether this host is a device of this target's kind (then its profile should match it)."""
        if self.host_kind is None:
            return False
        from ..profiles import host_device

        return bool(self.host_kind(host or host_device()))

    def profiles(self) -> list:
        """Every profile (shipped or user-built) holding rows of this target, as ProfileInfo records."""
        from ..profiles import discover

        return [p for p in discover() if p.target == self.name]

    def choose_profile(self, host: dict | None = None):
        """(ProfileInfo, differences) of the profile to use: on a host of this target's kind the closest
        to it; elsewhere the shipped one, else the newest user-built one. (None, []) when there is none."""
        from ..profiles import closest, host_device

        cands = self.profiles()
        if self.pinned_profile:
            pinned = [c for c in cands if Path(c.path).resolve() == Path(self.pinned_profile).resolve()]
            return (pinned[0], []) if pinned else (None, [])
        if not cands:
            return None, []
        host = host or host_device()
        if self.describes_host(host):
            best, diffs = closest(cands, host)
            if best is not None:
                return best, diffs
        shipped = sorted((c for c in cands if c.origin == "shipped"), key=lambda c: Path(c.path).name != self.profile)
        return (shipped or sorted(cands, key=lambda c: c.measured_to or "", reverse=True))[0], []

    def profile_path(self) -> Path:
        info, _ = self.choose_profile()
        if info is None:
            if self.profile:
                raise MissingTable(f"profile {self.profile} for target {self.name} is missing from "
                                   f"{_shipped_dir()} and no user profile holds it; build one with "
                                   f"'latency profile --target {self.name} --db FILE'")
            raise MissingTable(f"target {self.name} has no shipped profile; build one with "
                               f"'latency profile --target {self.name} --db FILE' on that device")
        return Path(info.path)
