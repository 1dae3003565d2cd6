"""Kernels -> table hit / regressor / analytic prior -> total + per-kernel breakdown + coverage.

Prepare once, estimate many: an :class:`Estimator` loads its target's profile table, regressors,
prior and overhead model once; each :meth:`Estimator.estimate` call is then pure Python over the
model's fused kernels, with a per-config memo so a search that re-estimates similar graphs pays for
each distinct kernel once.

Every kernel's number says where it came from (``source``):

* ``table``: the exact config was measured on the target (the profile's provenance applies).
* ``table:dense-equivalent``: a sparse kernel priced as its dense twin because the target's own
  spot checks show sparsity does not change latency there (the measured ratio is in ``detail``).
* ``transferred``: the exact config has a row, but measured on another device and scaled to this
  one by a fitted transfer (:mod:`latency.transfer`; a profile made by ``latency calibrate --from``).
* ``regressor``: the kind's XGBoost model trained on the target's table.
* ``prior``: FLOPs/bytes line fitted per kind on the target's table (derived, not measured).
* ``prior:spec-sheet``: roofline from the device's spec sheet (no measurement at all).
* ``free``: a metadata-only op (Reshape & co) known to do no data-proportional work.

Nothing is ever priced as 0 silently: a kernel no source can price is listed as uncovered.
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import LatencyError, MissingTable, UnsupportedOp
from .context import cache_gate
from .overhead import OverheadModel, dispatched_count, fit_overhead, lowint_conv_mb, overhead_us, settle_overhead
from .ops import OPTIONAL_FEATURE_PARAMS, OPTIONAL_FEATURES, Config, elem_bytes, get_kind, key_hash

#: marks a kernel priced by a regressor that has never seen its variant (see OPTIONAL_FEATURES)
UNSEEN_VARIANT = "a variant the profile has no rows for"

#: held while an estimator loads what it prices from (prepare, the lazy prior, a regressor): an
#: estimator shared by threads is then never seen half-loaded, and each file is read once
_LOAD_LOCK = threading.RLock()

#: an estimate above this (one day, us) says so: the input shapes are almost surely wrong
_ABSURD_US = 86400e6


@dataclass(frozen=True)
class KernelEstimate:
    name: str
    kind: str
    op_types: tuple
    nodes: tuple
    precision: str
    sparsity: str
    latency_us: float
    source: str
    share: float = 0.0
    detail: str = ""
    key: str = ""
    isolated_us: float | None = None  # the kernel alone (table/regressor/prior), before the in-model context


@dataclass(frozen=True)
class Estimate:
    """A model-level estimate. ``total_ms`` = kernel sum + overhead; every part is itemised."""

    total_ms: float
    kernel_sum_us: float
    overhead_us: float
    kernels: tuple
    uncovered: tuple
    target: str
    profile: str | None
    overhead_source: str
    warnings: tuple = ()
    sources: dict = field(default_factory=dict)
    context_source: str = ""
    footprint_mb: float = 0.0   # working set per run: weights + half the activations (footprint_term_mb)
    cache_gate: float = 1.0     # 0: the model stays in the last-level cache between runs, 1: it does not
    private_gate: float = 1.0   # the same for the core's private cache (scales the in-model curves)
    fusion: str = ""            # the fusion rules that built the kernels (FusionRules.name)

    def to_dict(self) -> dict:
        return {
            "total_ms": self.total_ms,
            "kernel_sum_us": self.kernel_sum_us,
            "overhead_us": self.overhead_us,
            "overhead_source": self.overhead_source,
            "context_source": self.context_source,
            "footprint_mb": self.footprint_mb,
            "cache_gate": self.cache_gate,
            "private_gate": self.private_gate,
            "target": self.target,
            "profile": self.profile,
            "fusion": self.fusion,
            "sources": self.sources,
            "kernels": [asdict(k) | {"op_types": list(k.op_types), "nodes": list(k.nodes)} for k in self.kernels],
            "uncovered": [asdict(u) for u in self.uncovered],
            "warnings": list(self.warnings),
        }


#: model files whose estimates an Estimator keeps (see Estimator._keep)
_KEPT_FILES = 16
_KEPT_LOCK = threading.Lock()


def _strict_check(est):
    """``est``, or UnsupportedOp when it left nodes uncovered (``estimate(strict=True)``)."""
    unc = est.uncovered
    if unc:
        raise UnsupportedOp(f"{len(unc)} node(s) uncovered, e.g. {unc[0].node} ({unc[0].op_type}): {unc[0].reason}")
    return est


def _file_stats(paths) -> tuple:
    """(size, modification time in ns, inode) of each file (None where it cannot be read)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append((st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            out.append(None)
    return tuple(out)


def _file_key(model, shapes, batch, trip_counts, precision):
    """The key of an estimate of a model given as a path to an existing file (None otherwise)."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    try:
        path = os.fspath(model)
        if not os.path.isfile(path):
            return None
        return (os.path.realpath(path), _file_stats([path]), repr(shapes), repr(batch), repr(trip_counts),
                precision)
    except (OSError, TypeError, ValueError):
        return None


_BATCHED = object()  # Estimator._dense_equivalent: queued for one regressor call


class Estimator:
    """Prices ONNX models on one target. Construct once, call :meth:`estimate` many times.

    ``profile``: a :class:`latency.profiles.Profile` or the path of its database (default: the
    target's profile closest to this host, see :meth:`Target.choose_profile`).
    ``regressors``: folder of trained regressors (default: the profile's), or False to disable.
    ``overhead``: an :class:`latency.overhead.OverheadModel`, the path of one, or False for none
    (default: the profile's). ``context``: a :class:`latency.context.ContextModel`, the path of
    one, or False for none (default: the profile's). :meth:`using` gives a copy with other models
    that shares what is loaded.
    """

    def __init__(self, target, profile=None, regressors=None, *, overhead=None, context=None,
                 check_host: bool = True):
        from .errors import UnknownTarget
        from .targets import Target, get_target, targets

        if not isinstance(target, (str, Target)):
            raise UnknownTarget(target, targets())
        self.target = get_target(target) if isinstance(target, str) else target
        self.profile = profile
        self.regressors = regressors
        self.overhead = overhead
        self.context = context
        self.check_host = check_host
        self._prepared = False

    def using(self, *, context=None, overhead=None) -> "Estimator":
        """A prepared copy that prices with these context / overhead models (objects, paths or False;
        None keeps this one's) and shares the loaded table, regressors and caches (a calibration
        scores many candidate models this way without reloading the profile)."""
        import copy

        self.prepare()
        other = copy.copy(self)
        other.__dict__.pop("kept_", None)  # estimates this one kept were priced with its own models
        if context is not None:
            other.context = context
            other.context_, other.context_source_ = other._load_context()
        if overhead is not None:
            other.overhead = overhead
            other.overhead_ = other._load_overhead(None)
        return other

    # -- preparation ---------------------------------------------------------------------------

    def prepare(self, model=None, shapes=None, batch=None, **kw):
        """Load table, regressors, prior and overhead model (once; safe to call from several threads).
        With ``model``: also prepare it for what-if questions and return the plan (the same as
        :meth:`plan`)."""
        if model is not None:
            return self.plan(model, shapes=shapes, batch=batch, **kw)
        if self._prepared:
            return self
        with _LOAD_LOCK:
            if not self._prepared:
                self._prepare()
        return self

    def _prepare(self) -> None:
        self.warnings_: list[str] = []
        self.table_: dict[str, float] = {}
        self.regs_: dict = {}
        self.prior_: dict[str, tuple] = {}
        self.sparsity_ratio_: dict[str, tuple] = {}
        self.memo_: dict[str, tuple] = {}
        self.rules_ = self.target.fusion_rules()
        from .profiles import Profile

        prof = self.profile if isinstance(self.profile, Profile) else None
        path = prof.path if prof else Path(self.profile) if self.profile else None
        if path is None and self.target.profile:
            path = self.target.profile_path()
        self.profile_path_ = str(path) if path else None
        self.profile_ = None
        if path is not None:
            self.profile_ = prof or Profile(path)
            tid, self.table_, self.fingerprint_ = self.profile_.table(self.target.table_name)
            self.target_id_ = tid
            self.rules_ = self.target.fusion_rules(self.fingerprint_)  # the profile's device's own rules
            self._evidence_ready = False
            if self.check_host:
                self._host_check()
        elif self.target.spec:
            self.warnings_.append(f"target {self.target.name} has no measured profile: every kernel is priced "
                                  f"from its spec sheet ({self.target.spec.get('source')}), not measured")
        else:
            raise MissingTable(f"target {self.target.name} has no profile; pass --profile FILE or build one with "
                               f"'latency profile --target {self.target.name}'")
        reg_dir = self.regressors
        if reg_dir is None and self.profile_ is not None:
            reg_dir = self.profile_.regressors_dir
        self.reg_dir_ = Path(reg_dir) if reg_dir and Path(reg_dir).exists() else None
        self.reg_kinds_ = ({p.name[: -len(".meta.json")] for p in self.reg_dir_.glob("*.meta.json")}
                           if self.reg_dir_ else set())
        self.overhead_ = self._load_overhead(None)
        self.context_, self.context_source_ = self._load_context(None)
        if self.profile_ is not None:
            missing = [what for what, have in (
                (f"regressors ({Path(self.profile_path_).stem}.regressors/: shapes the table misses are priced by a "
                 "FLOP/byte prior)", self.reg_dir_ is not None),
                ("in-model context (.context.json)", bool(self.context_) or self.context is not None),
                ("overhead model (.overhead.json)", bool(self.overhead_) or self.overhead is not None))
                if not have]
            if missing:
                listed = ", ".join(missing[:-1]) + (" or " if len(missing) > 1 else "") + missing[-1]
                self.warnings_.append(f"profile {os.path.basename(self.profile_path_)} has no {listed} beside it "
                                      f"(found by its file name): 'latency train' and 'latency calibrate' make them")
        self._prepared = True

    def _evidence(self) -> None:
        """The sparsity evidence and which (kind, precision) groups the table has, read on first need (not
        on the hot path): the sparse rows and a count per group, not the whole table."""
        if getattr(self, "_evidence_ready", True):
            return
        from .store import Store

        with _LOAD_LOCK:
            if self._evidence_ready:
                return
            with Store(self.profile_path_, readonly=True) as st:
                sparse = st.key_latencies(self.target_id_, sparse=True)
                self.data_groups_ = {k for k, n in st.group_counts(self.target_id_).items() if n >= 3}
            self._sparsity_evidence(self._configs(sparse))
            self._evidence_ready = True

    def data_groups(self) -> set:
        """(kind, precision) pairs the profile has at least three dense measurements of (empty without a
        profile): what a FLOP/byte prior can be fitted on."""
        if not getattr(self, "profile_path_", None):
            return set()
        self._evidence()
        return self.data_groups_

    def _configs(self, rows) -> list:
        """``(Config, latency_us)`` of ``(key, latency_us)`` rows; StoreError naming the file on a bad key."""
        from .errors import InvalidConfig, StoreError

        try:
            return [(Config.from_key(key), float(lat)) for key, lat in rows]
        except InvalidConfig as e:
            raise StoreError(f"profile database {self.profile_path_}: a measurement row has a bad key: {e}") \
                from None

    def _prior_coef(self, kind: str, precision: str):
        """The FLOP/byte prior of (kind, precision), fitted on the whole dense table on first need."""
        if not getattr(self, "_prior_ready", False) and getattr(self, "profile_path_", None):
            from .store import Store

            with _LOAD_LOCK:
                if not getattr(self, "_prior_ready", False):
                    with Store(self.profile_path_, readonly=True) as st:
                        dense = st.key_latencies(self.target_id_, sparse=False)
                    self._fit_prior(self._configs(dense))
                    self._prior_ready = True
        return self.prior_.get((kind, precision))

    def _fit_prior(self, cfgs) -> None:
        """Per (kind, precision): latency_us ~ a + flops/F + bytes/B, a non-negative least squares over the
        dense rows of ``cfgs`` ((Config, latency_us) pairs)."""
        from .ops import work_bytes

        groups: dict = {}
        for cfg, lat in cfgs:
            if cfg.sparsity != "0":
                continue
            f = get_kind(cfg.kind).work(cfg.params)
            groups.setdefault((cfg.kind, cfg.precision), []).append(
                (1.0, f["flops"] / 1e6, work_bytes(f, cfg.precision) / 1e6, lat))
        for k, rows in groups.items():
            if len(rows) < 3:
                continue
            a = np.array(rows)
            x, y = a[:, :3], a[:, 3]
            w = 1.0 / np.maximum(y, 1e-3)  # relative error
            coef = _nnls(x * w[:, None], y * w)
            self.prior_[k] = tuple(float(c) for c in coef)

    def _sparsity_evidence(self, cfgs) -> None:
        """Median measured latency ratio sparse/dense per (kind, precision) on the same shapes (``cfgs``:
        the sparse rows; their dense twins from the table)."""
        ratios: dict = {}
        for cfg, v in cfgs:
            if cfg.sparsity == "0":
                continue
            dense = self.table_.get(Config(cfg.kind, cfg.params, cfg.precision, "0").hash)
            if dense:
                ratios.setdefault((cfg.kind, cfg.precision), []).append(v / dense)
        for k, r in ratios.items():
            r = np.array(r)
            self.sparsity_ratio_[k] = (float(np.median(r)), float(np.percentile(r, 10)),
                                       float(np.percentile(r, 90)), len(r))

    def _host_check(self) -> None:
        """Warn when this host is a device of the target's kind and differs from the profile's device.

        A named target describes a device; this host matters only when it is such a device (an
        AVX-512 host estimating an AVX2 target, or any host estimating a GPU, is not)."""
        from .profiles import device_distance, host_device, read_profile

        if self.target.backend != "ort-cpu":
            return
        infos = [i for i in read_profile(self.profile_path_, "") if i.target == self.target.table_name]
        if infos and infos[0].provenance in ("derived", "emulated"):  # never shown as if measured on the device
            self.warnings_.append(f"profile {os.path.basename(str(self.profile_path_))} is {infos[0].provenance}, "
                                  f"not measured on the device: {infos[0].note or infos[0].describe()}")
        host = host_device()
        if not self.target.describes_host(host):
            return
        if not infos:
            return
        _, diffs = device_distance(infos[0].device, host)
        if diffs:
            self.warnings_.append(f"this host is a {self.target.name} device but not the one its profile was measured "
                                  f"on ({infos[0].describe()}): {'; '.join(diffs)}; kernels can differ by 1.5x or "
                                  f"more between CPU generations (e.g. 38% of models within 10% on an Intel Xeon "
                                  f"with a profile from an AMD EPYC)")

    def _load_overhead(self, _unused=None):
        """The overhead model: the one given (object or path), none (False), or the profile's."""
        if self.overhead is False:
            return OverheadModel.none()
        if isinstance(self.overhead, OverheadModel):
            return self.overhead
        if self.overhead is not None:
            return OverheadModel.load(self.overhead)
        if self.profile_ is not None:
            return self.profile_.overhead()
        # no measured profile: the per-inference term of the target's derived cost model, if it has one
        return self.target.cost().overhead() if self.target.cost is not None else OverheadModel.none()

    def _load_context(self, _unused=None):
        """(context model, where it came from): the one given (object or path), none (False), or the profile's."""
        from .context import ContextModel

        if self.context is False:
            cm = ContextModel(None)
        elif isinstance(self.context, ContextModel):
            cm = self.context
        elif self.context is not None:
            cm = ContextModel.load(self.context)
        elif self.profile_ is not None:
            cm = self.profile_.context()
        else:
            cm = ContextModel(None)
        return cm, (cm.spec.get("source", "fitted") if cm.spec else "none (kernels priced as timed alone)")

    # -- pricing ---------------------------------------------------------------------------------

    def _price_many(self, cfgs: list[Config], keys: list[str] | None = None) -> list[tuple]:
        """(latency_us, source, detail) per config (``keys``: their keys, when known); None latency when
        nothing can price it."""
        out: list = [None] * len(cfgs)
        need_reg: dict[str, list] = {}
        need_dense: dict[str, list] = {}  # sparse configs priced as their dense twin by a regressor
        for i, c in enumerate(cfgs):
            key = c.key if keys is None else keys[i]
            hit = self.memo_.get(key)
            if hit is not None:
                out[i] = hit
                continue
            kind = get_kind(c.kind)
            if kind.free:
                res = (0.0, "free", "metadata-only op")
            else:
                h = key_hash(key)
                lat = self.table_.get(h)
                res = (lat, *self._table_label(h)) if lat is not None else None
                if res is None and c.sparsity != "0":
                    res = self._dense_equivalent(c, batch=need_dense, i=i)
                    if res is _BATCHED:
                        continue
                if res is None and self._reg(c.kind) is not None:
                    need_reg.setdefault(c.kind, []).append(i)
                    continue
                if res is None:
                    res = self._prior(c)
            self.memo_[key] = res
            out[i] = res
        for kind, idx in need_reg.items():
            reg = self.regs_[kind]
            preds = reg.predict([cfgs[i] for i in idx])
            # optional features this kind has and this regressor was trained before (a kernel that sets one is
            # flagged); features computed per kernel only for those
            own = cfgs[idx[0]].features()
            lacking = [f for f in OPTIONAL_FEATURES if f in own and f not in reg.feature_names_]
            for i, p in zip(idx, preds):
                res = (float(p), "regressor", f"{kind} XGBoost model")
                feats = cfgs[i].features() if lacking else {}
                unseen = [OPTIONAL_FEATURE_PARAMS[f] for f in lacking if feats.get(f)]
                if unseen:
                    res = (float(p), "regressor", f"{kind} XGBoost model trained before {', '.join(unseen)} "
                                                  f"existed: priced as without it ({UNSEEN_VARIANT})")
                self.memo_[cfgs[i].key] = res
                out[i] = res
        for kind, items in need_dense.items():  # one regressor call per kind, not one per config
            preds = self.regs_[kind].predict([dense for _, dense, _ in items])
            for (i, _, ev), p in zip(items, preds):
                res = self._dense_result(float(p), "regressor:dense-equivalent", ev, cfgs[i].sparsity)
                self.memo_[cfgs[i].key] = res
                out[i] = res
        return out

    def _table_label(self, h: str) -> tuple[str, str]:
        """(source, detail) of the table row ``h``: ``table`` when it was measured on the profile's
        device, its own source (``transferred``: scaled from another device's profile) otherwise."""
        sources = getattr(self, "row_sources_", None)
        if sources is None:  # read once, on the first table hit (one SELECT; empty for measured profiles)
            from .store import Store

            with _LOAD_LOCK:
                if getattr(self, "row_sources_", None) is None:
                    with Store(self.profile_path_, readonly=True) as st:
                        self.row_sources_ = st.row_sources(self.target_id_)
            sources = self.row_sources_
        src = sources.get(h)
        if src is None:
            return "table", ""
        return src, ("another device's measurement scaled to this one (see the profile's .transfer.json)"
                     if src == "transferred" else "")

    def _reg(self, kind: str):
        """The kind's regressor, loaded on first use (None when there is none)."""
        if kind not in self.reg_kinds_:
            return None
        if kind not in self.regs_:
            from .regressor import KindRegressor

            with _LOAD_LOCK:
                if kind not in self.regs_:
                    self.regs_[kind] = KindRegressor.load(self.reg_dir_, kind)
        return self.regs_[kind]

    def _dense_equivalent(self, c: Config, batch: dict, i: int):
        """A sparse config priced as its dense twin where this target measured sparsity no faster (None:
        it did not, or nothing prices the twin). A twin that needs the regressor is queued in ``batch`` as
        ``(i, dense config, evidence)`` under its kind (priced in one call by :meth:`_price_many`) and
        ``_BATCHED`` returned."""
        self._evidence()
        ev = self.sparsity_ratio_.get((c.kind, c.precision))
        if not ev or not (0.9 <= ev[0] <= 1.1):
            return None
        dense = Config(c.kind, c.params, c.precision, "0")
        lat = self.table_.get(dense.hash)
        if lat is not None:
            return self._dense_result(lat, self._table_label(dense.hash)[0] + ":dense-equivalent", ev, c.sparsity)
        if self._reg(c.kind) is None:
            return None
        batch.setdefault(c.kind, []).append((i, dense, ev))
        return _BATCHED

    @staticmethod
    def _dense_result(lat: float, src: str, ev: tuple, sparsity: str) -> tuple:
        return (lat, src, f"sparsity {sparsity} measured no faster here: sparse/dense median "
                          f"{ev[0]:.3f} (p10 {ev[1]:.3f}, p90 {ev[2]:.3f}, {ev[3]} spot checks)")

    def _prior(self, c: Config):
        kind = get_kind(c.kind)
        w = kind.work(c.params)
        from .ops import bytes_moved

        by = bytes_moved(kind, c.params, c.precision)
        coef = self._prior_coef(c.kind, c.precision)
        if coef is not None:
            a, inv_f, inv_b = coef
            return (a + inv_f * w["flops"] / 1e6 + inv_b * by / 1e6, "prior",
                    f"FLOPs/bytes line fitted on this target's {c.kind} {c.precision} rows")
        if self.target.cost is not None:  # the target's derived cost model (GPU targets: latency.cost.gpu)
            return self.target.cost().price(c)
        spec = self.target.spec
        if spec:
            peak = spec["peak_gflops"].get(c.precision, spec["peak_gflops"]["fp32"])
            us = max(w["flops"] / (peak * 1e3), by / (spec["mem_gbs"] * 1e3)) + spec.get("launch_us", 0.0)
            return (us, "prior:spec-sheet", f"roofline from {spec.get('source')}")
        return None

    def check_fusion(self, model, runtime_summary, shapes=None, batch=None) -> dict:
        """Compare this target's fusion passes with onnxruntime's own optimized graph of ``model``.

        ``runtime_summary``: the runtime's kernel counts of ``model``, computed where the runtime runs
        (``profilers.runtime_graph.runtime_kernel_summary``: the library never runs it). Only for
        onnxruntime CPU targets that this host can run; returns ``{key: (ours, runtime)}`` for every
        kernel count that differs (empty: the pass list reproduced the runtime's graph).
        """
        from .fusion import compare_summaries, fuse, kernel_summary
        from .graph import load_graph

        ok, why = self.target.host_supported()
        if not ok or self.target.backend != "ort-cpu":
            raise LatencyError(f"cannot check fusion against the runtime here: {why or 'not an onnxruntime CPU target'}")
        rules = self.target.fusion_rules(self.target.fingerprint())  # this host's runtime on this host's CPU
        kernels, _ = fuse(load_graph(model, shapes=shapes, batch=batch), rules)
        return compare_summaries(kernel_summary(kernels), runtime_summary)

    def _rules_for(self, precision):
        """The target's fusion rules with the model built in ``precision`` (None: as stored); an
        UnknownPrecision naming the valid ones when the target has no rule for it."""
        if precision is None:
            return self.rules_
        cache = self.__dict__.setdefault("rules_by_precision_", {})
        if precision not in cache:
            base = self.rules_ if self._prepared else self.target.fusion_rules()
            valid = tuple(getattr(base, "precisions", ()))
            if precision not in valid:
                from .errors import UnknownPrecision

                raise UnknownPrecision(self.target.name, precision, valid)
            cache[precision] = base.with_precision(precision)
        return cache[precision]

    # -- the public call -------------------------------------------------------------------------

    def estimate(self, model, shapes=None, batch=None, strict: bool = False, trip_counts=None,
                 precision: str | None = None) -> Estimate:
        """Estimate a model (path, bytes, ModelProto or a loaded :class:`latency.graph.Graph`).

        ``trip_counts``: iterations of Loop / Scan nodes by name, where the graph does not fix them.
        ``precision``: build the model in this precision, as the target's runtime would on request
        (GPU targets: TensorRT's builder precision, see :mod:`latency.fusion.tensorrt`); None: as stored."""
        from .fusion import Uncovered
        from .graph import Graph, load_graph

        rules = self._rules_for(precision) if precision is not None else None  # a bad one fails before any loading
        self.prepare()
        rules = rules or self.rules_
        fkey = None if isinstance(model, Graph) else _file_key(model, shapes, batch, trip_counts, precision)
        if fkey is not None:
            hit = self._kept(fkey)
            if hit is not None:
                return _strict_check(hit) if strict else hit
        graph = model if isinstance(model, Graph) else load_graph(model, shapes=shapes, batch=batch,
                                                                   trip_counts=trip_counts)
        kernels, cfgs, keys, unc = _fused(graph, rules)
        refuse_unknown_shapes(graph, unc)
        ests, unc = [], list(unc)
        priced = self._price_many(cfgs, keys)

        footprint = _footprint_mb(keys, priced, [getattr(k, "repeat", False) for k in kernels])
        if self.context_ and self.context_.spec.get("gate"):
            gate = self.context_.gate(footprint)
        else:  # profiles calibrated before the context model kept the gate bounds in the overhead file
            gate = cache_gate(footprint, (self.overhead_.get("weights") or {}).get("gate_footprint_mb"))
        cgate = self.context_.curve_gate(footprint) if self.context_ else gate
        branches = []  # per priced kernel: the undecided If branches it runs under
        for k, key, res in zip(kernels, keys, priced):
            if res is None or res[0] is None or not math.isfinite(res[0]):
                for n, t in zip(k.nodes or (k.name,), k.op_types or (k.kind,)):
                    unc.append(Uncovered(n, t, f"no table row, regressor or prior prices {k.kind} {k.precision}"))
                continue
            iso = max(0.0, float(res[0]))
            lat, detail = iso, res[2]
            if self.context_ and res[1] != "free":
                f = self.context_.factor(k.kind, iso, cgate, k.precision, key)
                st = self.context_.stream_us(weight_mb(key), gate, isolated_us=iso, key=key)
                lat = iso * f + st
                detail = (detail + "; " if detail else "") + f"in-model context x{f:.3f}" + \
                    (f" + {st:.1f} us weight fetch" if st >= 0.05 else "") + f" (gates: private cache {cgate:.2f}, " \
                    f"last-level cache {gate:.2f})"
            ests.append(KernelEstimate(k.name, k.kind, tuple(k.op_types), tuple(k.nodes), k.precision, k.sparsity,
                                       lat, res[1], 0.0, detail, key, iso))
            branches.append(getattr(k, "branch", ()))
        branch_notes: list = []
        if any(branches):
            ests, branch_notes = costlier_branches(ests, branches)
        ests, ksum, overhead, ov_source = settle_overhead(ests, self.overhead_, gate)
        total = ksum + overhead
        ests = [replace(e, share=e.latency_us / total if total > 0 else 0.0) for e in ests]
        sources: dict = {}
        for e in ests:
            sources[e.source] = sources.get(e.source, 0) + 1
        warnings = list(self.warnings_) + list(getattr(graph, "notes", ())) + branch_notes
        if precision is None and getattr(rules, "builder_precision", None) == "fp32" and \
                "fp16" in getattr(rules, "precisions", ()) and _stores_fp16(graph):
            warnings.append("the model stores fp16 weights, and this target builds fp32 by default (TensorRT's weakly "
                            "typed build without --fp16 runs them as fp32 layers): --precision fp16 prices its fp16 "
                            "kernels")
        if unc:
            warnings.append(f"{len(unc)} node(s) could not be priced and are NOT in the total (see uncovered)")
        unseen = sum(1 for e in ests if UNSEEN_VARIANT in (e.detail or ""))
        if unseen:
            warnings.append(f"{unseen} kernel(s) are a variant this profile has no rows for (float convs on run-time "
                            "weights, NHWC int8 pools of a QDQ model, int8 convs with a weight zero point, Transposes "
                            "the runtime runs element by element) and are priced as the plain kernel, likely under: "
                            "'latency profile --plan zoo' on the device measures them")
        if total > _ABSURD_US:
            big = max(ests, key=lambda e: e.latency_us)
            warnings.append(f"the estimate is {total / 3.6e9:,.1f} hours, beyond any real inference: check the input "
                            f"shapes (--shape/--batch); the largest kernel is {big.name} ({big.kind}, "
                            f"{big.latency_us / 1e6:,.0f} s)")
        est = Estimate(total / 1000.0, ksum, overhead, tuple(ests), tuple(unc), self.target.name,
                       self.profile_path_, ov_source, tuple(warnings), sources, self.context_source_,
                       footprint, gate, cgate, getattr(rules, "name", ""))
        if fkey is not None:
            self._keep(fkey, est, graph.external_files)
        return _strict_check(est) if strict else est

    def _kept(self, fkey):
        """The estimate kept for a model file (see :meth:`_keep`) while the file and its external data files
        still have the size, modification time and inode they had; None otherwise."""
        with _KEPT_LOCK:
            hit = self.__dict__.get("kept_", {}).get(fkey)
            if hit is not None and _file_stats(hit[1]) == hit[2]:
                self.kept_.move_to_end(fkey)
                return hit[0]
        return None

    def _keep(self, fkey, est, external) -> None:
        """Keep the estimate of a model file (a few, newest first): a loop estimating one path loads and
        fuses it once. Only the answer is kept, not the loaded model and its weights. Bytes and ModelProtos
        are estimated every time (one may have been changed in place since)."""
        ext = tuple(external)
        with _KEPT_LOCK:
            kept = self.__dict__.setdefault("kept_", OrderedDict())
            kept[fkey] = (est, ext, _file_stats(ext))
            while len(kept) > _KEPT_FILES:
                kept.popitem(last=False)

    def plan(self, model, shapes=None, batch=None, **kw):
        """A what-if plan of ``model`` on this target (see :func:`latency.whatif.prepare`)."""
        from .whatif import prepare

        return prepare(self, model, shapes=shapes, batch=batch, **kw)


#: op kinds whose price is decided by their shapes (steps, heads, cache length): a node of these whose
#: shapes cannot be inferred stops the estimate with what would settle it, instead of being left out
SHAPE_BOUND_KINDS = ("LSTM", "GRU", "RNN", "Attention")


def refuse_unknown_shapes(graph, uncovered) -> None:
    """DynamicShapeError (one line) for the first recurrent or attention node in ``uncovered`` whose
    shapes could not be inferred: it names the node, the tensor, where it comes from and what settles
    it (``--shape`` for inputs with free dims, else a shape for that tensor in the model's value_info).
    Other uncovered nodes stay listed as uncovered."""
    import re

    from .errors import DynamicShapeError
    from .ops import kind_of_op

    for u in uncovered:
        if kind_of_op(u.op_type) not in SHAPE_BOUND_KINDS or "unknown" not in u.reason or "shape" not in u.reason:
            continue
        m = re.search(r"'([^']*)'[^']*$", u.reason.split(";")[0])  # the tensor the reason names (last quoted)
        t = m.group(1) if m and m.group(1) != u.node else None
        what = f"the shape of its input {t!r}" if t else "the shapes of its inputs"
        src = graph.producer(t) if t else None
        came = f" (it comes from {src.domain or 'ai.onnx'}:{src.op_type} node {src.name!r})" if src is not None else ""
        free = [x.name for x in graph.inputs if x.shape is None]
        if free:
            settle = "pass " + " ".join(f"--shape {n}=DIMS" for n in free) + " (every input with a free dim)"
        elif t:
            settle = (f"give {t!r} a static shape in the model's value_info, or export the model with static "
                      "shapes")
        else:
            settle = "export the model with static shapes"
        raise DynamicShapeError(f"{u.op_type} node {u.node!r}: {what} cannot be inferred{came}; {settle}")


def _fused(graph, rules) -> tuple:
    """(kernels, their configs, their keys, uncovered nodes) of ``graph`` under ``rules``, kernels whose
    attributes no runtime executes (stride 0, ...) moved to the uncovered list, never priced.

    A loaded graph is not changed after loading, so the answer is kept on the graph object for the
    rules it was computed with: a second estimate of the same graph skips fusion."""
    from .fusion import Uncovered, fuse
    from .ops import config_problem

    memo = graph.__dict__.setdefault("_fused_memo", [])
    for r, got in memo:
        if r is rules:
            return got
    kernels, uncovered = fuse(graph, rules)
    cfgs = [k.config for k in kernels]  # canonical configs and keys: built once per graph and rules
    keys = [c.key for c in cfgs]
    unc = list(uncovered)
    bad = [config_problem(key) for key in keys]  # cached per key: a dict lookup once seen
    if any(bad):
        for k, why in zip(kernels, bad):
            if why:
                unc.extend(Uncovered(n, t, why) for n, t in zip(k.nodes or (k.name,), k.op_types or (k.kind,)))
        keep = [i for i, why in enumerate(bad) if not why]
        kernels, cfgs, keys = [kernels[i] for i in keep], [cfgs[i] for i in keep], [keys[i] for i in keep]
    got = (kernels, cfgs, keys, tuple(unc))
    if len(memo) >= 4:
        memo.pop(0)
    memo.append((rules, got))
    return got


def costlier_branches(ests: list, branches: list) -> tuple[list, list]:
    """Keep, of every If whose condition is not constant, the kernels of its costlier branch.

    ``branches[i]``: the ((If node, branch), ...) kernel ``ests[i]`` runs under, outermost first (() for
    kernels that always run). Nested Ifs are settled from the inside out. Returns (kept kernels in their
    order, one note per If saying which branch was priced and what each costs)."""
    notes: list = []

    def settle(idx: list, depth: int) -> list:
        keep = [i for i in idx if len(branches[i]) <= depth]
        groups: dict = {}
        for i in idx:
            if len(branches[i]) > depth:
                node, br = branches[i][depth]
                groups.setdefault(node, {}).setdefault(br, []).append(i)
        for node, by_branch in groups.items():
            settled = {br: settle(ii, depth + 1) for br, ii in by_branch.items()}
            cost = {br: sum(ests[i].latency_us for i in ii) for br, ii in settled.items()}
            for br in ("then_branch", "else_branch"):
                cost.setdefault(br, 0.0)
            best = max(sorted(cost), key=lambda b: cost[b])
            keep += settled.get(best, [])
            notes.append(f"If {node!r}: its condition is not constant; priced by its costlier branch, {best} "
                         f"({cost[best]:.1f} us; " + ", ".join(f"{b} {c:.1f} us" for b, c in sorted(cost.items())
                                                               if b != best) + ")")
        return keep

    kept = sorted(settle(list(range(len(ests))), 0))
    return [ests[i] for i in kept], notes


def _nnls(a: np.ndarray, b: np.ndarray, iters: int = 200) -> np.ndarray:
    """Small non-negative least squares by projected coordinate descent (3 unknowns)."""
    x = np.maximum(np.linalg.lstsq(a, b, rcond=None)[0], 0.0)
    ata, atb = a.T @ a, a.T @ b
    for _ in range(iters):
        for j in range(len(x)):
            if ata[j, j] <= 0:
                continue
            r = atb[j] - ata[j] @ x + ata[j, j] * x[j]
            x[j] = max(0.0, r / ata[j, j])
    return x


@lru_cache(maxsize=1 << 16)
def _weight_mb_all(key: str) -> float:
    """Every weight-like operand in MB (the first calibrations' definition, kept for their overhead fits)."""
    c = Config.from_key(key)
    return get_kind(c.kind).work(c.params)["w_elems"] * elem_bytes(c.precision, weights=True) / 1e6


@lru_cache(maxsize=1 << 16)
def weight_mb(key: str) -> float:
    """Megabytes of constant weights the kernel of config ``key`` reads per run (what streams from
    memory in a model)."""
    c = Config.from_key(key)
    work = get_kind(c.kind).work(c.params)
    w = work["w_elems"]
    if c.kind == "MatMul" and not c.params.get("const_b", 1):
        w = 0.0  # both operands are activations (attention scores, context)
    elif c.kind == "Gather":
        w = work["out_elems"]  # an embedding lookup reads the gathered rows, not the whole table
    elif c.kind == "Conv" and c.params.get("runtime_w"):
        w = 0.0  # weights a DequantizeLinear wrote just before: read from cache, not streamed from memory
    return w * elem_bytes(c.precision, weights=True) / 1e6


def _stores_fp16(graph) -> bool:
    """Whether a convolution or matrix product of ``graph`` reads an fp16 weight."""
    return any(r.op_type in ("Conv", "MatMul", "Gemm", "ConvTranspose") and len(r.inputs) > 1
               and r.inputs[1].dtype == "float16" for r in graph.ops)


#: kernels that copy a tensor the model already holds into another layout or element type (the runtime's
#: NCHWc reorders and Casts): the copy stands in for its source, which the next kernel would have read,
#: so it adds no tensor to the working set (counting it would count that tensor twice: an fp16 CNN runs a
#: Cast and a reorder at each convolution, and its working set came out twice its fp32 model's)
COPY_OPS = frozenset({"ReorderInput", "ReorderOutput", "Cast"})


@lru_cache(maxsize=1 << 16)
def footprint_term_mb(key: str) -> float:
    """One kernel's share of a model's working set, MB: the constant weights it reads plus half the
    activations it reads and writes (each tensor is written once and read once), none for a copy."""
    c = Config.from_key(key)
    if c.params.get("op") in COPY_OPS:
        return weight_mb(key)
    w = get_kind(c.kind).work(c.params)
    if c.params.get("op") in _FLOAT_SIDE:  # a (de)quantization: one side of it is fp32, whatever its precision
        f_in, f_out = _FLOAT_SIDE[c.params["op"]]
        b = elem_bytes(c.precision)
        return weight_mb(key) + 0.5 * (w["in_elems"] * (4 if f_in else b) + w["out_elems"] * (4 if f_out else b)) / 1e6
    return weight_mb(key) + 0.5 * (w["in_elems"] + w["out_elems"]) * elem_bytes(c.precision) / 1e6


#: (input float, output float) of the ops that convert between fp32 and an integer type: a DequantizeLinear of
#: a whole embedding table (BERT's 30k x 128) writes 15.6 MB of fp32 on every run, not 3.9 MB
_FLOAT_SIDE = {"QuantizeLinear": (True, False), "DynamicQuantizeLinear": (True, False),
               "DequantizeLinear": (False, True)}


def _footprint_mb(keys, priced, repeats=None) -> float:
    """A model's working set per run, MB: the :func:`footprint_term_mb` of its priced kernels
    (config ``keys``), less those that repeat a loop body's first iteration (``repeats``)."""
    repeats = repeats or [False] * len(keys)
    return sum(footprint_term_mb(key) for key, res, rep in zip(keys, priced, repeats)
               if res is not None and res[1] != "free" and not rep)


def estimate(model, target=None, profile=None, shapes=None, batch=None, strict=False, trip_counts=None,
             precision=None) -> Estimate:
    """One-shot estimate (builds an :class:`Estimator`; use that class directly to estimate many).
    ``precision``: see :meth:`Estimator.estimate`."""
    from .targets import choose_default

    if target is None:
        t, info, _ = choose_default()
        target, profile = t.name, profile or (info.path if info else None)
    return Estimator(target, profile=profile).estimate(model, shapes=shapes, batch=batch, strict=strict,
                                                       trip_counts=trip_counts, precision=precision)


__all__ = ["Estimator", "Estimate", "KernelEstimate", "estimate", "LatencyError",
           # the overhead model's functions, re-exported from latency.overhead for existing callers
           "OverheadModel", "overhead_us", "fit_overhead", "dispatched_count", "lowint_conv_mb"]
