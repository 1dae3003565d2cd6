"""An aarch64 Python with onnxruntime, onnx and numpy under qemu-user, for functional tests of the ARM path.

Built once and cached (default ``~/.cache/latency-arm-rootfs``): a Debian bookworm arm64 minbase root
unpacked by ``debootstrap --foreign`` (no second stage, no binfmt_misc) and aarch64 wheels installed by
the host's pip into ``site/``. onnxruntime's cpuinfo reads ``/proc/cpuinfo``; under qemu-user that is the
host's x86 file and onnxruntime crashes, so :func:`run` bind-mounts a fake ARM ``/proc/cpuinfo`` in a
private mount namespace (``unshare -m``, needs root). Timings taken under emulation are ~500x slower than
the core they emulate: they are functional only and the profiler flags them ``emulated``.

Needs: ``qemu-aarch64-static``, ``debootstrap``, ``dpkg-deb``, ``unshare``, root, and network access to a
Debian mirror and PyPI the first time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
WHEELS = ("onnxruntime==1.31.1", "onnx==1.23.2", "numpy<2.3")
CACHE = Path(os.environ.get("LATENCY_ARM_ROOTFS", Path.home() / ".cache" / "latency-arm-rootfs"))

#: ARM implementer 0x41, part 0xd0c = Neoverse-N1; the features are what a Neoverse-N1 reports
FAKE_CPUINFO = """processor\t: {n}
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

"""


def missing() -> str | None:
    """Why the environment cannot be built or run here, or None."""
    for tool in ("qemu-aarch64-static", "debootstrap", "dpkg-deb", "unshare", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found (apt-get install qemu-user-static debootstrap)"
    if os.geteuid() != 0:
        return "needs root for unshare -m and the /proc/cpuinfo bind mount"
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -m not permitted: {probe.stderr.strip()[:200]}"
    return None


def build(cache: Path = CACHE, log=None) -> Path:
    """The cached root (``cache/root``, ``cache/site``), built if absent. Raises RuntimeError on failure."""
    cache = Path(cache)
    done = cache / ".complete"
    if done.exists():
        return cache
    root, site = cache / "root", cache / "site"
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)

    def sh(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {(r.stderr or r.stdout).strip()[-400:]}")

    sh(["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase",
        "--include=python3.11,libpython3.11-stdlib,libstdc++6", "bookworm", str(root), MIRROR])
    for deb in sorted((root / "var/cache/apt/archives").glob("*.deb")):
        sh(["dpkg-deb", "-x", str(deb), str(root)])
    sh([sys.executable, "-m", "pip", "install", "-q", "--target", str(site), "--platform", "manylinux_2_28_aarch64",
        "--platform", "manylinux2014_aarch64", "--platform", "manylinux_2_17_aarch64", "--python-version", "3.11",
        "--implementation", "cp", "--only-binary=:all:", *WHEELS])
    (cache / "cpuinfo").write_text("".join(FAKE_CPUINFO.format(n=i) for i in range(2)))
    done.write_text("ok\n")
    return cache


def run(args, cache: Path = CACHE, cpu: str = "neoverse-n1", pythonpath=(), cwd=None, timeout=None):
    """Run ``python3.11 ARGS`` under qemu-aarch64 in the cached root; a CompletedProcess."""
    cache = Path(cache)
    path = ":".join([*map(str, pythonpath), str(cache / "site")])
    inner = (f"mount --bind {cache / 'cpuinfo'} /proc/cpuinfo && exec env PYTHONPATH={path} QEMU_CPU={cpu} "
             f"PYTHONDONTWRITEBYTECODE=1 qemu-aarch64-static -L {cache / 'root'} {cache / 'root/usr/bin/python3.11'} "
             + " ".join(_quote(a) for a in args))
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", inner], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def _quote(a) -> str:
    import shlex

    return shlex.quote(str(a))
