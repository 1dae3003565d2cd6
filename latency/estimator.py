"""Kernels -> table hit / regressor / analytic prior -> total + per-kernel breakdown + coverage.

Prepare once, estimate many: an :class:`Estimator` loads its target's profile table, regressors,
prior and overhead model once; each :meth:`Estimator.estimate` call is then pure Python over the
model's fused kernels, with a per-config memo so a search that re-estimates similar graphs pays for
each distinct kernel once.

Every kernel's number says where it came from (``source``):

* ``table``: the exact config was measured on the target (the profile's provenance applies).
* ``table:dense-equivalent``: a sparse kernel priced as its dense twin because the target's own
  spot checks show sparsity does not change latency there (the measured ratio is in ``detail``).
* ``regressor``: the kind's XGBoost model trained on the target's table.
* ``prior``: FLOPs/bytes line fitted per kind on the target's table (derived, not measured).
* ``prior:spec-sheet``: roofline from the device's spec sheet (no measurement at all).
* ``free``: a metadata-only op (Reshape & co) known to do no data-proportional work.

Nothing is ever priced as 0 silently: a kernel no source can price is listed as uncovered.
"""

from __future__ import annotations

import math
import threading
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import LatencyError, MissingTable, UnsupportedOp
from .context import cache_gate
from .ops import Config, elem_bytes, get_kind, key_hash

#: held while an estimator loads what it prices from (prepare, the lazy prior, a regressor): an
#: estimator shared by threads is then never seen half-loaded, and each file is read once
_LOAD_LOCK = threading.RLock()

#: a negative overhead scales the kernels down by at most this much (see Estimator.estimate)
_MIN_KERNEL_SCALE = 0.5
#: an estimate above this (one day, us) says so: the input shapes are almost surely wrong
_ABSURD_US = 86400e6

#: kernels counted in the per-kernel overhead (free ops that the runtime still dispatches)
_DISPATCHED_FREE = ("Reshape", "Flatten", "Squeeze", "Unsqueeze")


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
    footprint_mb: float = 0.0   # working set per run: weights + half the activations
    cache_gate: float = 1.0     # 0: the model stays in the last-level cache between runs, 1: it does not
    private_gate: float = 1.0   # the same for the core's private cache (scales the in-model curves)

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
            "sources": self.sources,
            "kernels": [asdict(k) | {"op_types": list(k.op_types), "nodes": list(k.nodes)} for k in self.kernels],
            "uncovered": [asdict(u) for u in self.uncovered],
            "warnings": list(self.warnings),
        }


def _dense_key(cfg: Config) -> str:
    return Config(cfg.kind, cfg.params, cfg.precision, "0").key


class Estimator:
    """Prices ONNX models on one target. Construct once, call :meth:`estimate` many times.

    ``profile``: path of the profiling database (default: the target's shipped profile).
    ``regressors``: folder of trained regressors (default: next to the profile), or False to disable.
    ``overhead``: path of the fitted overhead model (default: next to the profile), or False.
    ``context``: path of the fitted in-model context model (default: next to the profile), or False.
    """

    def __init__(self, target, profile=None, regressors=None, overhead=None, check_host: bool = True,
                 context=None):
        from .targets import get_target

        self.target = get_target(target) if isinstance(target, str) else target
        self.profile = profile
        self.regressors = regressors
        self.overhead = overhead
        self.context = context
        self.check_host = check_host
        self._prepared = False

    # -- preparation ---------------------------------------------------------------------------

    def prepare(self) -> "Estimator":
        """Load table, regressors, prior and overhead model (once; safe to call from several threads)."""
        if self._prepared:
            return self
        with _LOAD_LOCK:
            if not self._prepared:
                self._prepare()
        return self

    def _prepare(self) -> None:
        from .store import Store

        self.warnings_: list[str] = []
        self.table_: dict[str, float] = {}
        self.regs_: dict = {}
        self.prior_: dict[str, tuple] = {}
        self.sparsity_ratio_: dict[str, tuple] = {}
        self.memo_: dict[str, tuple] = {}
        self.rules_ = self.target.fusion_rules()
        path = Path(self.profile) if self.profile else None
        if path is None and self.target.profile:
            path = self.target.profile_path()
        self.profile_path_ = str(path) if path else None
        if path is not None:
            if not path.exists():
                raise MissingTable(f"profile {path} does not exist")
            with Store(path, readonly=True) as st:
                tid = st.find_target(self.target.name)
                if tid is None:
                    names = sorted({t["name"] for t in st.targets()})
                    raise MissingTable(f"profile {path} has no rows for target {self.target.name} "
                                       f"(it has: {', '.join(names) or 'none'})")
                self.table_ = st.latency_table(tid)
                self.fingerprint_ = st.target(tid).get("fingerprint")
            self.target_id_ = tid
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
        if reg_dir is None and path is not None:
            reg_dir = path.with_suffix("").with_name(path.stem + ".regressors")
        self.reg_dir_ = Path(reg_dir) if reg_dir and Path(reg_dir).exists() else None
        self.reg_kinds_ = ({p.name[: -len(".meta.json")] for p in self.reg_dir_.glob("*.meta.json")}
                           if self.reg_dir_ else set())
        self.overhead_ = self._load_overhead(path)
        self.context_, self.context_source_ = self._load_context(path)
        self._prepared = True

    def _evidence(self) -> None:
        """Fit the prior and the sparsity evidence from the table, on first need (not on the hot path)."""
        if getattr(self, "_evidence_ready", True):
            return
        from .errors import InvalidConfig, StoreError
        from .store import Store

        with _LOAD_LOCK:
            if self._evidence_ready:
                return
            with Store(self.profile_path_, readonly=True) as st:
                df = st.measurements(self.target_id_, ok_only=True)
            try:
                self._fit_prior(df)
                self._sparsity_evidence(df)
            except InvalidConfig as e:
                raise StoreError(f"profile database {self.profile_path_}: a measurement row has a bad key: {e}") \
                    from None
            self._evidence_ready = True

    def _fit_prior(self, df) -> None:
        """Per (kind, precision): latency_us ~ a + flops/F + bytes/B, a non-negative least squares."""
        if df is None or df.empty:
            return
        groups: dict = {}
        for key, lat in zip(df["key"], df["latency_us"]):
            cfg = Config.from_key(key)
            if cfg.sparsity != "0":
                continue
            f = get_kind(cfg.kind).work(cfg.params)
            from .ops import bytes_moved

            groups.setdefault((cfg.kind, cfg.precision), []).append(
                (1.0, f["flops"] / 1e6, bytes_moved(get_kind(cfg.kind), cfg.params, cfg.precision) / 1e6, lat))
        for k, rows in groups.items():
            if len(rows) < 3:
                continue
            a = np.array(rows)
            x, y = a[:, :3], a[:, 3]
            w = 1.0 / np.maximum(y, 1e-3)  # relative error
            coef = _nnls(x * w[:, None], y * w)
            self.prior_[k] = tuple(float(c) for c in coef)

    def _sparsity_evidence(self, df) -> None:
        """Median measured latency ratio sparse/dense per (kind, precision, sparsity) on the same shapes."""
        if df is None or df.empty:
            return
        lat = dict(zip(df["key"], df["latency_us"]))
        ratios: dict = {}
        for key, v in lat.items():
            cfg = Config.from_key(key)
            if cfg.sparsity == "0":
                continue
            dense = lat.get(_dense_key(cfg))
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
        host = host_device()
        if not self.target.describes_host(host):
            return
        infos = [i for i in read_profile(self.profile_path_, "") if i.target == self.target.name]
        if not infos:
            return
        _, diffs = device_distance(infos[0].device, host)
        if diffs:
            self.warnings_.append(f"this host is a {self.target.name} device but not the one its profile was measured "
                                  f"on ({infos[0].describe()}): {'; '.join(diffs)}; kernels can differ by 1.5x or "
                                  f"more between CPU generations (e.g. 38% of models within 10% on an Intel Xeon "
                                  f"with a profile from an AMD EPYC)")

    def _load_overhead(self, path) -> dict:
        p = Path(self.overhead) if self.overhead else (path.with_name(path.stem + ".overhead.json") if path else None)
        if self.overhead is False or p is None or not p.exists():
            return {"per_run_us": 0.0, "per_kernel_us": 0.0, "source": "none (no end-to-end fit for this target)"}
        from .context import read_json_file

        d = read_json_file(p, "overhead model")
        d.setdefault("source", f"fitted: {p.name}")
        _check_overhead(d, p)
        return d

    def _load_context(self, path):
        from .context import ContextModel

        p = Path(self.context) if self.context else (path.with_name(path.stem + ".context.json") if path else None)
        if self.context is False or p is None or not p.exists():
            return ContextModel(None), "none (kernels priced as timed alone)"
        cm = ContextModel.load(p)
        return cm, cm.spec.get("source", f"fitted: {p.name}")

    # -- pricing ---------------------------------------------------------------------------------

    def _price_many(self, cfgs: list[Config]) -> list[tuple]:
        """(latency_us, source, detail) per config; None latency when nothing can price it."""
        out: list = [None] * len(cfgs)
        need_reg: dict[str, list] = {}
        for i, c in enumerate(cfgs):
            key = c.key
            hit = self.memo_.get(key)
            if hit is not None:
                out[i] = hit
                continue
            kind = get_kind(c.kind)
            if kind.free:
                res = (0.0, "free", "metadata-only op")
            else:
                lat = self.table_.get(key_hash(key))
                res = (lat, "table", "") if lat is not None else None
                if res is None and c.sparsity != "0":
                    res = self._dense_equivalent(c)
                if res is None and self._reg(c.kind) is not None:
                    need_reg.setdefault(c.kind, []).append(i)
                    continue
                if res is None:
                    res = self._prior(c)
            self.memo_[key] = res
            out[i] = res
        for kind, idx in need_reg.items():
            preds = self.regs_[kind].predict([cfgs[i] for i in idx])
            for i, p in zip(idx, preds):
                res = (float(p), "regressor", f"{kind} XGBoost model")
                self.memo_[cfgs[i].key] = res
                out[i] = res
        return out

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

    def _dense_equivalent(self, c: Config):
        self._evidence()
        ev = self.sparsity_ratio_.get((c.kind, c.precision))
        if not ev or not (0.9 <= ev[0] <= 1.1):
            return None
        dense = Config(c.kind, c.params, c.precision, "0")
        lat = self.table_.get(dense.hash)
        src = "table:dense-equivalent"
        if lat is None and self._reg(c.kind) is not None:
            lat = float(self._reg(c.kind).predict([dense])[0])
            src = "regressor:dense-equivalent"
        if lat is None:
            return None
        return (lat, src, f"sparsity {c.sparsity} measured no faster here: sparse/dense median "
                          f"{ev[0]:.3f} (p10 {ev[1]:.3f}, p90 {ev[2]:.3f}, {ev[3]} spot checks)")

    def _prior(self, c: Config):
        kind = get_kind(c.kind)
        w = kind.work(c.params)
        from .ops import bytes_moved

        by = bytes_moved(kind, c.params, c.precision)
        self._evidence()
        coef = self.prior_.get((c.kind, c.precision))
        if coef is not None:
            a, inv_f, inv_b = coef
            return (a + inv_f * w["flops"] / 1e6 + inv_b * by / 1e6, "prior",
                    f"FLOPs/bytes line fitted on this target's {c.kind} {c.precision} rows")
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
        kernels, _ = fuse(load_graph(model, shapes=shapes, batch=batch), self.target.fusion_rules())
        return compare_summaries(kernel_summary(kernels), runtime_summary)

    # -- the public call -------------------------------------------------------------------------

    def estimate(self, model, shapes=None, batch=None, strict: bool = False) -> Estimate:
        """Estimate a model (path, bytes, ModelProto or a loaded :class:`latency.graph.Graph`)."""
        from .fusion import fuse
        from .graph import Graph, load_graph

        self.prepare()
        graph = model if isinstance(model, Graph) else load_graph(model, shapes=shapes, batch=batch)
        kernels, uncovered = fuse(graph, self.rules_)
        cfgs = [k.config for k in kernels]  # canonical configs and keys: built once per estimate
        keys = [c.key for c in cfgs]
        ests, unc = [], list(uncovered)
        from .fusion import Uncovered
        from .ops import config_problem

        bad = [config_problem(key) for key in keys]  # cached per key: a dict lookup once seen
        if any(bad):  # attributes no runtime executes (stride 0, ...): listed, never priced
            for k, why in zip(kernels, bad):
                if why:
                    unc.extend(Uncovered(n, t, why) for n, t in zip(k.nodes or (k.name,), k.op_types or (k.kind,)))
            keep = [i for i, why in enumerate(bad) if not why]
            kernels, cfgs, keys = [kernels[i] for i in keep], [cfgs[i] for i in keep], [keys[i] for i in keep]
        priced = self._price_many(cfgs)

        footprint = _footprint_mb(keys, priced)
        if self.context_ and self.context_.spec.get("gate"):
            gate = self.context_.gate(footprint)
        else:  # profiles calibrated before the context model kept the gate bounds in the overhead file
            gate = cache_gate(footprint, (self.overhead_.get("weights") or {}).get("gate_footprint_mb"))
        cgate = self.context_.curve_gate(footprint) if self.context_ else gate
        for k, key, res in zip(kernels, keys, priced):
            if res is None or res[0] is None or not math.isfinite(res[0]):
                for n, t in zip(k.nodes or (k.name,), k.op_types or (k.kind,)):
                    unc.append(Uncovered(n, t, f"no table row, regressor or prior prices {k.kind} {k.precision}"))
                continue
            iso = max(0.0, float(res[0]))
            lat, detail = iso, res[2]
            if self.context_ and res[1] != "free":
                f = self.context_.factor(k.kind, iso, cgate)
                st = self.context_.stream_us(weight_mb(key), gate)
                lat = iso * f + st
                detail = (detail + "; " if detail else "") + f"in-model context x{f:.3f}" + \
                    (f" + {st:.1f} us weight fetch" if st >= 0.05 else "") + f" (gates: private cache {cgate:.2f}, " \
                    f"last-level cache {gate:.2f})"
            ests.append(KernelEstimate(k.name, k.kind, tuple(k.op_types), tuple(k.nodes), k.precision, k.sparsity,
                                       lat, res[1], 0.0, detail, key, iso))
        ksum = sum(e.latency_us for e in ests)
        ov = self.overhead_
        overhead = overhead_us(ests, ov, gate)
        ov_source = ov.get("source", "")
        if overhead < 0 and ksum > 0:
            # A fitted overhead model may have negative terms (per short kernel: isolated timings carry the
            # profiler's own per-event cost, which a model run does not pay; per run, from a fit on few
            # models), so on a tiny model the sum goes below zero. That is a correction of the kernels'
            # prices, not a negative overhead: it moves into the kernels, in proportion to their prices,
            # and never takes more than half of them. The total is unchanged wherever it did not.
            f = max(_MIN_KERNEL_SCALE, (ksum + overhead) / ksum)
            note = f"x{f:.3f}: the overhead model's negative terms ({overhead:.1f} us) moved into the kernels" + \
                (", capped at half their price" if f == _MIN_KERNEL_SCALE else "")
            ests = [replace(e, latency_us=e.latency_us * f, detail=(e.detail + "; " if e.detail else "") + note)
                    if e.latency_us > 0 else e for e in ests]
            ksum = sum(e.latency_us for e in ests)
            ov_source += f" ({note})"
            overhead = 0.0
        total = ksum + overhead
        ests = [replace(e, share=e.latency_us / total if total > 0 else 0.0) for e in ests]
        sources: dict = {}
        for e in ests:
            sources[e.source] = sources.get(e.source, 0) + 1
        warnings = list(self.warnings_)
        if unc:
            warnings.append(f"{len(unc)} node(s) could not be priced and are NOT in the total (see uncovered)")
        if total > _ABSURD_US:
            big = max(ests, key=lambda e: e.latency_us)
            warnings.append(f"the estimate is {total / 3.6e9:,.1f} hours, beyond any real inference: check the input "
                            f"shapes (--shape/--batch); the largest kernel is {big.name} ({big.kind}, "
                            f"{big.latency_us / 1e6:,.0f} s)")
        est = Estimate(total / 1000.0, ksum, overhead, tuple(ests), tuple(unc), self.target.name,
                       self.profile_path_, ov_source, tuple(warnings), sources, self.context_source_,
                       footprint, gate, cgate)
        if strict and unc:
            raise UnsupportedOp(f"{len(unc)} node(s) uncovered, e.g. {unc[0].node} ({unc[0].op_type}): "
                                f"{unc[0].reason}")
        return est


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


def overhead_us(kernels, ov: dict, gate: float = 1.0) -> float:
    """What the overhead model ``ov`` (a fitted ``<profile>.overhead.json``) adds to the sum of
    ``kernels`` (priced :class:`KernelEstimate` s) in a model with last-level cache gate ``gate``, us."""
    if not kernels:
        return 0.0
    if "per_long_kernel_us" in ov:
        n_short, n_long = _kernel_counts(kernels, ov.get("short_us", 0.0))
        _, wmb = _overhead_terms(kernels, ov.get("weights"), gate)
        return (ov.get("per_run_us", 0.0) + ov["per_short_kernel_us"] * n_short
                + ov["per_long_kernel_us"] * n_long + ov.get("per_weight_mb_us", 0.0) * wmb
                + ov.get("per_lowint_conv_mb_us", 0.0) * lowint_conv_mb(kernels, ov.get("lowint_conv"), gate))
    if ov.get("per_run_us") or ov.get("per_kernel_us") or ov.get("per_weight_mb_us"):
        n_disp, wmb = _overhead_terms(kernels, ov.get("weights"), gate)
        return (ov.get("per_run_us", 0.0) + ov.get("per_kernel_us", 0.0) * n_disp
                + ov.get("per_weight_mb_us", 0.0) * wmb)
    return 0.0


#: the numbers an overhead model may hold (us, us per kernel, us per MB)
_OVERHEAD_NUMBERS = ("per_run_us", "per_kernel_us", "per_weight_mb_us", "per_short_kernel_us", "per_long_kernel_us",
                     "short_us", "per_lowint_conv_mb_us")


def _check_overhead(d: dict, path) -> None:
    """ProfileError naming ``path`` when the overhead model ``d`` holds what no fit writes: a term that
    is not a finite number, a rule that is not an object, or anything :func:`overhead_us` cannot apply."""
    from .errors import ProfileError

    bad = [k for k in _OVERHEAD_NUMBERS if k in d and (isinstance(d[k], bool) or not isinstance(d[k], (int, float))
                                                       or not math.isfinite(d[k]))]
    bad += [k for k in ("weights", "lowint_conv") if d.get(k) is not None and not isinstance(d[k], dict)]
    if not bad:
        probe = Config("Conv", {"x": [1, 64, 28, 28], "cout": 64, "kernel": [3, 3], "strides": [1, 1],
                                "pads": [1, 1, 1, 1], "dilations": [1, 1], "group": 1, "act": "none", "sum": 0})
        ks = [KernelEstimate("probe", "Conv", ("Conv",), ("probe",), "fp32", "0", us, "table", key=probe.key,
                             isolated_us=us) for us in (5.0, 500.0)]
        try:
            v = overhead_us(ks, d, 0.5)
            if not math.isfinite(v):
                bad.append("(the overhead it gives is not finite)")
        except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError) as e:
            bad.append(f"(applying it fails: {type(e).__name__}: {e})")
    if bad:
        raise ProfileError(f"overhead model {path} is malformed: {', '.join(bad)} (terms must be finite numbers, rules "
                           "objects); the file is corrupt or was edited by hand; recalibrate or pass overhead=False")


def _overhead_terms(kernels, weights_rule: dict | None = None, gate: float = 1.0) -> tuple[float, float]:
    """(dispatched kernel count, weight megabytes) of priced kernels: the regressors of the overhead.

    ``weights_rule`` None: every weight-like operand counts (profiles calibrated before the rule
    existed). Otherwise only constant weights that stream from memory in a model: a kernel whose own
    weights exceed ``cap_mb`` (the last-level cache) streams them when timed alone too, so they do
    not count; with ``gated``, the sum is scaled by the model's cache gate (0 when the whole model
    stays in cache between runs).
    """
    n = dispatched_count(kernels)
    if not weights_rule:
        return float(n), sum(_weight_mb_all(k.key) for k in kernels if k.source != "free" and k.key)
    cap = weights_rule.get("cap_mb") or float("inf")
    w = sum(x for x in (weight_mb(k.key) for k in kernels if k.source != "free" and k.key) if x < cap)
    return float(n), w * (gate if weights_rule.get("gated") else 1.0)


def lowint_conv_mb(kernels, rule: dict | None, gate: float = 1.0) -> float:
    """Weight megabytes of the convolutions that ``rule`` calls big and low-intensity, times ``gate``:
    weights of at least ``min_weight_mb`` (the core's private cache) and below ``cap_mb`` (the
    last-level cache), and less than ``max_us_per_mb`` of time alone per MB of weights. Inside a
    model such a kernel waits for its weights (in the kernel pairs: ~60 us per MB more than alone,
    against 20-35 for most kernels), where compute hides the fetch of the others."""
    if not rule:
        return 0.0
    lo, cap, knee = rule["min_weight_mb"], rule.get("cap_mb") or float("inf"), rule["max_us_per_mb"]
    total = 0.0
    for k in kernels:
        if k.kind != "Conv" or k.source == "free" or not k.key or k.isolated_us is None:
            continue
        w = weight_mb(k.key)
        if lo <= w < cap and k.isolated_us < knee * w:
            total += w
    return total * gate


def dispatched_count(kernels) -> int:
    """Kernels the runtime dispatches: every priced one, and the metadata ops it still dispatches."""
    return sum(1 for k in kernels if k.source != "free" or (k.op_types and k.op_types[0] in _DISPATCHED_FREE))


def _kernel_counts(kernels, short_us: float) -> tuple[float, float]:
    """(short, long) dispatched kernels: shorter than ``short_us`` alone (metadata ops the runtime
    still dispatches count as short) and the rest."""
    short = long_ = 0
    for k in kernels:
        if k.source == "free":
            short += bool(k.op_types and k.op_types[0] in _DISPATCHED_FREE)
        elif (k.isolated_us if k.isolated_us is not None else k.latency_us) < short_us:
            short += 1
        else:
            long_ += 1
    return float(short), float(long_)


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
    return w * elem_bytes(c.precision, weights=True) / 1e6


@lru_cache(maxsize=1 << 16)
def _act_mb(key: str) -> float:
    c = Config.from_key(key)
    w = get_kind(c.kind).work(c.params)
    return (w["in_elems"] + w["out_elems"]) * elem_bytes(c.precision) / 1e6


def _footprint_mb(keys, priced) -> float:
    """A model's working set per run, MB: constant weights plus half the activations its priced
    kernels (config ``keys``) touch."""
    return sum(weight_mb(key) + 0.5 * _act_mb(key) for key, res in zip(keys, priced)
               if res is not None and res[1] != "free")


def fit_overhead(estimates, measured_us, weights_rule: dict | None = None, weight_term: bool = True,
                 short_us: float | None = None, per_run_us: float | None = None,
                 lowint_conv: dict | None = None) -> dict:
    """Fit what the kernel sum misses: ``measured - kernel_sum = a + b * kernels + c * weight_MB``.

    ``a`` (per run: session/executor entry and exit), ``b`` (per dispatched kernel: executor cost
    minus the profiler's own share inside isolated kernel timings, so it may be negative), ``c``
    (per megabyte of streamed weights: isolated kernels run with their weights cache-warm, inside a
    model too big for the cache they stream them from memory; see :func:`_overhead_terms` for
    ``weights_rule``; ``weight_term=False`` when the context model prices weights per kernel).
    With ``short_us``, ``b`` splits in two: kernels shorter than ``short_us`` alone (their isolated
    timing carries the profiler's per-event cost, which the model run does not pay; the context
    model leaves them alone) and the rest. ``per_run_us``: ``a`` measured elsewhere (dispatch
    chains, :mod:`profilers.chains`) and held fixed; the other terms are fitted around it.
    ``lowint_conv``: a rule of :func:`lowint_conv_mb`, whose weight megabytes get a term of their own
    (``per_lowint_conv_mb_us``). Least squares weighted for relative error.
    ``estimates`` are :class:`Estimate` objects made without overhead; ``measured_us`` the models'
    end-to-end latencies (microseconds, same protocol as the profiler).
    """
    x, y, m = [], [], []
    for e, meas in zip(estimates, measured_us):
        n, wmb = _overhead_terms(e.kernels, weights_rule, e.cache_gate)
        counts = _kernel_counts(e.kernels, short_us) if short_us is not None else (n,)
        extra = (lowint_conv_mb(e.kernels, lowint_conv, e.cache_gate),) if lowint_conv else ()
        x.append((1.0, *counts, *extra, wmb if weight_term else 0.0))
        y.append(meas - e.kernel_sum_us)
        m.append(meas)
    x, y, m = np.array(x), np.array(y), np.array(m)
    w = 1.0 / m
    if per_run_us is None:
        coef = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)[0]
    else:
        rest = np.linalg.lstsq(x[:, 1:] * w[:, None], (y - per_run_us) * w, rcond=None)[0]
        coef = np.concatenate([[per_run_us], rest])
    resid = (x @ coef - y) / m
    out = {"per_run_us": float(coef[0]), "per_weight_mb_us": float(coef[-1]), "n_models": len(m),
           "residual_rel_median": float(np.median(np.abs(resid))), "source": "fitted on end-to-end measurements"}
    if per_run_us is not None:
        out["per_run_source"] = "measured (dispatch chains), held fixed in the fit"
    if lowint_conv:
        out.update(per_lowint_conv_mb_us=float(coef[-2]), lowint_conv=dict(lowint_conv))
    if short_us is not None:
        out.update(per_short_kernel_us=float(coef[1]), per_long_kernel_us=float(coef[2]), short_us=float(short_us))
    else:
        out["per_kernel_us"] = float(coef[1])
    if weights_rule:
        out["weights"] = weights_rule
    return out


def estimate(model, target=None, profile=None, shapes=None, batch=None, strict=False) -> Estimate:
    """One-shot estimate (builds an :class:`Estimator`; use that class directly to estimate many)."""
    from .targets import choose_default

    if target is None:
        t, info, _ = choose_default()
        target, profile = t.name, profile or (info.path if info else None)
    return Estimator(target, profile=profile).estimate(model, shapes=shapes, batch=batch, strict=strict)


__all__ = ["Estimator", "Estimate", "KernelEstimate", "estimate", "LatencyError"]
