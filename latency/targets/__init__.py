"""Target registry: name -> :class:`Target` (device, runtime, fusion passes, profile, spec sheet).

Targets are plugins. Each declaration module of this package (``x86``, ``arm``, ``gpu``, ``fake``)
holds a ``TARGETS`` tuple, registered through the ``latency.targets`` entry-point group of this
package's metadata, the same group any other installed package can add targets to (an entry
point names a Target, a tuple of them, or a module with ``TARGETS``). :func:`register` adds one at
run time (tests). Nothing is loaded at import: the registry fills on first use.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import LatencyError, UnknownTarget
from ..profiles import ISA_FLAGS, read_cpu  # noqa: F401  (re-exported: profilers read the host through here)

__all__ = ["Target", "register", "unregister", "targets", "get_target", "host_target", "choose_default",
           "default_target", "tables_dir", "ISA_FLAGS", "read_cpu", "ENTRY_POINT_GROUP"]
from .base import Target

#: the entry-point group other packages register targets under
ENTRY_POINT_GROUP = "latency.targets"
#: this package's own declaration modules (used as they are when the package metadata is absent)
BUILTIN_MODULES = ("latency.targets.x86", "latency.targets.arm", "latency.targets.gpu", "latency.targets.fake")

_TARGETS: dict[str, Target] = {}
_LOADED = False
_LOCK = threading.Lock()


def tables_dir() -> Path:
    """Where shipped profiles live (package data; ``LATENCY_TABLES`` overrides)."""
    from ..profiles import shipped_dir

    return shipped_dir()


def _declared(obj) -> list:
    """The Target records an entry point or declaration module names."""
    import types

    if isinstance(obj, types.ModuleType):
        obj = getattr(obj, "TARGETS", ())
    if callable(obj) and not isinstance(obj, Target):
        obj = obj()
    if isinstance(obj, Target):
        return [obj]
    out = list(obj)
    bad = [o for o in out if not isinstance(o, Target)]
    if bad:
        raise LatencyError(f"a latency.targets entry point gave {type(bad[0]).__name__}, not a Target")
    return out


def register(target: Target, replace: bool = False) -> Target:
    """Add ``target`` to the registry (an error if the name is taken, unless ``replace``)."""
    _load()
    if target.name in _TARGETS and not replace and _TARGETS[target.name] is not target:
        raise LatencyError(f"target {target.name!r} is already registered")
    _TARGETS[target.name] = target
    return target


def unregister(name: str) -> None:
    _load()
    _TARGETS.pop(name, None)


def _load() -> None:
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        import importlib
        from importlib.metadata import entry_points

        found: dict[str, Target] = {}
        order = {m: i for i, m in enumerate(BUILTIN_MODULES)}  # own targets first, in declaration order
        eps = sorted(entry_points(group=ENTRY_POINT_GROUP),
                     key=lambda ep: (order.get(ep.value.split(":")[0], len(order)), ep.name))
        own = {ep.value.split(":")[0] for ep in eps}
        for mod in BUILTIN_MODULES:  # a source checkout without installed metadata still has its own targets
            if mod not in own:
                for t in _declared(importlib.import_module(mod)):
                    found.setdefault(t.name, t)
        for ep in eps:
            try:
                declared = _declared(ep.load())
            except LatencyError:
                raise
            except Exception as e:  # a broken plugin must not take the tool down, but it must be said
                raise LatencyError(f"target plugin {ep.name} ({ep.value}) failed to load: "
                                   f"{type(e).__name__}: {e}") from None
            for t in declared:
                found.setdefault(t.name, t)
        _TARGETS.update({k: v for k, v in found.items() if k not in _TARGETS})
        _LOADED = True


def targets() -> dict[str, Target]:
    _load()
    return dict(_TARGETS)


def get_target(name: str) -> Target:
    """The target ``name``; or, for the name of an installed device-named profile (a profile file's name
    less ``.db``, ``x86-avx512-ort.epyc-zen5``, or the device part alone, ``epyc-zen5``, as
    ``latency calibrate --target mine --from ...`` names one ``x86-avx512-ort.mine``), its family's target
    pinned to that profile."""
    _load()
    try:
        return _TARGETS[name]
    except KeyError:
        pass
    base, at, dev = name.partition("@") if isinstance(name, str) else ("", "", "")
    if at and base in _TARGETS and dev:  # a device kept beside the first by `latency db merge --keep-both`
        from dataclasses import replace

        return replace(_TARGETS[base], rows_name=name)
    hits = named_profiles(name) if isinstance(name, str) and name else []
    if len(hits) == 1:
        from dataclasses import replace

        return replace(_TARGETS[hits[0].target], pinned_profile=hits[0].path)
    if len(hits) > 1:
        raise LatencyError(f"{name!r} names {len(hits)} profiles: {', '.join(h.path for h in hits)}; name one by its "
                           f"full name (FAMILY.DEVICE) or pass --profile FILE")
    raise UnknownTarget(name, list(_TARGETS) + [Path(p.path).stem for p in _named_candidates()])


def _named_candidates() -> list:
    from ..profiles import discover

    return [p for p in discover() if p.target in _TARGETS and Path(p.path).stem.startswith(p.target + ".")]


def named_profiles(name: str) -> list:
    """Installed profiles (shipped or user) whose file is ``NAME.db`` or ``FAMILY.NAME.db`` (FAMILY a target)."""
    return [p for p in _named_candidates()
            if Path(p.path).stem == name or Path(p.path).stem == f"{p.target}.{name}"]


def host_target() -> Target:
    """The CPU target whose kernels onnxruntime picks on this host."""
    from ..profiles import host_device

    host = host_device()
    for t in targets().values():
        if t.describes_host(host):
            return t
    # no declared target describes this host: the first CPU target (its host_check will say why it cannot measure)
    return next(t for t in targets().values() if t.device == "cpu")


def choose_default():
    """(target, ProfileInfo or None, note): what an estimate uses when no target is named.

    The profile closest to this host by its device record (architecture, ISA flags, vendor, CPU
    model, cache sizes, runtime version), among every shipped and user-built profile; the note
    names the device the profile was measured on and what differs from this host ("" when nothing).
    """
    from ..profiles import closest, discover, host_device

    host = host_device()
    cands = [p for p in discover() if p.target in targets() and targets()[p.target].device == "cpu"]
    best, diffs = closest(cands, host)
    if best is None:
        return host_target(), None, ""
    note = "" if not diffs else (
        f"using {best.target} ({best.origin} profile, {best.describe()}); this host differs: {'; '.join(diffs)}")
    return targets()[best.target], best, note


def default_target():
    """(target, note) of :func:`choose_default`."""
    t, _, note = choose_default()
    return t, note
