"""Where profiles live, what device each describes, and which one fits a host.

A *profile* is a profiling database (``NAME.db``) with its companions beside it
(``NAME.regressors/``, ``NAME.context.json``, ``NAME.overhead.json``). Two places hold them:

* **shipped**: package data inside the installed ``latency`` package (``latency/tables``, found
  through :mod:`importlib.resources`); read-only. ``LATENCY_TABLES`` points elsewhere (tests).
* **user**: profiles a user built or copied, in the user data directory
  (``$LATENCY_HOME``, else ``$XDG_DATA_HOME/latency``, else ``~/.local/share/latency``), under
  ``profiles/``. Nothing the tool writes by default goes inside the installed package.

Each profile says which device it was measured on: the fingerprint stored with its rows (CPU
model, ISA flags, runtime and version, threads) and a device record in its ``meta`` table (vendor,
cache sizes, how it was obtained: measured / emulated / derived). :func:`host_device` reads the
same facts from this host and :func:`device_distance` compares the two, so that the closest
profile is chosen and what differs is said in one line.
"""

from __future__ import annotations

import json
import math
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MissingTable

#: the CPU flags that change which kernels onnxruntime's MLAS picks
ISA_FLAGS = ("sse4_1", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
             "avx_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8", "amx_bf16", "asimd", "asimddp",
             "fphp", "sve", "sve2", "i8mm", "bf16", "sme", "sme2")

#: flags whose difference changes the kernels a lot (int8 and bf16 paths, the vector width)
MAJOR_FLAGS = ("avx512f", "avx2", "amx_int8", "amx_tile", "amx_bf16", "avx512_vnni", "avx_vnni", "sve", "i8mm",
               "asimddp", "sme")

#: ARM's own cores by /proc/cpuinfo "CPU part" (implementer 0x41), as the Arm TRMs number them
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd05": "Cortex-A55", "0xd08": "Cortex-A72", "0xd0a": "Cortex-A75",
             "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd40": "Neoverse-V1",
             "0xd41": "Cortex-A78", "0xd44": "Cortex-X1", "0xd46": "Cortex-A510", "0xd47": "Cortex-A710",
             "0xd48": "Cortex-X2", "0xd49": "Neoverse-N2", "0xd4f": "Neoverse-V2", "0xd80": "Cortex-A520",
             "0xd81": "Cortex-A720", "0xd82": "Cortex-X4", "0xd8e": "Neoverse-N3", "0xd84": "Neoverse-V3"}

#: key under which a profile database's meta table keeps the device record of one target
DEVICE_META_KEY = "device:{target}"

#: the CPU flags each level of the CPUID mask (profilers/cpuidmask.c) hides from a process; under
#: the mask (CPUIDMASK_LEVEL with the shim preloaded) this host is read as the runtime sees it
CPUID_MASKS = {
    "avx2": ("avx512f", "avx512dq", "avx512ifma", "avx512pf", "avx512er", "avx512cd", "avx512bw", "avx512vl",
             "avx512vbmi", "avx512_vbmi2", "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_4vnniw",
             "avx512_4fmaps", "avx512_vp2intersect", "avx512_fp16", "avx512_bf16", "avx_vnni", "avx_vnni_int8",
             "avx_ne_convert", "amx_bf16", "amx_tile", "amx_int8"),
    "avx512": ("amx_bf16", "amx_tile", "amx_int8"),
}


# -- locations ---------------------------------------------------------------------------------

def shipped_dir() -> Path:
    """The shipped profiles: ``LATENCY_TABLES`` if set, else the package data ``latency/tables``."""
    env = os.environ.get("LATENCY_TABLES")
    if env:
        return Path(env)
    from importlib.resources import files

    return Path(str(files("latency") / "tables"))


def user_dir() -> Path:
    """The user data directory (not created here)."""
    env = os.environ.get("LATENCY_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "latency"


def user_profiles_dir() -> Path:
    return user_dir() / "profiles"


def is_shipped(path) -> bool:
    """Whether ``path`` lies inside the shipped profiles' directory (which the tool never writes)."""
    try:
        Path(path).resolve().relative_to(shipped_dir().resolve())
        return True
    except (ValueError, OSError):
        return False


def companion(path, suffix: str) -> Path:
    """``NAME.db`` -> ``NAME<suffix>`` beside it (``.regressors``, ``.context.json`` ...)."""
    p = Path(path)
    return p.with_name(p.stem + suffix)


# -- this host -----------------------------------------------------------------------------------

def _data_caches_mb() -> dict:
    """Data (or unified) caches of cpu0, level -> MB, from Linux sysfs; {} when unreadable."""
    out = {}
    try:
        for idx in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
            if (idx / "type").read_text().strip() not in ("Unified", "Data"):
                continue
            size = (idx / "size").read_text().strip()
            mb = float(size[:-1]) / 1024 if size.endswith("K") else float(size[:-1]) if size.endswith("M") else None
            if mb:
                out[int((idx / "level").read_text())] = mb
    except (OSError, ValueError):
        return {}
    return out


def read_cpu() -> dict:
    """CPU model name, vendor, ISA flags that matter, core count and clock (MHz) of this host."""
    model, vendor, flags, mhz, family, number = "", "", set(), None, None, None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k, v = k.strip(), v.strip()
                if k in ("model name", "Model") and not model:
                    model = v
                elif k == "CPU part" and number is None:  # ARM: the part names the core (no model name)
                    number = v.lower()
                    model = model or (ARM_PARTS.get(number) if vendor == "ARM" else None) or f"ARM part {v}"
                elif k in ("vendor_id", "CPU implementer") and not vendor:
                    vendor = {"AuthenticAMD": "AMD", "GenuineIntel": "Intel", "0x41": "ARM", "0x61": "Apple",
                              "0xc0": "Ampere", "0x48": "HiSilicon", "0x51": "Qualcomm"}.get(v, v)
                elif k in ("flags", "Features") and not flags:
                    flags = set(v.split())
                elif k == "cpu MHz" and mhz is None:
                    mhz = float(v)
                elif k in ("cpu family", "CPU architecture") and family is None:
                    family = v
                elif k == "model" and number is None:
                    number = v
    except (OSError, ValueError):
        pass
    model = model or platform.processor() or platform.machine()
    level = os.environ.get("CPUIDMASK_LEVEL")
    if level in CPUID_MASKS and "cpuidmask" in os.environ.get("LD_PRELOAD", ""):
        flags -= set(CPUID_MASKS[level])  # /proc/cpuinfo is the kernel's view, CPUID the runtime's
    return {"cpu_model": model, "vendor": vendor, "cpu_flags": sorted(f for f in flags if f in ISA_FLAGS),
            "arch": platform.machine(), "cores": os.cpu_count(), "cpu_mhz": mhz,
            "cpu_family_model": f"{family}/{number}" if family is not None and number is not None else None}


CPUFREQ_MAX = "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"


def cpu_clock_mhz(proc_mhz: float | None = None, cpufreq: str = CPUFREQ_MAX) -> tuple[float | None, str]:
    """This host's CPU clock in MHz and where it came from: the highest clock cpufreq states
    (``/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq``), else ``/proc/cpuinfo``'s "cpu MHz"
    (``proc_mhz``: the clock at the moment it was read; virtual machines report the nominal one), else
    lscpu's "CPU max MHz" (ARM kernels give no MHz in /proc/cpuinfo); (None, "unknown") otherwise."""
    try:
        khz = float(Path(cpufreq).read_text().strip())
        if khz > 0:
            return round(khz / 1000.0, 1), "cpufreq cpuinfo_max_freq"
    except (OSError, ValueError):
        pass
    if proc_mhz:
        return round(float(proc_mhz), 1), "/proc/cpuinfo cpu MHz"
    import shutil
    import subprocess

    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5,
                                 env={**os.environ, "LC_ALL": "C"}).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("CPU max MHz", "CPU MHz"):
                try:
                    return round(float(v.strip().replace(",", ".")), 1), f"lscpu {k.strip()}"
                except ValueError:
                    continue
    return None, "unknown"


#: the distributions that install the ``onnxruntime`` module
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
                     "onnxruntime-training")


def runtime_version_installed() -> str | None:
    """onnxruntime's version, from its distribution's metadata when exactly one version is installed (importing
    the runtime takes ~0.15 s, a tenth of a cold estimate that never runs it), else from the module itself."""
    from importlib import metadata

    found = set()
    for dist in ORT_DISTRIBUTIONS:
        try:
            found.add(metadata.version(dist))
        except metadata.PackageNotFoundError:
            continue
    if len(found) == 1:
        return found.pop()
    try:
        import onnxruntime as ort

        return ort.__version__
    except ImportError:
        return None


def host_device(cores_used: int | None = None) -> dict:
    """This host as a device record: the same keys a profile's device record has (``cores_used``: the
    cores a profile of it is measured with, its target's thread count)."""
    cpu = read_cpu()
    mhz, mhz_source = cpu_clock_mhz(cpu.get("cpu_mhz"))
    caches = _data_caches_mb()
    runtime_version = runtime_version_installed()
    return {"kind": "cpu", "vendor": cpu["vendor"], "cpu_model": cpu["cpu_model"], "arch": cpu["arch"],
            "cpu_family_model": cpu["cpu_family_model"],
            "cpu_flags": cpu["cpu_flags"], "l2_mb": caches.get(2), "llc_mb": caches[max(caches)] if caches else None,
            "cpu_mhz": mhz, "cpu_mhz_source": mhz_source, "cores": cpu["cores"], "cores_used": cores_used,
            "runtime": "onnxruntime", "runtime_version": runtime_version}


# -- profiles ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ProfileInfo:
    """One target's rows in one profile database, and the device they were measured on."""

    path: str
    target: str
    origin: str                      # "shipped" | "user"
    provenance: str                  # "measured" | "emulated" | "derived" | "transferred" | "incomplete"
    device: dict = field(hash=False, compare=False)   # vendor, cpu_model, arch, cpu_flags, l2_mb, llc_mb, runtime...
    #: (rows ok, rows failed), or a function giving them: counting is a scan of the rows, which choosing
    #: a profile for an estimate does not need (:attr:`rows_ok`, :attr:`rows_failed` count on first use)
    rows: object = field(default=(0, 0), hash=False, compare=False, repr=False)
    measured_from: str | None = None
    measured_to: str | None = None
    note: str = ""                   # how an emulated or derived profile was made

    def _counts(self) -> tuple[int, int]:
        if callable(self.rows):
            object.__setattr__(self, "rows", tuple(self.rows()))
        return self.rows

    @property
    def rows_ok(self) -> int:
        return self._counts()[0]

    @property
    def rows_failed(self) -> int:
        return self._counts()[1]

    def describe(self) -> str:
        """One line: the device, caches and runtime this profile describes."""
        d = self.device
        caches = ", ".join(f"{k} {d[k]:g} MB" for k in ("l2_mb", "llc_mb") if d.get(k))
        caches = caches.replace("l2_mb", "L2").replace("llc_mb", "LLC")
        rt = f"{d.get('runtime') or 'runtime'} {d.get('runtime_version') or '?'}"
        when = (self.measured_to or "")[:10]
        return (f"{self.provenance} on {self.device_name()}" + (f" ({caches})" if caches else "")
                + f", {rt}" + (f", {when}" if when else ""))

    def device_name(self) -> str:
        """The device in a few words: vendor, CPU (or GPU) model, clock and the cores used of all."""
        d = self.device
        model = d.get("cpu_model") or d.get("gpu_name") or "?"
        if d.get("vendor") and d["vendor"].lower() not in model.lower():
            model = f"{d['vendor']} {model}"
        if d.get("cpu_mhz"):
            model += f" @ {d['cpu_mhz'] / 1000:.2f} GHz"
        if d.get("kind") == "gpu":  # which card exactly: compute capability, driver, maximum SM clock
            model += " (" + ", ".join(w for w in (
                d.get("compute_capability") and f"compute capability {d['compute_capability']}",
                d.get("driver_version") and f"driver {d['driver_version']}",
                d.get("sm_clock_max_mhz") and f"SM clock up to {d['sm_clock_max_mhz']} MHz") if w) + ")"
            return model.replace(" ()", "")
        used = d.get("cores_used")
        if used:
            model += f", {used} of {d['cores']} cores used" if d.get("cores") else f", {used} core(s) used"
        return model

    def to_dict(self) -> dict:
        return {"path": self.path, "target": self.target, "origin": self.origin, "provenance": self.provenance,
                "device": self.device, "device_name": self.device_name(), "rows_ok": self.rows_ok, "rows_failed": self.rows_failed,
                "measured_from": self.measured_from, "measured_to": self.measured_to, "note": self.note}


def read_profile(path, origin: str) -> list[ProfileInfo]:
    """The targets in the profile database at ``path`` with their device records."""
    from .store import Store

    def counter(tid):
        def count():
            with Store(path, readonly=True) as st:
                return st.target_counts(tid)
        return count

    out = []
    with Store(path, readonly=True) as st:
        meta = st.meta()
        for t in st.targets():
            fp, span = t["fingerprint"], st.target_span(t["target_id"])
            try:
                rec = json.loads(meta.get(DEVICE_META_KEY.format(target=t["name"]), "{}"))
            except (TypeError, ValueError):
                rec = None
            if not isinstance(rec, dict) or not isinstance(fp, dict):
                from .errors import StoreError

                raise StoreError(f"profile database {path}: the device record or fingerprint of target {t['name']!r} "
                                 "is not a JSON object; the file is corrupt or was edited by hand")
            if fp.get("gpu_name"):  # a GPU profile: the card, its driver and clocks, the runtime
                device = {**{k: rec.get(k) for k in GPU_RECORD_KEYS}, **{k: fp.get(k) for k in fp}, "kind": "gpu",
                          "vendor": rec.get("vendor") or "NVIDIA"}
                out.append(ProfileInfo(str(path), t["name"], origin, rec.get("provenance", "measured"), device,
                                       counter(t["target_id"]), span["first"], span["last"],
                                       rec.get("note", "")))
                continue
            device = {"kind": "cpu", "vendor": rec.get("vendor", ""), "cpu_model": fp.get("cpu_model"),
                      "cpu_family_model": rec.get("cpu_family_model"),
                      "arch": fp.get("arch"), "cpu_flags": fp.get("cpu_flags", []), "l2_mb": rec.get("l2_mb"),
                      "llc_mb": rec.get("llc_mb"), "runtime": fp.get("runtime"),
                      "runtime_version": fp.get("runtime_version"), "threads": fp.get("threads"),
                      # clock and cores: recorded since device-named profiles; older records lack them
                      "cpu_mhz": rec.get("cpu_mhz"), "cpu_mhz_source": rec.get("cpu_mhz_source"),
                      "cores": rec.get("cores"), "cores_used": rec.get("cores_used") or fp.get("threads")}
            out.append(ProfileInfo(str(path), t["name"], origin, rec.get("provenance", "measured"), device,
                                   counter(t["target_id"]), span["first"], span["last"],
                                   rec.get("note", "")))
    return out


#: what a GPU's device record keeps beside its fingerprint (latency.targets.gpu: read_gpu, runtime_versions)
GPU_RECORD_KEYS = ("kind", "gpu_name", "compute_capability", "driver_version", "sm_clock_max_mhz", "mem_clock_max_mhz",
                   "sm_clock_mhz", "memory_total_mib", "power_limit_w", "onnxruntime_version", "tensorrt_version")


def write_device_record(store, target: str, device: dict, provenance: str = "measured", note: str = "") -> None:
    """Keep ``device`` (vendor and caches; the fingerprint has the rest) in ``store``'s meta table."""
    rec = {"vendor": device.get("vendor", ""), "cpu_family_model": device.get("cpu_family_model"), "l2_mb": device.get("l2_mb"), "llc_mb": device.get("llc_mb"),
           "provenance": provenance, "note": note}
    rec.update({k: device[k] for k in ("cpu_mhz", "cpu_mhz_source", "cores", "cores_used") if device.get(k) is not None})
    rec.update({k: device[k] for k in GPU_RECORD_KEYS if device.get(k) is not None})  # a GPU's record (kind "gpu")
    store.set_meta(DEVICE_META_KEY.format(target=target), json.dumps(rec, sort_keys=True))


def discover() -> list[ProfileInfo]:
    """Every profile database shipped or in the user directory (unreadable ones are skipped)."""
    from .errors import LatencyError

    out = []
    for origin, folder in (("shipped", shipped_dir()), ("user", user_profiles_dir())):
        if not folder.is_dir():
            continue
        for p in sorted(folder.glob("*.db")):
            try:
                out += read_profile(p, origin)
            except LatencyError:
                continue
    return out


# -- matching ------------------------------------------------------------------------------------

def device_distance(profile: dict, host: dict) -> tuple[float, list[str]]:
    """How far a profile's device is from ``host`` (0 = the same device), and the differences in words.

    Weights reflect what moves kernel times: another architecture cannot be used at all (inf);
    a different vector ISA level or int8/bf16 extension changes which kernels run (1.5x and more);
    another vendor or CPU model changes the microarchitecture (measured here: a profile from an AMD
    EPYC put 38% of models within 10% on an Intel Xeon of the same ISA level); cache sizes move
    memory-bound kernels; a runtime version moves a few kernels."""
    if profile.get("arch") and host.get("arch") and profile["arch"] != host["arch"]:
        return math.inf, [f"architecture {profile['arch']} vs host {host['arch']}"]
    score, diffs = 0.0, []
    pf, hf = set(profile.get("cpu_flags") or []), set(host.get("cpu_flags") or [])
    for f in sorted(pf ^ hf):
        # a flag MLAS does not use still tells another CPU generation (AVX-VNNI: Zen 5 has it, Zen 4 not)
        score += 10.0 if f in MAJOR_FLAGS else 2.0
    if pf ^ hf:
        diffs.append("ISA " + ", ".join([f"+{f}" for f in sorted(hf - pf)] + [f"-{f}" for f in sorted(pf - hf)])
                     + " on this host")
    if profile.get("vendor") and host.get("vendor") and profile["vendor"] != host["vendor"]:
        score += 8.0
        diffs.append(f"vendor {profile['vendor']} vs host {host['vendor']}")
    if (profile.get("cpu_model") or "") != (host.get("cpu_model") or ""):
        score += 4.0
        diffs.append(f"CPU {profile.get('cpu_model')!r} vs host {host.get('cpu_model')!r}")
    pm, hm = profile.get("cpu_family_model"), host.get("cpu_family_model")
    if pm and hm and pm != hm:
        score += 6.0
        diffs.append(f"CPU family/model {pm} vs host {hm}")
    for key, label in (("l2_mb", "L2"), ("llc_mb", "LLC")):
        a, b = profile.get(key), host.get(key)
        if a and b and abs(math.log(a / b)) > 0.05:
            score += 2.0 * abs(math.log2(a / b))
            diffs.append(f"{label} {a:g} MB vs host {b:g} MB")
    if profile.get("runtime_version") and host.get("runtime_version") and \
            profile["runtime_version"] != host["runtime_version"]:
        score += 1.0
        diffs.append(f"onnxruntime {profile['runtime_version']} vs host {host['runtime_version']}")
    return score, diffs


#: provenance of a profile whose making stopped half way (a transfer's probes without the transfer):
#: listed, never chosen for a host
INCOMPLETE = "incomplete"


def closest(candidates: list[ProfileInfo], host: dict) -> tuple[ProfileInfo | None, list[str]]:
    """The candidate nearest ``host`` (user profiles win ties) and what differs, or (None, []) if none fits."""
    scored = []
    for c in candidates:
        if c.provenance == INCOMPLETE:
            continue
        d, diffs = device_distance(c.device, host)
        if math.isfinite(d):
            scored.append((d, c.origin != "user", c.measured_to or "", c, diffs))
    if not scored:
        return None, []
    scored.sort(key=lambda s: s[2], reverse=True)  # newest first among equals (the sort below is stable)
    scored.sort(key=lambda s: (s[0], s[1]))
    return scored[0][3], scored[0][4]


# -- an opened profile ---------------------------------------------------------------------------

#: the file layout every profile has, whatever its target (NAME is the database's stem)
LAYOUT = {
    "database": "NAME.db",                 # measurements with provenance (SQLite; latency.store)
    "regressors": "NAME.regressors/",      # per-op-kind XGBoost models (.ubj + .meta.json)
    "context": "NAME.context.json",        # the in-model context model (latency.context.ContextModel)
    "overhead": "NAME.overhead.json",      # the overhead model (latency.overhead.OverheadModel)
    "calibration": "NAME.calibration.json",  # the raw data the last two were fitted from
}


class Profile:
    """One profile: its database and the parts beside it (regressors, context and overhead models,
    the raw calibration data, the device records), each read on first use.

    ``Profile(path)`` opens the database at ``path``; :meth:`for_target` the profile a target uses."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.exists():
            raise MissingTable(f"profile {self.path} does not exist")

    @classmethod
    def for_target(cls, target) -> "Profile":
        """The profile ``target`` (a Target or its name) uses on this host (:meth:`Target.choose_profile`)."""
        from .targets import get_target

        t = get_target(target) if isinstance(target, str) else target
        return cls(t.profile_path())

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def regressors_dir(self) -> Path:
        return companion(self.path, ".regressors")

    @property
    def context_path(self) -> Path:
        return companion(self.path, ".context.json")

    @property
    def overhead_path(self) -> Path:
        return companion(self.path, ".overhead.json")

    @property
    def calibration_path(self) -> Path:
        return companion(self.path, ".calibration.json")

    @property
    def shipped(self) -> bool:
        return is_shipped(self.path)

    def table(self, target: str) -> tuple[str, dict, dict]:
        """(target id, {key_hash: latency_us}, fingerprint) of ``target``'s rows; MissingTable if none."""
        from .store import Store

        with Store(self.path, readonly=True) as st:
            tid = st.find_target(target)
            if tid is None:
                names = sorted({t["name"] for t in st.targets()})
                raise MissingTable(f"profile {self.path} has no rows for target {target} "
                                   f"(it has: {', '.join(names) or 'none'})")
            return tid, st.latency_table(tid), st.target(tid).get("fingerprint")

    def info(self, target: str) -> "ProfileInfo | None":
        """The device record and provenance of ``target``'s rows."""
        origin = "shipped" if self.shipped else "user"
        return next((i for i in read_profile(self.path, origin) if i.target == target), None)

    def context(self):
        """The in-model context model beside the database (an empty one when there is none)."""
        from .context import ContextModel

        return ContextModel.load(self.context_path) if self.context_path.exists() else ContextModel(None)

    def overhead(self):
        """The overhead model beside the database (none when there is none)."""
        from .overhead import OverheadModel

        return OverheadModel.load(self.overhead_path) if self.overhead_path.exists() else OverheadModel.none()

    def __repr__(self) -> str:
        return f"Profile({str(self.path)!r})"
