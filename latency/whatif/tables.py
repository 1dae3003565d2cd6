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
_NROWS = 6  # sparsity rows of a weighted unit's entries: len(SPARSITY_LEVELS)
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
    """Learned tables of one precision family over a :class:`~latency.whatif.structure.Structure`.

    State of a candidate, per column: the precision bit of each unit, its prune digit, whether each
    tensor carries a quantize pair (``q``: the OR of the bits of the units whose quantization marks
    it, found by the tool's own marking rules), and each owner's layout state (``sigma``, learned).
    An owner's transfer key: its own bits, the ``q`` of its tensors, its prune digits, its producers'
    sigma; its cost key adds the ``q`` of its consumers' tensors (whether they absorb its DQ) and the
    sigma of itself and of its consumers two deep (a fold into a conv reaches past a norm).
    """

    def __init__(self, plan, family: str):
        self.plan = plan
        self.family = family
        st = plan.structure
        self.n_units = len(st.units)
        self.n_owners = len(st.owners)
        self._build_specs()
        self.sigma_ids = [dict() for _ in st.owners]
        self.transfer = [_Table(self.t_prio[o.order]) for o in st.owners]
        self.entries = [[] for _ in st.owners]       # per owner: Entry per price class
        self._class_index = [dict() for _ in st.owners]
        self.memo = [dict() for _ in st.owners]      # per owner: full cost key -> class seen in a probe
        self.costs = [_Table(self.c_prio[o.order]) for o in st.owners]  # cost key -> price class
        self.slots = [dict() for _ in st.owners]     # per owner: kernel name -> _Slot
        self.history = [[] for _ in st.owners]       # per owner: full cost keys of the probes
        self.rows_of = [1 for _ in st.owners]  # owner-level entries: the model's own sparsity only
        self._arrays = None
        self.probes = 0
        self.cands: dict = {}  # probed candidates (bits, prune) -> their exact kernels
        self.warmed = False
        self.corrections = 0
        self.inconsistencies: list = []

    # -- keys ----------------------------------------------------------------------------------
    def _build_specs(self):
        """Per owner: column indices into the state (bits | prune | q | sigma) and mixed-radix multipliers."""
        st = self.plan.structure
        U, O = self.n_units, self.n_owners
        tensors = []
        for o in st.owners:
            tensors.extend(o.inputs)
            tensors.extend(o.tensors)
        g = self.plan.graph
        self.q_tensors = [t for t in dict.fromkeys(tensors) if not g.tensor(t).const]
        # float initializers: a quantized reader gives them a DequantizeLinear that every reader then reads
        self.q_tensors += sorted({c for o in st.owners for c in o.consts})
        self.q_index = {t: i for i, t in enumerate(self.q_tensors)}
        T = len(self.q_tensors)
        marks = self.plan.marking_units(self.family)
        self.q_mat = np.zeros((U, T))
        for t, units in marks.items():
            if t in self.q_index:
                for u in units:
                    self.q_mat[u, self.q_index[t]] = 1.0
        self.q_units = [tuple(sorted(int(u) for u in np.flatnonzero(self.q_mat[:, i]))) for i in range(T)]
        self.Q0, self.S0, self.P0 = 2 * U, 2 * U + T, 2 * U + T + O
        self.width = 3 * U + T + O
        own_bits = [sorted({st.unit_of_node[n] for n in o.members if n in st.unit_of_node}) for o in st.owners]

        def qcols(o):
            return [self.Q0 + self.q_index[t] for t in list(o.inputs) + list(o.tensors) + list(o.consts)
                    if t in self.q_index]

        for o in st.owners:
            if o.kind == "const":
                own_bits[o.order] = list(o.bits)

        self.t_cols, self.c_cols, self.t_rad, self.c_rad, self.t_prio, self.c_prio = [], [], [], [], [], []
        for o in st.owners:
            # (column, radix, priority): the owner's own bits first, then its tensors' quantize pairs,
            # its prune digits, its consumers' bits and pairs, and last the learned layout states
            spec = [(c, 2, 0) for c in own_bits[o.order]] + [(c, 2, 1) for c in qcols(o)] + \
                [(U + u, len(PRUNE_LEVELS), 2) for u in o.prunes] + \
                [(self.S0 + p, _SIGMA_RADIX, 4) for p in o.producers]
            t = _spec(spec)
            self.t_cols.append(np.array([c for c, _, _ in t], np.int64))
            self.t_rad.append([r for _, r, _ in t])
            self.t_prio.append([p for _, _, p in t])
            cons = set(o.consumers)
            for c in o.consumers:
                cons.update(st.owners[c].consumers)
            cons.discard(o.order)
            # a consumer absorbs a DQ when it forms a QDQ unit: its own bits and its tensors' q decide
            spec += [(b, 2, 3) for k in o.consumers for b in own_bits[k]]
            spec += [(c, 2, 3) for k in o.consumers for c in qcols(st.owners[k])]
            spec += [(self.S0 + c, _SIGMA_RADIX, 4) for c in [o.order] + sorted(cons)]
            c = _spec(spec)
            self.c_cols.append(np.array([x for x, _, _ in c], np.int64))
            self.c_rad.append([r for _, r, _ in c])
            self.c_prio.append([p for _, _, p in c])

    def _base_state(self, bits: np.ndarray, prune: np.ndarray, sparsity=None) -> np.ndarray:
        n = bits.shape[0]
        U = self.n_units
        state = np.zeros((n, self.width), np.int64)
        state[:, :U] = bits
        state[:, U: 2 * U] = prune
        state[:, self.Q0: self.S0] = (bits.astype(float) @ self.q_mat) > 0
        if sparsity is not None:
            state[:, self.P0:] = sparsity
        return state

    # -- probes --------------------------------------------------------------------------------
    def probe(self, bits: np.ndarray, prune: np.ndarray) -> None:
        """Price one candidate exactly (whole rewritten model) and learn every owner's share."""
        data = run_probe(self.plan, self.family, bits, prune)
        self.plan.log_probe(self.family, data)
        self.learn(data)

    def learn(self, data) -> None:
        """Learn from one probe's record (see :func:`run_probe`); the plan replays its records when it
        rebuilds its owners."""
        plan = self.plan
        st = plan.structure
        bits, prune = data["bits"], data["prune"]
        self.probes += 1
        fixed, var, plain, unc_all = np.zeros(len(COEFS)), [], [], []
        for k, names, tensors, (prow, pc, pu, unit) in data["kernels"]:
            unc_all += pu
            if unit >= 0 and len(pc) > 1:
                var.append((unit, pc, prow))
            else:
                fixed += pc[0]
                if prow[0] is not None:
                    plain.append(prow[0])
        unc_all += [(n or t, op, why) for n, t, op, why in data["uncovered"]]
        self.cands[_cand_key(bits, prune)] = (fixed, var, plain, unc_all)
        order = plan.node_order
        owned = [[] for _ in st.owners]
        unc = [[] for _ in st.owners]
        for k, names, tensors, priced in data["kernels"]:
            if names:
                main = [n for n in names if plan.op_of.get(n) not in ("Identity", "Dropout")] or list(names)
                os_ = {st.owner_of_node.get(n) for n in main} - {None}
                if len(os_) > 1:
                    plan.merge_later(set(main))
                o = st.owner_of_node.get(min(main, key=lambda n: order.get(n, 1 << 30)), self.n_owners - 1)
            else:
                o = next((st.owner_of_tensor[t] for t in tensors if t in st.owner_of_tensor), self.n_owners - 1)
            owned[o].append((k, names, priced))
        for node, tensor, op, why in data["uncovered"]:
            o = st.owner_of_node.get(node, st.owner_of_tensor.get(tensor, self.n_owners - 1)) if node \
                else st.owner_of_tensor.get(tensor, self.n_owners - 1)
            unc[o].append((node or tensor, op, why))
        row = self._base_state(np.asarray(bits)[None, :], np.asarray(prune)[None, :])[0]
        seen_q = data["quantized"]
        for t, i in self.q_index.items():
            if bool(row[self.Q0 + i]) != (t in seen_q):
                self.inconsistencies.append((t, "quantize pair", int(row[self.Q0 + i]), int(t in seen_q)))
        marks = data["layout"]
        for o in st.owners:
            sig = tuple(marks.get(t, ()) for t in o.tensors)
            ids = self.sigma_ids[o.order]
            s_ = ids.setdefault(sig, len(ids))
            if s_ >= _SIGMA_RADIX:
                raise OverflowError(f"owner {o.name} has more than {_SIGMA_RADIX} layout states")
            row[self.S0 + o.order] = s_
        per_owner = [dict() for _ in st.owners]
        priced = []
        for o in st.owners:
            for k, nodes, pr in owned[o.order]:
                name, j = k.name, 1
                while name in per_owner[o.order]:
                    name, j = f"{k.name}#{j}", j + 1
                per_owner[o.order][name] = len(priced)
                priced.append(pr)
        for o in st.owners:
            i = o.order
            tkey = tuple(int(x) for x in row[self.t_cols[i]])
            self.corrections += self.transfer[i].add(tkey, int(row[self.S0 + i]))
            ckey = tuple(int(x) for x in row[self.c_cols[i]])
            nrows = self.rows_of[i]
            coef = np.zeros((nrows, len(COEFS)))
            rows = [[] for _ in range(nrows)]
            unc_o = list(unc[i])
            for name, at in per_owner[i].items():
                prow, pc, pu, unit = priced[at]
                unc_o += pu
                coef += pc[:1]
                for r in range(nrows):
                    pk = prow[r] if len(prow) == nrows else prow[0]
                    if pk is not None:
                        rows[r].append(pk)
                slot = self.slots[i].get(name)
                if slot is None:
                    slot = self.slots[i][name] = _Slot(self.c_prio[i])
                    for old in self.history[i]:
                        slot.table.add(old, 0)
                if unit >= 0:
                    slot.unit = unit
                self.corrections += slot.table.add(ckey, slot.variant(prow, pc, pu))
            for name, slot in self.slots[i].items():
                if name not in per_owner[i]:
                    self.corrections += slot.table.add(ckey, 0)
            self.history[i].append(ckey)
            cls = self._class_of(i, Entry(rows, coef, tuple(unc_o)))
            self.corrections += self.costs[i].add(ckey, cls)
            h = _hash_key(ckey)
            old = self.memo[i].get(h)
            if old is not None and old != cls:
                e0, e1 = self.entries[i][old], self.entries[i][cls]
                self.inconsistencies.append((o.name, "price", float(e0.coef[0, 0]), float(e1.coef[0, 0]),
                                             [(p.kernel.name, round(p.iso_us, 1)) for p in e0.rows[0]],
                                             [(p.kernel.name, round(p.iso_us, 1)) for p in e1.rows[0]]))
            self.memo[i][h] = cls
        self._arrays = None

    def _class_of(self, o: int, entry) -> int:
        """Index of the price class of ``entry`` among owner ``o``'s (equal coefficients: one class)."""
        h = (entry.coef.shape, entry.coef.tobytes())
        k = self._class_index[o].get(h)
        if k is None:
            self.entries[o].append(entry)
            k = self._class_index[o][h] = len(self.entries[o]) - 1
        return k

    def _compile(self):
        """Dense lookup arrays: per owner its layout-state transfer over the digits that decided it, and
        per set of deciding digits the summed coefficients of every kernel keyed by that set (a
        situation never seen whole backs off to the longest seen prefix of its digits; NaN where even
        that is unknown)."""
        if self._arrays is not None:
            return self._arrays
        st = self.plan.structure
        radix = self._radices()
        trans = []
        for o in st.owners:
            tb = self.transfer[o.order]
            cols = [int(self.t_cols[o.order][j]) for j in tb.sel]
            grid, mult = _grid([radix[c] for c in cols])
            vals = tb.lookup_rows_ordered(grid) if tb.obs else np.full(len(grid), -1, np.int64)
            trans.append((np.array(cols, np.int64), mult, vals))
        groups: dict = {}
        for o in st.owners:
            i = o.order
            for name, slot in self.slots[i].items():
                cols = [int(self.c_cols[i][j]) for j in slot.table.sel]
                weighted = any(v is not None and len(v[1]) > 1 for v in slot.variants)
                key_cols = cols + ([self.P0 + slot.unit] if weighted else [])
                order = sorted(range(len(key_cols)), key=lambda j: key_cols[j])
                sc = tuple(key_cols[j] for j in order)
                grid, mult = _grid([radix[c] for c in sc])
                # back to the slot's own digit order for its lookups
                own = np.empty_like(grid)
                own[:, order] = grid
                v = slot.table.lookup_rows_ordered(own[:, :len(cols)])
                coef = np.full((len(grid), len(COEFS)), np.nan)
                ok = v >= 0
                coef[ok & (v == 0)] = 0.0
                for k in range(1, len(slot.variants)):
                    sel = ok & (v == k)
                    if sel.any():
                        pc = slot.variants[k][1]
                        coef[sel] = pc[own[sel, -1]] if weighted and len(pc) > 1 else pc[0]
                g = groups.get(sc)
                if g is None:
                    groups[sc] = [mult, coef]
                else:
                    g[1] = g[1] + coef
        self._arrays = (trans, _merge_groups(groups, self._radices()))
        return self._arrays

    def _radices(self) -> dict:
        """Radix of every state column: 2 for bits and quantize pairs, the prune and sparsity levels, and
        for an owner's layout state the number of states seen."""
        U = self.n_units
        r = {}
        for c in range(self.width):
            if c < U or self.Q0 <= c < self.S0:
                r[c] = 2
            elif c < 2 * U:
                r[c] = len(PRUNE_LEVELS)
            elif c < self.P0:
                r[c] = max(1, len(self.sigma_ids[c - self.S0]))
            else:
                r[c] = _NROWS
        return r

    def sums(self, bits: np.ndarray, prune: np.ndarray, sparsity: np.ndarray, want_state: bool = True,
             chunk: int = 8192):
        """(N x COEFS sums, known mask, state rows or None) for candidates given as unit matrices (bits,
        prune digits, sparsity digits): per chunk of candidates, one layout sweep over the owners, then
        one gather per group of kernels (the state is kept column-major: each digit a contiguous row)."""
        trans, groups = self._compile()
        st = self.plan.structure
        n = bits.shape[0]
        U = self.n_units
        acc = np.zeros((n, len(COEFS)))
        known = np.ones(n, bool)
        state = np.zeros((n, self.width), np.int64) if want_state else None
        marks = self.q_units
        for a in range(0, n, chunk):
            b = min(n, a + chunk)
            m = b - a
            S = np.zeros((self.width, m), np.int32)
            S[:U] = bits[a:b].T
            S[U:2 * U] = prune[a:b].T
            S[self.P0:] = sparsity[a:b].T
            for i, us in enumerate(marks):
                if len(us) == 1:
                    S[self.Q0 + i] = S[us[0]]
                elif us:
                    S[self.Q0 + i] = S[list(us)].max(axis=0)
            kn = np.ones(m, bool)
            for o in st.owners:
                cols, mult, vals = trans[o.order]
                if len(cols):
                    key = S[cols[0]] * int(mult[0])
                    for c, mm in zip(cols[1:], mult[1:]):
                        key += S[c] * int(mm)
                    sv = vals[key]
                else:
                    sv = np.full(m, vals[0] if len(vals) else -1, np.int64)
                kn &= sv >= 0
                S[self.S0 + o.order] = np.maximum(sv, 0)
            ac = acc[a:b]
            for cols, mult, table in groups:
                if len(cols):
                    key = S[cols[0]] * int(mult[0])
                    for c, mm in zip(cols[1:], mult[1:]):
                        key += S[c] * int(mm)
                    ac += table[key]
                else:
                    ac += table[0]
            known[a:b] = kn & np.isfinite(ac[:, 0])
            if want_state:
                state[a:b] = S.T
        for r in np.flatnonzero(~known):  # candidates probed whole: their own kernels, exactly
            c = self.cands.get(_cand_key(bits[r], prune[r]))
            if c is not None:
                acc[r] = c[0] + sum((pc[min(int(sparsity[r, u]), len(pc) - 1)] for u, pc, _ in c[1]),
                                    np.zeros(len(COEFS)))
                known[r] = True
        return acc, known, state

    def candidate_kernels(self, bits, prune, sparsity):
        """(priced kernels, uncovered) of a probed candidate, or None."""
        c = self.cands.get(_cand_key(bits, prune))
        if c is None:
            return None
        ks = list(c[2])
        for u, pc, prow in c[1]:
            pk = prow[min(int(sparsity[u]), len(prow) - 1)]
            if pk is not None:
                ks.append(pk)
        return ks, c[3]

    def kernels_of(self, state_row: np.ndarray, owners=None):
        """([(owner index, priced kernel)], uncovered) of one candidate's state row, slot by slot (what
        :meth:`sums` adds up, for the per-kernel breakdown); ``owners``: only those."""
        st = self.plan.structure
        out, unc = [], []
        for o in (st.owners if owners is None else [st.owners[k] for k in owners]):
            i = o.order
            digits = state_row[self.c_cols[i]][None, :]
            for name, slot in self.slots[i].items():
                srow = int(state_row[self.P0 + slot.unit]) if slot.unit >= 0 else 0
                v = int(slot.table.lookup_rows_ordered(digits[:, slot.table.sel])[0])
                if v <= 0:
                    continue
                prow, pc, pu = slot.variants[v]
                pk = prow[srow] if len(prow) > 1 else prow[0]
                if pk is not None:
                    out.append((i, pk))
                unc.extend(pu)
        return out, unc


def _merge_groups(groups: dict, radix: dict) -> list:
    """Fewer gathers: a group whose digits are a subset of another's folds into it (broadcast), and
    groups are merged while the union of their digits stays a small table (cells <= 4096)."""
    items = sorted(groups.items(), key=lambda kv: -len(kv[0]))
    merged: list = []  # [cols tuple, table]
    for cols, (mult, table) in items:
        home = next((m for m in merged if set(cols) <= set(m[0])), None)
        if home is None:
            union_ok = None
            for m in merged:
                u = tuple(sorted(set(m[0]) | set(cols)))
                if int(np.prod([radix[c] for c in u])) <= 4096:
                    union_ok = (m, u)
                    break
            if union_ok is None:
                merged.append([cols, table])
                continue
            m, u = union_ok
            m[1] = _refold(m[0], m[1], u, radix)
            m[0] = u
            home = m
        home[1] = home[1] + _refold(cols, table, home[0], radix)
    out = []
    for cols, table in merged:
        _, mult = _grid([radix[c] for c in cols])
        out.append((np.array(cols, np.int64), mult, table))
    return out


def _refold(cols, table, into, radix):
    """``table`` over digits ``cols`` laid out over the superset ``into`` (broadcast on the others)."""
    grid, _ = _grid([radix[c] for c in into])
    _, mult = _grid([radix[c] for c in cols])
    pos = [into.index(c) for c in cols]
    idx = grid[:, pos] @ mult if cols else np.zeros(len(grid), np.int64)
    return table[idx]


def _grid(radices):
    """(every digit combination as rows, mixed-radix multipliers) for ``radices``."""
    if not radices:
        return np.zeros((1, 0), np.int64), np.zeros(0, np.int64)
    mult = np.cumprod([1] + list(radices[:-1])).astype(np.int64)
    size = int(np.prod(radices))
    if size > 1 << 22:
        raise OverflowError(f"a what-if lookup table of {size} cells")
    idx = np.arange(size, dtype=np.int64)
    grid = (idx[:, None] // mult[None, :]) % np.array(radices, np.int64)[None, :]
    return grid, mult


def _cand_key(bits, prune) -> bytes:
    return np.asarray(bits, np.int8).tobytes() + b"|" + np.asarray(prune, np.int8).tobytes()


def _bump(m: dict, key, value) -> None:
    """One more full situation with ``value`` at projection ``key`` (-2 once two values met there)."""
    h = m.get(key)
    if h is None:
        m[key] = [value, 1]
    else:
        if h[0] != value:
            h[0] = -2
        h[1] += 1


def _hash_rows(d: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row of small non-negative integers (wrapping multiply-add)."""
    with np.errstate(over="ignore"):
        h = np.full(d.shape[0], 1469598103934665603, np.uint64)
        for j in range(d.shape[1]):
            h = (h ^ d[:, j].astype(np.uint64)) * np.uint64(1099511628211)
    return h.view(np.int64)


def _hash_key(key: tuple) -> int:
    return int(_hash_rows(np.array([key], np.int64).reshape(1, -1))[0])


class _Slot:
    """One kernel of an owner: its price variants (0: absent) and the table deciding which applies.
    A variant is (priced kernel per row, coefficients rows x COEFS, uncovered nodes)."""

    def __init__(self, prio=()):
        self.table = _Table(prio)
        self.variants = [None]
        self._index: dict = {}
        self.unit = -1  # the unit whose sparsity digit picks a variant's row

    def variant(self, prow, pc, unc=()) -> int:
        h = (pc.shape, pc.tobytes())
        k = self._index.get(h)
        if k is None:
            self.variants.append((prow, pc, tuple(unc)))
            k = self._index[h] = len(self.variants) - 1
        return k


class _Table:
    """Observations full key (digit tuple) -> value, and the smallest set of digits that determines
    the value on every observation (greedy: the digit that parts the most conflicting pairs first,
    the model's own digits before learned layout states). A situation never seen whole is priced from
    observations that agree with it on every digit that has mattered so far, and only when at least
    ``MIN_SUPPORT`` different full situations say so (one observation does not vouch for the digits it
    happened to hold constant); else from the longest prefix of those digits that is so supported
    and unanimous; else it is unknown (and probed)."""

    MIN_SUPPORT = 1

    def __init__(self, prio=()):
        #: per digit: its priority (lower first; the learned layout states last, used only where the
        #: model's own digits cannot decide)
        self.prio = list(prio)
        self.obs: dict = {}
        self.sel: list = []
        self._map: dict = {}     # projection -> [value or -2 (ambiguous), support]
        self._prefix: list = []  # per prefix length, the same

    def observed(self, key):
        return self.obs.get(key)

    def add(self, key, value) -> int:
        """Record an observation; 1 when it contradicts what the current selection predicted."""
        if key in self.obs:
            if self.obs[key] == value:
                return 0
            self.obs[key] = value
            self._select()
            return 1
        red = tuple(key[j] for j in self.sel)
        hit = self._map.get(red)
        self.obs[key] = value
        if hit is not None and hit[0] != value:
            self._select()
            return 1
        _bump(self._map, red, value)
        for n, m in enumerate(self._prefix, 1):
            _bump(m, red[:n], value)
        return 0

    def _select(self):
        keys = list(self.obs)
        width = len(keys[0])
        sel: list = []
        groups = {(): keys}

        def conflicts(gr):
            # pairs of observations the selection cannot tell apart that differ in value
            total = 0
            for ks in gr.values():
                if len(ks) < 2:
                    continue
                counts: dict = {}
                for k in ks:
                    v = self.obs[k]
                    counts[v] = counts.get(v, 0) + 1
                if len(counts) > 1:
                    total += (len(ks) ** 2 - sum(c * c for c in counts.values())) // 2
            return total

        now = conflicts(groups)
        while now:
            best, best_c, best_g = None, None, None
            for level in sorted(set(self.prio or [0])):  # nearer, simpler digits first
                for j in range(width):
                    if j in sel or (self.prio[j] if self.prio else 0) != level:
                        continue
                    g2: dict = {}
                    for gk, ks in groups.items():
                        for k in ks:
                            g2.setdefault(gk + (k[j],), []).append(k)
                    c = conflicts(g2)
                    if best_c is None or c < best_c:
                        best, best_c, best_g = j, c, g2
                if best_c is not None and best_c < now:
                    break
            sel.append(best)
            groups = best_g
            now = best_c
        self.sel = sel
        self._map = {}
        self._prefix = [dict() for _ in range(1, len(sel))]
        for k, v in self.obs.items():
            red = tuple(k[j] for j in sel)
            _bump(self._map, red, v)
            for n, m in enumerate(self._prefix, 1):
                _bump(m, red[:n], v)

    def lookup_rows_ordered(self, d: np.ndarray) -> np.ndarray:
        """Values for rows of digits already in selection order (-1: not decided, see the class doc)."""
        out = np.full(len(d), -1, np.int64)
        if not self.obs:
            return out
        need = self.MIN_SUPPORT
        for r, row in enumerate(d.tolist()):
            row = tuple(row)
            hit = self._map.get(row)
            v = hit[0] if hit is not None and hit[1] >= need else -1
            n = len(row) - 1
            while v < 0 and n >= 1 and hit is None:
                h = self._prefix[n - 1].get(row[:n])
                v = h[0] if h is not None and h[0] >= 0 and h[1] >= need else -1
                n -= 1
            out[r] = v
        return out


def run_probe(plan, family: str, bits, prune) -> dict:
    """One candidate rewritten as the tool would, fused and priced: a record that does not depend on
    how the plan groups owners. ``kernels``: (kernel, original nodes, tensors it sits on, prices);
    ``layout``: original tensor -> which of its aliases ran NCHWc-blocked / NHWC (what the producer
    side decides: a DequantizeLinear output exists only when some consumer does not absorb it, and has
    its input's layout anyway); ``quantized``: tensors given a quantize pair (or a DQ, constants)."""
    from ..fusion.driver import fused_graph
    from ..fusion.lower import emit

    rw = plan.rewrite(family, bits, prune, materialize=False)
    state = fused_graph(rw.graph, plan.rules)
    layouts = getattr(state, "layouts", {}) or {}
    kernels, uncovered = emit(state)
    marks: dict = {}
    for tag, names in (("b", layouts.get("blocked", ())), ("h", layouts.get("nhwc", ()))):
        for name in names:
            if name.endswith("_DequantizeLinear_Output"):
                continue
            marks.setdefault(rw.tensor_origin.get(name, name), set()).add((tag, name))
    marks = {t: tuple(sorted(v)) for t, v in marks.items()}
    items = []
    for k in kernels:
        names, tensors = _origins(k, rw)
        items.append((k, names))
    priced = plan.price_kernels(items)
    out = [(k, names, tensors, pr) for (k, names), (_, tensors), pr in
           zip(items, (_origins(k, rw) for k in kernels), priced)]
    unc = []
    for u in uncovered:
        n = rw.node_origin.get(u.node, u.node)
        unc.append((n, None, u.op_type, u.reason) if isinstance(n, str) else
                   (None, n[1] if isinstance(n, tuple) else u.node, u.op_type, u.reason))
    quantized = set()
    for name in rw.node_origin:
        for suffix in ("_QuantizeLinear", "_DequantizeLinear"):
            if name.endswith(suffix):
                quantized.add(name[: -len(suffix)])
    return {"bits": np.array(bits, np.int64), "prune": np.array(prune, np.int64), "kernels": out,
            "uncovered": unc, "layout": marks, "quantized": quantized}


def _origins(k, rw):
    """(original nodes, original tensors) a fused kernel covers or sits on."""
    names, tensors = [], []
    for n in k.nodes:
        o = rw.node_origin.get(n, n)
        if isinstance(o, tuple):
            tensors.append(rw.tensor_origin.get(o[1], o[1]))
        elif o is not None:
            names.append(o)
    if names or tensors:
        return tuple(dict.fromkeys(names)), tuple(tensors)
    if "/dup" in k.name:  # a DequantizeLinear copied once per consumer
        o = rw.node_origin.get(k.name.rsplit("/dup", 1)[0])
        if isinstance(o, tuple):
            return (), (rw.tensor_origin.get(o[1], o[1]),)
        if isinstance(o, str):
            return (o,), ()
    head = k.name
    while "/" in head:  # a kernel a node's lowering adds ("x/gemm_input_reshape")
        head = head.rsplit("/", 1)[0]
        o = rw.node_origin.get(head)
        if isinstance(o, str):
            return (o,), ()
    m = _INSERTED.match(k.name)
    if m:
        t = m.group(1) or m.group(2)
        return (), (rw.tensor_origin.get(t, t),)
    return (), ()


def _spec(spec):
    """(column, radix, priority) triples, each column once at its best priority, in priority order."""
    best: dict = {}
    for c, r, p in spec:
        if c not in best or p < best[c][1]:
            best[c] = (r, p)
    order = sorted(best, key=lambda c: (best[c][1], [x for x, _, _ in spec].index(c)))
    return [(c, best[c][0], best[c][1]) for c in order]


def _dedupe(cols, rad):
    seen, c2, r2 = set(), [], []
    for c, r in zip(cols, rad):
        if c not in seen:
            seen.add(c)
            c2.append(c)
            r2.append(r)
    return c2, r2


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
