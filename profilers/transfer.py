"""Transfer calibration: a profile for this host from a base profile and a time budget.

``latency calibrate --target T --from BASE --budget 10m`` runs :func:`transfer`:

1. probes (:func:`choose_probes`): the base profile's rows in :func:`latency.transfer.probe_order`
   (per op kind and precision in proportion to how much of typical models' time each takes and how
   many shapes the base plan has, spread over each kind's variants and latency range) are measured
   on this host
   with the sweep's protocol (``profilers.sweep.run_sweep``: fresh-session phases, round-robin
   rounds, min of round medians, every round kept) until the probe share of the budget is spent;
2. the transfer (:func:`latency.transfer.fit_transfer`) is fitted on probe / base pairs, and every
   base row this host did not measure is written scaled, with source ``transferred``;
3. the regressors are retrained on the new table (``latency.regressor.train_all``), and the in-model
   context and overhead refitted on this host (``profilers.calibrate``) when the budget allows;
   otherwise the base's context and overhead are copied and the summary says so. The calibration
   compares the probes (measured minutes earlier) with in-model and end-to-end times measured now; a
   shared VM drifts between states in between (one calibration here ran ~6% faster than the probes,
   and the context took it for an in-model effect: every estimate 6-10% low). So a sample of the
   probes (:class:`StateReference`) is re-measured with the probes' protocol before, between and after
   the calibration's runs, and each run's times are divided by the state ratio around it before the
   fits (``profilers.calibrate.state_scales``): in-model / alone then compares one state of the machine.

With ``--budget 0`` nothing is measured: every base row is scaled by what the two devices'
descriptions say (:func:`latency.transfer.description_model`), the regressors retrained on that
table and the base's context and overhead moved by the same description
(:func:`latency.transfer.transfer_calibration`: dispatch terms by clock x IPC, memory-traffic terms by
the memory-bound ratio).

The new profile has the usual layout (NAME.db, NAME.regressors/, NAME.context.json,
NAME.overhead.json, NAME.calibration.json) plus NAME.transfer.json (the fitted curves and how they
were made), by default in the user profile directory, never in the shipped one.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np

from latency.errors import LatencyError
from latency.ops import Config
from latency.profiles import (INCOMPLETE, ProfileInfo, companion, discover, host_device, is_shipped, read_profile,
                              user_profiles_dir, write_device_record)
from latency.store import Store
from latency.transfer import (MIN_PROBES, TRANSFERRED, TransferError, TransferModel, description_model, fit_transfer,
                              group_of, probe_order, transfer_calibration)

#: what the steps after the probes cost on this kind of host (2 vCPU EPYC, measured: 1 s, 16 s and 61 s), seconds: the write of
#: ~24k transferred rows, retraining every kind's regressor on them, and a calibration
#: (profilers.calibrate with its defaults: FIT models end to end, in-model kernel times, the fits;
#: plus the state reference measured three times, 5-10 s each)
WRITE_S, TRAIN_S, CALIBRATE_S = 10.0, 30.0, 110.0
#: the state reference: this many of the probes (the first in probe order whose time here is within
#: REFERENCE_US: long enough for the profiler's integer microseconds, short enough to cost little)
REFERENCE_N = 24
REFERENCE_US = (20.0, 2000.0)
#: the least probe time worth a transfer, and the least left to probes before calibration or
#: training is given up to make room for them
MIN_PROBE_S, PROBE_FLOOR_S = 20.0, 120.0
#: probes measured per second at best (to bound the probe list; the budget stops the sweep)
MAX_PROBES_PER_S = 20.0
#: time weight of a precision relative to fp32 when sharing probes between groups
PRECISION_WEIGHT = {"fp32": 1.0, "int8": 0.5, "int8_dynamic": 0.2, "fp16": 0.05}


def _family(target) -> tuple:
    """Targets whose kernels share table keys and measuring protocol: same device kind, runtime and
    ISA family (x86 AVX2 and AVX-512 are one family; ARM, GPUs and the fake target each another)."""
    return target.device, target.runtime, (target.isa or "").split("-")[0]


def resolve_base(spec: str, target) -> ProfileInfo:
    """The base profile named by ``spec``: a profile database path, or a target name (its measured
    profile closest to this host)."""
    from latency.profiles import closest
    from latency.targets import get_target, targets

    p = Path(spec)
    if p.suffix == ".db" or p.exists():
        if not p.exists():
            raise LatencyError(f"base profile {spec} does not exist")
        infos = read_profile(p, "shipped" if is_shipped(p) else "user")
        if not infos:
            raise LatencyError(f"base profile {spec} holds no target")
        same = [i for i in infos if i.target == target.name]
        info = same[0] if same else infos[0]
    elif spec in targets():
        cands = [i for i in discover() if i.target == spec and i.provenance == "measured"]
        if not cands:
            raise LatencyError(f"target {spec} has no measured profile to transfer from")
        info, _ = closest(cands, host_device())
        info = info or cands[0]
    else:
        raise LatencyError(f"--from {spec!r} is neither a profile database nor a target; valid targets: "
                           f"{', '.join(sorted(targets()))}")
    base_t = get_target(info.target)
    if _family(base_t) != _family(target):
        raise TransferError(f"base profile {info.path} is of another family than {target.name}: "
                            f"{_fingerprint_line(info.target, _family(base_t), info.device)} there vs "
                            f"{_fingerprint_line(target.name, _family(target), host_device())} here; its kernels "
                            f"are not this target's: transfer from a profile of the same family")
    return info


def base_vs_here(info: ProfileInfo, target) -> str:
    """One line: the base profile's device (``info``, as :func:`resolve_base` found it) and this host's side by
    side, and what differs between them (:func:`latency.profiles.device_distance`: ISA flags, vendor, CPU
    model, caches, runtime version)."""
    from latency.profiles import device_distance
    from latency.targets import get_target

    here = host_device()
    _, diffs = device_distance(info.device, here)
    return (f"base {_fingerprint_line(info.target, _family(get_target(info.target)), info.device)} vs here "
            f"{_fingerprint_line(target.name, _family(target), here)}: "
            + ("; ".join(diffs) if diffs else "no difference in their descriptions"))


def _fingerprint_line(name: str, family: tuple, dev: dict) -> str:
    """A target's family and the device of a fingerprint, in one clause (for side-by-side errors)."""
    isa = [f for f in dev.get("cpu_flags") or [] if f.startswith(("avx", "amx", "asimd", "sve", "i8mm"))]
    return (f"{name} [{'/'.join(x for x in family if x)}] on {dev.get('cpu_model') or dev.get('gpu_name') or '?'} "
            f"({dev.get('arch') or '?'}{', ' + ' '.join(isa[:6]) if isa else ''}; "
            f"{dev.get('runtime') or '?'} {dev.get('runtime_version') or '?'})")


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def default_db(target) -> Path:
    """``<user profiles>/<target>.<device>.db``: the profile a transfer writes by default."""
    d = host_device()
    dev = _slug(" ".join(x for x in (d.get("cpu_model") or "cpu", d.get("cpu_family_model") or "") if x))
    return user_profiles_dir() / f"{target.name}.{dev}.db"


def typical_shares(base_info: ProfileInfo) -> tuple[dict, dict]:
    """What typical models run: the FIT models (``profilers.zoo.FIT``, the calibration corpus) priced by
    the base profile; (kind -> summed share of a model's kernel time, kernel key -> the same)."""
    from latency.estimator import Estimator

    from . import zoo

    est = Estimator(base_info.target, profile=base_info.path, context=False, overhead=False, check_host=False)
    kinds: dict = {}
    keys: dict = {}
    for name in zoo.FIT:
        try:
            e = est.estimate(zoo.build(name))
        except LatencyError:
            continue
        for k in e.kernels:
            if k.source != "free":
                s = k.latency_us / max(e.kernel_sum_us, 1e-9)
                kinds[k.kind] = kinds.get(k.kind, 0.0) + s
                keys[k.key] = keys.get(k.key, 0.0) + s
    return kinds, keys


def group_weights(base_rows, kind_share: dict) -> dict:
    """(kind, precision) -> probe weight: half by the kind's share of typical models' kernel time
    (``kind_share``, per precision by :data:`PRECISION_WEIGHT`), half by the square root of the group's
    rows in the base (its plan's emphasis, damped so small kinds get a share)."""
    counts: dict = {}
    for key, _ in base_rows:
        c = Config.from_key(key)
        if c.sparsity == "0":
            counts[group_of(c)] = counts.get(group_of(c), 0) + 1
    imp = {g: kind_share.get(g[0], 0.0) * PRECISION_WEIGHT.get(g[1], 0.1) for g in counts}
    ti, tc = sum(imp.values()) or 1.0, sum(math.sqrt(n) for n in counts.values())
    return {g: 0.5 * imp[g] / ti + 0.5 * math.sqrt(n) / tc for g, n in counts.items()}


def choose_probes(base_rows, base_info: ProfileInfo, n: int) -> list[str]:
    """The keys to probe, most informative first (any prefix is the smaller probe set): the base
    profile's rows spread over kinds, precisions, variants and sizes (:func:`latency.transfer.probe_order`),
    the groups weighted by typical models' time (:func:`typical_shares`, :func:`group_weights`).

    Tried and left out: interleaving the FIT models' own kernels (real architectures' shapes sped up
    ~10% more than the plan's random ones from a Zen 4 to a Zen 5 EPYC, Conv fp32 ratio 0.455 vs
    0.567): the held-out models came out worse at 1000 probes (31% within 10% against 54%;
    benchmarks/results/transfer_amd-epyc-26-2.run3.txt)."""
    kinds, _ = typical_shares(base_info)
    return probe_order(base_rows, n, group_weights=group_weights(base_rows, kinds))


def _describe(target, info: ProfileInfo, db: Path, base_rows, train: bool, say, argv: str, t0: float) -> dict:
    """``--budget 0``: no probe. Every base row scaled by what the two devices' descriptions say
    (:func:`latency.transfer.description_model`: clock, IPC, vector width, VNNI, L1 load and L2 fill
    widths, each kernel on both rooflines by its arithmetic intensity), written as ``transferred``
    rows; rows this host measured before are kept; the base's context and overhead moved by the same
    description (:func:`_describe_base_calibration`); the regressors retrained on the new table unless
    ``train`` is False (computation only)."""
    host = host_device(cores_used=target.threads)
    model = description_model(info.device, host)
    say(f"no probe: {info.path} scaled by the device descriptions ({'; '.join(model.spec['known'])})")
    timings = {}
    t1 = time.monotonic()
    with Store(db) as st:
        tid = st.find_target(target.name)
        if tid is not None:
            st.delete_rows(tid, TRANSFERRED)
        tid = st.ensure_target(target.name, target.fingerprint())
        mine = st.measurements(tid, ok_only=True)
        kept = set(mine[mine["source"] == "measured"]["key_hash"]) if len(mine) else set()
        n_rows = write_transferred(st, tid, model, base_rows, kept, info.path, argv)
        write_device_record(st, target.name, host_device(), TRANSFERRED,
                            f"transferred from {Path(info.path).name} ({info.origin}; {info.describe()}) with no "
                            f"probe: {n_rows} rows scaled by the two devices' descriptions (.transfer.json)")
    timings["write_s"] = round(time.monotonic() - t1, 1)
    model_path = companion(db, ".transfer.json")
    with open(model_path, "w") as f:
        json.dump({"base": {"path": info.path, "target": info.target, "origin": info.origin,
                            "device": info.device, "describe": info.describe()},
                   "host": host, "probes": 0, "method": "description: no probe, nothing measured",
                   "model": model.to_dict(), "made_at": time.strftime("%Y-%m-%d %H:%M:%S")}, f, indent=1)
    out = {"db": str(db), "base": info.path, "probes": 0, "probes_new": 0, "failed": 0, "transferred_rows": n_rows,
           "transfer": str(model_path), "model": model, "described": model.spec["known"]}
    if train:
        out["regressors"] = _train_regressors(db, target, say, timings)
    else:
        out["regressors"] = "none (kernels without a row are priced by the FLOPs/bytes prior fitted on the new table)"
    out["context"] = _describe_base_calibration(info, db, model)
    timings["total_s"] = round(time.monotonic() - t0, 1)
    out["timings"] = timings
    return out


def _train_regressors(db, target, say, timings: dict) -> str:
    """Retrain every kind's regressor on the new profile ``db`` (its ``.regressors`` beside it); the time goes
    into ``timings["train_s"]``; what was done, for the summary."""
    from latency.regressor import train_all

    t1 = time.monotonic()
    say("training the regressors on the new table")
    with Store(db, readonly=True) as st:
        rep = train_all(st, st.find_target(target.name), companion(db, ".regressors"))
    timings["train_s"] = round(time.monotonic() - t1, 1)
    return f"retrained ({int((rep['status'] == 'trained').sum())} kinds)"


def _describe_base_calibration(info, db, model) -> str:
    """The base profile's context and overhead moved to this host by the description ``model``
    (:func:`latency.transfer.transfer_calibration`), written beside ``db``; what was done, for the summary."""
    src = {s: companion(info.path, s) for s in (".context.json", ".overhead.json")}
    if not any(p.exists() for p in src.values()):
        return "none (the base has none)"
    done = transfer_calibration(model, src[".context.json"], src[".overhead.json"], companion(db, ".context.json"),
                                companion(db, ".overhead.json"))
    files = ", ".join(s[1:] for s, p in src.items() if p.exists())
    return (f"moved from the base ({files}; fitted on the base's host) by the device descriptions, no probe: dispatch "
            f"terms x{done['dispatch_ratio']:g}, memory-traffic terms x{done['memory_ratio']:g}, in-model ratios "
            "the base's")


def _copy_base_calibration(info, db, why: str) -> str:
    """Copy the base profile's context and overhead files beside ``db``; what was done, for the summary."""
    copied = []
    for suffix in (".context.json", ".overhead.json"):
        src = companion(info.path, suffix)
        if src.exists():
            shutil.copyfile(src, companion(db, suffix))
            copied.append(suffix[1:])
    return (f"copied from the base ({', '.join(copied)}; fitted on the base's host, not this one): {why}"
            if copied else "none (the base has none)")


class StateReference:
    """A sample of a profile's measured rows, re-measured on demand with the protocol they were
    measured with: how fast the machine runs now against when the profile was measured.

    ``rows``: (key, latency_us in the profile) pairs; ``protocol``: the sweep protocol of those rows
    (None: the backend's default, the sweep's). ``ref(label)`` measures the rows now and returns (and
    keeps in ``records``) {label, at, n, ratio: median of now / profile, p10, p90, seconds}; ratio None
    when nothing could be measured. A calibration passes it to ``profilers.calibrate.calibrate``."""

    def __init__(self, target, rows, protocol=None):
        self.target, self.rows, self.protocol = target, [(k, float(v)) for k, v in rows], protocol
        self.records: list = []

    @classmethod
    def from_rows(cls, target, measured: dict, order=None, n: int = REFERENCE_N, protocol=None,
                  bounds: tuple = REFERENCE_US) -> "StateReference":
        """The first ``n`` keys of ``order`` (default: ``measured``'s own order) among ``measured``
        (key -> latency_us here) within ``bounds`` (us)."""
        keys = [k for k in (order if order is not None else measured)
                if k in measured and bounds[0] <= measured[k] <= bounds[1]]
        return cls(target, [(k, measured[k]) for k in keys[:n]], protocol)

    @classmethod
    def of_profile(cls, target, profile_path, n: int = REFERENCE_N) -> "StateReference":
        """``n`` of the profile's own measured fp32 rows within :data:`REFERENCE_US` (a fixed random
        sample, the same every time): the reference a plain calibration and the benchmarks measure the
        machine's state against."""
        import random

        with Store(profile_path, readonly=True) as st:
            df = st.measurements(st.find_target(target.name), ok_only=True)
        df = df[(df["source"] == "measured") & (df["precision"] == "fp32")]
        rows = dict(zip(df["key"], map(float, df["latency_us"])))
        order = sorted(rows)
        random.Random(0).shuffle(order)
        return cls.from_rows(target, rows, order, n=n)

    def __call__(self, label: str = "") -> dict:
        from .backends import measure

        t0 = time.monotonic()
        res = measure(self.target, [Config.from_key(k) for k, _ in self.rows], self.protocol) if self.rows else []
        r = sorted(x["latency_us"] / v for (_, v), x in zip(self.rows, res) if x.get("latency_us") and v > 0)
        rec = {"label": label, "at": time.strftime("%Y-%m-%dT%H:%M:%S"), "n": len(r),
               "ratio": round(float(np.median(r)), 4) if r else None,
               "p10": round(float(np.percentile(r, 10)), 4) if r else None,
               "p90": round(float(np.percentile(r, 90)), 4) if r else None,
               "seconds": round(time.monotonic() - t0, 1)}
        self.records.append(rec)
        return rec


def _same_device(st: Store, tid: str, target, db) -> None:
    """TransferError, with both fingerprints, when ``db`` holds ``target`` measured on another device."""
    mine, theirs = target.fingerprint(), (st.target(tid) or {}).get("fingerprint") or {}
    if mine != theirs:
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        raise TransferError(f"{db} holds {target.name} of another device: "
                            + "; ".join(f"{k} {theirs.get(k)!r} there vs {mine.get(k)!r} here" for k in diff)
                            + ": transfer into a profile of this host's own (--db FILE)")


def _plan_steps(budget_s: float, calibrate: bool | None, train: bool | None) -> tuple[float, bool, bool]:
    """(probe seconds, calibrate, train) for a budget; TransferError when it cannot fit a transfer
    (a budget of 0: no probe, nothing measured, see :func:`transfer`)."""
    if budget_s == 0:
        return 0.0, False, train is not False
    avail = budget_s - WRITE_S
    if avail < MIN_PROBE_S:
        raise TransferError(f"a budget of {budget_s:.0f} s cannot fit a transfer: it needs at least "
                            f"{MIN_PROBE_S + WRITE_S:.0f} s ({MIN_PROBES}+ probes and writing the profile); "
                            f"10m gives probes, regressors and an in-model calibration, 0 no probe at all "
                            f"(the base scaled by the two devices' descriptions)")
    do_train = train if train is not None else avail - TRAIN_S >= PROBE_FLOOR_S
    do_cal = calibrate if calibrate is not None else avail - TRAIN_S * do_train - CALIBRATE_S >= PROBE_FLOOR_S
    probe_s = avail - TRAIN_S * do_train - CALIBRATE_S * do_cal
    if probe_s < MIN_PROBE_S:
        raise TransferError(f"a budget of {budget_s:.0f} s leaves {probe_s:.0f} s for probes after "
                            f"{'training ' if do_train else ''}{'and ' if do_train and do_cal else ''}"
                            f"{'calibration ' if do_cal else ''}(at least {MIN_PROBE_S:.0f} s needed): "
                            "give a bigger budget or leave those steps out")
    return probe_s, do_cal, do_train


def transfer(target, base: str, db=None, budget_s: float = 600.0, core: int | None = 0, calibrate: bool | None = None,
             train: bool | None = None, max_probes: int | None = None, protocol=None, progress=None,
             argv: str = "") -> dict:
    """Measure probes on this host, fit the transfer from ``base`` and write a profile for ``target``.

    ``base``: a profile database path or a target name. ``db``: the profile to write (default
    :func:`default_db`; never a shipped one). ``calibrate``/``train``: None decides by the budget.
    ``max_probes``: measure at most this many (default: as many as the budget allows). ``budget_s`` 0: no
    probe at all, nothing measured (:func:`_describe`: the base scaled by the two devices' descriptions). Returns a
    summary dict (paths, probes measured, what was refitted or copied, seconds per step)."""
    from .sweep import run_sweep

    say = progress or (lambda msg: None)
    t0 = time.monotonic()
    probe_s, do_cal, do_train = _plan_steps(budget_s, calibrate, train)  # the input first, then the host
    if budget_s == 0 and max_probes:
        raise TransferError(f"--max-probes {max_probes} with --budget 0: a budget of 0 measures no probe (the base "
                            "scaled by the two devices' descriptions); give a budget for probes")
    if max_probes is not None and max_probes < MIN_PROBES:
        raise TransferError(f"--max-probes {max_probes} cannot fit a transfer: it needs at least {MIN_PROBES} probes")
    info = resolve_base(base, target)
    ok, why = target.host_supported()
    if not ok:
        raise LatencyError(why)
    db = Path(db) if db else default_db(target)
    if is_shipped(db):
        raise LatencyError(f"{db} is inside the shipped profiles, which are never written to: pass --db FILE")
    if Path(db).resolve() == Path(info.path).resolve():
        raise TransferError(f"--db {db} is the base profile itself: write the transfer into a profile of its own")
    if db.exists():  # before anything is measured: a profile of another device is never written into
        with Store(db, readonly=True) as st:
            tid0 = st.find_target(target.name)
            if tid0 is not None:
                _same_device(st, tid0, target, db)
    with Store(info.path, readonly=True) as st:
        bdf = st.measurements(st.find_target(info.target), ok_only=True)
    base_rows = [(k, float(v)) for k, v in zip(bdf["key"], bdf["latency_us"]) if v and v > 0]
    dense = sum(Config.from_key(k).sparsity == "0" for k, _ in base_rows)
    if not base_rows:
        raise TransferError(f"base profile {info.path} holds no measured row: there is nothing to transfer")
    db.parent.mkdir(parents=True, exist_ok=True)
    if budget_s != 0 and dense < MIN_PROBES:
        raise TransferError(f"base profile {info.path} has {dense} measured dense row(s) to probe: a transfer needs at "
                            f"least {MIN_PROBES}; transfer from a fuller profile")
    say(base_vs_here(info, target))  # every check passed: the two devices side by side, then the work
    if budget_s == 0:
        return _describe(target, info, db, base_rows, do_train, say, argv, t0)
    base_lat = {Config.from_key(k).hash: (k, v) for k, v in base_rows}  # key hash -> (key, base us)
    n_cap = int(min(max_probes or 1e9, probe_s * MAX_PROBES_PER_S))
    say(f"base {info.path} ({info.target}, {len(base_rows)} rows, {info.describe()}); choosing up to {n_cap} probes")
    order = choose_probes(base_rows, info, n_cap)
    timings = {"choose_s": round(time.monotonic() - t0, 1)}

    with Store(db) as st:
        tid0 = st.find_target(target.name)
        if tid0 is not None:
            _same_device(st, tid0, target, db)
            st.delete_rows(tid0, TRANSFERRED)  # rewritten below from this run's fit; measured rows stay
        say(f"measuring probes for up to {probe_s:.0f} s into {db}")
        t1 = time.monotonic()
        try:
            r = run_sweep(st, target, [Config.from_key(k) for k in order], budget_s=probe_s, argv=argv,
                          protocol=protocol, cores=[core] if core is not None else None, progress=False)
            timings["probes_s"] = round(time.monotonic() - t1, 1)
            tid = r.target_id
            mine = st.measurements(tid, ok_only=True)
            mine = mine[mine["source"] == "measured"]
            pairs = [(base_lat[h][0], base_lat[h][1], float(v))
                     for h, v in zip(mine["key_hash"], mine["latency_us"]) if h in base_lat]
            say(f"{r.measured} probes measured now ({r.failed} failed), {len(pairs)} measured rows pair with the base")
            model = fit_transfer(pairs)
            t1 = time.monotonic()
            n_rows = write_transferred(st, tid, model, base_rows, set(mine["key_hash"]), info.path, argv)
        except BaseException as e:
            # the probes stay (a rerun adds to them), but a profile of a few rows must never be taken
            # for this host's: host matching skips an incomplete one
            if st.find_target(target.name) is not None:
                write_device_record(st, target.name, host_device(), INCOMPLETE,
                                    f"transfer from {info.path} did not finish ({type(e).__name__}); its probes "
                                    "are kept for the next run")
            raise
        note = (f"transferred from {Path(info.path).name} ({info.origin}; {info.describe()}) with {len(pairs)} probes "
                f"measured here; {n_rows} rows scaled by per-kind curves (.transfer.json)")
        write_device_record(st, target.name, host_device(), TRANSFERRED, note)
        timings["write_s"] = round(time.monotonic() - t1, 1)
    model_path = companion(db, ".transfer.json")
    with open(model_path, "w") as f:
        json.dump({"base": {"path": info.path, "target": info.target, "origin": info.origin,
                            "device": info.device, "describe": info.describe()},
                   "host": host_device(cores_used=target.threads),  # clock with its source
                   "probes": len(pairs), "probe_order": "profilers.transfer.choose_probes", "model": model.to_dict(),
                   "made_at": time.strftime("%Y-%m-%d %H:%M:%S")}, f, indent=1)
    out = {"db": str(db), "base": info.path, "probes": len(pairs), "probes_new": r.measured, "failed": r.failed,
           "transferred_rows": n_rows, "transfer": str(model_path), "model": model}
    left = lambda: budget_s - (time.monotonic() - t0)  # noqa: E731
    # retrain (calibrate) when it was planned, or when the probes ended early and left room for it
    # with a margin (these steps take longer on a busy machine: a calibration took 61 to 123 s here)
    if train is not False and (do_train or left() >= 1.5 * TRAIN_S + (CALIBRATE_S if do_cal else 0)):
        out["regressors"] = _train_regressors(db, target, say, timings)
    else:
        reg = companion(db, ".regressors")
        out["regressors"] = ("none: the budget left no time to train (kernels without a row are priced by the "
                             "FLOPs/bytes prior fitted on the new table)" if not reg.exists() else
                             "kept from an earlier run (not retrained: no time left in the budget)")
    if calibrate is not False and (do_cal or left() >= 1.5 * CALIBRATE_S):
        from .calibrate import calibrate as run_calibration

        t1 = time.monotonic()
        say("calibrating the in-model context and overhead on this host")
        with Store(db, readonly=True) as st:  # this host's measured rows, the probes among them
            here = st.measurements(st.find_target(target.name), ok_only=True)
        here = here[here["source"] == "measured"]
        ref = StateReference.from_rows(target, dict(zip(here["key"], map(float, here["latency_us"]))), order,
                                       protocol=protocol)
        c = run_calibration(target, profile=str(db), progress=say, reference=ref if ref.rows else None)
        timings["calibrate_s"] = round(time.monotonic() - t1, 1)
        st8 = c.get("state") or {}
        out["state"] = st8
        out["context"] = (f"refitted here ({c['pairs']} kernel pairs from {c['models']} models; machine state against "
                          f"the probes' from {len(ref.rows)} re-measured probes: end-to-end run "
                          f"x{st8.get('e2e_scale', 1.0):.3f}, in-model run x{st8.get('in_model_scale', 1.0):.3f}, "
                          "normalised)" if ref.rows else
                          f"refitted here ({c['pairs']} kernel pairs from {c['models']} models; no probe within "
                          f"{REFERENCE_US[0]:g}-{REFERENCE_US[1]:g} us to re-measure: the machine's state not "
                          "normalised)")
    else:
        out["context"] = _copy_base_calibration(info, db, "the budget left no time to calibrate")
    timings["total_s"] = round(time.monotonic() - t0, 1)
    out["timings"] = timings
    return out


def write_transferred(store: Store, target_id: str, model: TransferModel, base_rows, skip_hashes, base_path,
                      argv: str = "") -> int:
    """Write ``model`` applied to ``base_rows`` ((key, base us) pairs) into ``store`` for ``target_id``
    as rows of source ``transferred`` (their base latency and ratio in ``extra``), except the key
    hashes in ``skip_hashes`` (measured here); one run records it. Returns the rows written."""
    skip = set(skip_hashes)
    items = [(k, v) for k, v in base_rows if Config.from_key(k).hash not in skip]
    run_id = store.start_run(target_id, None, f"transfer from {base_path}", None, argv)
    rows = [{"target_id": target_id, "key": k, "latency_us": float(n), "source": TRANSFERRED, "run_id": run_id,
             "extra": {"base_us": float(f"{v:.6g}"), "ratio": float(f"{n / v:.6g}")}}
            for (k, v), n in zip(items, model.apply_keys(items))]
    store.upsert_measurements(rows)
    store.finish_run(run_id, "done", len(rows), 0)
    return len(rows)
