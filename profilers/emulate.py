"""Emulated ISA levels on this host: run onnxruntime with AVX-512 (or AMX) hidden from it.

onnxruntime's MLAS picks its kernels from CPUID at load, with no switch to restrict it. The shim
``cpuidmask.c`` (built here with gcc into the user data directory at first use) traps every CPUID
of a process through Linux's CPUID faulting and clears the chosen feature bits, so an AVX-512 host
runs the AVX2 kernels (FACTS section 8). A profile measured that way describes "this core with the
AVX2 kernels", not a real AVX2 CPU (caches, clock and memory stay this host's): it is labelled
``emulated``.

:func:`emulated_env` gives the environment of a masked child process; :func:`run_emulated` re-runs a
``latency`` command under it. Nothing is built or loaded at import.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from latency.errors import LatencyError
from latency.profiles import CPUID_MASKS, user_dir

SOURCE = Path(__file__).with_name("cpuidmask.c")
#: the environment variable naming the level to the shim (and to latency.profiles.read_cpu)
LEVEL_ENV = "CPUIDMASK_LEVEL"
#: exit status of a child whose shim could not enable CPUID faulting
SHIM_FAILED = 97


class EmulationError(LatencyError):
    """This host cannot emulate the ISA level asked for (no gcc, no cpuid_fault, not x86-64)."""


def _proc_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.partition(":")[2].split())
    except OSError:
        pass
    return set()


def host_problem() -> str:
    """"" when this host can run the CPUID mask, else why not (one line)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return f"CPUID masking needs Linux on x86-64 (this is {sys.platform} on {platform.machine()})"
    if "cpuid_fault" not in _proc_flags():
        return ("this CPU (or its hypervisor) does not expose cpuid_fault in /proc/cpuinfo, so CPUID cannot be "
                "trapped and an ISA level cannot be emulated here")
    return ""


def level_for(target, host_flags=None) -> str:
    """The mask level that makes this host run ``target``'s kernels; EmulationError when none does."""
    flags = set(host_flags if host_flags is not None else _proc_flags())
    if target.isa == "x86-avx2":
        if "avx512f" not in flags:
            raise EmulationError(f"this host has no AVX-512 to hide: measure {target.name} natively (without --emulate)")
        return "avx2"
    if target.isa == "x86-avx512":
        if not flags & {"amx_tile", "amx_int8", "amx_bf16"}:
            raise EmulationError(f"this host has no AMX to hide: measure {target.name} natively (without --emulate)")
        return "avx512"
    raise EmulationError(f"--emulate works for x86 targets on an x86 host with more ISA than the target "
                         f"(x86-avx2-ort on an AVX-512 host, x86-avx512-ort on an AMX host), not {target.name}")


def library() -> Path:
    """The built shim (compiled with gcc on first use into the user data directory)."""
    problem = host_problem()
    if problem:
        raise EmulationError(problem)
    src = SOURCE.read_bytes()
    out = user_dir() / "emulate" / f"libcpuidmask-{hashlib.sha1(src).hexdigest()[:12]}.so"
    if out.exists():
        return out
    gcc = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("cc")
    if gcc is None:
        raise EmulationError("emulating an ISA level needs a C compiler to build the CPUID mask: gcc not found "
                             "(install gcc, or set CC)")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise EmulationError(f"cannot create {out.parent}: {e.strerror or e}") from None
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    r = subprocess.run([gcc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE)], capture_output=True, text=True)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise EmulationError(f"building the CPUID mask with {gcc} failed: {msg[0] if msg else r.returncode}")
    os.replace(tmp, out)  # atomic: two processes building at once both end with a whole file
    return out


def emulated_env(level: str, env: dict | None = None) -> dict:
    """``env`` (default: this process's) for a child that runs with ``level`` masked."""
    if level not in CPUID_MASKS:
        raise EmulationError(f"unknown mask level {level!r}; valid: {', '.join(CPUID_MASKS)}")
    lib = str(library())
    e = dict(os.environ if env is None else env)
    e[LEVEL_ENV] = level
    e["LD_PRELOAD"] = lib + (" " + e["LD_PRELOAD"] if e.get("LD_PRELOAD") else "")
    # Python's faulthandler takes SIGSEGV over from the shim: the child must not enable it
    e.pop("PYTHONFAULTHANDLER", None)
    return e


def active_level() -> str | None:
    """The mask level this process runs under (None: unmasked)."""
    lv = os.environ.get(LEVEL_ENV)
    return lv if lv and "cpuidmask" in os.environ.get("LD_PRELOAD", "") else None


def run_emulated(level: str, argv: list[str]) -> int:
    """Run ``python -m latency.cli ARGV`` with ``level`` masked, output passed through; its exit status."""
    env = emulated_env(level)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    rc = subprocess.run([sys.executable, "-m", "latency.cli", *argv], env=env).returncode
    if rc == SHIM_FAILED:
        raise EmulationError("the CPUID mask could not enable CPUID faulting in the child process (see above)")
    return rc


def note(level: str) -> str:
    """The device record's note for a profile measured under ``level``."""
    hidden = ", ".join(CPUID_MASKS[level])
    return (f"emulated on this host through a CPUID mask (profilers/cpuidmask.c, level {level}: {hidden} hidden "
            f"from onnxruntime); the ISA of the target, the caches, clock and memory of this host")
