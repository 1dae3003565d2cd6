"""The prepared what-if plan: choices in, latencies out, as arithmetic over tables learned from real
fusions of rewritten models (see :mod:`latency.whatif.tables`).

A **choice** is a whole-model policy plus per-node overrides::

    {"precision": "int8", "fp32_nodes": ["/Conv", "/Gemm"]}
    {"nodes": {"/layer1.0/Conv": {"precision": "int8", "sparsity": 0.5, "prune": 0.25}}}
    {"precision": "int8-dynamic", "sparsity": "2:4", "prune": 0.25}

``precision``: ``fp32``, ``int8`` (``quantize_static``, QDQ, defaults) or ``int8-dynamic``
(``quantize_dynamic``); a whole-model precision applies to every node the tool would quantize, a
whole-model sparsity to every node with a weight, a whole-model prune to every node whose output
channels can be pruned (the others are listed in the result's notes). A per-node setting that is
not possible is an error naming what is. One candidate uses one reduced precision (the tools make
one per model). ``sparsity``: a fraction of zero weights (binned as the estimator bins real weights:
50, 75, 90, 95%) or ``"2:4"``; 0 means the weights as the model holds them. ``prune``: 0, 0.25 or
0.5 of the output channels.

The same candidates as an integer matrix (candidates x :attr:`Plan.units`) use the codes of
:attr:`Plan.alternatives`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import LatencyError
from .rewrite import dynamic_int8, static_qdq
from .structure import analyse
from .tables import COEFS, PRUNE_LEVELS, SPARSITY_LEVELS, Entry, PricedKernel, Pricer, Tables, finish

#: precisions by code digit; the reduced ones are the families a candidate picks one of
PRECISIONS = ("fp32", "int8", "int8-dynamic")
FAMILIES = PRECISIONS[1:]
_TOOL = {"int8": "onnxruntime.quantization.quantize_static (QDQ, defaults)",
         "int8-dynamic": "onnxruntime.quantization.quantize_dynamic (defaults)"}
#: the table precision each family's kernels need data for
_DATA_PRECISION = {"int8": "int8", "int8-dynamic": "int8_dynamic"}
_NS, _NP = len(SPARSITY_LEVELS), len(PRUNE_LEVELS)


class InvalidChoice(LatencyError):
    """A choice that names a node, precision, sparsity or prune the plan cannot price."""


def code_of(precision: int, sparsity: int, prune: int) -> int:
    """The alternative code of (precision, sparsity, prune) digits."""
    return (precision * _NS + sparsity) * _NP + prune


def _digits(code):
    code = np.asarray(code)
    return code // (_NS * _NP), (code // _NP) % _NS, code % _NP


def sparsity_digit(value) -> int:
    """Sparsity digit of a ratio or "2:4": 0 (as the model holds it) below 25% zeros, else the bin the
    estimator gives a weight with that fraction of zeros."""
    if isinstance(value, str) and value.strip() == "2:4":
        return SPARSITY_LEVELS.index("2:4")
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise InvalidChoice(f"sparsity {value!r} is not a ratio in [0, 1) or '2:4'") from None
    if not 0.0 <= r < 1.0:
        raise InvalidChoice(f"sparsity {value!r} is outside [0, 1); give a fraction of zero weights or '2:4'")
    for hi, digit in ((0.25, 0), (0.625, 1), (0.825, 2), (0.925, 3)):
        if r < hi:
            return digit
    return 4


def prune_digit(value) -> int:
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise InvalidChoice(f"prune {value!r} is not a ratio in [0, 1)") from None
    if not 0.0 <= r < 1.0:
        raise InvalidChoice(f"prune {value!r} is outside [0, 1); valid: {', '.join(map(str, PRUNE_LEVELS))}")
    for i, lv in enumerate(PRUNE_LEVELS):
        if abs(r - lv) < 1e-9:
            return i
    raise InvalidChoice(f"prune {value!r} is not a level this plan prices; valid: "
                        f"{', '.join(map(str, PRUNE_LEVELS))}")


@dataclass(frozen=True)
class WhatIf:
    """What a choice does on the target: ``estimate`` (an :class:`~latency.Estimate`: total, per-kernel
    breakdown with sources, uncovered nodes), ``baseline_ms`` (the plain model), ``choice`` (each
    node's precision / sparsity / prune as priced), ``changes`` (owners whose kernels changed, with
    the in-model delta in us), ``nodes_to_exclude`` (for the quantization tool that makes it),
    ``weight_mb`` (constant weights the kernels read), ``notes``."""

    estimate: object
    baseline_ms: float
    family: str
    choice: dict
    changes: tuple
    nodes_to_exclude: tuple
    weight_mb: float
    baseline_weight_mb: float
    notes: tuple = ()

    @property
    def total_ms(self) -> float:
        return self.estimate.total_ms

    @property
    def kernels(self):
        return self.estimate.kernels

    @property
    def uncovered(self):
        return self.estimate.uncovered

    def to_dict(self) -> dict:
        d = self.estimate.to_dict()
        return {"total_ms": self.total_ms, "baseline_ms": self.baseline_ms,
                "speedup": self.baseline_ms / self.total_ms if self.total_ms > 0 else None,
                "family": self.family, "tool": _TOOL.get(self.family, "none (fp32)"),
                "nodes_to_exclude": list(self.nodes_to_exclude), "weight_mb": self.weight_mb,
                "baseline_weight_mb": self.baseline_weight_mb, "choice": self.choice,
                "changes": [dict(c) for c in self.changes], "notes": list(self.notes), **{
                    k: v for k, v in d.items() if k != "total_ms"}}


@dataclass
class ParetoFront:
    """``points`` (pandas): one row per fallback count, from all-int8 (k = 0) to all-fp32, with
    ``fp32_nodes``, ``latency_ms``, ``score`` (summed sensitivity of the nodes left int8) and
    ``on_front``; ``best``: the lowest-score point within ``budget_ms`` (None without a budget or when
    no point meets it); ``nodes_to_exclude``: what produces ``best`` with the family's tool."""

    points: object
    budget_ms: float | None = None
    best: dict | None = None
    nodes_to_exclude: list = field(default_factory=list)
    family: str = "int8"


class Plan:
    """A model prepared for what-if questions on one target (build it with :func:`latency.whatif.prepare`).

    ``units``: the node names a choice can name (in graph order); ``alternatives``: the codes of the
    matrix form; ``baseline``: the plain model's :class:`~latency.Estimate`.
    """

    def __init__(self, estimator, graph, check_consistency: bool = True):
        import time

        t0 = time.perf_counter()
        self.estimator = estimator
        self.graph = graph
        self.rules = estimator.rules_
        self.pricer = Pricer(estimator)
        self.check_consistency = check_consistency
        self.structure = analyse(graph)
        self.node_order = {r.name: i for i, r in enumerate(graph.ops)}
        self.op_of = {r.name: r.op_type for r in graph.ops}
        self.units = [u.name for u in self.structure.units]
        self._unit_index = {u: i for i, u in enumerate(self.units)}
        self.baseline = estimator.estimate(graph)
        self.baseline_ms = self.baseline.total_ms
        self.base_sparsity = {}
        heads = {u.name for u in self.structure.units if u.weighted}
        for k in self.baseline.kernels:
            for n in k.nodes:
                if n in heads and k.kind in ("Conv", "ConvTranspose", "MatMul"):
                    self.base_sparsity[n] = k.sparsity
        self.notes: list = []
        self.families = self._families_with_data()
        self._valid, self._why = self._validity()
        self.tables = {f: Tables(self, f) for f in self.families}
        self._front_family = self.families[0] if self.families else "int8"
        self._warm()
        self.prepare_s = time.perf_counter() - t0

    # -- what the target can price -------------------------------------------------------------
    def _families_with_data(self) -> list:
        est = self.estimator
        have = None
        if getattr(est, "profile_path_", None):
            est._evidence()
            have = {p for (_, p) in est.prior_}
            ev = est.sparsity_ratio_
            for (kind, prec), (med, p10, p90, n) in sorted(ev.items()):
                if kind in ("Conv", "MatMul") and 0.9 <= med <= 1.1:
                    self.notes.append(f"sparsity: {kind} {prec} measured no faster here (sparse/dense median "
                                      f"{med:.3f}, p10 {p10:.3f}, p90 {p90:.3f}, {n} spot checks): sparse "
                                      f"alternatives are priced as dense (source table:dense-equivalent)")
        fams = []
        self.missing_data: dict = {}
        for f in FAMILIES:
            if have is None or _DATA_PRECISION[f] in have:
                fams.append(f)
            else:
                self.missing_data[f] = (f"target {est.target.name} has no {_DATA_PRECISION[f]} measurements in its "
                                        f"profile; precisions with data: {', '.join(sorted(have)) or 'none'}")
        return fams

    def _validity(self):
        U = len(self.units)
        n_codes = len(PRECISIONS) * _NS * _NP
        valid = np.zeros((U, n_codes), bool)
        why = {}
        for i, u in enumerate(self.structure.units):
            for code in range(n_codes):
                p, s, r = (int(x) for x in _digits(code))
                prec = PRECISIONS[p]
                ok = prec == "fp32" or (prec in u.families and prec in self.families)
                ok = ok and (s == 0 or u.weighted) and (r == 0 or u.prunable)
                valid[i, code] = ok
            why[u.name] = u.group.reason if u.group is not None else "it has no weight"
        return valid, why

    @property
    def alternatives(self):
        """pandas DataFrame: ``code``, ``precision``, ``sparsity``, ``prune`` of every matrix code."""
        import pandas as pd

        rows = []
        for code in range(len(PRECISIONS) * _NS * _NP):
            p, s, r = (int(x) for x in _digits(code))
            rows.append({"code": code, "precision": PRECISIONS[p], "sparsity": SPARSITY_LEVELS[s],
                         "prune": PRUNE_LEVELS[r]})
        return pd.DataFrame(rows)

    # -- rewriting -----------------------------------------------------------------------------
    def rewrite(self, family: str, bits, prune, materialize: bool = False, sparsity=None):
        """The rewritten graph of a candidate (``bits``, ``prune``, ``sparsity``: digits per unit), as the
        tool would leave the model; ``materialize``: real weights (for a full re-estimate)."""
        st = self.structure
        q = {u.name for u, b in zip(st.units, bits) if b}
        heads = set(self.units)
        pr = {u.name: PRUNE_LEVELS[int(p)] for u, p in zip(st.units, prune) if int(p)}
        groups = {u.name: u.group for u in st.units if u.name in pr}
        if family == "int8-dynamic":
            rw = dynamic_int8(self.graph, lambda n: n in q, pr, groups, materialize)
        else:
            rw = static_qdq(self.graph, lambda n: n in q or n not in heads, pr, groups, materialize)
        if materialize and sparsity is not None and np.any(np.asarray(sparsity) > 0):
            _sparsify(rw, st, sparsity, family)
        return rw

    def rewritten(self, choice, materialize: bool = True):
        """The :class:`~latency.whatif.rewrite.Rewritten` graph of a choice (real weights by default):
        ``Estimator.estimate(plan.rewritten(c).graph)`` is the full re-estimate ``evaluate(c)`` matches."""
        code = self.codes([choice])[0]
        fam = self._family_of(code[None, :])[0]
        p, s, r = _digits(code)
        fam_name = FAMILIES[fam - 1] if fam else self._front_family
        return self.rewrite(fam_name, (p == PRECISIONS.index(fam_name)) if fam else np.zeros(len(code), int), r,
                            materialize=materialize, sparsity=s)

    # -- pricing an owner's kernels ------------------------------------------------------------
    def price_owner_kernels(self, items) -> list:
        """Entries (one row per sparsity digit for weighted units) for [(owner, [(kernel, nodes)], uncovered)]."""
        from ..ops import Config

        jobs, layout = [], []
        for o, kernels, unc in items:
            rows = _NS if o.unit >= 0 else 1
            head = self.structure.units[o.unit].name if o.unit >= 0 else None
            for s in range(rows):
                row = []
                for k, nodes in kernels:
                    cfg = k.config
                    if head is not None and head in nodes and k.kind in ("Conv", "ConvTranspose", "MatMul"):
                        sp = self.base_sparsity.get(head, "0") if s == 0 else SPARSITY_LEVELS[s]
                        cfg = Config(cfg.kind, cfg.params, cfg.precision, sp)
                        k = _with_sparsity(k, sp)
                    elif k.kind in ("Conv", "ConvTranspose", "MatMul") and cfg.sparsity != "0":
                        pass
                    row.append((k, nodes, cfg))
                    jobs.append(cfg)
                layout.append(row)
        priced = self.pricer.price(jobs)
        out, i, li = [], 0, 0
        for o, kernels, unc in items:
            rows = _NS if o.unit >= 0 else 1
            coef = np.zeros((rows, len(COEFS)))
            plist, unc_all = [], list(unc)
            for s in range(rows):
                row, pk = layout[li], []
                li += 1
                for k, nodes, cfg in row:
                    res = priced[i]
                    i += 1
                    if res is None or res[0] is None or not np.isfinite(res[0]):
                        if s == 0:
                            why = "no table row, regressor or prior prices " + f"{k.kind} {k.precision}"
                            unc_all += [(n, t, why) for n, t in zip(k.nodes or (k.name,), k.op_types or (k.kind,))]
                        continue
                    iso = max(0.0, float(res[0]))
                    pk.append(PricedKernel(k, nodes, iso, res[1], res[2], cfg.key))
                    coef[s] += self.pricer.coefficients(k.kind, tuple(k.op_types), iso, res[1], cfg.key)
                plist.append(pk)
            out.append(Entry(plist, coef, tuple(unc_all)))
        return out

    # -- choices -------------------------------------------------------------------------------
    def _unit(self, name: str) -> int:
        i = self._unit_index.get(name)
        if i is not None:
            return i
        k = self.structure.unit_of_node.get(name)
        if k is not None:
            raise InvalidChoice(f"node {name!r} follows {self.units[k]!r} (the quantizer treats it with its input); "
                                f"name {self.units[k]!r} instead")
        close = [u for u in self.units if name.lower() in u.lower()][:5]
        raise InvalidChoice(f"no choosable node {name!r} in this model; choosable nodes: "
                            + (", ".join(close) + ", ..." if close else ", ".join(self.units[:8]) + ", ...")
                            + f" ({len(self.units)} in all, see plan.nodes)")

    def codes(self, choices) -> np.ndarray:
        """Alternative codes (candidates x units) of dict choices (see the module docstring)."""
        U = len(self.units)
        out = np.zeros((len(choices), U), np.int64)
        st = self.structure.units
        for row, ch in enumerate(choices):
            if not isinstance(ch, dict):
                raise InvalidChoice(f"a choice is a dict (precision, fp32_nodes, sparsity, prune, nodes), not "
                                    f"{type(ch).__name__}")
            bad = set(ch) - {"precision", "fp32_nodes", "sparsity", "prune", "nodes"}
            if bad:
                raise InvalidChoice(f"unknown choice key(s) {sorted(bad)}; valid: precision, fp32_nodes, sparsity, "
                                    "prune, nodes")
            prec = ch.get("precision", "fp32")
            pi = self._precision_index(prec)
            p = np.zeros(U, np.int64)
            if pi:
                for i, u in enumerate(st):
                    if PRECISIONS[pi] in u.families:
                        p[i] = pi
            for n in ch.get("fp32_nodes", ()) or ():
                p[self._unit(n)] = 0
            s = np.zeros(U, np.int64)
            if ch.get("sparsity") not in (None, 0, 0.0):
                d = sparsity_digit(ch["sparsity"])
                for i, u in enumerate(st):
                    if u.weighted:
                        s[i] = d
            r = np.zeros(U, np.int64)
            if ch.get("prune") not in (None, 0, 0.0):
                d = prune_digit(ch["prune"])
                for i, u in enumerate(st):
                    if u.prunable:
                        r[i] = d
            for n, spec in (ch.get("nodes") or {}).items():
                i = self._unit(n)
                if not isinstance(spec, dict):
                    raise InvalidChoice(f"the setting of node {n!r} is a dict (precision, sparsity, prune)")
                bad = set(spec) - {"precision", "sparsity", "prune"}
                if bad:
                    raise InvalidChoice(f"unknown node setting(s) {sorted(bad)} for {n!r}; valid: precision, "
                                        "sparsity, prune")
                if "precision" in spec:
                    q = self._precision_index(spec["precision"])
                    if q and PRECISIONS[q] not in st[i].families:
                        raise InvalidChoice(f"node {n!r} ({st[i].op}) cannot be {PRECISIONS[q]}; valid for it: "
                                            f"{', '.join(('fp32',) + st[i].families)}")
                    p[i] = q
                if "sparsity" in spec:
                    d = sparsity_digit(spec["sparsity"])
                    if d and not st[i].weighted:
                        raise InvalidChoice(f"node {n!r} ({st[i].op}) has no weight to sparsify; nodes with weights: "
                                            f"{', '.join(u.name for u in st if u.weighted)[:200]}")
                    s[i] = d
                if "prune" in spec:
                    d = prune_digit(spec["prune"])
                    if d and not st[i].prunable:
                        raise InvalidChoice(f"cannot prune {n!r}: {self._why[n]}")
                    r[i] = d
            out[row] = code_of(p, s, r)
        return out

    def _precision_index(self, prec) -> int:
        if prec not in PRECISIONS:
            raise InvalidChoice(f"unknown precision {prec!r}; valid: {', '.join(PRECISIONS)}")
        if prec != "fp32" and prec not in self.families:
            raise InvalidChoice(self.missing_data.get(prec, f"precision {prec} is not available"))
        return PRECISIONS.index(prec)

    def _family_of(self, codes: np.ndarray) -> np.ndarray:
        """Per candidate: 0 (all fp32) or the precision digit of its one reduced precision."""
        p = codes // (_NS * _NP)
        hi, lo = p.max(axis=1), np.where(p > 0, p, 99).min(axis=1)
        mixed = (hi > 0) & (lo != hi)
        if mixed.any():
            r = int(np.argmax(mixed))
            used = sorted({PRECISIONS[x] for x in p[r] if x})
            raise InvalidChoice(f"candidate {r} mixes {' and '.join(used)}: one model gets one reduced precision "
                                "(the tools quantize a model one way); pick one")
        return hi

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate_batch(self, choices, learn: bool = True, max_probes: int | None = None) -> np.ndarray:
        """Total ms per candidate: ``choices`` a list of dict choices or an int matrix of codes
        (candidates x :attr:`units`). Keys never seen are probed first (``learn``); with
        ``learn=False`` their candidates come back NaN."""
        codes = self._as_codes(choices)
        ms, _ = self._eval(codes, learn, max_probes)
        return ms

    def _as_codes(self, choices) -> np.ndarray:
        if isinstance(choices, np.ndarray) and choices.dtype.kind in "iu":
            codes = choices.astype(np.int64, copy=False)
            if codes.ndim != 2 or codes.shape[1] != len(self.units):
                raise InvalidChoice(f"a code matrix is candidates x {len(self.units)} units, not {codes.shape}")
            n_codes = len(PRECISIONS) * _NS * _NP
            if codes.size and (codes.min() < 0 or codes.max() >= n_codes):
                raise InvalidChoice(f"alternative codes run from 0 to {n_codes - 1} (see plan.alternatives)")
            ok = self._valid[np.arange(len(self.units))[None, :], codes]
            if not ok.all():
                r, u = (int(x) for x in np.argwhere(~ok)[0])
                raise InvalidChoice(f"candidate {r}: code {codes[r, u]} is not possible for {self.units[u]!r} "
                                    f"(valid codes: {np.flatnonzero(self._valid[u]).tolist()[:12]} ...)")
            return codes
        return self.codes(list(choices))

    def _eval(self, codes, learn=True, max_probes=None):
        n = len(codes)
        ms = np.full(n, np.nan)
        ids_all = {}
        if not n:
            return ms, ids_all
        fam = self._family_of(codes)
        p, s, r = _digits(codes)
        for f in np.unique(fam):
            rows = np.flatnonzero(fam == f)
            name = FAMILIES[f - 1] if f else self._front_family
            t = self.tables[name]
            bits = (p[rows] == f) if f else np.zeros((len(rows), codes.shape[1]), np.int64)
            bits = bits.astype(np.int64)
            acc, known, ids = t.sums(bits, r[rows], s[rows])
            probes = 0
            while learn and not known.all() and (max_probes is None or probes < max_probes):
                j = int(np.flatnonzero(~known)[0])
                t.probe(bits[j], r[rows][j])
                probes += 1
                todo = np.flatnonzero(~known)
                a2, k2, i2 = t.sums(bits[todo], r[rows][todo], s[rows][todo])
                acc[todo], known[todo], ids[todo] = a2, k2, i2
            tot = self.pricer.totals_us(acc) / 1000.0
            ms[rows] = np.where(known, tot, np.nan)
            ids_all[(name, int(f))] = (rows, ids, known, bits, r[rows], s[rows])
        return ms, ids_all

    def evaluate(self, choice) -> WhatIf:
        """The full answer for one choice: an :class:`~latency.Estimate`-like breakdown (see :class:`WhatIf`)."""
        codes = self.codes([choice]) if isinstance(choice, dict) else self._as_codes(np.asarray(choice)[None, :])
        ms, ids_all = self._eval(codes)
        ((name, _), (rows, ids, known, bits, prune, spars)), = ids_all.items()
        t = self.tables[name]
        _, _, ck, _, _ = t._compile()
        priced, unc, changes = [], [], []
        base = self._owner_entries(t, self._base_ids(t))
        mine = self._owner_entries(t, ids[0])
        gate, cgate = self.pricer.gates(float(sum(e.coef[min(sd, len(e.coef) - 1), 5] for e, sd in
                                                  zip(mine, self._rows_of(spars[0])))))
        bgate = self.pricer.gates(self.baseline.footprint_mb)
        for o, e, sd, eb in zip(self.structure.owners, mine, self._rows_of(spars[0]), base):
            row = min(sd, len(e.rows) - 1)
            priced.extend(e.rows[row])
            unc.extend(e.uncovered)
            c, cb = e.coef[row], eb.coef[0]
            now = c[0] + cgate * c[1] + gate * c[2]
            was = cb[0] + bgate[1] * cb[1] + bgate[0] * cb[2]
            if abs(now - was) >= 0.05 or len(e.rows[row]) != len(eb.rows[0]):
                changes.append({"owner": o.name, "delta_us": now - was, "kernels": len(e.rows[row]),
                                "kernels_before": len(eb.rows[0])})
        from ..fusion import Uncovered

        est = finish(self.pricer, priced, [Uncovered(*u) for u in unc], self.estimator.target.name,
                     self.estimator.profile_path_, self.estimator.warnings_)
        choice_out = self._describe(codes[0])
        fam = name if any(v["precision"] != "fp32" for v in choice_out.values()) else "fp32"
        excl = self._nodes_to_exclude(fam, codes[0]) if fam != "fp32" else ()
        notes = list(self._choice_notes(choice)) if isinstance(choice, dict) else []
        if any(v.get("sparsity", "model") != "model" for v in choice_out.values()):
            notes += [n for n in self.notes if n.startswith("sparsity")]
        return WhatIf(est, self.baseline_ms, fam, choice_out, tuple(changes), tuple(excl),
                      float(sum(_wmb(k.key) for k in est.kernels if k.source != "free")),
                      float(sum(_wmb(k.key) for k in self.baseline.kernels if k.source != "free")), tuple(notes))

    def _rows_of(self, spars_row):
        return [int(spars_row[o.unit]) if o.unit >= 0 else 0 for o in self.structure.owners]

    def _base_ids(self, t):
        z = np.zeros((1, len(self.units)), np.int64)
        acc, known, ids = t.sums(z, z, z)
        if not known.all():
            t.probe(z[0], z[0])
            acc, known, ids = t.sums(z, z, z)
        return ids[0]

    def _owner_entries(self, t, ids_row):
        _, _, ck, _, _ = t._compile()
        return [t.entries[o][int(ck[o][i])] for o, i in enumerate(ids_row)]

    def _describe(self, code_row) -> dict:
        p, s, r = _digits(code_row)
        out = {}
        for u, pi, si, ri in zip(self.units, p, s, r):
            if pi or si or ri:
                out[u] = {"precision": PRECISIONS[int(pi)], "sparsity": SPARSITY_LEVELS[int(si)],
                          "prune": PRUNE_LEVELS[int(ri)]}
        return out

    def _choice_notes(self, choice):
        st = self.structure.units
        if choice.get("prune") not in (None, 0, 0.0):
            skipped = [u for u in st if u.weighted and not u.prunable]
            if skipped:
                yield (f"prune {choice['prune']}: {len(skipped)} node(s) with weights kept their channels, e.g. "
                       f"{skipped[0].name}: {skipped[0].group.reason if skipped[0].group else 'no group'}")

    def _nodes_to_exclude(self, family: str, code_row) -> list:
        """Node names for the tool's ``nodes_to_exclude`` that leave the fp32 units of ``code_row`` fp32."""
        p, _, _ = _digits(code_row)
        out = []
        for u, pi in zip(self.structure.units, p):
            if family in u.families and not pi:
                out.append(u.name + "_MatMul" if family == "int8-dynamic" and u.op == "Gemm" else u.name)
        return out

    # -- tables for people ---------------------------------------------------------------------
    def owner_costs_us(self, choice) -> dict:
        """In-model microseconds of each owner's kernels under ``choice`` (owner name -> us)."""
        w = self.evaluate(choice)
        per: dict = {}
        owner_of = self.structure.owner_of_node
        for k in w.kernels:
            o = owner_of.get(k.nodes[0]) if k.nodes else None
            name = self.structure.owners[o].name if o is not None else "inserted"
            per[name] = per.get(name, 0.0) + k.latency_us
        return per

    @property
    def nodes(self):
        """pandas DataFrame: every choosable node, its op, the kernel it lands in (plain model), the
        nodes that follow it, and the in-model price (us) of its own kernels under each alternative:
        ``fp32_us``; ``int8_us`` / ``int8-dynamic_us`` with the whole model in that precision (its
        boundary Q/DQ kernels included); ``sparse*_us`` / ``prune*_us`` with only this node changed."""
        import pandas as pd

        st = self.structure
        kernel_of = {}
        for k in self.baseline.kernels:
            for n in k.nodes:
                kernel_of.setdefault(n, k.name)
        U = len(self.units)
        cols = {"fp32_us": np.zeros((1, U), np.int64)}
        for f in self.families:
            cols[f"{f}_us"] = np.full((1, U), code_of(PRECISIONS.index(f), 0, 0))
        single = {}
        for si in range(1, _NS):
            single[f"sparse{SPARSITY_LEVELS[si]}_us"] = code_of(0, si, 0)
        for ri in range(1, _NP):
            single[f"prune{int(PRUNE_LEVELS[ri] * 100)}_us"] = code_of(0, 0, ri)
        costs = {}
        for col, codes in cols.items():
            row = np.where(self._valid[np.arange(U), codes[0]], codes[0], 0)
            costs[col] = self._unit_costs(row[None, :])[0]
        rows = []
        for i, u in enumerate(st.units):
            rec = {"node": u.name, "op": u.op, "kernel": kernel_of.get(u.name, ""), "follows": list(u.members[1:]),
                   "weighted": u.weighted, "families": ",".join(u.families),
                   "prune": "ok" if u.prunable else (u.group.reason if u.group else "no weight")}
            for col in cols:
                rec[col] = costs[col][i]
            rows.append(rec)
        df = pd.DataFrame(rows)
        for col, code in single.items():
            vals = np.full(U, np.nan)
            ok = np.flatnonzero(self._valid[:, code])
            if len(ok):
                m = np.zeros((len(ok), U), np.int64)
                m[np.arange(len(ok)), ok] = code
                uc = self._unit_costs(m)
                vals[ok] = uc[np.arange(len(ok)), ok]
            df[col] = vals
        return df

    def _unit_costs(self, codes) -> np.ndarray:
        """In-model us of each unit owner's kernels (candidates x units), at each candidate's gates."""
        ms, ids_all = self._eval(codes)
        out = np.full(codes.shape, np.nan)
        uo = [self.structure.owner_of_node[u] for u in self.units]
        for (name, _), (rows, ids, known, bits, prune, spars) in ids_all.items():
            t = self.tables[name]
            _, _, ck, _, coefs = t._compile()
            acc, _, _ = t.sums(bits, prune, spars)
            g, cg = self.pricer.gates_vec(acc[:, 5])
            for j, o in enumerate(uo):
                owner = self.structure.owners[o]
                c = coefs[o][ids[:, o], spars[:, owner.unit] if owner.unit >= 0 else 0]
                out[rows, j] = c[:, 0] + cg * c[:, 1] + g * c[:, 2]
        return out

    def sensitivity(self):
        """pandas DataFrame, one row per choosable node: the change of the model's total (ms, negative =
        faster) when only that node takes each alternative (int8, int8-dynamic, sparse50 ... 2:4,
        prune25, prune50); NaN where the node cannot take it. ``attrs["notes"]`` says where sparsity
        shows no gain on this target."""
        import pandas as pd

        U = len(self.units)
        alts = [(f, code_of(PRECISIONS.index(f), 0, 0)) for f in self.families]
        alts += [(f"sparse{SPARSITY_LEVELS[si]}" if SPARSITY_LEVELS[si] != "2:4" else "2:4", code_of(0, si, 0))
                 for si in range(1, _NS)]
        alts += [(f"prune{int(PRUNE_LEVELS[ri] * 100)}", code_of(0, 0, ri)) for ri in range(1, _NP)]
        rows, where = [], []
        for a, (_, code) in enumerate(alts):
            for u in np.flatnonzero(self._valid[:, code]):
                row = np.zeros(U, np.int64)
                row[u] = code
                rows.append(row)
                where.append((u, a))
        res = np.full((U, len(alts)), np.nan)
        if rows:
            ms = self.evaluate_batch(np.array(rows))
            for (u, a), v in zip(where, ms):
                res[u, a] = v - self.baseline_ms
        df = pd.DataFrame(res, columns=[a for a, _ in alts])
        df.insert(0, "op", [u.op for u in self.structure.units])
        df.insert(0, "node", self.units)
        df.attrs["notes"] = [n for n in self.notes if n.startswith("sparsity")]
        df.attrs["baseline_ms"] = self.baseline_ms
        return df

    def pareto(self, scores, budget_ms: float | None = None, family: str = "int8") -> ParetoFront:
        """The mixed-precision front from all-``family`` to all-fp32: nodes fall back to fp32 in order of
        ``scores`` (per node, higher = more sensitive to quantization: any label-free proxy), every
        point priced by :meth:`evaluate_batch` (boundary Q/DQ kernels and fusion changes included, not
        a sum of per-node savings). With ``budget_ms``: the lowest-score point within it."""
        import pandas as pd

        if family not in self.families:
            self._precision_index(family)
        cand = [i for i, u in enumerate(self.structure.units) if family in u.families]
        sc = dict(scores.items()) if hasattr(scores, "items") else dict(zip(self.units, scores))
        for n in sc:
            self._unit(n)
        vals = {i: float(sc.get(self.units[i], 0.0)) for i in cand}
        bad = [self.units[i] for i, v in vals.items() if not np.isfinite(v)]
        if bad:
            raise InvalidChoice(f"score of {bad[0]!r} is not a finite number")
        order = sorted(cand, key=lambda i: (-vals[i], self.node_order[self.units[i]]))
        q = PRECISIONS.index(family)
        rows = np.zeros((len(order) + 1, len(self.units)), np.int64)
        for k in range(len(order) + 1):
            for i in order[k:]:
                rows[k, i] = code_of(q, 0, 0)
        ms = self.evaluate_batch(rows)
        risk = np.array([sum(vals[i] for i in order[k:]) for k in range(len(order) + 1)])
        on = np.ones(len(ms), bool)
        for k in range(len(ms)):
            # dominated: another point is at least as fast and no riskier, and better in one
            dom = (ms <= ms[k]) & (risk <= risk[k]) & ((ms < ms[k]) | (risk < risk[k]))
            on[k] = not dom.any()
        pts = pd.DataFrame({"n_fp32": np.arange(len(ms)), "fp32_nodes": [[self.units[i] for i in order[:k]]
                                                                          for k in range(len(ms))],
                            "latency_ms": ms, "score": risk, "on_front": on})
        front = ParetoFront(pts, budget_ms, family=family)
        if budget_ms is not None:
            ok = pts[(pts.latency_ms <= budget_ms) & pts.on_front]
            if len(ok):
                best = ok.sort_values(["score", "latency_ms"]).iloc[0]
                front.best = best.to_dict()
                front.nodes_to_exclude = self._nodes_to_exclude(family, rows[int(best.n_fp32)])
        return front

    # -- warm-up -------------------------------------------------------------------------------
    def _warm(self):
        U = len(self.units)
        z = np.zeros(U, np.int64)
        for f in self.families:
            t = self.tables[f]
            t.probe(z, z)
            allr = np.array([1 if f in u.families else 0 for u in self.structure.units], np.int64)
            t.probe(allr, z)

    @property
    def stats(self) -> dict:
        """Probes run, table sizes and locality violations seen, per family."""
        return {f: {"probes": t.probes, "entries": sum(len(e) for e in t.entries),
                    "inconsistencies": len(t.inconsistencies)} for f, t in self.tables.items()}


def _wmb(key):
    from ..estimator import weight_mb

    return weight_mb(key)


def _with_sparsity(k, sp):
    from dataclasses import replace

    return replace(k, sparsity=sp)


def _sparsify(rw, st, sparsity, family):
    """Zero weights of the rewritten graph as the sparsity digits say (materialized rewrites only):
    unstructured by magnitude, 2:4 along the reduction axis."""
    g = rw.graph
    cv = g.const_values
    for u, d in zip(st.units, sparsity):
        d = int(d)
        if not d or not u.weighted:
            continue
        r = next(x for x in g.ops if rw.node_origin.get(x.name) == u.name and x.op_type in
                 ("Conv", "ConvTranspose", "Gemm", "MatMul", "ConvInteger", "MatMulInteger"))
        wname = r.inputs[1].name
        p = g.producer(wname)
        if p is not None and p.op_type == "DequantizeLinear":
            wname = p.inputs[0].name
        w = np.array(cv[wname])
        level = SPARSITY_LEVELS[d]
        if level == "2:4":
            if r.op_type in ("Conv", "ConvInteger"):
                v = w.reshape(w.shape[0], -1)
            elif r.op_type == "Gemm" and r.attr("transB", 0):
                v = w
            else:
                v = np.moveaxis(w.reshape(-1, w.shape[-1]) if w.ndim > 1 else w[None], -1, 0)
            flat = v.reshape(-1, 4)
            idx = np.argsort(np.abs(flat), axis=1)[:, :2]
            np.put_along_axis(flat, idx, 0, axis=1)
            v = flat.reshape(v.shape)
            if r.op_type in ("Conv", "ConvInteger"):
                w = v.reshape(w.shape)
            elif r.op_type == "Gemm" and r.attr("transB", 0):
                w = v
            else:
                w = np.moveaxis(v, 0, -1).reshape(w.shape)
        else:
            frac = float(level) / 100.0
            k = int(round(frac * w.size))
            thr = np.partition(np.abs(w).reshape(-1), k - 1)[k - 1] if k else -1
            w = np.where(np.abs(w) <= thr, 0, w).astype(w.dtype)
        cv._extra[wname] = w
