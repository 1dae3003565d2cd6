"""The prepared what-if plan: choices in, latencies out, as arithmetic over tables learned from real
fusions of rewritten models (see :mod:`latency.whatif.tables`).

A **choice** is a whole-model policy plus per-node overrides::

    {"precision": "int8", "fp32_nodes": ["/Conv", "/Gemm"]}
    {"nodes": {"/layer1.0/Conv": {"precision": "int8", "sparsity": 0.5, "prune": 0.25}}}
    {"precision": "int8-dynamic", "sparsity": "2:4", "prune": 0.25}

``precision``: ``fp32``, ``int8`` (``quantize_static``, QDQ, defaults) or ``int8-dynamic``
(``quantize_dynamic``), each on the model ``quant_pre_process`` leaves, as users run them (node names
for ``nodes_to_exclude`` include the names it gives the nodes it fuses); ``fp16``
(``convert_float_to_float16``, ``fp32_nodes`` as its block list) and ``int4-weight``
(``MatMulNBitsQuantizer``) take no sparsity or prune and are priced by converting the model with the
tool (:mod:`latency.whatif.tools`, dict choices only); a whole-model precision applies
to every node the tool would quantize, a whole-model sparsity to every node with a weight, a
whole-model prune to every node whose output channels can be pruned (the others are listed in the
result's notes). A per-node setting that is
not possible is an error naming what is. One candidate uses one reduced precision (the tools make
one per model). ``sparsity``: a fraction of zero weights (binned as the estimator bins real weights:
50, 75, 90, 95%) or ``"2:4"``; 0 means the weights as the model holds them. ``prune``: 0, 0.25 or
0.5 of the output channels.

The same candidates as an integer matrix (candidates x :attr:`Plan.units`) use the codes of
:attr:`Plan.alternatives`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import LatencyError
from .rewrite import dynamic_int8, static_qdq
from .structure import analyse
from .tables import COEFS, PRUNE_LEVELS, SPARSITY_LEVELS, PricedKernel, Pricer, Tables, finish
from .tools import TOOL_PRECISIONS, _kernel_changes
from .tools import TOOLS as _TOOLS_WHOLE

#: precisions by code digit; the reduced ones are the families a candidate picks one of
PRECISIONS = ("fp32", "int8", "int8-dynamic")
FAMILIES = PRECISIONS[1:]
_TOOL = {"int8": "onnxruntime.quantization.quantize_static (QDQ, defaults)",
         "int8-dynamic": "onnxruntime.quantization.quantize_dynamic (defaults)"}
# precisions priced by running the tool itself on the model (see :mod:`latency.whatif.tools`): dict choices only
_TOOL.update(_TOOLS_WHOLE)
#: the table precision each family's kernels need data for
_DATA_PRECISION = {"int8": "int8", "int8-dynamic": "int8_dynamic"}
_NS, _NP = len(SPARSITY_LEVELS), len(PRUNE_LEVELS)


class InvalidChoice(LatencyError):
    """A choice that names a node, precision, sparsity or prune the plan cannot price."""


def code_of(precision: int, sparsity: int, prune: int) -> int:
    """The alternative code of (precision, sparsity, prune) digits."""
    return (precision * _NS + sparsity) * _NP + prune


_ALL = np.arange(len(PRECISIONS) * _NS * _NP)
#: code -> (precision, sparsity, prune) digit, as small lookup arrays (a gather beats integer division)
_DIG = (np.uint8(_ALL // (_NS * _NP)), np.uint8((_ALL // _NP) % _NS), np.uint8(_ALL % _NP))


def _digits(code):
    code = np.asarray(code)
    return _DIG[0][code], _DIG[1][code], _DIG[2][code]


def _ratio(what: str, value, expected: str, hint: str) -> float:
    """``value`` as a float in [0, 1), else InvalidChoice saying what ``what`` expects."""
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise InvalidChoice(f"{what} {value!r} is not {expected}") from None
    if not 0.0 <= r < 1.0:
        raise InvalidChoice(f"{what} {value!r} is outside [0, 1); {hint}")
    return r


def sparsity_digit(value) -> int:
    """Sparsity digit of a ratio or "2:4": 0 (as the model holds it) below 25% zeros, else the bin the
    estimator gives a weight with that fraction of zeros."""
    if isinstance(value, str) and value.strip() == "2:4":
        return SPARSITY_LEVELS.index("2:4")
    r = _ratio("sparsity", value, "a ratio in [0, 1) or '2:4'", "give a fraction of zero weights or '2:4'")
    for hi, digit in ((0.25, 0), (0.625, 1), (0.825, 2), (0.925, 3)):
        if r < hi:
            return digit
    return 4


def prune_digit(value) -> int:
    r = _ratio("prune", value, "a ratio in [0, 1)", f"valid: {', '.join(map(str, PRUNE_LEVELS))}")
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
    ``weight_mb`` (constant weights the kernels read), ``notes``, ``exact`` (False: priced from the
    most similar situations the plan has fused, not this candidate's own fusion)."""

    estimate: object
    baseline_ms: float
    family: str
    choice: dict
    changes: tuple
    nodes_to_exclude: tuple
    weight_mb: float
    baseline_weight_mb: float
    notes: tuple = ()
    exact: bool = True

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
                "changes": [dict(c) for c in self.changes], "notes": list(self.notes), "exact": self.exact, **{
                    k: v for k, v in d.items() if k != "total_ms"}}


#: most candidates :meth:`Plan.pareto` fuses whole to confirm its pick under a budget, and how far over
#: the budget an inexact price may be for its candidate to be checked
_PARETO_REFINES = 32
_PARETO_SLACK = 0.05


@dataclass
class ParetoFront:
    """``points`` (pandas): one row per fallback count, from all-int8 (k = 0) to all-fp32, with
    ``fp32_nodes``, ``latency_ms``, ``score`` (summed sensitivity of the nodes left int8) and
    ``on_front`` and ``exact`` (priced from its own fusion; near a budget the plan fuses candidates
    whole before it picks one); ``best``: the lowest-score point within ``budget_ms`` (None without a
    budget or when no point meets it); ``nodes_to_exclude``: what produces ``best`` with the family's tool."""

    points: object
    budget_ms: float | None = None
    best: dict | None = None
    nodes_to_exclude: list = field(default_factory=list)
    family: str = "int8"
    #: why there is no ``best`` under a budget (empty otherwise)
    note: str = ""


class Plan:
    """A model prepared for what-if questions on one target (build it with :func:`latency.whatif.prepare`).

    ``units``: the node names a choice can name (in graph order); ``alternatives``: the codes of the
    matrix form; ``baseline``: the plain model's :class:`~latency.Estimate`; ``families``: the reduced
    precisions the target has data for; ``notes``: what the profile says about sparsity here;
    ``prepare_s``: seconds :func:`~latency.whatif.prepare` took; ``stats``: probes and table sizes.

    Prices come from tables learned on whole rewritten models (see :mod:`latency.whatif.tables`):
    exact where the plan has fused the situation, otherwise from the most similar situation it has
    fused (:meth:`exactness` says which; measured on random mixes: see
    ``benchmarks/results/whatif_speed.txt``). :meth:`evaluate` fuses and prices a candidate whole
    when its situation is new (``refine=False``: arithmetic only); :meth:`verify` and
    ``evaluate_batch(..., refine=n)`` fuse and price candidates whole. ``fp16`` and ``int4-weight``
    (dict choices only, no matrix codes) are priced by converting the model with the tool and
    estimating it whole (:mod:`latency.whatif.tools`).
    Not priced yet: models with If/Loop
    bodies (their kernels are taken as the plain model's), more than one reduced precision in one
    candidate.
    """

    def __init__(self, estimator, graph, warm: int = 8):
        import time

        t0 = time.perf_counter()
        self.estimator = estimator
        self.graph = graph
        self.rules = estimator.rules_
        self.pricer = Pricer(estimator)
        self._configs: dict = {}
        self._priced: dict = {}  # (kernel as fused, original nodes) -> price_kernels' entry, shared by probes
        self.warm = warm
        self.structure = analyse(graph)
        self.node_order = {r.name: i for i, r in enumerate(graph.ops)}
        self.op_of = {r.name: r.op_type for r in graph.ops}
        self.units = [u.name for u in self.structure.units]
        self._unit_index = {u: i for i, u in enumerate(self.units)}
        self._weighted_heads = {u.name for u in self.structure.units if u.weighted}
        self.baseline = estimator.estimate(graph)
        self.baseline_ms = self.baseline.total_ms
        self.base_sparsity = {}
        for k in self.baseline.kernels:
            for n in k.nodes:
                if n in self._weighted_heads and k.kind in ("Conv", "ConvTranspose", "MatMul"):
                    self.base_sparsity[n] = k.sparsity
        self.notes: list = []
        self.families = self._families_with_data()
        self._valid, self._why = self._validity()
        # owners that share a kernel (in the plain model, a whole-model reduced variant, or any probe
        # later: then the plan regroups and replays its probes) become one
        self._merge_sets = self._fusion_sets()
        if self.missing_data:  # _fusion_sets may have found a family the runtime cannot run
            self._valid, self._why = self._validity()
        self._pending: list = []
        self.logs: dict = {f: [] for f in self.families}
        self.rebuilds = 0
        self.structure = analyse(graph, merge=self._merge_sets)
        self.tables = {f: Tables(self, f) for f in self.families}
        self._front_family = self.families[0] if self.families else "int8"
        self._warm()
        self.prepare_s = time.perf_counter() - t0

    # -- what the target can price -------------------------------------------------------------
    def log_probe(self, family: str, data: dict) -> None:
        self.logs[family].append(data)

    def merge_later(self, nodes: set) -> None:
        """A probe fused nodes of several owners into one kernel: regroup after it."""
        self._pending.append(set(nodes))

    def _regroup(self) -> None:
        """Rebuild the owners with every fusion seen so far and replay the probes (no new fusion runs)."""
        while self._pending:
            # a merge seen before changes nothing (analyse keeps apart one that would make a cycle, and the
            # replay below asks for it again): only new ones regroup, so the replay cannot loop for ever
            known = {frozenset(m) for m in self._merge_sets}
            new = [m for m in self._pending if frozenset(m) not in known]
            self._pending = []
            if not new:
                break
            self._merge_sets += new
            self.rebuilds += 1
            self.structure = analyse(self.graph, merge=self._merge_sets)
            old = self.tables
            self.tables = {f: Tables(self, f) for f in self.families}
            for f, t in self.tables.items():
                t.warmed = old[f].warmed
                for data in self.logs[f]:
                    t.learn(data)

    def _fusion_sets(self) -> list:
        """Sets of nodes one kernel covers in the plain model or in a whole-model reduced variant. On a GPU
        target a family whose whole-model variant holds ops the runtime cannot parse is dropped here (its
        reason in ``missing_data``): that variant is fused here anyway."""
        from ..fusion import fuse

        st = self.structure
        heads = self._weighted_heads
        sets = [set(k.nodes) - heads for k in self.baseline.kernels if len(set(k.nodes) - heads) > 1]
        U = len(self.units)
        gpu = self._on_gpu
        before = {(u.op_type, u.reason) for u in self.baseline.uncovered}
        for f in list(self.families):
            bits = np.array([f in u.families for u in st.units], np.int64)
            rw = self.rewrite(f, bits, np.zeros(U, np.int64))
            kernels, unc = fuse(rw.graph, self.rules)
            new = [u for u in unc if (u.op_type, u.reason) not in before]
            if gpu and new:  # the runtime cannot run the ops this precision's tool writes: not a choice there
                self.families.remove(f)
                self.missing_data[f] = (f"target {self.estimator.target.name} cannot run {f} models: "
                                        f"{new[0].op_type} ({new[0].reason})")
                continue
            for k in kernels:
                ns = {o for o in (rw.node_origin.get(n) for n in k.nodes) if isinstance(o, str)} - heads
                if len(ns) > 1:
                    sets.append(ns)
        return sets

    def _families_with_data(self) -> list:
        est = self.estimator
        have = None
        if getattr(est, "profile_path_", None):
            est._evidence()
            have = {p for (_, p) in est.data_groups()}
            ev = est.sparsity_ratio_
            for (kind, prec), (med, p10, p90, n) in sorted(ev.items()):
                if kind in ("Conv", "MatMul") and 0.9 <= med <= 1.1:
                    self.notes.append(f"sparsity: {kind} {prec} measured no faster here (sparse/dense median "
                                      f"{med:.3f}, p10 {p10:.3f}, p90 {p90:.3f}, {n} spot checks): sparse "
                                      f"alternatives are priced as dense (source table:dense-equivalent)")
        gpu = self._on_gpu
        if gpu:
            self.notes.append(f"sparsity: {est.target.name}'s cost model has no sparse kernels (2:4 sparse tensor "
                              "cores are not modelled): sparse alternatives are priced as dense")
        builder = tuple(getattr(self.rules, "precisions", ()))
        fams = []
        self.missing_data: dict = {}
        for f in FAMILIES:
            if gpu and f == "int8" and "int8" not in builder:
                self.missing_data[f] = (f"target {est.target.name} runs no int8 kernels ({getattr(self.rules, 'name', '')}"
                                        f" precisions: {', '.join(builder)})")
            elif have is None or _DATA_PRECISION[f] in have:
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
        off = {n for u, b in zip(st.units, bits) if not b for n in u.excludes}
        pr = {u.name: PRUNE_LEVELS[int(p)] for u, p in zip(st.units, prune) if int(p)}
        groups = {u.name: u.group for u in st.units if u.name in pr}
        # the tool (and the pre-processing users run before it) touches the model only when it quantizes
        # some node: a model left in fp32 (pruned or sparsified at most) is the plain one
        touched = bool(np.any(np.asarray(bits)))
        if family == "int8-dynamic":
            rw = dynamic_int8(self.graph, lambda n: n in q, pr, groups, materialize, pre_process=touched)
        else:
            rw = static_qdq(self.graph, lambda n: n not in off, pr, groups, materialize, pre_process=touched,
                            symmetric=self._on_gpu)
        if materialize and sparsity is not None and np.any(np.asarray(sparsity) > 0):
            _sparsify(rw, st, sparsity, family)
        return rw

    def rewritten(self, choice, materialize: bool = True):
        """The :class:`~latency.whatif.rewrite.Rewritten` graph of a choice (real weights by default):
        ``Estimator.estimate(plan.rewritten(c).graph)`` is the full re-estimate ``evaluate(c)`` matches."""
        code = self.codes([choice])[0] if isinstance(choice, dict) else self._as_codes(np.asarray(choice)[None, :])[0]
        fam = self._family_of(code[None, :])[0]
        p, s, r = _digits(code)
        fam_name = FAMILIES[fam - 1] if fam else self._front_family
        return self.rewrite(fam_name, (p == PRECISIONS.index(fam_name)) if fam else np.zeros(len(code), int), r,
                            materialize=materialize, sparsity=s)

    # -- pricing an owner's kernels ------------------------------------------------------------
    def _config(self, k):
        """The canonical :class:`~latency.ops.Config` of kernel ``k``, made once per distinct kernel."""
        from ..ops import canonical_params

        ck = (k.kind, k.precision, k.sparsity, repr(k.params))
        c = self._configs.get(ck)
        if c is None:
            c = self._configs[ck] = _KeyedConfig(k.kind, canonical_params(k.kind, k.params), k.precision, k.sparsity)
        return c

    def price_kernels(self, items) -> list:
        """Per (kernel, original nodes): (rows, coef, uncovered, unit). A unit's own weighted kernel gets one row
        per sparsity digit (0: the weight as the model holds it), every other kernel one row; ``rows``
        holds a :class:`PricedKernel` (or None: no source prices it) per row, ``coef`` rows x COEFS,
        ``unit`` the unit whose sparsity picks the row (-1: one row)."""
        # probes of one plan fuse mostly the same kernels (a flipped unit changes its neighbours only): an
        # entry depends on nothing but the kernel and its nodes, so it is made once and shared (read-only)
        memo = self._priced
        keys = [(k.name, k.kind, k.precision, k.sparsity, repr(k.params), k.nodes, k.op_types, k.branch, k.repeat,
                 tuple(nodes)) for k, nodes in items]
        todo = {}
        for it, key in zip(items, keys):
            if key not in memo and key not in todo:
                todo[key] = it
        if todo:
            for key, entry in zip(todo, self._price_new(list(todo.values()))):
                memo[key] = entry
        return [memo[key] for key in keys]

    def _price_new(self, items) -> list:
        jobs, plans = [], []
        for k, nodes in items:
            head = None
            if k.kind in ("Conv", "ConvTranspose", "MatMul"):
                head = next((n for n in nodes if n in self._weighted_heads), None)
            weighted = head is not None
            if weighted:
                k = replace(k, sparsity=self.base_sparsity.get(head, "0"))
                variants = [k] + [replace(k, sparsity=sp) for sp in SPARSITY_LEVELS[1:]]
            else:
                variants = [k]
            at = len(jobs)
            for v in variants:
                jobs.append(self._config(v))
            plans.append((variants, nodes, at, self._unit_index[head] if weighted else -1))
        priced = self.pricer.price(jobs)
        out = []
        for variants, nodes, at, unit in plans:
            rows, coef, unc = [], np.zeros((len(variants), len(COEFS))), []
            for j, v in enumerate(variants):
                rr = priced[at + j]
                if rr is None or rr[0] is None or not np.isfinite(rr[0]):
                    rows.append(None)
                    if j == 0:
                        why = f"no table row, regressor or prior prices {v.kind} {v.precision}"
                        unc += [(n, t, why) for n, t in zip(v.nodes or (v.name,), v.op_types or (v.kind,))]
                    continue
                iso = max(0.0, float(rr[0]))
                key = jobs[at + j].key
                rows.append(PricedKernel(v, nodes, iso, rr[1], rr[2], key))
                coef[j] = self.pricer.coefficients(v.kind, tuple(v.op_types), iso, rr[1], key, v.repeat)
            coef.setflags(write=False)
            out.append((rows, coef, unc, unit))
        return out

    # -- choices -------------------------------------------------------------------------------
    def _unit(self, name: str) -> int:
        if not isinstance(name, str):
            raise InvalidChoice(f"a node is named by a string, not {type(name).__name__} ({name!r})")
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
            fp32_nodes = ch.get("fp32_nodes", ()) or ()
            if isinstance(fp32_nodes, (str, bytes)) or not isinstance(fp32_nodes, (list, tuple, set, frozenset)):
                raise InvalidChoice(f"fp32_nodes is a list of node names, not {type(fp32_nodes).__name__} "
                                    f"({str(fp32_nodes)[:60]!r})")
            for n in fp32_nodes:
                p[self._unit(n)] = 0
            if fp32_nodes and not pi:
                raise InvalidChoice("fp32_nodes keeps nodes fp32 under a reduced precision; give 'precision' "
                                    f"({', '.join(FAMILIES + TOOL_PRECISIONS)})")
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
            per_node = ch.get("nodes") or {}
            if not isinstance(per_node, dict):
                raise InvalidChoice(f"nodes is a dict of node name -> setting (precision, sparsity, prune), not "
                                    f"{type(per_node).__name__}")
            for n, spec in per_node.items():
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
            if prec in TOOL_PRECISIONS:
                raise InvalidChoice(f"{prec} has no matrix code and no Pareto front (it is priced by converting the "
                                    f"model with the tool): ask evaluate / evaluate_batch with dict choices; "
                                    f"families here: {', '.join(self.families)}")
            is_gpu = self._on_gpu
            gpu = "" if prec != "best" else \
                " (best is the builder's choice for the whole model: ask {'precision': 'best'} alone)" if is_gpu else \
                f" (best is a GPU builder's per-layer choice; {self.estimator.target.name} is not a GPU target)"
            raise InvalidChoice(f"unknown precision {prec!r}{gpu}; valid: {', '.join(PRECISIONS + TOOL_PRECISIONS)}")
        if prec != "fp32" and prec not in self.families:
            raise InvalidChoice(self.missing_data.get(prec, f"precision {prec} is not available"))
        return PRECISIONS.index(prec)

    def _family_of(self, codes: np.ndarray) -> np.ndarray:
        """Per candidate: 0 (all fp32) or the precision digit of its one reduced precision."""
        p = _DIG[0][codes]
        if p.shape[1] == 0:  # no choosable node: every candidate is the plain model
            return np.zeros(len(p), np.int64)
        hi, lo = p.max(axis=1), np.where(p > 0, p, 99).min(axis=1)
        mixed = (hi > 0) & (lo != hi)
        if mixed.any():
            r = int(np.argmax(mixed))
            used = sorted({PRECISIONS[x] for x in p[r] if x})
            raise InvalidChoice(f"candidate {r} mixes {' and '.join(used)}: one model gets one reduced precision "
                                "(the tools quantize a model one way); pick one")
        return hi

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate_batch(self, choices, refine: int = 0) -> np.ndarray:
        """Total ms per candidate: ``choices`` a list of dict choices or an int matrix of codes
        (candidates x :attr:`units`). ``refine``: probe (fuse and price whole) up to that many of the
        candidates not priced exactly, most uncertain first, before answering (see :meth:`exactness`)."""
        if not isinstance(choices, np.ndarray):
            if isinstance(choices, (dict, str, bytes)) or not hasattr(choices, "__iter__"):
                raise InvalidChoice(f"choices are a list of dict choices or an int matrix (candidates x "
                                    f"{len(self.units)} codes), not {type(choices).__name__}")
            choices = list(choices)
            built = {i: b for i, b in ((i, self._builder_precision(c)) for i, c in enumerate(choices)) if b}
            whole = [i for i, c in enumerate(choices) if i in built or _tool_claims(c)]
            if whole:
                ms = np.full(len(choices), np.nan)
                for i in whole:
                    ms[i] = self._evaluate_builder(built[i]).total_ms if i in built else \
                        self.tool_path.estimate(choices[i])[1].total_ms
                rest = [i for i in range(len(choices)) if i not in set(whole)]
                if rest:
                    ms[rest] = self.evaluate_batch([choices[i] for i in rest], refine)
                return ms
        codes = self._as_codes(choices)
        ms, _, _ = self._eval(codes, refine, need_exact=False)
        return ms

    def exactness(self, choices) -> np.ndarray:
        """Per candidate: True when every part of its price comes from a situation a probe saw as such
        (or the candidate itself was probed); False when some owner was priced from the most similar
        situation seen (see :mod:`latency.whatif.tables`)."""
        _, exact, _ = self._eval(self._as_codes(choices), 0)
        return exact

    def _as_codes(self, choices) -> np.ndarray:
        if isinstance(choices, np.ndarray) and choices.dtype.kind not in "iuO":
            raise InvalidChoice(f"a code matrix holds integer alternative codes (see plan.alternatives), not "
                                f"{choices.dtype} values")
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

    def _eval(self, codes, refine=0, want_state=False, need_exact=True):
        """(ms, exact, {(family, digit): (rows, state)}) per candidate."""
        n = len(codes)
        ms = np.full(n, np.nan)
        exact = np.zeros(n, bool)
        states = {}
        if not n:
            return ms, exact, states
        fam = self._family_of(codes)
        p, s, r = _digits(codes)
        fams = np.unique(fam)
        for f in fams:
            one = len(fams) == 1
            rows = np.arange(n) if one else np.flatnonzero(fam == f)
            name = FAMILIES[f - 1] if f else self._front_family
            self._warm(name)
            t = self.tables[name]
            pf, pr, sp = (p, r, s) if one else (p[rows], r[rows], s[rows])
            bits = (pf == f) if f else np.zeros(pf.shape, bool)
            acc, ex, state = t.sums(bits, pr, sp, want_state=want_state, want_exact=need_exact or refine > 0)
            done = 0
            if refine > 0 and not ex.all():
                from ..gcpause import gc_paused

                with gc_paused():
                    while done < refine and not ex.all():
                        j = int(np.flatnonzero(~ex)[0])
                        t.probe(bits[j].astype(np.int64), pr[j].astype(np.int64))
                        done += 1
                        if self._pending:
                            self._regroup()
                            t = self.tables[name]
                        acc, ex, state = t.sums(bits, pr, sp, want_state=want_state)
            ms[rows] = self.pricer.totals_us(acc) / 1000.0
            exact[rows] = ex
            states[(name, int(f))] = (rows, state, bits, pr, sp)
        return ms, exact, states

    def evaluate(self, choice, refine: bool = True) -> WhatIf:
        """The full answer for one choice: an :class:`~latency.Estimate`-like breakdown (see :class:`WhatIf`).

        ``refine`` (default): a candidate whose situation the tables have not fused is fused and priced
        whole once (one probe, learned for every later candidate that shares its situations), so the
        answer is the full re-estimate's; ``refine=False``: arithmetic only, from the most similar
        situations fused (what :meth:`evaluate_batch` answers), with a note when that is not exact."""
        builder = self._builder_precision(choice)
        if builder is not None:
            return self._evaluate_builder(builder)
        if _tool_claims(choice):
            return self.tool_path.evaluate(choice)
        if isinstance(choice, dict):
            codes = self.codes([choice])
        else:
            row = np.asarray(choice)
            if row.ndim != 1 or row.dtype.kind not in "iu":
                raise InvalidChoice(f"a choice is a dict (precision, fp32_nodes, sparsity, prune, nodes) or one row "
                                    f"of {len(self.units)} alternative codes, not {type(choice).__name__}")
            codes = self._as_codes(row[None, :])
        ms, exact, states = self._eval(codes, refine=1 if refine else 0, want_state=True)
        ((name, _), (_, state, bits_, pr_, sp_)), = states.items()
        t = self.tables[name]
        mine, unc = t.kernels_of(state[0], bits_[0], pr_[0], sp_[0])
        z = np.zeros((1, len(self.units)), np.int64)
        _, _, bstate = t.sums(z, z, z)
        base, _ = t.kernels_of(bstate[0], z[0], z[0], z[0])
        from ..fusion import Uncovered

        priced = [pk for _, pk in mine]
        est = finish(self.pricer, priced, [Uncovered(*u) for u in unc], self.estimator.target.name,
                     self.estimator.profile_path_, list(self.estimator.warnings_) + list(self.graph.notes))
        changes = self._changes(mine, base, est)
        choice_out = self._describe(codes[0])
        fam = name if any(v["precision"] != "fp32" for v in choice_out.values()) else "fp32"
        excl = self._nodes_to_exclude(fam, codes[0]) if fam != "fp32" else ()
        notes = list(self._choice_notes(choice)) if isinstance(choice, dict) else []
        if any(v.get("sparsity", "model") != "model" for v in choice_out.values()):
            notes += [n for n in self.notes if n.startswith("sparsity")]
        if fam == "int8" and self._on_gpu:
            notes.append("priced as explicit Q/DQ placement with symmetric activations (zero points 0, all TensorRT's "
                         "parser takes): quantize_static(..., extra_options={'ActivationSymmetric': True}) with these "
                         "nodes_to_exclude")
            if "int8" in getattr(self.rules, "precisions", ()):
                built = self._evaluate_builder("int8").total_ms
                notes.append(f"for comparison, the runtime's own int8 build of the whole model ({{'precision': 'int8'}} "
                             f"alone, latency estimate --precision int8): {built:.3f} ms; quantize_static quantizes the "
                             "inputs of every op it knows, so activations and other pointwise layers between the "
                             "convolutions run as int8 kernels of their own")
        if fam == "int8" and not self._on_gpu:
            notes += self._requantized_notes(choice_out, est)
        if not exact[0]:
            notes.append("priced from the most similar situations the plan has fused (not this exact model): "
                         "plan.verify(choice) fuses and prices this one whole")
        return WhatIf(est, self.baseline_ms, fam, choice_out, tuple(changes), tuple(excl),
                      float(sum(_wmb(k.key) for k in est.kernels if k.source != "free")),
                      float(sum(_wmb(k.key) for k in self.baseline.kernels if k.source != "free")), tuple(notes),
                      bool(exact[0]))

    def verify(self, choice):
        """The full re-estimate of a choice: the model rewritten as the tool would (real weights), then
        :meth:`latency.Estimator.estimate` (the reference every table price is checked against)."""
        if _tool_claims(choice):
            return self.tool_path.estimate(choice)[1]
        return self.estimator.estimate(self.rewritten(choice).graph)

    def _changes(self, mine, base, est) -> list:
        """Owners whose kernels changed: in-model us now and in the plain model (each at its own gates)."""
        st = self.structure
        g, cg = est.cache_gate, est.private_gate
        bg, bcg = self.baseline.cache_gate, self.baseline.private_gate

        owner_of = self.structure.owner_of_node

        def per_owner(items, gate, cgate):
            d: dict = {}
            for o, pk in items:
                if o is None:
                    o = owner_of.get(pk.nodes[0], len(st.owners) - 1) if pk.nodes else len(st.owners) - 1
                c = self.pricer.coefficients(pk.kernel.kind, tuple(pk.kernel.op_types), pk.iso_us, pk.source, pk.key,
                                             pk.kernel.repeat)
                v = d.setdefault(o, [0.0, []])
                v[0] += c[0] + cgate * c[1] + gate * c[2]
                v[1].append(pk.kernel.name)
            return d

        a, b = per_owner(mine, g, cg), per_owner(base, bg, bcg)
        out = []
        for o in sorted(set(a) | set(b)):
            now, was = a.get(o, [0.0, []]), b.get(o, [0.0, []])
            if abs(now[0] - was[0]) >= 0.05 or now[1] != was[1]:
                out.append({"owner": st.owners[o].name, "delta_us": now[0] - was[0], "kernels": now[1],
                            "kernels_before": was[1]})
        return out

    @property
    def _on_gpu(self) -> bool:
        """Whether the target is a GPU (its runtime's builder picks precisions: see :meth:`_builder_precision`)."""
        return getattr(self.estimator.target, "device", "cpu") == "gpu"

    def _builder_precision(self, choice):
        """The builder precision a whole-model choice asks of a GPU target (``{"precision": P}`` and nothing
        else, P one of the target's builder precisions), else None: TensorRT builds the whole model in P
        (``latency estimate --precision P``); per-node choices are priced as explicit Q/DQ placement."""
        if not isinstance(choice, dict) or set(choice) != {"precision"}:
            return None
        if not self._on_gpu:
            return None
        p = choice["precision"]
        return p if p in getattr(self.rules, "precisions", ()) and p != "int8-dynamic" else None

    def _evaluate_builder(self, precision: str) -> "WhatIf":
        kept = self.__dict__.setdefault("_built", {})
        if precision in kept:
            return kept[precision]
        est = self.estimator.estimate(self.graph, precision=precision)
        base = self.baseline
        changes = _kernel_changes(est, base, self.node_order)
        notes = (f"priced as {getattr(self.rules, 'name', 'the runtime')} builds the whole model with builder "
                 f"precision {precision} (latency estimate --precision {precision}); per-node choices (fp32_nodes, "
                 "nodes) are priced as the explicit Q/DQ placement onnxruntime.quantization writes",)
        kept[precision] = WhatIf(est, self.baseline_ms, precision, {u: {"precision": precision} for u in self.units},
                                 tuple(changes), (), float(sum(_wmb(k.key) for k in est.kernels if k.source != "free")),
                                 float(sum(_wmb(k.key) for k in base.kernels if k.source != "free")), notes)
        return kept[precision]

    def _describe(self, code_row) -> dict:
        p, s, r = _digits(code_row)
        out = {}
        for u, pi, si, ri in zip(self.units, p, s, r):
            if pi or si or ri:
                out[u] = {"precision": PRECISIONS[int(pi)], "sparsity": SPARSITY_LEVELS[int(si)],
                          "prune": PRUNE_LEVELS[int(ri)]}
        return out

    def _wzp_units(self, kernels, among) -> list:
        """The units of ``among`` (unit names) that a zero-point int8 conv kernel (``Conv`` ``wzp=1``) of
        ``kernels`` holds, in first-seen order: kept fp32 by a choice, they run int8 all the same (the runtime
        quantizes the float weight of a conv between a DequantizeLinear and a QuantizeLinear itself:
        WeightBiasQuantization)."""
        tool = self._tool_names
        names = {tool.get(u, u): u for u in among}
        hit: dict = {}
        for k in kernels:
            if '"wzp":1' in (k.key or ""):
                hit.update((names[n], None) for n in k.nodes if n in names)
        return list(hit)

    def _requantized_units(self, states, order) -> list:
        """Per candidate of a code matrix (``states``: what :meth:`_eval` returned for it with ``want_state``):
        the indices among ``order`` it keeps fp32 that run int8 all the same (:meth:`_wzp_units`), read from
        the candidate's kernels as the tables price it, in ``order``'s order."""
        rank = {i: n for n, i in enumerate(order)}
        n_rows = sum(len(v[0]) for v in states.values())
        out = [[] for _ in range(n_rows)]
        for (name, _), (idx, state, bits, pr, sp) in states.items():
            t = self.tables[name]
            for j, row in enumerate(idx):
                kept = [self.units[i] for i in order if not bits[j][i]]
                if kept:
                    mine, _ = t.kernels_of(state[j], bits[j], pr[j], sp[j])
                    hit = self._wzp_units([pk for _, pk in mine], kept)
                    out[int(row)] = sorted((self._unit_index[u] for u in hit), key=rank.__getitem__)
        return out

    def _requantized_notes(self, choice_out: dict, est) -> list:
        """A note when convs the choice keeps fp32 run int8 all the same (:meth:`_wzp_units`)."""
        fp32 = [u for u in self.units if choice_out.get(u, {}).get("precision", "fp32") == "fp32"]
        hit = self._wzp_units(est.kernels, fp32) if fp32 else []
        if not hit:
            return []
        return [f"{len(hit)} of the nodes kept fp32 run int8 all the same (e.g. {hit[0]}): between quantized "
                "neighbours onnxruntime quantizes a conv's float weight itself (WeightBiasQuantization), with a zero "
                "point, and runs it on the slower zero-point int8 kernel; to keep such a conv float, keep a "
                "neighbour fp32 too"]

    def _choice_notes(self, choice):
        st = self.structure.units
        prec = choice.get("precision")
        if prec in FAMILIES and not any(prec in u.families for u in st):
            yield (f"precision {prec}: no node of this model is one {_TOOL[prec].split(' (')[0]} converts (no Conv, "
                   "MatMul, Gemm or other quantizable op with a constant weight): the candidate is the plain model")
        sp = choice.get("sparsity")
        if sp not in (None, "", "2:4") and any(u.weighted for u in st):
            level = SPARSITY_LEVELS[sparsity_digit(sp)]
            dense = not level.isdigit()  # "model": the weights as the model holds them
            if dense or abs(float(sp) - int(level) / 100) > 1e-9:
                yield (f"sparsity {sp}: priced as {'the model holds it' if dense else level + '% zeros'}, the level the "
                       "estimator gives a weight with that fraction of zeros (levels measured: 50, 75, 90, 95% and 2:4; "
                       "under 25% counts as dense)")
        for key, verb in (("sparsity", "sparsify"), ("prune", "prune")):
            if choice.get(key) not in (None, 0, 0.0, "0") and not any(u.weighted for u in st):
                yield f"{key} {choice[key]}: this model has no node with a constant weight: nothing to {verb}"
        if choice.get("prune") not in (None, 0, 0.0):
            skipped = [u for u in st if u.weighted and not u.prunable]
            if skipped:
                yield (f"prune {choice['prune']}: {len(skipped)} node(s) with weights kept their channels, e.g. "
                       f"{skipped[0].name}: {skipped[0].group.reason if skipped[0].group else 'no group'}")

    @property
    def _tool_names(self) -> dict:
        """Original node -> the name quant_pre_process gives the node it becomes."""
        from .rewrite import quant_pre_processed

        return quant_pre_processed(self.graph).tool_names

    def _nodes_to_exclude(self, family: str, code_row) -> list:
        """Node names for the tool's ``nodes_to_exclude`` that leave the fp32 units of ``code_row`` fp32."""
        p, _, _ = _digits(code_row)
        out = []
        for u, pi in zip(self.structure.units, p):
            if family in u.families and not pi:
                if family == "int8-dynamic":
                    # quantize_dynamic makes each Gemm a MatMul named after it (a Gemm quant_pre_process
                    # made of a MatMul and its bias Add too)
                    out.append(u.name + "_MatMul" if u.op == "Gemm" else u.name)
                    if u.name in self._tool_names and u.op == "MatMul":
                        out.append(self._tool_names[u.name] + "_MatMul")
                else:
                    # and the names quant_pre_process gives the nodes they become (a Gemm made of a MatMul
                    # and its bias Add, a LayerNormalization), which quantize_static then reads
                    out.extend(u.excludes)
                    out.extend(self._tool_names[n] for n in u.excludes if n in self._tool_names)
        return out

    # -- tables for people ---------------------------------------------------------------------
    @property
    def nodes(self):
        """pandas DataFrame: every choosable node, its op, the kernel it lands in (plain model), the
        nodes that follow it, ``priced_with`` (the group of nodes whose kernels it shares: prices are
        that group's), and the in-model price (us) of its kernels under each alternative:
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
                   "priced_with": st.owners[st.owner_of_node[u.name]].name if u.name in st.owner_of_node
                   else "(constant-folded: no kernel)",
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
        ms, _, states = self._eval(codes, want_state=True)
        out = np.full(codes.shape, np.nan)
        owner_of = self.structure.owner_of_node
        uo = [owner_of.get(u) for u in self.units]  # None: folded away (a Gather of constants), no kernel
        for (name, _), (rows, state, bits, pr, sp) in states.items():
            t = self.tables[name]
            for j, r in enumerate(rows):
                ks, _ = t.kernels_of(state[j], bits[j], pr[j], sp[j])
                fp = sum(_fpmb(pk.key) for _, pk in ks if pk.source != "free" and not pk.kernel.repeat)
                g, cg = self.pricer.gates(fp)
                per: dict = {}
                for o, pk in ks:
                    if o is None:
                        o = owner_of.get(pk.nodes[0]) if pk.nodes else None
                    c = self.pricer.coefficients(pk.kernel.kind, tuple(pk.kernel.op_types), pk.iso_us, pk.source,
                                                 pk.key, pk.kernel.repeat)
                    per[o] = per.get(o, 0.0) + c[0] + cg * c[1] + g * c[2]
                for k, o in enumerate(uo):
                    out[r, k] = per.get(o, 0.0) if o is not None else 0.0
        return out

    def sensitivity(self, tools: bool = True):
        """pandas DataFrame, one row per choosable node: the change of the model's total (ms, negative =
        faster) when only that node takes each alternative (int8, int8-dynamic, sparse50 ... 2:4,
        prune25, prune50), with fp16 and int4-weight priced through the tools
        (:mod:`latency.whatif.tools`); NaN where the node cannot take it, and a whole column NaN with a
        note where the target has no data for it. ``attrs["notes"]`` says where sparsity shows no gain
        on this target and ``attrs["sparsity_gain"]`` is False there. ``tools=False``: leave the fp16 and
        int4-weight columns NaN (each of their entries converts the model with the tool and estimates it
        whole: about 0.3-0.4 s per node on ResNet-50 or BERT-mini, see benchmarks/whatif_tools.py)."""
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
        self._tool_sensitivity(df, tools)
        num = [c for c in df.columns if c not in ("node", "op")]
        df[num] = df[num].mask(df[num].abs() < 1e-9, 0.0)  # a sum's rounding (-4e-16) is no change, not a saving
        return df

    @property
    def tool_path(self):
        """The fp16 / int4-weight candidates (:class:`latency.whatif.tools.ToolPath`), made when first used."""
        tp = self.__dict__.get("_tool_path")
        if tp is None:
            from .tools import ToolPath

            src, shapes, batch = getattr(self, "_source", (None, None, None))
            tp = self._tool_path = ToolPath(self, src, shapes, batch)
        return tp

    def _tool_sensitivity(self, df, tools: bool = True) -> None:
        """Complete a sensitivity table: a column for every reduced precision (NaN, with a note, where the
        target has no data), fp16 and int4-weight priced through the tools, and whether sparsity gains here."""
        notes = df.attrs.get("notes", [])
        at = 2
        for f in FAMILIES:
            if f not in df.columns:
                df.insert(at, f, np.nan)
                notes.append(self.missing_data.get(f, f"{f}: no data"))
            at += 1
        for prec in TOOL_PRECISIONS:
            tp = self.tool_path
            why = "not computed (sensitivity(tools=False))"
            if tools:
                try:
                    tp.check(prec)
                    why = ""
                except LatencyError as e:
                    why = str(e)
            df.insert(at, prec, tp.single(prec, self.units) if not why else np.nan)
            at += 1
            if why:
                notes.append(f"{prec}: {why}")
        gain = not any(n.startswith("sparsity") for n in self.notes)
        df.attrs["notes"] = notes
        df.attrs["sparsity_gain"] = gain

    def pareto(self, scores, budget_ms: float | None = None, family: str = "int8") -> ParetoFront:
        """The mixed-precision front from all-``family`` to all-fp32: nodes fall back to fp32 in order of
        ``scores`` (per node, higher = more sensitive to quantization: any label-free proxy), every
        point priced as :meth:`evaluate_batch` prices it (boundary Q/DQ kernels and fusion changes included,
        not a sum of per-node savings). A node kept fp32 that the runtime quantizes all the same (a conv between
        quantized neighbours: WeightBiasQuantization) keeps its score in the point's and is listed in
        ``fp32_run_int8``. With ``budget_ms``: the lowest-score point within it, confirmed by fusing the
        candidates near the budget whole (at most :data:`_PARETO_REFINES`)."""
        import pandas as pd

        if family not in self.families:
            self._precision_index(family)
        cand = [i for i, u in enumerate(self.structure.units) if family in u.families]
        if hasattr(scores, "items"):
            sc = dict(scores.items())
        else:
            if isinstance(scores, (str, bytes)) or not hasattr(scores, "__len__") or np.ndim(scores) != 1:
                raise InvalidChoice(f"scores are one number per plan.units node ({len(self.units)}), as a sequence or a "
                                    f"{{node: score}} mapping, not {type(scores).__name__}")
            if len(scores) != len(self.units):
                raise InvalidChoice(f"scores has {len(scores)} values; plan.units has {len(self.units)} nodes (one "
                                    "score each, in that order, or a {node: score} mapping)")
            sc = dict(zip(self.units, scores))
        for n in sc:
            self._unit(n)
        try:
            vals = {i: float(sc.get(self.units[i], 0.0)) for i in cand}
        except (TypeError, ValueError):
            bad = next(n for n, v in sc.items() if not isinstance(v, (int, float, np.number)))
            raise InvalidChoice(f"score of {bad!r} is not a number ({sc[bad]!r})") from None
        if budget_ms is not None:
            try:
                budget_ms = float(budget_ms)
            except (TypeError, ValueError):
                raise InvalidChoice(f"budget_ms is a number of milliseconds, not {budget_ms!r}") from None
            if not (np.isfinite(budget_ms) and budget_ms > 0):
                raise InvalidChoice(f"budget_ms must be a finite number of milliseconds > 0, not {budget_ms!r}")
        bad = [self.units[i] for i, v in vals.items() if not np.isfinite(v)]
        if bad:
            raise InvalidChoice(f"score of {bad[0]!r} is not a finite number")
        order = sorted(cand, key=lambda i: (-vals[i], self.node_order[self.units[i]]))
        q = PRECISIONS.index(family)
        rows = np.zeros((len(order) + 1, len(self.units)), np.int64)
        for k in range(len(order) + 1):
            for i in order[k:]:
                rows[k, i] = code_of(q, 0, 0)
        ms, exact, states = self._eval(rows, want_state=True)
        risk = np.array([sum(vals[i] for i in order[k:]) for k in range(len(order) + 1)])
        if budget_ms is not None:
            # the pick must hold under its own fusion, not only by the most similar situations: the
            # lowest-score candidate within the budget (or within _PARETO_SLACK of it by an inexact price)
            # is fused and priced whole, and the front priced again with what the tables learned, until
            # that candidate is exact (a few probes)
            for _ in range(_PARETO_REFINES):
                near = [k for k in np.lexsort((ms, risk))
                        if ms[k] <= budget_ms * (1.0 if exact[k] else 1.0 + _PARETO_SLACK)]
                if not near or exact[near[0]]:
                    break
                self._eval(rows[near[0]:near[0] + 1], refine=1)
                ms, exact, states = self._eval(rows, want_state=True)
        # a node kept fp32 between quantized neighbours runs int8 all the same (the runtime quantizes its
        # weight: WeightBiasQuantization): its score stays in the point's risk, and the point says which
        requant = self._requantized_units(states, order)
        risk = risk + np.array([sum(vals[i] for i in r) for r in requant])
        on = np.ones(len(ms), bool)
        for k in range(len(ms)):
            # dominated: another point is at least as fast and no riskier, and better in one
            dom = (ms <= ms[k]) & (risk <= risk[k]) & ((ms < ms[k]) | (risk < risk[k]))
            on[k] = not dom.any()
        pts = pd.DataFrame({"n_fp32": np.arange(len(ms)), "fp32_nodes": [[self.units[i] for i in order[:k]]
                                                                          for k in range(len(ms))],
                            "latency_ms": ms, "score": risk, "on_front": on, "exact": exact,
                            "fp32_run_int8": [[self.units[i] for i in r] for r in requant]})
        front = ParetoFront(pts, budget_ms, family=family)
        if budget_ms is not None:
            ok = pts[(pts.latency_ms <= budget_ms) & pts.on_front]
            if len(ok):
                best = ok.sort_values(["score", "latency_ms"]).iloc[0]
                front.best = best.to_dict()
                front.nodes_to_exclude = self._nodes_to_exclude(family, rows[int(best.n_fp32)])
            else:
                fast = pts.sort_values("latency_ms").iloc[0]
                front.note = (f"no point is within {budget_ms:g} ms: the fastest is {fast.latency_ms:.3f} ms "
                              f"({int(fast.n_fp32)} node(s) fp32); best is None and nodes_to_exclude empty")
        return front

    def marking_units(self, family: str) -> dict:
        """tensor -> units whose reduced precision alone puts a quantize pair (static) or a
        DynamicQuantizeLinear (dynamic) on it, by the tool's own marking rules."""
        from .rewrite import quant_pre_processed, static_marks

        st = self.structure
        out: dict = {}
        if family == "int8-dynamic":
            for u in st.units:
                if family in u.families and u.op != "Gather":
                    r = self.graph.ops[self.node_order[u.name]]
                    out.setdefault(r.inputs[0].name, []).append(u.index)
            return out
        # the quantizer marks the graph quant_pre_process leaves (see rewrite.quant_pre_processed)
        pre = quant_pre_processed(self.graph)
        every = {n for u in st.units for n in u.excludes}
        for u in st.units:
            if family not in u.families:
                continue
            off = every - set(u.excludes)
            m = static_marks(pre.graph, lambda n, off=off: n not in off)
            for t in list(m.act) + list(m.shared) + list(m.weight) + [b for _, b in m.bias]:
                t = pre.tensor_origin.get(t, t)
                if u.index not in out.get(t, ()):
                    out.setdefault(t, []).append(u.index)
        return out

    # -- warm-up -------------------------------------------------------------------------------
    def _warm(self, family: str | None = None):
        """Probe the plain model, the family's whole-model variant, and ``warm`` random mixes (random
        densities, prune levels on a random part of the prunable nodes in every other one), so that most
        situations a search meets are known before it asks. Without ``family``: the first family now,
        the others when first used."""
        if family is None:
            if self.families:
                self._warm(self.families[0])
            return
        t = self.tables[family]
        if t.warmed:
            return
        from ..gcpause import gc_paused

        with gc_paused():
            self._warm_family(t, family)

    def _warm_family(self, t, family: str):
        t.warmed = True
        U = len(self.units)
        z = np.zeros(U, np.int64)
        rng = np.random.default_rng(0)
        prunable = np.array([u.prunable for u in self.structure.units], bool)  # bool even with no unit
        can = np.array([family in u.families for u in self.structure.units], bool)
        reduced = can.astype(np.int64)

        specs = []  # (bits, prune) of every probe, in order: fused one by one, priced in one batch

        def from_both(cut):  # the same cut from the all-fp32 and from the all-reduced model
            specs.append((z, cut))
            specs.append((reduced, cut))

        from_both(z)
        # one factor at a time, many at once: units no owner sees together are flipped in the same probe,
        # from the all-fp32 and from the all-reduced model (each owner sees its neighbours' effects alone)
        colors = self._colors(t, family)
        self.warm_colors = len(colors)
        for color in colors:
            flip = np.zeros(U, np.int64)
            flip[color] = 1
            specs.append((flip, z))
            specs.append((reduced - flip, z))
            if prunable[color].any():
                for level in range(1, _NP):
                    from_both(np.where(prunable & (flip > 0), level, 0))
        # every prunable node cut at once (a whole-model --prune): a node between two prunable ones (a
        # bottleneck's middle conv, a depthwise conv) loses input and output channels together, which the
        # one-at-a-time probes never show it
        if prunable.sum() > 1:
            for level in range(1, _NP):
                from_both(np.where(prunable, level, 0))
        for k in range(self.warm):
            bits = ((rng.random(U) < rng.random()) & can).astype(np.int64)
            pr = np.where((rng.random(U) < 0.3) & prunable, rng.integers(1, _NP, U), 0) if k % 2 else z
            specs.append((bits, pr))
        t.probe_many(specs)
        self._regroup()

    def _colors(self, t, family) -> list:
        """Groups of units no owner's key sees two of (greedy colouring of the units that share a key)."""
        U = len(self.units)
        near = [set() for _ in range(U)]
        for o in self.structure.owners:
            us = set()
            for c in t.c_cols[o.order]:
                c = int(c)
                if c < U:
                    us.add(c)
                elif t.Q0 <= c < t.S0 and len(t.q_units[c - t.Q0]) <= 3:
                    # a hub (a constant or mask many units read) would make everything near everything
                    us.update(t.q_units[c - t.Q0])
            for u in us:
                near[u] |= us
        color = [-1] * U
        for u in range(U):
            if family not in self.structure.units[u].families:
                continue
            used = {color[v] for v in near[u] if color[v] >= 0}
            c = 0
            while c in used:
                c += 1
            color[u] = c
        groups: dict = {}
        for u, c in enumerate(color):
            if c >= 0:
                groups.setdefault(c, []).append(u)
        return [np.array(g) for _, g in sorted(groups.items())]

    @property
    def stats(self) -> dict:
        """Per family: probes run, situations seen, distinct owner prices, regroupings, and the times a
        seen situation came back at another price (the locality the tables assume did not hold)."""
        return {f: {"probes": t.probes, "situations": sum(len(x) for x in t.obs_c),
                    "owner_prices": sum(len(e) for e in t.entries), "regroupings": self.rebuilds,
                    "inconsistencies": len(t.inconsistencies)} for f, t in self.tables.items()}


def _keyed_config():
    from ..ops import Config

    class KeyedConfig(Config):
        """A Config whose table key is computed once (a probe prices the same kernels again and again)."""

        @property
        def key(self) -> str:
            k = self.__dict__.get("_key")
            if k is None:
                k = Config.key.fget(self)
                object.__setattr__(self, "_key", k)
            return k

    return KeyedConfig


class _Lazy:
    def __init__(self, make):
        self._make, self._cls = make, None

    def __call__(self, *a, **kw):
        if self._cls is None:
            self._cls = self._make()
        return self._cls(*a, **kw)


_KeyedConfig = _Lazy(_keyed_config)


def _fpmb(key):
    from ..estimator import footprint_term_mb

    return footprint_term_mb(key)


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


def _tool_claims(choice) -> bool:
    from .tools import claims

    return claims(choice)
