"""The what-if plan's learned tables: probes (whole rewritten models, fused and priced as an estimate
prices them), attribution of every kernel to an owner, and the vectorised evaluation.

One **probe** is one candidate priced exactly: the fp32 graph rewritten as the tool would
(:mod:`.rewrite`), the target's fusion passes run over it, every kernel priced by the estimator.
Its kernels are split among owners (:mod:`.structure`); each owner's share is stored under the
owner's *key* in that probe (the precision bits and prune levels near it, the layout states of its
neighbours), with one row of coefficients per sparsity level of its weighted node. Evaluating a
candidate is then arithmetic: compute every owner's layout state from its transfer key (in
topological order), look every owner's key up, sum the coefficients, and apply the in-model
context and overhead exactly as :meth:`latency.Estimator.estimate` does. A key never seen makes the
plan run that candidate as a probe first (so every number comes from a real fusion of the same
local situation); a key seen with two different prices is counted in ``inconsistencies`` (the
locality the decomposition assumes did not hold there).

Coefficients per kernel (us, or MB): ``iso`` (time alone), ``curve`` (in-model curve term, times
the private-cache gate), ``fetch`` (weight fetch, times the last-level gate), ``ov0`` / ``ov1``
(the overhead model's per-kernel terms, the second times the last-level gate), ``fp`` (working-set
MB, which sets both gates), ``wmb`` (weight MB, reported).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from ..context import cache_gate
from ..estimator import KernelEstimate, _act_mb, overhead_us, weight_mb
from ..ops import Config, config_problem

COEFS = ("iso", "curve", "fetch", "ov0", "ov1", "fp", "wmb")
#: sparsity digits: 0 is the weight as the model holds it
SPARSITY_LEVELS = ("model", "50", "75", "90", "95", "2:4")
PRUNE_LEVELS = (0.0, 0.25, 0.5)
_SIGMA_RADIX = 64
_INSERTED = re.compile(r"^(?:ReorderInput|ReorderOutput|Cast)\((.*)\)$|^Transpose\((.*),(?:NHWC|NCHW)\)$")


@dataclass(frozen=True)
class PricedKernel:
    """One kernel of a probe with its isolated price: ``kernel`` (fusion's record), ``nodes`` (the
    original nodes it covers), ``iso_us``, ``source``, ``detail``, ``key``."""

    kernel: object
    nodes: tuple
    iso_us: float | None
    source: str
    detail: str
    key: str


@dataclass
class Entry:
    """An owner's kernels in one local situation: ``rows`` (one per sparsity digit) of kernel lists,
    ``coef`` (rows x COEFS), ``uncovered`` (node, op type, reason)."""

    rows: list
    coef: np.ndarray
    uncovered: tuple = ()


class Tables:
    """Learned tables of one precision family over a :class:`~latency.whatif.structure.Structure`."""

    def __init__(self, plan, family: str):
        self.plan = plan
        self.family = family
        st = plan.structure
        self.n_units = len(st.units)
        self.n_owners = len(st.owners)
        self.sigma_ids = [dict() for _ in st.owners]
        self.transfer = [dict() for _ in st.owners]
        self.entries = [dict() for _ in st.owners]
        self._arrays = None
        self.probes = 0
        self.inconsistencies: list = []
        self._build_specs()

    # -- keys ----------------------------------------------------------------------------------
    def _build_specs(self):
        """Per owner: column indices into the state (bits | prune | sigma) and mixed-radix multipliers."""
        st = self.plan.structure
        U, O = self.n_units, self.n_owners
        self.t_cols, self.t_mult, self.c_cols, self.c_mult = [], [], [], []
        for o in st.owners:
            cols = [u for u in o.bits] + [U + u for u in o.prunes] + [2 * U + p for p in o.producers]
            rad = [2] * len(o.bits) + [len(PRUNE_LEVELS)] * len(o.prunes) + [_SIGMA_RADIX] * len(o.producers)
            self.t_cols.append(np.array(cols, np.int64))
            self.t_mult.append(self._mult(rad))
            ccols = cols + [2 * U + o.order] + [2 * U + c for c in o.consumers]
            crad = rad + [_SIGMA_RADIX] * (1 + len(o.consumers))
            self.c_cols.append(np.array(ccols, np.int64))
            self.c_mult.append(self._mult(crad))
        self.width = 2 * U + O

    @staticmethod
    def _mult(radices) -> np.ndarray:
        m, out = 1, []
        for r in radices:
            out.append(m)
            m *= r
        if m >= 2 ** 62:
            raise OverflowError("a what-if key does not fit in 64 bits")
        return np.array(out, np.int64)

    # -- probes --------------------------------------------------------------------------------
    def probe(self, bits: np.ndarray, prune: np.ndarray) -> None:
        """Price one candidate exactly (whole rewritten model) and learn every owner's share."""
        from ..fusion.driver import fused_graph
        from ..fusion.lower import emit

        plan = self.plan
        st = plan.structure
        rw = plan.rewrite(self.family, bits, prune, materialize=False)
        state = fused_graph(rw.graph, plan.rules)
        layouts = getattr(state, "layouts", {}) or {}
        kernels, uncovered = emit(state)
        self.probes += 1
        sigma = self._observe_sigma(rw, layouts)
        owned = [[] for _ in st.owners]
        unc = [[] for _ in st.owners]
        for k in kernels:
            o, nodes = self._owner_of(k, rw)
            owned[o].append((k, nodes))
        for u in uncovered:
            n = rw.node_origin.get(u.node, u.node)
            if isinstance(n, tuple):
                o = st.owner_of_tensor.get(n[1], self.n_owners - 1)
            else:
                o = st.owner_of_node.get(n, self.n_owners - 1)
            unc[o].append((n if isinstance(n, str) else u.node, u.op_type, u.reason))
        state_row = np.zeros(self.width, np.int64)
        state_row[: self.n_units] = bits
        state_row[self.n_units: 2 * self.n_units] = prune
        for o in st.owners:
            ids = self.sigma_ids[o.order]
            s = ids.setdefault(sigma[o.order], len(ids))
            if s >= _SIGMA_RADIX:
                raise OverflowError(f"owner {o.name} has more than {_SIGMA_RADIX} layout states")
            state_row[2 * self.n_units + o.order] = s
        rows_needed = []
        for o in st.owners:
            tk = int(state_row[self.t_cols[o.order]] @ self.t_mult[o.order]) if len(self.t_cols[o.order]) else 0
            s = int(state_row[2 * self.n_units + o.order])
            old = self.transfer[o.order].setdefault(tk, s)
            if old != s:
                self.inconsistencies.append((o.name, "layout state", old, s))
            ck = int(state_row[self.c_cols[o.order]] @ self.c_mult[o.order])
            if ck in self.entries[o.order] and not self.plan.check_consistency:
                continue
            rows_needed.append((o, ck))
        new = plan.price_owner_kernels([(o, owned[o.order], unc[o.order]) for o, _ in rows_needed])
        for (o, ck), entry in zip(rows_needed, new):
            old = self.entries[o.order].get(ck)
            if old is None:
                self.entries[o.order][ck] = entry
            elif not np.allclose(old.coef, entry.coef, rtol=1e-6, atol=1e-6):
                self.inconsistencies.append((o.name, "price", float(old.coef[0, 0]), float(entry.coef[0, 0])))
        self._arrays = None

    def _observe_sigma(self, rw, layouts) -> list:
        """Each owner's layout state: which aliases of its tensors ran NCHWc-blocked or NHWC."""
        st = self.plan.structure
        blocked, nhwc = layouts.get("blocked", set()), layouts.get("nhwc", set())
        marks: dict = {}
        for name in blocked:
            t = rw.tensor_origin.get(name, name)
            marks.setdefault(t, set()).add(("b", name))
        for name in nhwc:
            t = rw.tensor_origin.get(name, name)
            marks.setdefault(t, set()).add(("h", name))
        out = []
        for o in st.owners:
            out.append(tuple(tuple(sorted(marks.get(t, ()))) for t in o.tensors))
        return out

    def _owner_of(self, k, rw):
        """(owner index, original nodes) of fused kernel ``k``."""
        st = self.plan.structure
        order = self.plan.node_order
        names, tensors = [], []
        for n in k.nodes:
            o = rw.node_origin.get(n, n)
            if isinstance(o, tuple):
                tensors.append(o[1])
            elif o is not None:
                names.append(o)
        if names:
            main = [n for n in names if self.plan.op_of.get(n) not in ("Identity", "Dropout")] or names
            first = min(main, key=lambda n: order.get(n, 1 << 30))
            return st.owner_of_node.get(first, self.n_owners - 1), tuple(dict.fromkeys(names))
        if not tensors:
            m = _INSERTED.match(k.name)
            if m:
                t = m.group(1) or m.group(2)
                tensors.append(rw.tensor_origin.get(t, t))
        for t in tensors:
            t = rw.tensor_origin.get(t, t)
            if t in st.owner_of_tensor:
                return st.owner_of_tensor[t], ()
        return self.n_owners - 1, ()

    # -- evaluation ----------------------------------------------------------------------------
    def _compile(self):
        """Sorted key arrays per owner (rebuilt after a probe added keys)."""
        if self._arrays is not None:
            return self._arrays
        tk, tv, ck, cv, coefs = [], [], [], [], []
        for o in range(self.n_owners):
            t = self.transfer[o]
            keys = np.array(sorted(t), np.int64)
            tk.append(keys)
            tv.append(np.array([t[k] for k in keys.tolist()], np.int64))
            e = self.entries[o]
            keys = np.array(sorted(e), np.int64)
            ck.append(keys)
            cv.append(np.arange(len(keys)))
            coefs.append(np.stack([e[k].coef for k in keys.tolist()]) if len(keys) else np.zeros((0, 1, len(COEFS))))
        self._arrays = (tk, tv, ck, cv, coefs)
        return self._arrays

    def sums(self, bits: np.ndarray, prune: np.ndarray, sparsity: np.ndarray):
        """(N x COEFS sums, known mask, entry ids N x owners) for candidates given as unit matrices."""
        tk, tv, ck, cv, coefs = self._compile()
        st = self.plan.structure
        n = bits.shape[0]
        U = self.n_units
        state = np.zeros((n, self.width), np.int64)
        state[:, :U] = bits
        state[:, U: 2 * U] = prune
        known = np.ones(n, bool)
        for o in st.owners:
            i = o.order
            cols = self.t_cols[i]
            key = state[:, cols] @ self.t_mult[i] if len(cols) else np.zeros(n, np.int64)
            s = _lookup(tk[i], tv[i], key)
            known &= s >= 0
            state[:, 2 * U + i] = np.maximum(s, 0)
        acc = np.zeros((n, len(COEFS)))
        ids = np.empty((n, self.n_owners), np.int64)
        for o in st.owners:
            i = o.order
            key = state[:, self.c_cols[i]] @ self.c_mult[i]
            e = _lookup(ck[i], cv[i], key)
            known &= e >= 0
            e = np.maximum(e, 0)
            ids[:, i] = e
            if not len(ck[i]):
                continue
            c = coefs[i]
            if c.shape[1] > 1:
                acc += c[e, sparsity[:, o.unit]]
            else:
                acc += c[e, 0]
        return acc, known, ids


def _lookup(keys: np.ndarray, vals: np.ndarray, q: np.ndarray) -> np.ndarray:
    """vals[keys == q] per query, -1 where absent."""
    if not len(keys):
        return np.full(q.shape, -1, np.int64)
    pos = np.searchsorted(keys, q)
    pos = np.minimum(pos, len(keys) - 1)
    return np.where(keys[pos] == q, vals[pos], -1)


# ------------------------------------------------------------------------------------------------
# coefficients and the estimator's final arithmetic


class Pricer:
    """Prices kernels with an :class:`~latency.Estimator` and turns them into coefficients; applies
    the estimator's context and overhead (scalar, and vectorised over candidates)."""

    def __init__(self, est):
        self.est = est
        self.cm = est.context_
        self.ov = est.overhead_
        self._coef: dict = {}
        ov = self.ov
        self.per_run = float(ov.get("per_run_us", 0.0)) if (
            "per_long_kernel_us" in ov or ov.get("per_run_us") or ov.get("per_kernel_us")
            or ov.get("per_weight_mb_us")) else 0.0
        spec = self.cm.spec if self.cm is not None else {}
        gs = spec.get("gate", {}) if isinstance(spec.get("gate"), dict) else {}
        self._use_cm_gate = bool(self.cm) and bool(spec.get("gate"))
        fp = gs.get("footprint_mb")
        self._bounds = tuple(fp) if fp and 0 < fp[0] < fp[1] else None
        self._curve = gs.get("curve")
        self._fp_scale = float(gs.get("footprint_scale", 1.0))
        cfp = (spec.get("curve_gate") or {}).get("footprint_mb")
        self._curve_bounds = tuple(cfp) if cfp and 0 < cfp[0] < cfp[1] else None
        self._ov_bounds = (ov.get("weights") or {}).get("gate_footprint_mb")

    def price(self, cfgs: list) -> list:
        """(latency_us, source, detail) per Config, as the estimator prices it (None: uncovered)."""
        out = [None] * len(cfgs)
        ok = [i for i, c in enumerate(cfgs) if not config_problem(c.key)]
        res = self.est._price_many([cfgs[i] for i in ok])
        for i, r in zip(ok, res):
            out[i] = r
        return out

    def coefficients(self, kind, op_types, iso, source, key) -> np.ndarray:
        ck = (key, source, op_types[:1], iso)
        hit = self._coef.get(ck)
        if hit is not None:
            return hit
        v = np.zeros(len(COEFS))
        free = source == "free"
        v[0] = iso
        if self.cm and not free:
            v[1] = iso * (self.cm.factor(kind, iso, 1.0) - 1.0)
            v[2] = self.cm.stream_us(weight_mb(key), 1.0)
        ke = KernelEstimate("k", kind, tuple(op_types), (), "", "", iso, source, key=key, isolated_us=iso)
        o0 = overhead_us([ke], self.ov, 0.0) - self.per_run
        o1 = overhead_us([ke], self.ov, 1.0) - self.per_run
        v[3], v[4] = o0, o1 - o0
        if not free:
            v[5] = weight_mb(key) + 0.5 * _act_mb(key)
            v[6] = weight_mb(key)
        self._coef[ck] = v
        return v

    # -- gates, scalar and vectorised --------------------------------------------------------
    def gates(self, footprint_mb: float) -> tuple:
        """(last-level gate, private-cache gate) as Estimator.estimate computes them."""
        if self._use_cm_gate:
            g = self.cm.gate(footprint_mb)
        else:
            g = cache_gate(footprint_mb, self._ov_bounds)
        cg = self.cm.curve_gate(footprint_mb) if self.cm else g
        return g, cg

    def gates_vec(self, fp: np.ndarray) -> tuple:
        def gate(x, bounds, curve):
            x = np.asarray(x, float)
            if not bounds and not curve:
                return np.ones_like(x)
            lx = np.log(np.maximum(x, 1e-300))
            if curve and curve.get("footprint_mb"):
                g = np.clip(np.interp(lx, np.log(curve["footprint_mb"]), curve["gate"]), 0, 1)
            else:
                lo, hi = math.log(bounds[0]), math.log(bounds[1])
                g = np.clip((lx - lo) / (hi - lo), 0, 1)
            return np.where(x <= 0, 0.0, g)

        if self._use_cm_gate:
            g = gate(fp * self._fp_scale, self._bounds, self._curve) if (self._bounds or self._curve) \
                else np.ones_like(fp)
        else:
            g = gate(fp, self._ov_bounds, None)
        if self.cm:
            cg = gate(fp, self._curve_bounds, None) if self._curve_bounds else g
        else:
            cg = g
        return g, cg

    def totals_us(self, acc: np.ndarray, any_kernels: bool = True) -> np.ndarray:
        """Total microseconds per candidate from its coefficient sums (the estimator's arithmetic)."""
        g, cg = self.gates_vec(acc[:, 5])
        ksum = acc[:, 0] + cg * acc[:, 1] + g * acc[:, 2]
        ov = (self.per_run + acc[:, 3] + g * acc[:, 4]) if any_kernels else np.zeros(len(acc))
        scaled = np.maximum(0.5 * ksum, ksum + ov)
        return np.where((ov < 0) & (ksum > 0), scaled, ksum + ov)


def finish(pricer: Pricer, priced: list, uncovered: list, target: str, profile, warnings=()):
    """An :class:`~latency.Estimate` from priced kernels, exactly as :meth:`latency.Estimator.estimate`
    finishes one (gates from the working set, in-model context, overhead, negative overhead moved
    into the kernels)."""
    from ..estimator import _MIN_KERNEL_SCALE, Estimate

    cm, ov = pricer.cm, pricer.ov
    fp = sum(weight_mb(p.key) + 0.5 * _act_mb(p.key) for p in priced if p.source != "free")
    gate, cgate = pricer.gates(fp)
    ests = []
    for p in priced:
        k = p.kernel
        iso = max(0.0, float(p.iso_us))
        lat, detail = iso, p.detail
        if cm and p.source != "free":
            f = cm.factor(k.kind, iso, cgate)
            s = cm.stream_us(weight_mb(p.key), gate)
            lat = iso * f + s
            detail = (detail + "; " if detail else "") + f"in-model context x{f:.3f}" + \
                (f" + {s:.1f} us weight fetch" if s >= 0.05 else "") + f" (gates: private cache {cgate:.2f}, " \
                f"last-level cache {gate:.2f})"
        ests.append(KernelEstimate(k.name, k.kind, tuple(k.op_types), tuple(p.nodes) or tuple(k.nodes), k.precision,
                                   k.sparsity, lat, p.source, 0.0, detail, p.key, iso))
    ksum = sum(e.latency_us for e in ests)
    overhead = overhead_us(ests, ov, gate)
    ov_source = ov.get("source", "")
    if overhead < 0 and ksum > 0:
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
    warnings = list(warnings)
    if uncovered:
        warnings.append(f"{len(uncovered)} node(s) could not be priced and are NOT in the total (see uncovered)")
    return Estimate(total / 1000.0, ksum, overhead, tuple(ests), tuple(uncovered), target, profile, ov_source,
                    tuple(warnings), sources, pricer.est.context_source_, fp, gate, cgate)


def with_sparsity(cfg: Config, sparsity: str) -> Config:
    return Config(cfg.kind, cfg.params, cfg.precision, sparsity)
